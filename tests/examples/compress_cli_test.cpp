// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// latentkv-compress end to end on tiny synthetic Hugging Face checkpoints: a valid run and every
// bad input of the issue (budget, option values, layer range, K/V shapes that disagree with the
// config, NaN weights, an output equal to the input), each a clear error with no output left.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "../support/tiny_llama.hpp"
#include "latentkv/io/compressed_checkpoint.hpp"
#include "latentkv/io/hf_model_dir.hpp"
#include "latentkv/io/safetensors.hpp"

namespace latentkv {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

struct Run {
  int status = -1;
  std::string output;  // stdout and stderr
};

Run run(const std::string& args) {
  const std::string command = std::string(LATENTKV_COMPRESS_TOOL) + " " + args + " 2>&1";
  Run r;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return r;
  char buffer[4096];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) r.output += buffer;
  const int status = ::pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// Writes `w` as a Hugging Face directory (config.json + model.safetensors, [out, in] tensors).
void write_hf_dir(const LlamaWeights& w, const fs::path& dir) {
  fs::create_directories(dir);
  const ModelConfig& c = w.config;
  nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}},
                           {"model_type", "llama"},
                           {"hidden_size", c.d_model},
                           {"intermediate_size", c.ffn_dim},
                           {"num_hidden_layers", c.num_layers},
                           {"num_attention_heads", c.num_heads},
                           {"num_key_value_heads", c.num_kv_heads},
                           {"vocab_size", c.vocab_size},
                           {"rms_norm_eps", c.norm_eps},
                           {"rope_theta", c.rope_base},
                           {"tie_word_embeddings", c.tied_embeddings},
                           {"max_position_embeddings", c.context_length},
                           {"hidden_act", "silu"}};
  std::ofstream(dir / "config.json") << config.dump(2);
  SafetensorsWriter out;
  out.add(HfLlamaNames::embed_tokens(), w.token_embedding);
  out.add(HfLlamaNames::final_norm(), w.output_norm.transpose(), {c.d_model},
          SafetensorsDtype::kF32);
  for (Index l = 0; l < c.num_layers; ++l) {
    const LayerWeights& layer = w.layers[static_cast<std::size_t>(l)];
    out.add(HfLlamaNames::input_norm(l), layer.attention_norm.transpose(), {c.d_model},
            SafetensorsDtype::kF32);
    out.add(HfLlamaNames::q_proj(l), layer.attention.wq.transpose());
    out.add(HfLlamaNames::k_proj(l), layer.attention.wk.transpose());
    out.add(HfLlamaNames::v_proj(l), layer.attention.wv.transpose());
    out.add(HfLlamaNames::o_proj(l), layer.attention.wo.transpose());
  }
  out.write(dir / "model.safetensors");
}

class CompressCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("latentkv-compress-cli-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    weights_ = testing::random_llama_weights(testing::tiny_llama_config(), 17);
    write_hf_dir(weights_, dir_ / "model");
  }
  void TearDown() override { fs::remove_all(dir_); }

  [[nodiscard]] std::string model() const { return (dir_ / "model").string(); }
  [[nodiscard]] std::string out() const { return (dir_ / "out.safetensors").string(); }
  /// No output and no temporary file next to it.
  void expect_nothing_written() const {
    for (const auto& entry : fs::directory_iterator(dir_)) {
      EXPECT_EQ(entry.path().filename(), "model") << "left behind: " << entry.path();
    }
  }

  fs::path dir_;
  LlamaWeights weights_;
};

TEST_F(CompressCli, CompressesACheckpointAndWritesTheReport) {
  const fs::path report = dir_ / "report.json";
  const Run r = run("--model " + model() +
                    " --budget 0.5 --schedule uniform --factorizer svd "
                    "--grouping per-head --out " +
                    out() + " --report " + report.string() + " --quiet");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output,
              HasSubstr("| numbers per token            |             64 |             32 |"));
  EXPECT_THAT(r.output, HasSubstr("KV memory at 128K tokens"));
  const CompressedModel m = load_compressed_checkpoint(out());
  EXPECT_EQ(m.grouping, "per-head");
  EXPECT_EQ(m.factorizer, "svd");
  EXPECT_EQ(m.plan.schedule, "uniform");
  EXPECT_DOUBLE_EQ(m.plan.budget(), 0.5);
  const nlohmann::json j = nlohmann::json::parse(read_all(report));
  for (const char* key : {"budget_requested", "budget_achieved", "kv_bytes_per_token_dense",
                          "kv_bytes_per_token_latent", "layers", "seconds"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["kv_bytes_per_token_dense"], 2 * 64);
  EXPECT_EQ(j["kv_bytes_per_token_latent"], 2 * 32);
  EXPECT_EQ(j["layers"].size(), 2u);
  EXPECT_EQ(j["layers"][1]["rank_k"], (std::vector<Index>{4, 4}));
}

TEST_F(CompressCli, OnlyTheSelectedLayersAreCompressed) {
  const Run r = run("--model " + model() +
                    " --budget 0.25 --layers 1-1 --schedule progressive "
                    "--out " +
                    out() + " --quiet");
  ASSERT_EQ(r.status, 0) << r.output;
  const CompressedModel m = load_compressed_checkpoint(out());
  EXPECT_FALSE(m.layers[0].compressed);
  EXPECT_TRUE(m.layers[1].compressed);
  EXPECT_EQ(m.plan.layers[1].width(), 8);
}

TEST_F(CompressCli, RejectsBudgetsOutsideTheUnitInterval) {
  for (const char* budget : {"0", "1.5", "-0.5", "nan"}) {
    const Run r = run("--model " + model() + " --budget " + budget + " --out " + out());
    EXPECT_EQ(r.status, 1) << budget;
    EXPECT_THAT(r.output, HasSubstr("expected a kept fraction in (0, 1]")) << budget;
  }
  expect_nothing_written();
}

TEST_F(CompressCli, RejectsUnknownOptionValues) {
  const auto expect_error = [&](const std::string& args, const std::string& message) {
    const Run r = run("--model " + model() + " --out " + out() + " " + args);
    EXPECT_EQ(r.status, 1) << args << ": " << r.output;
    EXPECT_THAT(r.output, HasSubstr(message)) << args;
  };
  expect_error("--schedule fisher", "schedule 'fisher' is unknown, expected one of uniform, ");
  expect_error("--factorizer qr",
               "factorizer 'qr' is unknown, expected one of svd, rsvd, whitened");
  expect_error("--grouping heads", "grouping 'heads' is unknown, expected one of joint, per-head");
  expect_error("--grouping group:3", "group_size = 3 does not divide num_kv_heads = 2");
  expect_error("--layers 1-5", "--layers = '1-5', expected A-B (or A) with 0 <= A <= B <= 1");
  expect_error("--layers x", "--layers = 'x'");
  expect_error("--dtype f64", "--dtype = 'f64', expected f32, f16 or bf16");
  expect_error("--multiple 0", "--multiple = 0, expected >= 1");
  expect_error("--budget 0.01", "is below");
  expect_error("--factorizer whitened", "need a .gguf --model");
  expect_nothing_written();
}

TEST_F(CompressCli, RejectsKvShapesThatDisagreeWithTheConfig) {
  LlamaWeights bad = weights_;
  bad.layers[1].attention.wk = RowMatrix<float>::Ones(32, 12);  // 12 columns, config: 2·8 = 16
  fs::remove_all(dir_ / "model");
  write_hf_dir(bad, dir_ / "model");
  const Run r = run("--model " + model() + " --out " + out());
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, HasSubstr("tensor 'model.layers.1.self_attn.k_proj.weight' has shape "
                                  "[12, 32], expected [16, 32]"));
  expect_nothing_written();
}

TEST_F(CompressCli, RejectsNanWeightsNamingTheLayer) {
  LlamaWeights bad = weights_;
  bad.layers[1].attention.wv(4, 3) = std::numeric_limits<float>::quiet_NaN();
  fs::remove_all(dir_ / "model");
  write_hf_dir(bad, dir_ / "model");
  const Run r = run("--model " + model() + " --out " + out());
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, HasSubstr("layer 1 W_v (model.layers.1.self_attn.v_proj.weight) has a "
                                  "non-finite entry nan"));
  expect_nothing_written();
}

TEST_F(CompressCli, RefusesToOverwriteItsInput) {
  const fs::path input = dir_ / "model" / "model.safetensors";
  const std::string before = read_all(input);
  for (const std::string& target : {input.string(), model() + "/./model.safetensors"}) {
    const Run r = run("--model " + input.string() + " --out " + target);
    EXPECT_EQ(r.status, 1);
    EXPECT_THAT(r.output, HasSubstr("is the input checkpoint: refusing to overwrite it"));
  }
  const Run dir_run = run("--model " + model() + " --out " + input.string());
  EXPECT_EQ(dir_run.status, 1);
  EXPECT_THAT(dir_run.output, HasSubstr("refusing to overwrite it"));
  EXPECT_EQ(read_all(input), before);
  const Run report = run("--model " + model() + " --out " + out() + " --report " + out());
  EXPECT_THAT(report.output, HasSubstr("would overwrite the input or the output"));
  expect_nothing_written();
}

TEST_F(CompressCli, ASingleSafetensorsFileUsesTheConfigBesideIt) {
  const Run r = run("--model " + (dir_ / "model" / "model.safetensors").string() +
                    " --budget 0.75 --out " + out() + " --quiet");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NEAR(load_compressed_checkpoint(out()).plan.budget(), 0.75, 1.0 / 64);
  fs::remove(dir_ / "model" / "config.json");
  const Run none = run("--model " + (dir_ / "model" / "model.safetensors").string() + " --out " +
                       (dir_ / "other.safetensors").string());
  EXPECT_EQ(none.status, 1);
  EXPECT_THAT(none.output, HasSubstr("needs config.json beside it"));
}

}  // namespace
}  // namespace latentkv
