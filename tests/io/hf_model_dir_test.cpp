// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// from_hf_config on config.json texts (defaults, every refusal), HfModelDir on the sharded tiny
// LLaMA written by Python's safetensors (tests/data/safetensors/tiny_llama: values checked against
// the generator's checksums), on single-file directories and .safetensors files written by
// SafetensorsWriter, and on inconsistent directories: errors name the file and the key or tensor.
#include "latentkv/io/hf_model_dir.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "../data/safetensors/python_fixtures.inc"
#include "../support/files.hpp"

namespace latentkv {
namespace {

using testing::format_error;
using testing::TempDir;

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

const fs::path kTinyLlama = fs::path(LATENTKV_SOURCE_DIR) / "tests/data/safetensors/tiny_llama";

// A LLaMA config.json in the shape transformers writes (SmolLM2-135M's numbers).
constexpr std::string_view kSmolConfig = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "bos_token_id": 1,
  "hidden_act": "silu",
  "hidden_size": 576,
  "intermediate_size": 1536,
  "max_position_embeddings": 8192,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 9,
  "num_hidden_layers": 30,
  "num_key_value_heads": 3,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 100000,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "vocab_size": 49152
})";

/// kSmolConfig (one key per line) with `key`'s value replaced by `value`, or the key removed when
/// `value` is empty.
std::string with(std::string_view key, std::string_view value) {
  std::vector<std::string> lines;
  std::string line;
  for (std::istringstream in{std::string(kSmolConfig)}; std::getline(in, line);) {
    lines.push_back(line);
  }
  const std::string prefix = "  \"" + std::string(key) + "\": ";
  const auto it = std::find_if(lines.begin(), lines.end(),
                               [&](const std::string& l) { return l.starts_with(prefix); });
  EXPECT_NE(it, lines.end()) << key;
  if (it == lines.end()) return std::string(kSmolConfig);
  const bool comma = it->ends_with(",");
  if (!value.empty()) {
    *it = prefix + std::string(value) + (comma ? "," : "");
  } else {
    if (!comma) std::prev(it)->pop_back();  // the last key: drop the comma before it
    lines.erase(it);
  }
  std::string text;
  for (const std::string& l : lines) text += l + "\n";
  return text;
}

ModelConfig parse(std::string_view text) { return from_hf_config_json(text, "cfg/config.json"); }

std::string parse_error(std::string_view text) {
  std::string message = format_error([&] { (void)parse(text); });
  EXPECT_THAT(message, HasSubstr("latentkv::from_hf_config: cfg/config.json: "));
  return message;
}

// ---- from_hf_config -----------------------------------------------------------------------------

TEST(FromHfConfig, ReadsTheLlamaKeys) {
  const ModelConfig c = parse(kSmolConfig);
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.d_model, 576);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rope_dim, 64);
  EXPECT_EQ(c.ffn_dim, 1536);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.context_length, 8192);
  EXPECT_EQ(c.rope_base, 100000.0f);
  EXPECT_EQ(c.norm_eps, 1e-5f);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(c.group_size(), 3);
}

TEST(FromHfConfig, AppliesTransformersDefaultsForAbsentOrNullKeys) {
  const std::string minimal =
      R"({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                            "intermediate_size": 96, "vocab_size": 100, "head_dim": null,
                            "num_key_value_heads": null, "max_position_embeddings": null})";
  const ModelConfig c = parse(minimal);
  EXPECT_EQ(c.num_kv_heads, 4);      // = num_attention_heads
  EXPECT_EQ(c.head_dim, 16);         // = hidden_size / num_attention_heads
  EXPECT_EQ(c.rope_base, 10000.0f);  // LlamaConfig default
  EXPECT_EQ(c.norm_eps, 1e-6f);      // LlamaConfig default
  EXPECT_FALSE(c.tied_embeddings);   // LlamaConfig default
  EXPECT_EQ(c.context_length, 0);    // unknown
  EXPECT_EQ(parse(with("num_key_value_heads", "")).num_kv_heads, 9);
  EXPECT_EQ(parse(with("rope_theta", "")).rope_base, 10000.0f);
  EXPECT_EQ(parse(with("rope_theta", "null")).rope_base, 10000.0f);
  EXPECT_FALSE(parse(with("tie_word_embeddings", "")).tied_embeddings);
  const ModelConfig explicit_head = parse(R"({"num_hidden_layers": 1, "hidden_size": 60,
      "num_attention_heads": 4, "head_dim": 32, "intermediate_size": 8, "vocab_size": 5})");
  EXPECT_EQ(explicit_head.head_dim, 32) << "head_dim need not be hidden_size / heads";
  EXPECT_EQ(explicit_head.q_dim(), 128);
}

TEST(FromHfConfig, NamesTheFileAndAMissingRequiredKey) {
  for (const char* key : {"num_hidden_layers", "hidden_size", "num_attention_heads",
                          "intermediate_size", "vocab_size"}) {
    EXPECT_THAT(parse_error(with(key, "")),
                HasSubstr("missing key '" + std::string(key) + "' (an integer)"))
        << key;
    EXPECT_THAT(parse_error(with(key, "null")), HasSubstr("missing key '" + std::string(key)))
        << key;
  }
}

TEST(FromHfConfig, RejectsMistypedValues) {
  EXPECT_THAT(parse_error(with("hidden_size", "\"576\"")),
              HasSubstr("key 'hidden_size' is \"576\" (a JSON string), expected an integer"));
  EXPECT_THAT(parse_error(with("hidden_size", "576.0")),
              HasSubstr("key 'hidden_size' is 576.0 (a JSON number), expected an integer"));
  EXPECT_THAT(parse_error(with("num_hidden_layers", "true")),
              HasSubstr("key 'num_hidden_layers' is true (a JSON boolean)"));
  EXPECT_THAT(parse_error(with("vocab_size", "18446744073709551615")),
              HasSubstr("expected an integer in the range of int64"));
  EXPECT_THAT(parse_error(with("tie_word_embeddings", "1")),
              HasSubstr("key 'tie_word_embeddings' is 1 (a JSON number), expected true or false"));
  EXPECT_THAT(parse_error(with("rope_theta", "\"1e5\"")),
              HasSubstr("key 'rope_theta' is \"1e5\" (a JSON string), expected a number"));
  EXPECT_THAT(parse_error(with("model_type", "7")), HasSubstr("key 'model_type' is 7"));
}

TEST(FromHfConfig, RefusesWhatLatentkvDoesNotImplement) {
  EXPECT_THAT(parse_error(with("model_type", "\"qwen2\"")),
              HasSubstr("model_type 'qwen2' is not supported, expected 'llama'"));
  EXPECT_THAT(parse_error(with("rope_scaling", R"({"rope_type": "llama3", "factor": 8.0})")),
              AllOf(HasSubstr("rope_scaling = {\"factor\":8.0,\"rope_type\":\"llama3\"}"),
                    HasSubstr("is not supported")));
  EXPECT_THAT(parse_error(with("attention_bias", "true")),
              HasSubstr("attention_bias = true is not supported"));
  EXPECT_THAT(parse_error(with("mlp_bias", "true")), HasSubstr("mlp_bias = true"));
  EXPECT_THAT(parse_error(with("hidden_act", "\"gelu\"")),
              HasSubstr("hidden_act 'gelu' is not supported"));
}

TEST(FromHfConfig, RejectsAnInvalidConfiguration) {
  EXPECT_THAT(parse_error(with("num_key_value_heads", "4")),
              AllOf(HasSubstr("invalid configuration"),
                    HasSubstr("num_kv_heads = 4 does not divide num_heads = 9")));
  EXPECT_THAT(parse_error(with("num_hidden_layers", "-3")),
              HasSubstr("num_layers = -3, expected > 0"));
  EXPECT_THAT(parse_error(with("rms_norm_eps", "0")), HasSubstr("norm_eps = 0"));
  EXPECT_THAT(parse_error(with("rope_theta", "1e60")), HasSubstr("rope_base = inf"));
  EXPECT_THAT(parse_error(with("hidden_size", "577")),
              HasSubstr("hidden_size = 577 is not a multiple of num_attention_heads = 9 and "
                        "head_dim is missing"));
}

TEST(FromHfConfig, RejectsMalformedJsonWithTheByteOffset) {
  EXPECT_THAT(parse_error("{\"hidden_size\": 5,}"),
              AllOf(HasSubstr("invalid JSON"), HasSubstr("(at byte offset 18)")));
  EXPECT_THAT(parse_error("[1, 2]"), HasSubstr("the JSON is [1,2] (a JSON array), expected an "
                                               "object"));
  const std::string duplicated = "{\"hidden_size\": 576,\n \"hidden_size\": 64}";
  EXPECT_THAT(parse_error(duplicated), AllOf(HasSubstr("duplicate key 'hidden_size' in object '/'"),
                                             HasSubstr("(at byte offset 22)")));
  EXPECT_THAT(parse_error("{\"a\": {\"b\": [{\"c\": 1, \"c\": 2}]}}"),
              HasSubstr("duplicate key 'c' in object '/a/b/[]'"));
  EXPECT_THAT(parse_error("\xef\xbb\xbf{}"), HasSubstr("byte-order mark"));
  // nlohmann reports a number overflow as out_of_range, not parse_error (found by
  // tests/fuzz/hf_config_fuzzer).
  EXPECT_THAT(parse_error("{\"rope_theta\": 1e400}"),
              AllOf(HasSubstr("invalid JSON: number overflow parsing '1e400'"),
                    HasSubstr("(at byte offset 15)")));
  EXPECT_THAT(parse_error(std::string_view("{}\0", 3)), HasSubstr("NUL byte"));
}

TEST(FromHfConfig, ReadsAFileAndNamesAMissingOne) {
  const ModelConfig c = from_hf_config(kTinyLlama / "config.json");
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_THROW((void)from_hf_config(kTinyLlama / "nope.json"), Error);
}

// ---- HfModelDir: the sharded checkpoint written by Python --------------------------------------

TEST(HfModelDir, ReadsTheShardedTinyLlamaLikePythonSafetensors) {
  const HfModelDir dir = HfModelDir::open(kTinyLlama);
  EXPECT_EQ(dir.path(), kTinyLlama);
  ASSERT_TRUE(dir.has_config());
  const ModelConfig& c = dir.config();
  EXPECT_EQ(c.d_model, 16);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.ffn_dim, 24);
  EXPECT_EQ(c.vocab_size, 32);
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_EQ(c.norm_eps, 1e-5f);
  EXPECT_EQ(c.rope_base, 100000.0f);
  EXPECT_EQ(c.context_length, 64);

  ASSERT_EQ(dir.shards().size(), 2u);
  EXPECT_EQ(dir.shards()[0].path().filename(), "model-00001-of-00002.safetensors");
  const auto& expected = fixtures::tiny_llama_tensors();
  const std::vector<std::string_view> names = dir.tensor_names();
  ASSERT_EQ(names.size(), expected.size());
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  for (const auto& t : expected) {
    SCOPED_TRACE(t.name);
    EXPECT_EQ(dir.shard_of(t.name).path().filename(), t.shard);
    const SafetensorsTensorInfo& info = dir.tensor(t.name);
    EXPECT_EQ(to_string(info.dtype), t.dtype);
    EXPECT_EQ(info.shape, t.shape);
    const RowMatrix<float> m = dir.read_float(t.name);
    double sum = 0, squares = 0, weighted = 0;
    for (Index k = 0; k < m.size(); ++k) {
      const double x = m.data()[k];
      sum += x;
      squares += x * x;
      weighted += x * static_cast<double>(k % 7 + 1);
    }
    const double scale = squares + 1.0;  // the sums are of ≤ 768 terms: float64 order noise only
    EXPECT_NEAR(sum, t.sum, 1e-12 * scale);
    EXPECT_NEAR(squares, t.sum_squares, 1e-12 * scale);
    EXPECT_NEAR(weighted, t.weighted_sum, 1e-12 * scale * 7);
    for (std::size_t k = 0; k < t.first.size(); ++k) {
      EXPECT_EQ(m.data()[k], t.first[k]) << k;
    }
    EXPECT_EQ(dir.raw(t.name).data(), dir.shard_of(t.name).raw(info).data());
  }
  // Named lookups, the layout of a LLaMA layer.
  EXPECT_EQ(dir.tensor(HfLlamaNames::k_proj(1)).shape, (std::vector<std::int64_t>{8, 16}));
  EXPECT_EQ(dir.tensor(HfLlamaNames::o_proj(0)).shape, (std::vector<std::int64_t>{16, 16}));
  EXPECT_EQ(dir.tensor(HfLlamaNames::down_proj(1)).shape, (std::vector<std::int64_t>{16, 24}));
  EXPECT_EQ(dir.read_float(HfLlamaNames::input_norm(0)).cols(), 16);
  EXPECT_EQ(dir.read_float_rows(HfLlamaNames::embed_tokens(), 5, 2),
            dir.read_float(HfLlamaNames::embed_tokens()).middleRows(5, 2));
  EXPECT_EQ(dir.map_f32(HfLlamaNames::final_norm()), dir.read_float(HfLlamaNames::final_norm()));
  EXPECT_NE(dir.find_tensor(HfLlamaNames::lm_head()), nullptr);
  EXPECT_EQ(dir.find_tensor("model.layers.2.mlp.up_proj.weight"), nullptr);
  EXPECT_THAT(format_error([&] { (void)dir.tensor(HfLlamaNames::gate_proj(2)); }),
              AllOf(HasSubstr(kTinyLlama.string()),
                    HasSubstr("no tensor named 'model.layers.2.mlp.gate_proj.weight'"),
                    HasSubstr("21 tensors")));
}

TEST(HfModelDir, ViewsStayValidAfterTheDirectoryIsMoved) {
  HfModelDir first = HfModelDir::open(kTinyLlama);
  const std::string name = HfLlamaNames::v_proj(1);
  const SafetensorsTensorInfo* info = &first.tensor(name);
  const std::byte* data = first.raw(name).data();
  const RowMatrix<float> before = first.read_float(name);
  const HfModelDir moved = std::move(first);
  EXPECT_EQ(&moved.tensor(name), info);
  EXPECT_EQ(moved.raw(name).data(), data);
  EXPECT_EQ(moved.read_float(name), before);
  EXPECT_EQ(moved.config().num_layers, 2);
}

TEST(HfLlamaNames, SpellsTheHuggingFaceNames) {
  EXPECT_EQ(HfLlamaNames::q_proj(0), "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(HfLlamaNames::v_proj(12), "model.layers.12.self_attn.v_proj.weight");
  EXPECT_EQ(HfLlamaNames::post_attention_norm(3), "model.layers.3.post_attention_layernorm.weight");
  EXPECT_EQ(HfLlamaNames::up_proj(29), "model.layers.29.mlp.up_proj.weight");
  EXPECT_EQ(HfLlamaNames::embed_tokens(), "model.embed_tokens.weight");
  EXPECT_EQ(HfLlamaNames::final_norm(), "model.norm.weight");
  EXPECT_EQ(HfLlamaNames::lm_head(), "lm_head.weight");
}

// ---- HfModelDir: single files -------------------------------------------------------------------

constexpr std::string_view kTinyTiedConfig = R"({"model_type": "llama", "num_hidden_layers": 1,
  "hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 12,
  "vocab_size": 10, "tie_word_embeddings": true, "rms_norm_eps": 1e-5})";

SafetensorsWriter tiny_tied_weights() {
  SafetensorsWriter w;
  RowMatrix<float> embed(10, 8);
  for (Index k = 0; k < embed.size(); ++k) embed.data()[k] = static_cast<float>(k) * 0.5f;
  w.add(HfLlamaNames::embed_tokens(), embed, SafetensorsDtype::kBF16);
  w.add(HfLlamaNames::k_proj(0), RowMatrix<float>::Constant(4, 8, 0.25f), SafetensorsDtype::kF16);
  w.add(HfLlamaNames::final_norm(), RowMatrix<float>::Ones(1, 8), {8}, SafetensorsDtype::kF32);
  return w;
}

TEST(HfModelDir, OpensASingleFileDirectory) {
  const TempDir tmp{"latentkv_hf"};
  tmp.write("config.json", kTinyTiedConfig);
  tiny_tied_weights().write(tmp.path() / "model.safetensors");
  const HfModelDir dir = HfModelDir::open(tmp.path());
  EXPECT_TRUE(dir.config().tied_embeddings);
  EXPECT_EQ(dir.config().head_dim, 4);
  ASSERT_EQ(dir.shards().size(), 1u);
  EXPECT_EQ(dir.tensor_names().size(), 3u);
  EXPECT_EQ(dir.read_float(HfLlamaNames::embed_tokens())(9, 7), 39.5f);
  EXPECT_EQ(dir.read_float(HfLlamaNames::k_proj(0)), RowMatrix<float>::Constant(4, 8, 0.25f));
  EXPECT_EQ(dir.find_tensor(HfLlamaNames::lm_head()), nullptr) << "tied: no lm_head needed";
}

TEST(HfModelDir, PrefersTheSingleFileWhenAnIndexIsAlsoThere) {
  const TempDir tmp{"latentkv_hf"};
  tmp.write("config.json", kTinyTiedConfig);
  tiny_tied_weights().write(tmp.path() / "model.safetensors");
  tmp.write("model.safetensors.index.json", "not even JSON");
  EXPECT_EQ(HfModelDir::open(tmp.path()).shards()[0].path().filename(), "model.safetensors");
}

TEST(HfModelDir, OpensASingleSafetensorsFileWithoutAConfig) {
  const TempDir tmp{"latentkv_hf"};
  const fs::path file = tmp.path() / "weights.safetensors";
  tiny_tied_weights().write(file);
  const HfModelDir dir = HfModelDir::open(file);
  EXPECT_FALSE(dir.has_config());
  EXPECT_THROW((void)dir.config(), InvalidArgument);
  EXPECT_EQ(dir.tensor_names().size(), 3u);
  EXPECT_EQ(dir.shard_of(HfLlamaNames::final_norm()).path(), file);
  EXPECT_EQ(dir.read_float(HfLlamaNames::final_norm()), RowMatrix<float>::Ones(1, 8));
}

// ---- HfModelDir: inconsistent directories -------------------------------------------------------

/// A copy of the sharded tiny LLaMA in a temporary directory, to break.
class TinyLlamaCopy : public ::testing::Test {
 protected:
  void SetUp() override { fresh(); }
  /// (Re)creates the copy.
  void fresh() const {
    fs::remove_all(dir_.path());
    fs::create_directories(dir_.path());
    for (const auto& e : fs::directory_iterator(kTinyLlama)) {
      fs::copy_file(e.path(), dir_.path() / e.path().filename());
    }
  }
  [[nodiscard]] std::string index_text() const {
    std::ifstream in(dir_.path() / "model.safetensors.index.json");
    return {std::istreambuf_iterator<char>(in), {}};
  }
  void replace_in_index(std::string_view from, std::string_view to) const {
    std::string text = index_text();
    const std::size_t at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    dir_.write("model.safetensors.index.json", text);
  }
  [[nodiscard]] std::string open_error() const {
    return format_error([&] { (void)HfModelDir::open(dir_.path()); });
  }
  TempDir dir_{"latentkv_hf"};
};

TEST_F(TinyLlamaCopy, OpensLikeTheOriginal) {
  EXPECT_EQ(HfModelDir::open(dir_.path()).tensor_names().size(), 21u);
}

TEST_F(TinyLlamaCopy, RejectsADirectoryWithoutConfigOrWeights) {
  fs::remove(dir_.path() / "model.safetensors.index.json");
  EXPECT_THAT(open_error(),
              AllOf(HasSubstr(dir_.path().string()),
                    HasSubstr("neither model.safetensors nor model.safetensors.index.json")));
  fs::remove(dir_.path() / "config.json");
  EXPECT_THAT(open_error(), HasSubstr("no config.json"));
  EXPECT_THROW((void)HfModelDir::open(dir_.path() / "missing"), Error);
}

TEST_F(TinyLlamaCopy, RejectsAnIndexWithoutAWeightMap) {
  dir_.write("model.safetensors.index.json", R"({"metadata": {"total_size": 1}})");
  EXPECT_THAT(open_error(), AllOf(HasSubstr("model.safetensors.index.json"),
                                  HasSubstr("missing key 'weight_map'")));
  dir_.write("model.safetensors.index.json", R"([])");
  EXPECT_THAT(open_error(), HasSubstr("the JSON is a array, expected an object"));
}

TEST_F(TinyLlamaCopy, RejectsAShardNameThatIsNotAString) {
  replace_in_index("\"model.norm.weight\": \"model-00002-of-00002.safetensors\"",
                   "\"model.norm.weight\": 2");
  EXPECT_THAT(open_error(), HasSubstr("weight_map entry 'model.norm.weight' is a JSON number"));
}

TEST_F(TinyLlamaCopy, RejectsShardNamesOutsideTheDirectory) {
  for (const char* name :
       {"../model-00002-of-00002.safetensors", "sub/x.safetensors", "..", "", "a\\\\b"}) {
    fresh();
    replace_in_index("\"model.norm.weight\": \"model-00002-of-00002.safetensors\"",
                     "\"model.norm.weight\": \"" + std::string(name) + "\"");
    EXPECT_THAT(open_error(), AllOf(HasSubstr("weight_map entry 'model.norm.weight' names shard"),
                                    HasSubstr("expected a file name in the model directory")))
        << name;
  }
}

TEST_F(TinyLlamaCopy, NamesAMissingShard) {
  fs::remove(dir_.path() / "model-00002-of-00002.safetensors");
  try {
    (void)HfModelDir::open(dir_.path());
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("model-00002-of-00002.safetensors"),
                                HasSubstr("No such file or directory")));
  }
}

TEST_F(TinyLlamaCopy, RejectsAnIndexThatDisagreesWithTheShards) {
  replace_in_index("\"model.norm.weight\": \"model-00002-of-00002.safetensors\"",
                   "\"model.norm.weight\": \"model-00001-of-00002.safetensors\"");
  EXPECT_THAT(open_error(),
              AllOf(HasSubstr("model.safetensors.index.json"),
                    HasSubstr("weight_map maps tensor 'model.norm.weight' to"),
                    HasSubstr("model-00001-of-00002.safetensors, which has no such tensor")));
  fresh();
  replace_in_index("  \"lm_head.weight\": \"model-00002-of-00002.safetensors\",\n", "");
  EXPECT_THAT(open_error(),
              HasSubstr("model-00002-of-00002.safetensors has tensor 'lm_head.weight', which "
                        "weight_map does not list"));
}

TEST_F(TinyLlamaCopy, RejectsADuplicatedWeightMapEntry) {
  replace_in_index("\"model.norm.weight\": \"model-00002-of-00002.safetensors\"",
                   "\"model.norm.weight\": \"model-00002-of-00002.safetensors\",\n"
                   "    \"model.norm.weight\": \"model-00001-of-00002.safetensors\"");
  EXPECT_THAT(open_error(), AllOf(HasSubstr("duplicate key 'model.norm.weight' in object "
                                            "'/weight_map'"),
                                  HasSubstr("byte offset")));
}

TEST_F(TinyLlamaCopy, RejectsAMalformedShardNamingIt) {
  const fs::path shard = dir_.path() / "model-00001-of-00002.safetensors";
  fs::resize_file(shard, fs::file_size(shard) - 1);
  EXPECT_THAT(open_error(), AllOf(HasSubstr("latentkv::SafetensorsReader::open"),
                                  HasSubstr(shard.string()), HasSubstr("byte offset")));
}

TEST_F(TinyLlamaCopy, RejectsAConfigThatDoesNotMatchTheWeights) {
  std::string config = R"({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16,
    "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 24,
    "vocab_size": 33, "tie_word_embeddings": false})";
  dir_.write("config.json", config);
  EXPECT_THAT(open_error(),
              AllOf(HasSubstr("model-00001-of-00002.safetensors: tensor "
                              "'model.embed_tokens.weight' has shape [32, 16], expected [33, 16]"),
                    HasSubstr("vocab_size, hidden_size of config.json")));
  // Untied, but lm_head.weight is missing from the checkpoint.
  SafetensorsWriter w;
  w.add(HfLlamaNames::embed_tokens(), RowMatrix<float>::Zero(10, 8));
  const TempDir other{"latentkv_hf"};
  std::string untied(kTinyTiedConfig);
  untied.replace(untied.find("true"), 4, "false");
  other.write("config.json", untied);
  w.write(other.path() / "model.safetensors");
  EXPECT_THAT(format_error([&] { (void)HfModelDir::open(other.path()); }),
              HasSubstr("no tensor 'lm_head.weight' although config.json has tie_word_embeddings "
                        "false"));
}

}  // namespace
}  // namespace latentkv
