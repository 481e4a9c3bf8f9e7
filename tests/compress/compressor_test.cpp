// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/compress/compressor.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <Eigen/SVD>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../support/fixed_rank_schedule.hpp"
#include "../support/tiny_llama.hpp"
#include "latentkv/factorize/exact_svd_factorizer.hpp"

namespace latentkv {
namespace {

using testing::FixedRankSchedule;
using ::testing::HasSubstr;

LlamaWeights tiny(bool tied = true) {
  return testing::random_llama_weights(testing::tiny_llama_config(tied), 7);
}

Vector<double> jacobi_sigma(const RowMatrix<float>& w) {
  const Eigen::JacobiSVD<ColMatrix<double>> svd(w.cast<double>());
  return svd.singularValues();
}

template <class G>
Compressor<BdcsvdFactorizer<float>, G, FixedRankSchedule> make(G grouping, Index rank,
                                                               CompressorOptions options = {}) {
  return Compressor<BdcsvdFactorizer<float>, G, FixedRankSchedule>(
      BdcsvdFactorizer<float>{}, grouping, FixedRankSchedule{rank}, options);
}

TEST(Compressor, SpectraAreTheSingularValuesOfEveryGroup) {
  const LlamaWeights w = tiny();
  const WeightsAttentionSource source(w);
  const RankProblem problem = make(PerHeadGrouping{}, 4).spectra(source);
  ASSERT_EQ(problem.num_layers(), 2);
  ASSERT_EQ(problem.num_groups(), 2);
  EXPECT_EQ(problem.max_rank(), 8);
  for (Index l = 0; l < 2; ++l) {
    const AttentionWeights& a = w.layers[static_cast<std::size_t>(l)].attention;
    for (Index g = 0; g < 2; ++g) {
      const auto& spectra = problem.layers[static_cast<std::size_t>(l)];
      EXPECT_TRUE(spectra.k[static_cast<std::size_t>(g)].isApprox(
          jacobi_sigma(a.wk.middleCols(g * 8, 8)), 1e-6));
      EXPECT_TRUE(spectra.v[static_cast<std::size_t>(g)].isApprox(
          jacobi_sigma(a.wv.middleCols(g * 8, 8)), 1e-6));
    }
  }
}

TEST(Compressor, FactorsAreTruncatedSvdsAndTheirErrorIsTheTail) {
  const LlamaWeights w = tiny();
  const WeightsAttentionSource source(w);
  CompressionReport report;
  const CompressedModel m = make(JointGrouping{}, 5).compress(source, {.budget = 0.3}, &report);
  ASSERT_EQ(m.layers.size(), 2u);
  EXPECT_EQ(m.grouping, "joint");
  EXPECT_EQ(m.plan.schedule, "fixed");
  for (Index l = 0; l < 2; ++l) {
    const CompressedLayer& layer = m.layers[static_cast<std::size_t>(l)];
    const AttentionWeights& a = w.layers[static_cast<std::size_t>(l)].attention;
    ASSERT_TRUE(layer.compressed);
    ASSERT_EQ(layer.k.size(), 1u);
    EXPECT_EQ(layer.k[0].down.rows(), 32);
    EXPECT_EQ(layer.k[0].down.cols(), 5);
    EXPECT_EQ(layer.k[0].up.rows(), 5);
    EXPECT_EQ(layer.k[0].up.cols(), 16);
    EXPECT_EQ(layer.v[0].out.rows(), 5);
    EXPECT_EQ(layer.v[0].out.cols(), 4 * 32);  // s·g·d = 2·2·32
    const Vector<double> sigma = jacobi_sigma(a.wk);
    const double err =
        (a.wk.cast<double>() - (layer.k[0].down * layer.k[0].up).cast<double>()).squaredNorm();
    EXPECT_NEAR(err, sigma.tail(sigma.size() - 5).squaredNorm(), 1e-4 * sigma.squaredNorm());
    EXPECT_EQ(layer.k[0].spectrum.size(), 16);
  }
  ASSERT_EQ(report.matrices.size(), 4u);
  EXPECT_EQ(report.matrices[0].side, Projection::kKey);
  EXPECT_EQ(report.matrices[1].side, Projection::kValue);
  EXPECT_GT(report.matrices[0].retained_energy, 0.0);
  EXPECT_LT(report.matrices[0].retained_energy, 1.0);
  EXPECT_EQ(report.kv_numbers_dense, 2 * 2 * 16);
  EXPECT_EQ(report.kv_numbers_latent, 2 * 2 * 5);
  EXPECT_NEAR(report.budget_achieved(), 20.0 / 64.0, 1e-12);
  // A_k, B_k, A_v, W̃_o per layer.
  EXPECT_EQ(report.weight_parameters_compressed, 2 * (5 * 32 + 5 * 16 + 5 * 32 + 5 * 128));
  EXPECT_EQ(report.weight_parameters_dense, 2 * (2 * 32 * 16 + 32 * 32));
}

// At full rank the folded output projection is exact: A_v·W̃_o,m = W_v[:, kv head]·W_o[head rows].
TEST(Compressor, FoldedOutputProjectionReproducesValuesTimesWo) {
  const LlamaWeights w = tiny();
  const WeightsAttentionSource source(w);
  for (const bool joint : {true, false}) {
    const CompressedModel m = joint ? make(JointGrouping{}, 16).compress(source, {.budget = 1.0})
                                    : make(PerHeadGrouping{}, 8).compress(source, {.budget = 1.0});
    const ModelConfig& c = w.config;
    const Index s = m.heads_per_group();
    for (Index l = 0; l < c.num_layers; ++l) {
      const AttentionWeights& a = w.layers[static_cast<std::size_t>(l)].attention;
      for (Index head = 0; head < c.num_heads; ++head) {
        const Index kv = head / c.group_size();
        const Index g = kv / s;
        const Index m_local = head - g * s * c.group_size();
        const LatentValueGroup& v =
            m.layers[static_cast<std::size_t>(l)].v[static_cast<std::size_t>(g)];
        const RowMatrix<float> folded = v.down * v.out.middleCols(m_local * c.d_model, c.d_model);
        const RowMatrix<float> want = a.wv.middleCols(kv * c.head_dim, c.head_dim) *
                                      a.wo.middleRows(head * c.head_dim, c.head_dim);
        EXPECT_LT((folded - want).norm(), 1e-4 * want.norm())
            << "joint " << joint << " layer " << l << " head " << head;
      }
    }
  }
}

TEST(Compressor, LayersOutsideTheRangeStayDense) {
  const ModelConfig c = testing::tiny_llama_config();
  LlamaWeights w = tiny();
  const WeightsAttentionSource source(w);
  const auto compressor = make(JointGrouping{}, 4, {.first_layer = 1, .last_layer = 1});
  CompressionReport report;
  const CompressedModel m = compressor.compress(source, {.budget = 0.25}, &report);
  EXPECT_FALSE(m.layers[0].compressed);
  EXPECT_TRUE(m.layers[0].k.empty());
  EXPECT_TRUE(m.layers[1].compressed);
  EXPECT_EQ(m.plan.layers[0].k, std::vector<Index>{16});
  EXPECT_EQ(m.plan.layers[1].k, std::vector<Index>{4});
  EXPECT_EQ(report.dense_layers, std::vector<Index>{0});
  EXPECT_EQ(report.kv_numbers_latent, 32 + 8);
  EXPECT_EQ(report.matrices.size(), 2u);

  EXPECT_THAT(
      [&] { (void)make(JointGrouping{}, 4, {.first_layer = 1, .last_layer = 2}).spectra(source); },
      ::testing::ThrowsMessage<InvalidArgument>(
          HasSubstr("layers 1-2, expected a range inside 0-1")));
  (void)c;
}

TEST(Compressor, NonFiniteWeightsAreReportedWithLayerAndTensor) {
  LlamaWeights w = tiny();
  w.layers[1].attention.wv(3, 5) = std::numeric_limits<float>::quiet_NaN();
  const WeightsAttentionSource source(w);
  EXPECT_THAT([&] { (void)make(JointGrouping{}, 4).compress(source, {.budget = 0.25}); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  HasSubstr("layer 1 W_v (layers[1].attention.wv) has a non-finite entry nan at "
                            "(3, 5)")));
  w.layers[1].attention.wv(3, 5) = 0.0f;
  w.layers[0].attention.wo(0, 0) = std::numeric_limits<float>::infinity();
  EXPECT_THAT([&] { (void)make(JointGrouping{}, 4).compress(source, {.budget = 0.25}); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("layer 0 W_o")));
}

TEST(Compressor, ShapesThatDisagreeWithTheConfigAreRejected) {
  LlamaWeights w = tiny();
  w.layers[1].attention.wk = RowMatrix<float>::Ones(32, 12);
  const WeightsAttentionSource source(w);
  EXPECT_THAT([&] { (void)make(JointGrouping{}, 4).spectra(source); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  HasSubstr("layers[1].attention.wk is (32, 12), expected (32, 16)")));
}

struct RecordingSink {
  std::vector<std::string> events;
  void begin(const ModelConfig& c, const RankPlan& p, const std::vector<Index>& dense) {
    events.push_back("begin " + std::to_string(c.num_layers) + " " +
                     std::to_string(p.latent_width()) + " " + std::to_string(dense.size()));
  }
  void layer(Index l, CompressedLayer&& layer) {
    events.push_back("layer " + std::to_string(l) + " " + std::to_string(layer.latent_width()));
  }
  void end() { events.push_back("end"); }
};

TEST(Compressor, StreamsLayersToTheSinkInOrder) {
  const LlamaWeights w = tiny();
  const WeightsAttentionSource source(w);
  RecordingSink sink;
  std::vector<std::string> progress;
  (void)make(PerHeadGrouping{}, 3)
      .compress(source, {.budget = 0.375}, sink,
                [&](std::string_view stage, Index done, Index total) {
                  progress.push_back(std::string(stage) + std::to_string(done) + "/" +
                                     std::to_string(total));
                });
  EXPECT_EQ(sink.events,
            (std::vector<std::string>{"begin 2 24 0", "layer 0 12", "layer 1 12", "end"}));
  EXPECT_EQ(progress,
            (std::vector<std::string>{"spectra1/2", "spectra2/2", "factorize1/2", "factorize2/2"}));
}

TEST(Compressor, CalibratedWhiteningPlansOnTheWhitenedSpectrum) {
  const LlamaWeights w = tiny();
  const WeightsAttentionSource source(w);
  // Calibration inputs with very uneven channel scales: whitening must change the spectrum.
  std::mt19937_64 engine(3);
  RowMatrix<float> x = testing::random_matrix(200, 32, 1.0, engine);
  for (Index j = 0; j < 32; ++j) x.col(j) *= static_cast<float>(std::pow(1.15, j));
  GramAccumulator gram(32);
  gram.add(x);
  const CalibratedWhitening<BdcsvdFactorizer<float>> policy({gram.gram(), gram.gram()});
  const Compressor<CalibratedWhitening<BdcsvdFactorizer<float>>, JointGrouping, FixedRankSchedule>
      whitened(policy, {}, {4});
  const RankProblem problem = whitened.spectra(source);
  const WhitenedFactorizer<BdcsvdFactorizer<float>> f(gram.gram());
  EXPECT_TRUE(problem.layers[0].k[0].isApprox(f.singular_values(w.layers[0].attention.wk), 1e-9));
  EXPECT_FALSE(problem.layers[0].k[0].isApprox(jacobi_sigma(w.layers[0].attention.wk), 1e-2));

  // The whitened factors have a smaller activation-weighted error than plain SVD at equal rank.
  const CompressedModel mw = whitened.compress(source, {.budget = 0.25});
  const CompressedModel mp = make(JointGrouping{}, 4).compress(source, {.budget = 0.25});
  const RowMatrix<float>& wk = w.layers[0].attention.wk;
  const auto weighted = [&](const LatentKeyGroup& k) { return (x * (wk - k.down * k.up)).norm(); };
  EXPECT_LT(weighted(mw.layers[0].k[0]), 0.9 * weighted(mp.layers[0].k[0]));
  EXPECT_THAT([&] { (void)policy.for_layer(2); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("layer = 2, expected 0..1")));
}

}  // namespace
}  // namespace latentkv
