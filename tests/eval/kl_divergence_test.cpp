// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// eval/kl_divergence.hpp: KL(p ‖ q) and top-1 agreement on hand-checkable distributions, the
// percentile rule, the chunked lockstep protocol on a fake model whose answers depend on the
// position (so a lost cache position or a missed reset shows), agreement with a direct computation
// on the tiny LLaMA compressed by SVD, and errors.
#include "latentkv/eval/kl_divergence.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "../support/tiny_llama.hpp"
#include "latentkv/cache/latent_kv_cache.hpp"
#include "latentkv/compress/compressor.hpp"
#include "latentkv/model/dense_kv_cache.hpp"
#include "latentkv/model/llama_model.hpp"
#include "latentkv/schedule/uniform_rank_schedule.hpp"

namespace latentkv {
namespace {

TEST(TokenDivergence, IsKlOfTheSoftmaxes) {
  Eigen::VectorXf p(2), q(2);
  p << 0.0f, static_cast<float>(std::log(3.0));  // softmax: 1/4, 3/4
  q << 0.0f, 0.0f;                               // 1/2, 1/2
  const TokenDivergence d = token_divergence(p, q);
  EXPECT_NEAR(d.kl, 0.25 * std::log(0.5) + 0.75 * std::log(1.5), 1e-7);
  EXPECT_FALSE(d.same_top1);  // q ties: argmax is the first, 0; p's is 1
  const TokenDivergence back = token_divergence(q, p);
  EXPECT_NEAR(back.kl, 0.5 * std::log(2.0) + 0.5 * std::log(2.0 / 3.0), 1e-7);  // asymmetric

  Eigen::VectorXf shifted = p.array() + 100.0f;  // softmax ignores a constant
  const TokenDivergence same = token_divergence(p, shifted);
  EXPECT_NEAR(same.kl, 0.0, 1e-6);
  EXPECT_TRUE(same.same_top1);
  Eigen::VectorXf big(3), small(3);
  big << 1000.0f, -1000.0f, 0.0f;  // no overflow
  small << 1000.0f, 1000.0f, -1000.0f;
  EXPECT_NEAR(token_divergence(big, small).kl, std::log(2.0), 1e-9);
  EXPECT_THROW((void)token_divergence(p, big), InvalidArgument);
}

TEST(Percentile, InterpolatesBetweenOrderStatistics) {
  const std::vector<double> v = {4.0, 1.0, 3.0, 2.0};
  EXPECT_DOUBLE_EQ(percentile(v, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(percentile(v, 1.0), 4.0);
  EXPECT_DOUBLE_EQ(percentile(v, 0.5), 2.5);
  EXPECT_NEAR(percentile(v, 0.99), 3.97, 1e-12);  // 0.99·3 = 2.97 → 3 + 0.97·(4 − 3)
  const std::vector<double> one = {7.0};
  EXPECT_DOUBLE_EQ(percentile(one, 0.99), 7.0);
  EXPECT_THROW((void)percentile({}, 0.5), InvalidArgument);
  EXPECT_THROW((void)percentile(v, 1.5), InvalidArgument);
  EXPECT_THROW((void)percentile(v, -0.1), InvalidArgument);
}

/// A KvCache that counts tokens; `boost_odd` says whether the fake model boosts at odd positions.
class PositionCache {
 public:
  explicit PositionCache(bool boost_odd) : boost_odd_(boost_odd) {}
  RowMatrix<float> attend(Index, const MatrixCRef<float>& x, Index) { return x; }
  void reset() {
    length_ = 0;
    ++resets_;
  }
  [[nodiscard]] Index length(Index) const { return length_; }
  [[nodiscard]] Index num_layers() const { return 1; }
  [[nodiscard]] std::int64_t bytes_per_token() const { return boost_odd_ ? 8 : 4; }
  void advance(Index n) { length_ += n; }
  [[nodiscard]] bool boost_odd() const { return boost_odd_; }
  [[nodiscard]] int resets() const { return resets_; }

 private:
  bool boost_odd_;
  Index length_ = 0;
  int resets_ = 0;
};
static_assert(KvCache<PositionCache>);

/// Logits after the token at position t of the cache: log 3 at (token + 1) % 4, 0 elsewhere —
/// except at odd positions with a cache that does not boost them (all 0: uniform). One row per
/// sink call, so blocks of several rows are assembled by the caller.
struct PositionModel {
  template <class Sink>
  void forward(std::span<const std::int32_t> tokens, PositionCache& cache, Sink&& sink) const {
    for (std::size_t r = 0; r < tokens.size(); ++r) {
      const Index position = cache.length(0) + static_cast<Index>(r);
      RowMatrix<float> row = RowMatrix<float>::Zero(1, 4);
      if (position % 2 == 0 || cache.boost_odd()) {
        row(0, (tokens[r] + 1) % 4) = static_cast<float>(std::log(3.0));
      }
      sink(static_cast<Index>(r), MatrixCRef<float>(row));
    }
    cache.advance(static_cast<Index>(tokens.size()));
  }
};

TEST(KlDivergence, HandCheckedPositionModel) {
  // p (boosted): 1/2 on the successor, 1/6 elsewhere; q at odd positions: uniform 1/4.
  const double kl_odd = std::log(4.0) - 0.5 * std::log(12.0);  // ln 4 − H(p), H = ½ln2 + ½ln6
  const std::vector<std::int32_t> ids = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 3};  // 2 chunks + tail
  PositionCache dense(true);
  PositionCache tested(false);
  for (const Index block : {1, 2, 3, 5, 64}) {
    const KlDivergenceResult r =
        kl_divergence(PositionModel{}, dense, tested, ids, {.ctx = 5, .block = block});
    ASSERT_EQ(r.chunks, 2);
    ASSERT_EQ(r.predictions, 8);
    ASSERT_EQ(r.token_kl.size(), 8u);
    // Positions 0..3 of each chunk: even ones agree exactly, odd ones are uniform.
    for (std::size_t t = 0; t < 8; ++t) {
      EXPECT_NEAR(r.token_kl[t], t % 2 == 1 ? kl_odd : 0.0, 1e-7)
          << "block " << block << " t " << t;
    }
    EXPECT_NEAR(r.mean_kl, kl_odd / 2, 1e-7);
    EXPECT_NEAR(r.chunk_kl[0], kl_odd / 2, 1e-7);
    EXPECT_NEAR(r.kl_p99, kl_odd, 1e-7);
    EXPECT_NEAR(r.kl_median, kl_odd / 2, 1e-7);  // (0 + kl_odd) / 2 between order stats 3 and 4
    EXPECT_NEAR(r.kl_max, kl_odd, 1e-7);
    // Odd positions: the uniform argmax is 0, the boosted one (token + 1) % 4: equal only after
    // token 3, which is at position 3 of chunk 0. So 4 even + 1 odd of 8.
    EXPECT_DOUBLE_EQ(r.same_top1, 5.0 / 8.0);
    // Every target is the successor: −log ½ for p everywhere; q pays log 4 at odd positions.
    EXPECT_NEAR(r.reference.mean_nll, std::log(2.0), 1e-7);
    EXPECT_NEAR(r.test.mean_nll, (std::log(2.0) + std::log(4.0)) / 2, 1e-7);
    EXPECT_NEAR(r.test.ppl, std::exp(r.test.mean_nll), 1e-12);
    EXPECT_EQ(r.reference.kv_bytes_per_token, 8);
    EXPECT_EQ(r.test.kv_bytes_per_token, 4);
  }
  EXPECT_EQ(dense.resets(), 2 * 5);  // once per chunk, per call
  EXPECT_EQ(tested.resets(), 2 * 5);

  const KlDivergenceResult one =
      kl_divergence(PositionModel{}, dense, tested, ids, {.ctx = 5, .max_chunks = 1, .block = 2});
  EXPECT_EQ(one.chunks, 1);
  EXPECT_DOUBLE_EQ(one.same_top1, 3.0 / 4.0);
}

TEST(KlDivergence, MatchesADirectComputationOnTheCompressedTinyLlama) {
  const ModelConfig c = testing::tiny_llama_config();
  const LlamaModel model(testing::random_llama_weights(c, 41));
  const Compressor<GramEigenFactorizer<float>, JointGrouping, UniformRankSchedule> compressor;
  const CompressedModel compressed =
      compressor.compress(WeightsAttentionSource(model.weights()), {.budget = 0.5});
  const std::vector<std::int32_t> ids = testing::random_tokens(100, c.vocab_size, 42);
  DenseKvCache dense(model.weights());
  LatentKvCache<float> latent(model.weights(), compressed);
  std::vector<double> seen;
  const KlDivergenceResult r = kl_divergence(model, dense, latent, ids, {.ctx = 30, .block = 7},
                                             [&](Index k, double kl, double) {
                                               EXPECT_EQ(k, static_cast<Index>(seen.size()));
                                               seen.push_back(kl);
                                             });
  ASSERT_EQ(r.chunks, 3);
  EXPECT_EQ(seen, r.chunk_kl);

  double kl_total = 0.0;
  Index agree = 0;
  std::vector<double> token_kl;
  for (Index k = 0; k < 3; ++k) {
    const std::span<const std::int32_t> chunk =
        std::span<const std::int32_t>(ids).subspan(static_cast<std::size_t>(30 * k), 30);
    DenseKvCache fresh_dense(model.weights());
    LatentKvCache<float> fresh_latent(model.weights(), compressed);
    const RowMatrix<double> p = model.forward(chunk, fresh_dense).cast<double>();
    const RowMatrix<double> q = model.forward(chunk, fresh_latent).cast<double>();
    for (Index t = 0; t < 29; ++t) {
      const auto log_softmax = [](const Eigen::RowVectorXd& z) -> Eigen::RowVectorXd {
        return z.array() - (z.maxCoeff() + std::log((z.array() - z.maxCoeff()).exp().sum()));
      };
      const Eigen::RowVectorXd lp = log_softmax(p.row(t));
      const Eigen::RowVectorXd lq = log_softmax(q.row(t));
      const double kl = (lp.array().exp() * (lp - lq).array()).sum();
      token_kl.push_back(kl);
      kl_total += kl;
      Index ip = 0, iq = 0;
      p.row(t).maxCoeff(&ip);
      q.row(t).maxCoeff(&iq);
      agree += ip == iq ? 1 : 0;
    }
  }
  EXPECT_GT(r.mean_kl, 1e-3);  // a rank-halved random model is measurably off
  EXPECT_NEAR(r.mean_kl, kl_total / 87, 1e-5 * r.mean_kl);
  EXPECT_NEAR(r.kl_p99, percentile(token_kl, 0.99), 1e-4 * r.kl_p99);
  EXPECT_NEAR(r.same_top1, static_cast<double>(agree) / 87, 1.5 / 87);  // a near-tie may flip
  EXPECT_LT(r.same_top1, 1.0);

  // Both perplexities agree with perplexity() through the same caches.
  const PerplexityResult dense_ppl = perplexity(model, dense, ids, {.ctx = 30});
  const PerplexityResult latent_ppl = perplexity(model, latent, ids, {.ctx = 30});
  EXPECT_NEAR(r.reference.mean_nll, dense_ppl.mean_nll, 1e-6);
  EXPECT_NEAR(r.test.mean_nll, latent_ppl.mean_nll, 1e-6);
  EXPECT_GT(r.test.mean_nll, r.reference.mean_nll - 0.5);

  // The dense model against itself: nothing to measure.
  DenseKvCache other(model.weights());
  const KlDivergenceResult self = kl_divergence(model, dense, other, ids, {.ctx = 30, .block = 7});
  EXPECT_NEAR(self.mean_kl, 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(self.same_top1, 1.0);
}

std::string kl_error(std::span<const std::int32_t> ids, const KlDivergenceOptions& options) {
  PositionCache a(true);
  PositionCache b(false);
  try {
    (void)kl_divergence(PositionModel{}, a, b, ids, options);
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "no error";
}

TEST(KlDivergence, RejectsBadInput) {
  const std::vector<std::int32_t> ids(10, 1);
  EXPECT_NE(kl_error(ids, {.ctx = 1}).find("ctx = 1, expected >= 2"), std::string::npos);
  EXPECT_NE(kl_error(ids, {.ctx = 4, .block = 0}).find("block = 0, expected >= 1"),
            std::string::npos);
  EXPECT_NE(kl_error(ids, {.ctx = 4, .max_chunks = 3})
                .find("max_chunks = 3 but the text has only 2 chunks of ctx = 4"),
            std::string::npos);
  const std::vector<std::int32_t> out_of_range = {1, 2, 30, 0};
  EXPECT_NE(kl_error(out_of_range, {.ctx = 4}).find("ids[2] = 30, expected 0..3"),
            std::string::npos);
  EXPECT_EQ(kl_error(ids, {.ctx = 10}), "no error");
}

}  // namespace
}  // namespace latentkv
