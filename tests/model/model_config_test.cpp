// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// ModelConfig: validation, from_gguf on synthetic llama metadata, and the Q/K row un-permutation
// against llama.cpp's converter permutation (written out here as convert_hf_to_gguf.py does it).
#include "latentkv/model/model_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "../support/gguf_builder.hpp"
#include "../support/matrices.hpp"

namespace latentkv {
namespace {

using ::testing::AllOf;
using testing::GgufBuilder;
using ::testing::HasSubstr;
using testing::meta;
using testing::meta_array;
using testing::TempFile;

constexpr std::uint32_t kTypeF32 = 0;

// ---- from_gguf
// -----------------------------------------------------------------------------------

struct LlamaFile {
  std::string arch = "llama";
  bool with_kv_heads = true;
  bool with_rope_base = true;
  bool with_tokens = true;
  bool with_vocab_size = false;
  std::uint64_t vocab_size_value = 10;
  bool untied = false;
  std::uint32_t kv_heads = 2;
  std::uint64_t embedding_rows = 10;
  std::string skip_key;  // leave this key out
  std::function<void(GgufBuilder&)> extra;
};

std::vector<std::byte> llama_file(const LlamaFile& f) {
  GgufBuilder b;
  const std::string p = f.arch + ".";
  const auto add = [&](const std::string& key, testing::MetaValue value) {
    if (key != f.skip_key) b.add(key, std::move(value));
  };
  add("general.architecture", meta(f.arch));
  add(p + "block_count", meta<std::uint32_t>(2));
  add(p + "context_length", meta<std::uint32_t>(256));
  add(p + "embedding_length", meta<std::uint32_t>(64));
  add(p + "feed_forward_length", meta<std::uint32_t>(160));
  add(p + "attention.head_count", meta<std::uint32_t>(4));
  if (f.with_kv_heads) add(p + "attention.head_count_kv", meta<std::uint32_t>(f.kv_heads));
  if (f.with_rope_base) add(p + "rope.freq_base", meta(500000.0f));
  add(p + "attention.layer_norm_rms_epsilon", meta(1e-6f));
  if (f.with_vocab_size) add(p + "vocab_size", meta<std::uint64_t>(f.vocab_size_value));
  if (f.with_tokens) {
    std::vector<std::string_view> tokens;
    static const std::vector<std::string> kTokens = {"<s>", "a", "b", "c", "d",
                                                     "e",   "f", "g", "h", "i"};
    for (const auto& t : kTokens) tokens.push_back(t);
    add("tokenizer.ggml.tokens", meta_array(tokens));
  }
  if (f.extra) f.extra(b);
  b.add_tensor("token_embd.weight", {64, f.embedding_rows}, kTypeF32,
               std::vector<std::byte>(64 * f.embedding_rows * 4));
  if (f.untied)
    b.add_tensor("output.weight", {64, 10}, kTypeF32, std::vector<std::byte>(64 * 10 * 4));
  return b.build();
}

ModelConfig read(const LlamaFile& f) {
  const TempFile file(llama_file(f));
  return from_gguf(GgufReader::open(file.path()));
}

std::string from_gguf_error(const LlamaFile& f) {
  const TempFile file(llama_file(f));
  const GgufReader reader = GgufReader::open(file.path());
  try {
    (void)from_gguf(reader);
  } catch (const FormatError& e) {
    EXPECT_THAT(e.what(), HasSubstr(file.path().string()));
    return e.what();
  }
  ADD_FAILURE() << "expected FormatError";
  return {};
}

TEST(ModelConfig, ReadsLlamaMetadata) {
  ModelConfig want;
  want.architecture = "llama";
  want.num_layers = 2;
  want.d_model = 64;
  want.num_heads = 4;
  want.num_kv_heads = 2;
  want.head_dim = 16;
  want.rope_dim = 16;
  want.ffn_dim = 160;
  want.vocab_size = 10;
  want.context_length = 256;
  want.rope_base = 500000.0f;
  want.norm_eps = 1e-6f;
  want.tied_embeddings = true;
  const ModelConfig got = read({});
  EXPECT_EQ(got, want);
  EXPECT_EQ(got.group_size(), 2);
  EXPECT_EQ(got.q_dim(), 64);
  EXPECT_EQ(got.kv_dim(), 32);
}

TEST(ModelConfig, DetectsAnUntiedOutputProjection) {
  LlamaFile f;
  f.untied = true;
  EXPECT_FALSE(read(f).tied_embeddings);
}

TEST(ModelConfig, DefaultsKvHeadsAndRopeBaseLikeLlamaCpp) {
  LlamaFile f;
  f.with_kv_heads = false;
  f.with_rope_base = false;
  const ModelConfig c = read(f);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.rope_base, 10000.0f);
}

TEST(ModelConfig, PrefersExplicitHeadAndRopeSizes) {
  LlamaFile f;
  f.extra = [](GgufBuilder& b) {
    b.add("llama.attention.key_length", meta<std::uint32_t>(32));
    b.add("llama.attention.value_length", meta<std::uint32_t>(32));
    b.add("llama.rope.dimension_count", meta<std::uint32_t>(16));
  };
  const ModelConfig c = read(f);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.rope_dim, 16);
  EXPECT_EQ(c.q_dim(), 128);
}

TEST(ModelConfig, ReadsKeysUnderTheFilesArchitecture) {
  LlamaFile f;
  f.arch = "mistral";
  EXPECT_EQ(read(f).architecture, "mistral");
  EXPECT_EQ(read(f).num_layers, 2);
}

TEST(ModelConfig, TakesTheVocabularyFromVocabSizeWithoutTokens) {
  LlamaFile f;
  f.with_tokens = false;
  f.with_vocab_size = true;
  EXPECT_EQ(read(f).vocab_size, 10);
}

TEST(ModelConfig, AcceptsIntegerKeysOfAnyWidth) {
  LlamaFile f;
  f.skip_key = "llama.block_count";
  f.extra = [](GgufBuilder& b) { b.add("llama.block_count", meta<std::uint64_t>(2)); };
  EXPECT_EQ(read(f).num_layers, 2);
}

TEST(ModelConfig, NamesAMissingKey) {
  for (const char* key : {"llama.block_count", "llama.embedding_length",
                          "llama.feed_forward_length", "llama.attention.head_count",
                          "llama.attention.layer_norm_rms_epsilon", "general.architecture"}) {
    LlamaFile f;
    f.skip_key = key;
    EXPECT_THAT(from_gguf_error(f), HasSubstr(std::string("missing metadata key '") + key + "'"));
  }
}

TEST(ModelConfig, NamesAKeyWithTheWrongType) {
  LlamaFile f;
  f.skip_key = "llama.attention.layer_norm_rms_epsilon";
  f.extra = [](GgufBuilder& b) { b.add("llama.attention.layer_norm_rms_epsilon", meta(1e-6)); };
  EXPECT_THAT(from_gguf_error(f),
              AllOf(HasSubstr("'llama.attention.layer_norm_rms_epsilon' has type float64"),
                    HasSubstr("expected float32")));
}

TEST(ModelConfig, RejectsDisagreeingVocabularySizes) {
  LlamaFile f;
  f.with_vocab_size = true;
  f.vocab_size_value = 11;
  EXPECT_THAT(
      from_gguf_error(f),
      HasSubstr("llama.vocab_size = 11 disagrees with the 10 entries of tokenizer.ggml.tokens"));
  f.with_tokens = false;
  f.with_vocab_size = false;
  EXPECT_THAT(from_gguf_error(f), HasSubstr("gives the vocabulary size"));
}

TEST(ModelConfig, RejectsAnEmbeddingOfTheWrongShape) {
  LlamaFile f;
  f.embedding_rows = 12;
  EXPECT_THAT(from_gguf_error(f), AllOf(HasSubstr("'token_embd.weight'"),
                                        HasSubstr("ne = [64, 12], expected [64, 10]")));
}

TEST(ModelConfig, RejectsAnInvalidConfigurationNamingFileAndField) {
  LlamaFile f;
  f.kv_heads = 3;
  EXPECT_THAT(from_gguf_error(f), HasSubstr("num_kv_heads = 3 does not divide num_heads = 4"));
  LlamaFile g;
  g.extra = [](GgufBuilder& b) { b.add("llama.attention.value_length", meta<std::uint32_t>(8)); };
  EXPECT_THAT(from_gguf_error(g), HasSubstr("llama.attention.value_length = 8 differs"));
  LlamaFile h;
  h.skip_key = "llama.attention.head_count";
  h.extra = [](GgufBuilder& b) { b.add("llama.attention.head_count", meta<std::uint32_t>(5)); };
  EXPECT_THAT(from_gguf_error(h), HasSubstr("llama.embedding_length = 64 is not a multiple of "
                                            "llama.attention.head_count = 5"));
}

// ---- validate
// ------------------------------------------------------------------------------------

ModelConfig smollm2_like() {
  ModelConfig c;
  c.num_layers = 30;
  c.d_model = 576;
  c.num_heads = 9;
  c.num_kv_heads = 3;
  c.head_dim = 64;
  c.rope_dim = 64;
  c.ffn_dim = 1536;
  c.vocab_size = 49152;
  c.rope_base = 100000.0f;
  c.norm_eps = 1e-5f;
  return c;
}

TEST(ModelConfig, ValidateAcceptsASoundConfiguration) {
  EXPECT_NO_THROW(smollm2_like().validate());
}

TEST(ModelConfig, ValidateNamesEachBadField) {
  const std::vector<std::pair<std::string, std::function<void(ModelConfig&)>>> cases = {
      {"num_layers = 0", [](ModelConfig& c) { c.num_layers = 0; }},
      {"d_model = -1", [](ModelConfig& c) { c.d_model = -1; }},
      {"num_heads = 0", [](ModelConfig& c) { c.num_heads = 0; }},
      {"num_kv_heads = 0", [](ModelConfig& c) { c.num_kv_heads = 0; }},
      {"num_kv_heads = 2 does not divide num_heads = 9",
       [](ModelConfig& c) { c.num_kv_heads = 2; }},
      {"head_dim = 0", [](ModelConfig& c) { c.head_dim = 0; }},
      {"head_dim = 63", [](ModelConfig& c) { c.head_dim = 63; }},
      {"rope_dim = 66", [](ModelConfig& c) { c.rope_dim = 66; }},
      {"rope_dim = 0", [](ModelConfig& c) { c.rope_dim = 0; }},
      {"ffn_dim = 0", [](ModelConfig& c) { c.ffn_dim = 0; }},
      {"vocab_size = 0", [](ModelConfig& c) { c.vocab_size = 0; }},
      {"context_length = -5", [](ModelConfig& c) { c.context_length = -5; }},
      {"rope_base = 0", [](ModelConfig& c) { c.rope_base = 0.0f; }},
      {"rope_base = nan", [](ModelConfig& c) { c.rope_base = std::nanf(""); }},
      {"norm_eps = -1", [](ModelConfig& c) { c.norm_eps = -1.0f; }},
      {"norm_eps = inf", [](ModelConfig& c) { c.norm_eps = INFINITY; }},
  };
  for (const auto& [expected, mutate] : cases) {
    ModelConfig c = smollm2_like();
    mutate(c);
    try {
      c.validate();
      ADD_FAILURE() << "accepted: " << expected;
    } catch (const InvalidArgument& e) {
      EXPECT_THAT(e.what(),
                  AllOf(HasSubstr("latentkv::ModelConfig::validate"), HasSubstr(expected)));
    }
  }
}

// ---- Q/K row order
// -------------------------------------------------------------------------------

/// llama.cpp convert_hf_to_gguf.py, LlamaModel.permute, transcribed:
///   if n_head_kv is not None and n_head != n_head_kv: n_head = n_head_kv
///   w.reshape(n_head, 2, rows // n_head // 2, *rest).swapaxes(1, 2).reshape(w.shape)
/// Element [hd, j, i] of the reshape is row hd·h + j·h/2 + i; after swapaxes it sits at [hd, i, j],
/// i.e. at row hd·h + 2i + j of the result.
RowMatrix<double> llama_cpp_permute(const RowMatrix<double>& w, Index n_head, Index n_head_kv) {
  if (n_head_kv > 0 && n_head != n_head_kv) n_head = n_head_kv;
  const Index half = w.rows() / n_head / 2;
  RowMatrix<double> out(w.rows(), w.cols());
  for (Index hd = 0; hd < n_head; ++hd) {
    for (Index j = 0; j < 2; ++j) {
      for (Index i = 0; i < half; ++i) {
        out.row(hd * 2 * half + i * 2 + j) = w.row(hd * 2 * half + j * half + i);
      }
    }
  }
  return out;
}

TEST(UnpermuteQkRows, InvertsLlamaCppsConverterPermutationExactly) {
  // SmolLM2's W_q (9 heads) and W_k (3 KV heads, passed as n_head_kv), and a tiny odd case.
  struct Case {
    Index n_head, n_head_kv, head_dim, cols;
  };
  for (const Case& c :
       {Case{9, 0, 64, 40}, Case{9, 3, 64, 40}, Case{2, 0, 4, 3}, Case{1, 0, 2, 1}}) {
    const Index heads = c.n_head_kv > 0 ? c.n_head_kv : c.n_head;
    const RowMatrix<double> hf = testing::gaussian<double>(heads * c.head_dim, c.cols, 7);
    const RowMatrix<double> gguf = llama_cpp_permute(hf, c.n_head, c.n_head_kv);
    ASSERT_EQ(gguf != hf, c.head_dim > 2) << "only h = 2 is a fixed point of the permutation";
    EXPECT_EQ(unpermute_qk_rows(gguf, heads), hf) << c.n_head << " " << c.n_head_kv;
  }
}

TEST(UnpermuteQkRows, MapsGgufRowTwoIToHfRowIWithinEachHead) {
  RowMatrix<float> gguf(8, 1);  // 2 heads of h = 4: GGUF rows per head are HF rows 0, 2, 1, 3
  gguf << 0, 2, 1, 3, 4, 6, 5, 7;
  RowMatrix<float> hf(8, 1);
  hf << 0, 1, 2, 3, 4, 5, 6, 7;
  EXPECT_EQ(unpermute_qk_rows(gguf, 2), hf);
}

/// RoPE on one head vector x (h) at position pos; pairs (a_i, b_i) rotated by pos·base^(-2i/h).
Vector<double> rope(const Vector<double>& x, double pos, double base, bool interleaved) {
  const Index h = x.size();
  Vector<double> y = x;
  for (Index i = 0; i < h / 2; ++i) {
    const Index a = interleaved ? 2 * i : i;
    const Index b = interleaved ? 2 * i + 1 : i + h / 2;
    const double theta =
        pos * std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(h));
    y(a) = x(a) * std::cos(theta) - x(b) * std::sin(theta);
    y(b) = x(a) * std::sin(theta) + x(b) * std::cos(theta);
  }
  return y;
}

// The documented choice: interleaved RoPE on GGUF-ordered rows equals rotate-half RoPE on
// HF-ordered rows, channel for channel after un-permuting, so attention scores agree exactly.
TEST(UnpermuteQkRows, TurnsInterleavedRopeIntoRotateHalfRope) {
  constexpr Index kH = 64;
  const RowMatrix<double> w_hf = testing::gaussian<double>(3 * kH, 16, 11);  // 3 KV heads
  const RowMatrix<double> w_gguf = llama_cpp_permute(w_hf, 9, 3);
  const Vector<double> x = testing::gaussian<double>(16, 1, 12);
  const Vector<double> k_gguf = w_gguf * x, k_hf = w_hf * x;
  for (Index head = 0; head < 3; ++head) {
    const Vector<double> rotated_gguf = rope(k_gguf.segment(head * kH, kH), 37.0, 1e5, true);
    const Vector<double> rotated_hf = rope(k_hf.segment(head * kH, kH), 37.0, 1e5, false);
    const RowMatrix<double> back = unpermute_qk_rows(RowMatrix<double>(rotated_gguf), 1);
    EXPECT_LT((back - rotated_hf).cwiseAbs().maxCoeff(), 1e-12) << "head " << head;
  }
}

TEST(UnpermuteQkRows, RejectsRowsThatAreNotWholeEvenHeads) {
  const RowMatrix<float> w = RowMatrix<float>::Zero(12, 2);
  EXPECT_THROW((void)unpermute_qk_rows(w, 0), InvalidArgument);
  EXPECT_THROW((void)unpermute_qk_rows(w, 5), InvalidArgument);  // 12 rows into 5 heads
  EXPECT_THROW((void)unpermute_qk_rows(w, 4), InvalidArgument);  // h = 3 is odd
  EXPECT_NO_THROW((void)unpermute_qk_rows(w, 3));
}

}  // namespace
}  // namespace latentkv
