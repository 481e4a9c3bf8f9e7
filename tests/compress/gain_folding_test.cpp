// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// compress/gain_folding.hpp: the folded factorization is exact at full rank, its gain-weighted
// error is the tail of σ(diag(g)·W) (and beats plain SVD on that error when the gains are uneven),
// the whole model compressed at full rank reproduces the dense logits, and bad gains are rejected.
#include "latentkv/compress/gain_folding.hpp"

#include <gtest/gtest.h>

#include <Eigen/SVD>
#include <string>

#include "../support/tiny_llama.hpp"
#include "latentkv/cache/latent_kv_cache.hpp"
#include "latentkv/model/dense_kv_cache.hpp"
#include "latentkv/model/llama_model.hpp"
#include "latentkv/schedule/uniform_rank_schedule.hpp"

namespace latentkv {
namespace {

LlamaWeights uneven_gain_weights() {
  LlamaWeights w = testing::random_llama_weights(testing::tiny_llama_config(), 7);
  for (LayerWeights& layer : w.layers) {
    layer.attention_norm(3) = 40.0f;  // a channel the cache sees 40× louder
    layer.attention_norm(5) = -0.05f;
  }
  return w;
}

double weighted_error(const Vector<float>& g, const RowMatrix<float>& w, const RowMatrix<float>& a,
                      const RowMatrix<float>& b) {
  const Eigen::MatrixXd diff = w.cast<double>() - a.cast<double>() * b.cast<double>();
  return (g.cast<double>().asDiagonal() * diff).squaredNorm();
}

TEST(GainFolding, ExactAtFullRank) {
  const LlamaWeights w = uneven_gain_weights();
  const auto policy = gain_folded_whitening(w);
  for (Index l = 0; l < 2; ++l) {
    const auto f = policy.for_layer(l);
    EXPECT_EQ(f.applied_shift(), 0.0);
    const RowMatrix<float>& wk = w.layers[static_cast<std::size_t>(l)].attention.wk;  // (32, 16)
    const LowRankFactors<float> full = f.factorize(wk, wk.cols());
    const RowMatrix<float> product = full.down * full.up;
    EXPECT_LT((product - wk).norm(), 1e-4 * wk.norm()) << "layer " << l;
  }
}

TEST(GainFolding, ErrorIsTheTailOfTheGainScaledSpectrumAndBeatsPlainSvd) {
  const LlamaWeights w = uneven_gain_weights();
  const Vector<float>& g = w.layers[1].attention_norm;
  const RowMatrix<float>& wv = w.layers[1].attention.wv;
  const Eigen::JacobiSVD<Eigen::MatrixXd> svd(g.cast<double>().asDiagonal() * wv.cast<double>());
  const Eigen::VectorXd sigma = svd.singularValues();
  const auto f = gain_folded_whitening(w).for_layer(1);
  EXPECT_LT((f.singular_values(wv) - sigma).norm(), 1e-9 * sigma.norm());
  for (const Index r : {2, 5, 11}) {
    const LowRankFactors<float> folded = f.factorize(wv, r);
    const double tail = sigma.tail(sigma.size() - r).squaredNorm();
    EXPECT_NEAR(weighted_error(g, wv, folded.down, folded.up), tail, 1e-4 * tail) << r;
    const LowRankFactors<float> plain = GramEigenFactorizer<float>{}.factorize(wv, r);
    EXPECT_GT(weighted_error(g, wv, plain.down, plain.up), 1.5 * tail) << r;
  }
}

TEST(GainFolding, FullRankModelReproducesTheDenseLogits) {
  const LlamaModel model(uneven_gain_weights());
  const Compressor<CalibratedWhitening<GramEigenFactorizer<float>>, JointGrouping,
                   UniformRankSchedule>
      compressor(gain_folded_whitening(model.weights()));
  const CompressedModel full =
      compressor.compress(WeightsAttentionSource(model.weights()), {.budget = 1.0});
  const std::vector<std::int32_t> ids = testing::random_tokens(24, model.config().vocab_size, 5);
  DenseKvCache dense(model.weights());
  LatentKvCache<float> latent(model.weights(), full);
  const RowMatrix<float> want = model.forward(ids, dense);
  const RowMatrix<float> got = model.forward(ids, latent);
  EXPECT_LT((got - want).cwiseAbs().maxCoeff(), 1e-3f);
}

TEST(GainFolding, RejectsBadGains) {
  LlamaWeights w = uneven_gain_weights();
  w.layers[1].attention_norm.resize(5);
  try {
    (void)rmsnorm_gain_grams(w);
    FAIL() << "no error";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("layer 1: attention_norm has 5 entries, expected "
                                         "d_model = 32"),
              std::string::npos)
        << e.what();
  }
  LlamaWeights nan = uneven_gain_weights();
  nan.layers[0].attention_norm(2) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW((void)rmsnorm_gain_grams(nan), InvalidArgument);
}

}  // namespace
}  // namespace latentkv
