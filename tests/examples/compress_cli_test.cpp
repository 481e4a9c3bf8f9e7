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

#include "../support/hf_checkpoint.hpp"
#include "../support/tiny_llama.hpp"
#include "../support/tool_run.hpp"
#include "latentkv/io/compressed_checkpoint.hpp"
#include "latentkv/io/hf_model_dir.hpp"
#include "latentkv/io/safetensors.hpp"

namespace latentkv {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class CompressCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("latentkv-compress-cli-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    weights_ = testing::random_llama_weights(testing::tiny_llama_config(), 17);
    testing::write_hf_dir(weights_, dir_ / "model");
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
  const testing::ToolRun r = testing::run_tool(
      LATENTKV_COMPRESS_TOOL, "--model " + model() +
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
  const nlohmann::json j = nlohmann::json::parse(testing::read_all(report));
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
  const testing::ToolRun r = testing::run_tool(
      LATENTKV_COMPRESS_TOOL, "--model " + model() +
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
    const testing::ToolRun r = testing::run_tool(
        LATENTKV_COMPRESS_TOOL, "--model " + model() + " --budget " + budget + " --out " + out());
    EXPECT_EQ(r.status, 1) << budget;
    EXPECT_THAT(r.output, HasSubstr("expected a kept fraction in (0, 1]")) << budget;
  }
  expect_nothing_written();
}

TEST_F(CompressCli, RejectsUnknownOptionValues) {
  const auto expect_error = [&](const std::string& args, const std::string& message) {
    const testing::ToolRun r = testing::run_tool(
        LATENTKV_COMPRESS_TOOL, "--model " + model() + " --out " + out() + " " + args);
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
  testing::write_hf_dir(bad, dir_ / "model");
  const testing::ToolRun r =
      testing::run_tool(LATENTKV_COMPRESS_TOOL, "--model " + model() + " --out " + out());
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, HasSubstr("tensor 'model.layers.1.self_attn.k_proj.weight' has shape "
                                  "[12, 32], expected [16, 32]"));
  expect_nothing_written();
}

TEST_F(CompressCli, RejectsNanWeightsNamingTheLayer) {
  LlamaWeights bad = weights_;
  bad.layers[1].attention.wv(4, 3) = std::numeric_limits<float>::quiet_NaN();
  fs::remove_all(dir_ / "model");
  testing::write_hf_dir(bad, dir_ / "model");
  const testing::ToolRun r =
      testing::run_tool(LATENTKV_COMPRESS_TOOL, "--model " + model() + " --out " + out());
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, HasSubstr("layer 1 W_v (model.layers.1.self_attn.v_proj.weight) has a "
                                  "non-finite entry nan"));
  expect_nothing_written();
}

TEST_F(CompressCli, RefusesToOverwriteItsInput) {
  const fs::path input = dir_ / "model" / "model.safetensors";
  const std::string before = testing::read_all(input);
  for (const std::string& target : {input.string(), model() + "/./model.safetensors"}) {
    const testing::ToolRun r =
        testing::run_tool(LATENTKV_COMPRESS_TOOL, "--model " + input.string() + " --out " + target);
    EXPECT_EQ(r.status, 1);
    EXPECT_THAT(r.output, HasSubstr("is the input checkpoint: refusing to overwrite it"));
  }
  const testing::ToolRun dir_run =
      testing::run_tool(LATENTKV_COMPRESS_TOOL, "--model " + model() + " --out " + input.string());
  EXPECT_EQ(dir_run.status, 1);
  EXPECT_THAT(dir_run.output, HasSubstr("refusing to overwrite it"));
  EXPECT_EQ(testing::read_all(input), before);
  const testing::ToolRun report = testing::run_tool(
      LATENTKV_COMPRESS_TOOL, "--model " + model() + " --out " + out() + " --report " + out());
  EXPECT_THAT(report.output, HasSubstr("would overwrite the input or the output"));
  expect_nothing_written();
}

TEST_F(CompressCli, ASingleSafetensorsFileUsesTheConfigBesideIt) {
  const testing::ToolRun r = testing::run_tool(
      LATENTKV_COMPRESS_TOOL, "--model " + (dir_ / "model" / "model.safetensors").string() +
                                  " --budget 0.75 --out " + out() + " --quiet");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NEAR(load_compressed_checkpoint(out()).plan.budget(), 0.75, 1.0 / 64);
  fs::remove(dir_ / "model" / "config.json");
  const testing::ToolRun none = testing::run_tool(
      LATENTKV_COMPRESS_TOOL, "--model " + (dir_ / "model" / "model.safetensors").string() +
                                  " --out " + (dir_ / "other.safetensors").string());
  EXPECT_EQ(none.status, 1);
  EXPECT_THAT(none.output, HasSubstr("needs config.json beside it"));
}

}  // namespace
}  // namespace latentkv
