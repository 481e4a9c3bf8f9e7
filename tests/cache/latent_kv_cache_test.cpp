// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// cache/latent_kv_cache.hpp on the tiny random model (tests/support/tiny_llama.hpp) with exact-SVD
// factors (tests/support/latent_factors.hpp):
//   - at full rank LlamaModel::forward through the latent cache reproduces DenseKvCache's logits
//     (fp32 tight, fp16 looser), joint and per-head; at low rank it differs;
//   - at any rank it equals DenseKvCache on the low-rank weights (W_k ← A_k·B_k, W_v ← A_v·B_v),
//     also with a dense (compressed == false) layer mixed in;
//   - chunked prefill and decode steps equal one pass; reset; stored latents; sizes; every
//     construction and call error;
//   - quantized latents (QuantizedLatentKvCache): int8 at full rank stays close to fp32 (with and
//     without the rotation), fewer bits drift further, chunking and reset, the rotated codes it
//     stores, bytes per token, rejected codecs.
#include "latentkv/cache/latent_kv_cache.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../support/expect_invalid.hpp"
#include "../support/latent_factors.hpp"
#include "../support/tiny_llama.hpp"
#include "latentkv/model/dense_kv_cache.hpp"
#include "latentkv/model/llama_model.hpp"

namespace latentkv {
namespace {

using Fp16 = std::uint16_t;

double relative_max_error(const RowMatrix<float>& got, const RowMatrix<float>& want) {
  return static_cast<double>((got - want).cwiseAbs().maxCoeff()) /
         static_cast<double>(want.cwiseAbs().maxCoeff());
}

using testing::expect_invalid;

class LatentKvCacheTest : public ::testing::Test {
 protected:
  LatentKvCacheTest()
      : model_(testing::random_llama_weights(testing::tiny_llama_config(), 11)),
        tokens_(testing::random_tokens(45, 61, 5)) {}

  [[nodiscard]] const LlamaWeights& weights() const { return model_.weights(); }
  [[nodiscard]] const ModelConfig& config() const { return model_.config(); }

  [[nodiscard]] RowMatrix<float> dense_logits() const {
    DenseKvCache cache(weights());
    return model_.forward(tokens_, cache);
  }

  template <class S>
  [[nodiscard]] RowMatrix<float> latent_logits(const CompressedModel& compressed) const {
    LatentKvCache<S> cache(weights(), compressed);
    return model_.forward(tokens_, cache);
  }

  LlamaModel model_;
  std::vector<std::int32_t> tokens_;  // 45 tokens
};

TEST_F(LatentKvCacheTest, ModelsTheKvCacheConcept) {
  static_assert(KvCache<LatentKvCache<float>>);
  static_assert(KvCache<LatentKvCache<Fp16>>);
  static_assert(KvCache<LatentKvCache<>>);
  // It keeps pointers to both inputs, so temporaries are refused at compile time.
  static_assert(
      std::is_constructible_v<LatentKvCache<>, const LlamaWeights&, const CompressedModel&>);
  static_assert(!std::is_constructible_v<LatentKvCache<>, const LlamaWeights&, CompressedModel>);
  static_assert(!std::is_constructible_v<LatentKvCache<>, LlamaWeights, const CompressedModel&>);
}

TEST_F(LatentKvCacheTest, FullRankReproducesDenseLogits) {
  const RowMatrix<float> dense = dense_logits();
  const CompressedModel joint = testing::latent_factors(weights(), JointGrouping{}, 16, 16);
  const CompressedModel per_head = testing::latent_factors(weights(), PerHeadGrouping{}, 8, 8);
  EXPECT_LT(relative_max_error(latent_logits<float>(joint), dense), 1e-5);
  EXPECT_LT(relative_max_error(latent_logits<float>(per_head), dense), 1e-5);
  // fp16 latents: rounded, so looser, but still close, and not identical to fp32.
  const double fp16_joint = relative_max_error(latent_logits<Fp16>(joint), dense);
  EXPECT_LT(fp16_joint, 5e-3);
  EXPECT_GT(fp16_joint, 1e-6);
  EXPECT_LT(relative_max_error(latent_logits<Fp16>(per_head), dense), 5e-3);
}

TEST_F(LatentKvCacheTest, LowRankDiffersFromDense) {
  const RowMatrix<float> dense = dense_logits();
  const CompressedModel joint = testing::latent_factors(weights(), JointGrouping{}, 6, 5);
  const CompressedModel per_head = testing::latent_factors(weights(), PerHeadGrouping{}, 3, 4);
  EXPECT_GT(relative_max_error(latent_logits<float>(joint), dense), 1e-2);
  EXPECT_GT(relative_max_error(latent_logits<float>(per_head), dense), 1e-2);
}

TEST_F(LatentKvCacheTest, EqualsDenseAttentionOnTheLowRankWeightsAtAnyRank) {
  struct Setting {
    const char* name;
    bool joint;
    RankPlan plan;
    std::vector<Index> dense_layers;
  };
  const ModelConfig& c = config();
  RankPlan uneven = testing::uniform_plan(c, PerHeadGrouping{}, 3, 5);
  uneven.layers[0].k = {2, 7};  // per-group ranks differ
  uneven.layers[1].v = {8, 1};
  const std::vector<Setting> settings = {
      {"joint 6/5", true, testing::uniform_plan(c, JointGrouping{}, 6, 5), {}},
      {"joint 1/1", true, testing::uniform_plan(c, JointGrouping{}, 1, 1), {}},
      {"joint 9/4, layer 1 dense", true, testing::uniform_plan(c, JointGrouping{}, 9, 4, {1}), {1}},
      {"per-head uneven", false, uneven, {}},
      {"per-head 4/4, layer 0 dense",
       false,
       testing::uniform_plan(c, PerHeadGrouping{}, 4, 4, {0}),
       {0}},
  };
  for (const Setting& setting : settings) {
    LlamaWeights low_rank;
    const CompressedModel compressed =
        setting.joint ? testing::latent_factors(weights(), JointGrouping{}, setting.plan,
                                                setting.dense_layers, &low_rank)
                      : testing::latent_factors(weights(), PerHeadGrouping{}, setting.plan,
                                                setting.dense_layers, &low_rank);
    const LlamaModel reference(low_rank);
    DenseKvCache dense(reference.weights());
    const RowMatrix<float> want = reference.forward(tokens_, dense);
    EXPECT_LT(relative_max_error(latent_logits<float>(compressed), want), 1e-5) << setting.name;
    EXPECT_LT(relative_max_error(latent_logits<Fp16>(compressed), want), 5e-3) << setting.name;
    EXPECT_GT(relative_max_error(want, dense_logits()), 1e-3) << setting.name;  // truly low rank
  }
}

TEST_F(LatentKvCacheTest, ChunkedPrefillAndDecodeEqualOnePass) {
  const CompressedModel compressed =
      testing::latent_factors(weights(), JointGrouping{}, 7, 6, std::vector<Index>{1});
  const RowMatrix<float> once = latent_logits<float>(compressed);
  for (const Index chunk : {1, 5, 16}) {
    LatentKvCache<float> cache(weights(), compressed, 2);  // too small: must grow
    RowMatrix<float> pieces(once.rows(), once.cols());
    const auto n = static_cast<Index>(tokens_.size());
    for (Index start = 0; start < n; start += chunk) {
      const Index rows = std::min(chunk, n - start);
      pieces.middleRows(start, rows) =
          model_.forward(std::span<const std::int32_t>(tokens_).subspan(
                             static_cast<std::size_t>(start), static_cast<std::size_t>(rows)),
                         cache);
    }
    EXPECT_LT(relative_max_error(pieces, once), 1e-5) << chunk;
    EXPECT_EQ(cache.length(0), n);
    EXPECT_EQ(cache.length(1), n);
  }
  // Decode: prefill 40, then five forward_last steps.
  LatentKvCache<Fp16> half(weights(), compressed);
  LatentKvCache<Fp16> half_once(weights(), compressed);
  const RowMatrix<float> half_all = model_.forward(tokens_, half_once);
  const std::span<const std::int32_t> all(tokens_);
  (void)model_.forward(all.first(40), half);
  for (std::size_t t = 40; t < tokens_.size(); ++t) {
    const Vector<float> step = model_.forward_last(all.subspan(t, 1), half);
    EXPECT_LT((step.transpose() - half_all.row(static_cast<Index>(t))).cwiseAbs().maxCoeff(), 1e-4f)
        << t;
  }
}

TEST_F(LatentKvCacheTest, ResetForgetsEveryTokenAndTheNextSequenceIsUnaffected) {
  const CompressedModel compressed = testing::latent_factors(weights(), PerHeadGrouping{}, 5, 6);
  const std::span<const std::int32_t> all(tokens_);
  LatentKvCache<float> fresh(weights(), compressed);
  const RowMatrix<float> want = model_.forward(all.last(12), fresh);
  LatentKvCache<float> cache(weights(), compressed);
  (void)model_.forward(all.first(30), cache);
  cache.reset();
  EXPECT_EQ(cache.length(0), 0);
  EXPECT_EQ(cache.length(1), 0);
  EXPECT_EQ(cache.latent_k(0).rows(), 0);
  EXPECT_EQ(model_.forward(all.last(12), cache), want);
}

TEST_F(LatentKvCacheTest, StoresPreRopeLatentsAndDenseLayersStoreKeys) {
  const CompressedModel compressed =
      testing::latent_factors(weights(), PerHeadGrouping{}, 5, 3, std::vector<Index>{1});
  std::mt19937_64 engine(3);
  const RowMatrix<float> x = testing::random_matrix(9, config().d_model, 1.0, engine);
  LatentKvCache<float> cache(weights(), compressed);
  LatentKvCache<Fp16> half(weights(), compressed);
  (void)cache.attend(0, x.topRows(4), 0);
  (void)cache.attend(0, x.bottomRows(5), 4);
  (void)half.attend(0, x, 0);
  RowMatrix<float> want_k(9, 10), want_v(9, 6);
  for (Index j = 0; j < 2; ++j) {
    want_k.middleCols(j * 5, 5) = x * compressed.layers[0].k[static_cast<std::size_t>(j)].down;
    want_v.middleCols(j * 3, 3) = x * compressed.layers[0].v[static_cast<std::size_t>(j)].down;
  }
  ASSERT_EQ(cache.latent_k(0).rows(), 9);
  ASSERT_EQ(cache.latent_k(0).cols(), 10);
  ASSERT_EQ(cache.latent_v(0).cols(), 6);
  EXPECT_LT((cache.latent_k(0) - want_k).cwiseAbs().maxCoeff(), 1e-5f);
  EXPECT_LT((cache.latent_v(0) - want_v).cwiseAbs().maxCoeff(), 1e-5f);
  for (Index t = 0; t < 9; ++t) {
    for (Index a = 0; a < 10; ++a) {
      EXPECT_EQ(half.latent_k(0)(t, a), float_to_fp16_bits(cache.latent_k(0)(t, a))) << t;
    }
  }
  EXPECT_TRUE(cache.compressed(0));
  EXPECT_FALSE(cache.compressed(1));
  (void)cache.attend(1, x, 0);
  EXPECT_EQ(cache.keys(1).rows(), 9);
  EXPECT_EQ(cache.values(1).cols(), config().kv_dim());
  RowMatrix<float> v = x * weights().layers[1].attention.wv;
  EXPECT_LT((cache.values(1) - v).cwiseAbs().maxCoeff(), 1e-5f);
  expect_invalid([&] { (void)cache.latent_k(1); }, "layer 1 is dense");
  expect_invalid([&] { (void)cache.keys(0); }, "layer 0 is compressed");
}

TEST_F(LatentKvCacheTest, ReportsSizes) {
  const CompressedModel joint = testing::latent_factors(weights(), JointGrouping{}, 5, 3);
  const CompressedModel mixed =
      testing::latent_factors(weights(), PerHeadGrouping{}, 5, 3, std::vector<Index>{1});
  EXPECT_EQ(LatentKvCache<float>(weights(), joint).bytes_per_token(), 2 * (5 + 3) * 4);
  EXPECT_EQ(LatentKvCache<Fp16>(weights(), joint).bytes_per_token(), 2 * (5 + 3) * 2);
  // Layer 0: two per-head groups of 5 + 3; layer 1 dense fp32 K and V of n_kv·h = 16.
  EXPECT_EQ(LatentKvCache<Fp16>(weights(), mixed).bytes_per_token(), 2 * 8 * 2 + 2 * 16 * 4);
  EXPECT_EQ(LatentKvCache<float>(weights(), mixed).num_layers(), 2);
  // The dense cache for comparison: 2·L·n_kv·h·4.
  EXPECT_EQ(DenseKvCache(weights()).bytes_per_token(), 2 * 2 * 16 * 4);
}

LatentQuantConfig quant_config(int bits, QuantAxis key_axis, bool rotate,
                               QuantGrid grid = QuantGrid::kUniform, Index sinks = 0) {
  LatentQuantConfig q;
  q.key = {bits, grid, key_axis, 8, sinks};
  q.value = {bits, grid, QuantAxis::kPerToken, 8, sinks};
  q.rotate = rotate;
  return q;
}

TEST_F(LatentKvCacheTest, QuantizedFullRankStaysCloseToFp32) {
  static_assert(KvCache<QuantizedLatentKvCache>);
  const CompressedModel joint = testing::latent_factors(weights(), JointGrouping{}, 16, 16);
  const RowMatrix<float> want = latent_logits<float>(joint);
  const auto error = [&](const LatentQuantConfig& q) {
    QuantizedLatentKvCache cache(weights(), joint, q);
    return relative_max_error(model_.forward(tokens_, cache), want);
  };
  for (const bool rotate : {false, true}) {
    for (const QuantAxis axis : {QuantAxis::kPerToken, QuantAxis::kPerChannel}) {
      const double int8 = error(quant_config(8, axis, rotate));
      const double int4 = error(quant_config(4, axis, rotate));
      const double int2 = error(quant_config(2, axis, rotate));
      EXPECT_LT(int8, 2e-2) << rotate;  // groups of 8 on a random model: max over all logits
      EXPECT_GT(int8, 1e-6) << rotate;  // it does quantize
      EXPECT_LT(int8, int4) << rotate;
      EXPECT_LT(int4, int2) << rotate;
      EXPECT_LT(int4, 0.2) << rotate;
    }
  }
  EXPECT_LT(error(quant_config(4, QuantAxis::kPerToken, true, QuantGrid::kLloydMax)), 0.2);
}

TEST_F(LatentKvCacheTest, QuantizedChunkedPrefillAndResetEqualOnePass) {
  // Per token (with fp16 sinks): every token's codes depend on that token alone, so chunks give
  // the logits of one pass. Per channel: the codes stored are the same, but the logits are not
  // (in one pass a query sees its group's codes; in chunks it saw those keys in the fp16 window).
  const CompressedModel compressed =
      testing::latent_factors(weights(), JointGrouping{}, 12, 9, std::vector<Index>{1});
  const auto n = static_cast<Index>(tokens_.size());
  for (const QuantAxis axis : {QuantAxis::kPerToken, QuantAxis::kPerChannel}) {
    const LatentQuantConfig q = quant_config(4, axis, true, QuantGrid::kUniform, 2);
    QuantizedLatentKvCache one(weights(), compressed, q);
    const RowMatrix<float> once = model_.forward(tokens_, one);
    for (const Index chunk : {1, 5, 16}) {
      QuantizedLatentKvCache cache(weights(), compressed, q);
      (void)model_.forward(std::span<const std::int32_t>(tokens_).first(7), cache);
      cache.reset();
      RowMatrix<float> pieces(once.rows(), once.cols());
      for (Index start = 0; start < n; start += chunk) {
        const Index rows = std::min(chunk, n - start);
        pieces.middleRows(start, rows) =
            model_.forward(std::span<const std::int32_t>(tokens_).subspan(
                               static_cast<std::size_t>(start), static_cast<std::size_t>(rows)),
                           cache);
      }
      if (axis == QuantAxis::kPerToken) {
        EXPECT_LT(relative_max_error(pieces, once), 1e-5) << chunk;
      } else {
        EXPECT_GT(relative_max_error(pieces, once), 1e-4) << chunk;
      }
      EXPECT_EQ(cache.length(0), n);
      EXPECT_EQ(cache.quantized_k(0, 0).length(), n);
      EXPECT_EQ(cache.quantized_k(0, 0).decode(), one.quantized_k(0, 0).decode()) << chunk;
      EXPECT_EQ(cache.quantized_v(0, 0).decode(), one.quantized_v(0, 0).decode()) << chunk;
    }
  }
}

TEST_F(LatentKvCacheTest, QuantizedStoresCodesOfTheRotatedLatents) {
  const CompressedModel compressed = testing::latent_factors(weights(), PerHeadGrouping{}, 8, 6);
  std::mt19937_64 engine(3);
  const RowMatrix<float> x = testing::random_matrix(9, config().d_model, 1.0, engine);
  for (const bool rotate : {false, true}) {
    QuantizedLatentKvCache cache(weights(), compressed,
                                 quant_config(8, QuantAxis::kPerToken, rotate));
    (void)cache.attend(0, x, 0);
    const LatentKeyGroup& k = cache.factors().layers[0].k[1];
    const RowMatrix<float> down =
        rotate ? RowMatrix<float>(compressed.layers[0].k[1].down * hadamard_rotation(8))
               : compressed.layers[0].k[1].down;
    EXPECT_LT((k.down - down).cwiseAbs().maxCoeff(), 1e-5f);
    const RowMatrix<float> want = x * down;
    const RowMatrix<float> got = cache.quantized_k(0, 1).decode();
    ASSERT_EQ(got.rows(), 9);
    EXPECT_LT((got - want).cwiseAbs().maxCoeff(), 0.01f * want.cwiseAbs().maxCoeff());
    EXPECT_EQ(cache.quantized_v(0, 0).width(), 6);
  }
  QuantizedLatentKvCache cache(weights(), compressed, quant_config(8, QuantAxis::kPerToken, true));
  expect_invalid([&] { (void)cache.quantized_k(0, 2); }, "group = 2, expected 0..1");
}

TEST_F(LatentKvCacheTest, QuantizedReportsBytesOfEveryScaleAndSink) {
  const CompressedModel mixed =
      testing::latent_factors(weights(), PerHeadGrouping{}, 8, 6, std::vector<Index>{1});
  LatentQuantConfig q = quant_config(4, QuantAxis::kPerChannel, true, QuantGrid::kUniform, 4);
  q.value.bits = 8;
  const QuantizedLatentKvCache cache(weights(), mixed, q);
  const double want = 2 * latent_bytes_per_token(8, q.key, 4096) +
                      2 * latent_bytes_per_token(6, q.value, 4096) + 2 * 16 * 4;
  EXPECT_DOUBLE_EQ(cache.bytes_per_token_at(4096), want);
  EXPECT_EQ(cache.bytes_per_token(), std::llround(want));
  EXPECT_GT(cache.bytes_per_token_at(64), cache.bytes_per_token_at(4096));  // sinks, window weigh
  EXPECT_EQ(cache.numbers_per_token(), 2 * (8 + 6) + 2 * 16);
}

TEST_F(LatentKvCacheTest, QuantizedTakesBitsPerLayerSideAndGroup) {
  // layer_bits of 16 everywhere (unrotated) is the fp16 latent cache; mixed bits count each
  // group's own codec in the bytes; a wrong shape names the layer and side.
  const CompressedModel compressed =
      testing::latent_factors(weights(), PerHeadGrouping{}, 8, 6, std::vector<Index>{1});
  LatentQuantConfig q = quant_config(4, QuantAxis::kPerToken, false);
  q.layer_bits = {LayerBits{{16, 16}, {16, 16}}, LayerBits{}};
  {
    QuantizedLatentKvCache cache(weights(), compressed, q);
    LatentKvCache<std::uint16_t> fp16(weights(), compressed);
    EXPECT_LT(relative_max_error(model_.forward(tokens_, cache), model_.forward(tokens_, fp16)),
              1e-6);
    EXPECT_DOUBLE_EQ(cache.bytes_per_token_at(4096), 2.0 * (8 + 6) * 2 + 2 * 16 * 4);
  }
  q.layer_bits[0] = LayerBits{{16, 2}, {8, 4}};
  const QuantizedLatentKvCache mixed(weights(), compressed, q);
  EXPECT_EQ(mixed.quantized_k(0, 0).codec().bits, 16);
  EXPECT_EQ(mixed.quantized_k(0, 1).codec().bits, 2);
  EXPECT_EQ(mixed.quantized_v(0, 0).codec().bits, 8);
  LatentCodec c = q.key;
  const auto at = [&](Index width, int bits) {
    c.bits = bits;
    return latent_bytes_per_token(width, c, 4096);
  };
  EXPECT_DOUBLE_EQ(mixed.bytes_per_token_at(4096),
                   at(8, 16) + at(8, 2) + at(6, 8) + at(6, 4) + 2 * 16 * 4);
  q.layer_bits[0] = LayerBits{{16}, {8, 4}};
  expect_invalid([&] { QuantizedLatentKvCache cache(weights(), compressed, q); },
                 "layer 0 bits_k has 1 entries, expected 2");
  q.layer_bits[0] = LayerBits{{16, 7}, {8, 4}};
  expect_invalid([&] { QuantizedLatentKvCache cache(weights(), compressed, q); },
                 "layer 0 bits_k[1]: bits = 7");
  q.layer_bits.pop_back();
  expect_invalid([&] { QuantizedLatentKvCache cache(weights(), compressed, q); },
                 "layer_bits: has 1 layers, the model 2");
}

TEST_F(LatentKvCacheTest, QuantizedRejectsUnsupportedCodecs) {
  const CompressedModel joint = testing::latent_factors(weights(), JointGrouping{}, 8, 8);
  LatentQuantConfig q = quant_config(4, QuantAxis::kPerToken, true);
  q.key.bits = 7;
  expect_invalid([&] { QuantizedLatentKvCache cache(weights(), joint, q); },
                 "key codec: bits = 7, expected 2, 3, 4, 5, 6, 8 or 16");
  q = quant_config(4, QuantAxis::kPerToken, true);
  q.value.group_size = 4;
  expect_invalid([&] { QuantizedLatentKvCache cache(weights(), joint, q); },
                 "value codec: group_size = 4");
}

TEST_F(LatentKvCacheTest, RejectsBadCalls) {
  const CompressedModel compressed = testing::latent_factors(weights(), JointGrouping{}, 5, 3);
  LatentKvCache<float> cache(weights(), compressed);
  std::mt19937_64 engine(3);
  const RowMatrix<float> x = testing::random_matrix(4, config().d_model, 1.0, engine);
  expect_invalid([&] { (void)cache.attend(2, x, 0); }, "layer = 2, expected 0..1");
  expect_invalid([&] { (void)cache.attend(-1, x, 0); }, "layer = -1");
  expect_invalid([&] { (void)cache.attend(0, x, 3); }, "layer 0: position = 3, expected 0");
  expect_invalid([&] { (void)cache.attend(0, x.leftCols(31), 0); },
                 "x has 31 columns, expected d_model = 32");
  expect_invalid([&] { (void)cache.length(5); }, "layer = 5");
  EXPECT_EQ(cache.length(0), 0);  // failed calls changed nothing
}

TEST_F(LatentKvCacheTest, RejectsModelsThatDoNotFitTheWeights) {
  const CompressedModel good = testing::latent_factors(weights(), JointGrouping{}, 5, 3);
  const auto fails = [&](const CompressedModel& m, const std::string& fragment) {
    expect_invalid([&] { LatentKvCache<float> cache(weights(), m); }, fragment);
  };
  ASSERT_NO_THROW(LatentKvCache<float>(weights(), good));
  expect_invalid([&] { LatentKvCache<float>(weights(), good, -1); }, "capacity = -1");
  {
    CompressedModel m = good;
    m.config.num_heads = 8;
    fails(m, "config.num_heads = 8, the weights 4");
  }
  {
    CompressedModel m = good;
    m.config.rope_base = 500.0f;
    fails(m, "config.rope_base = 500");
  }
  {
    CompressedModel m = good;
    m.plan.layers.pop_back();
    fails(m, "the plan has 1 layers");
  }
  {
    CompressedModel m = good;
    m.plan.heads_per_group = 3;  // does not divide n_kv = 2
    fails(m, "heads_per_group = 3");
  }
  {
    CompressedModel m = good;
    m.plan.layers[1].v[0] = 17;  // above max_rank 16
    fails(m, "layer 1 rank_v[0] = 17, expected 1..16");
  }
  {
    CompressedModel m = good;
    m.layers.pop_back();
    fails(m, "the compressed model has 1 layers, expected 2");
  }
  {
    CompressedModel m = good;
    m.layers[1].v.push_back(m.layers[1].v[0]);
    fails(m, "layer 1 has 1 key and 2 value groups, expected 1");
  }
  {
    CompressedModel m = good;
    m.layers[0].k[0].down = good.layers[0].k[0].down.leftCols(4);
    fails(m, "layer 0 group 0: A_k is (32, 4), expected (32, 5)");
  }
  {
    CompressedModel m = good;
    m.layers[1].k[0].up = good.layers[1].k[0].up.leftCols(15);
    fails(m, "layer 1 group 0: B_k is (5, 15), expected (5, 16)");
  }
  {
    CompressedModel m = good;
    m.layers[0].v[0].down = good.layers[0].v[0].down.topRows(31);
    fails(m, "layer 0 group 0: A_v is (31, 3), expected (32, 3)");
  }
  {
    CompressedModel m = good;
    m.layers[1].v[0].out = good.layers[1].v[0].out.leftCols(64);
    fails(m, "layer 1 group 0: W̃_o is (3, 64), expected (3, 128)");
  }
  {
    CompressedModel m = good;
    m.layers[0].compressed = false;  // but still has factors
    fails(m, "layer 0 is dense but has 1 key and 1 value groups");
  }
  {
    CompressedModel m = good;
    m.layers[0].compressed = false;
    m.layers[0].k.clear();
    m.layers[0].v.clear();
    fails(m, "layer 0 is dense, but the plan gives it rank 5, expected 16");
  }
  {
    LlamaWeights w = weights();
    w.layers[0].attention.wq.resize(32, 31);
    expect_invalid([&] { LatentKvCache<float> cache(w, good); }, "layer 0 attention.wq");
  }
}

}  // namespace
}  // namespace latentkv
