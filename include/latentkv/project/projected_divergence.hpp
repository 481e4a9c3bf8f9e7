// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Measured divergences for planning route-2 ranks (DESIGN §5), the counterparts of
// compress/calibration.hpp's KlDivergence and per_unit_tail_energy for projections:
//   ProjectedKlDivergence  D(plan) = mean next-token KL(dense ‖ model with the projections cut to
//                          `plan`, run through ProjectedKvCache) on calibration tokens; a
//                          Divergence for GreedySearchRankSchedule (MatryoshkaKV's Algorithm 1) and
//                          for measure_layer_sensitivities → SensitivityRankSchedule
//   per_unit_tail_energy   the measured increase divided by the relative variance the probe cut
//                          away (Σ_{i ≥ probe} λ_i / Σ_i λ_i, averaged over the side's groups)
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "latentkv/cache/projected_kv_cache.hpp"
#include "latentkv/compress/calibration.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/model/dense_kv_cache.hpp"
#include "latentkv/model/llama_model.hpp"
#include "latentkv/project/projected_model.hpp"
#include "latentkv/schedule/rank_plan.hpp"

namespace latentkv {

/// D(plan) for projections: holds references to the model and the full projections (both must
/// outlive it). Not thread-safe (it counts evaluations).
class ProjectedKlDivergence {
 public:
  /// full: the projections at the largest ranks plans may ask for; tokens: (n >= 2) calibration
  /// ids, run as one chunk. Throws InvalidArgument for fewer tokens or projections that do not
  /// fit the model.
  ProjectedKlDivergence(const LlamaModel& model, const ProjectedModel& full,
                        std::vector<std::int32_t> tokens)
      : model_(&model), full_(&full), tokens_(std::move(tokens)) {
    constexpr const char* kWhere = "latentkv::ProjectedKlDivergence";
    if (tokens_.size() < 2) {
      detail::raise<InvalidArgument>(kWhere, tokens_.size(), " calibration tokens, expected >= 2");
    }
    full.validate(model.config());
    DenseKvCache dense(model.weights(), static_cast<Index>(tokens_.size()));
    reference_ = log_softmax_rows(model.forward(tokens_, dense));
  }

  /// D(plan) >= 0 (up to rounding); plan: the full projections' layout, ranks <= theirs.
  [[nodiscard]] double operator()(const RankPlan& plan) const {
    const ProjectedModel truncated = full_->truncated(plan);
    ProjectedKvCache<float> cache(model_->weights(), truncated, static_cast<Index>(tokens_.size()));
    const RowMatrix<double> q = log_softmax_rows(model_->forward(tokens_, cache));
    ++evaluations_;
    const double kl = (reference_.array().exp() * (reference_ - q).array()).sum();
    return kl / static_cast<double>(reference_.rows());
  }

  [[nodiscard]] Index evaluations() const noexcept { return evaluations_; }
  [[nodiscard]] Index num_tokens() const noexcept { return static_cast<Index>(tokens_.size()); }

 private:
  const LlamaModel* model_;
  const ProjectedModel* full_;
  std::vector<std::int32_t> tokens_;
  RowMatrix<double> reference_;  // (n, vocab) dense log-probabilities
  mutable Index evaluations_ = 0;
};

/// measured (measure_layer_sensitivities over every layer, in order) / the relative variance the
/// probe cut away from that side: the weights SensitivityRankSchedule takes.
[[nodiscard]] inline LayerSensitivities per_unit_tail_energy(const LayerSensitivities& measured,
                                                             const ProjectedModel& full,
                                                             Index probe_rank) {
  constexpr const char* kWhere = "latentkv::per_unit_tail_energy";
  const auto layers = static_cast<std::size_t>(full.num_layers());
  if (measured.k.size() != layers || measured.v.size() != layers) {
    detail::raise<InvalidArgument>(kWhere, measured.k.size(), " K and ", measured.v.size(),
                                   " V weights for ", layers, " layers");
  }
  if (probe_rank < 1) {
    detail::raise<InvalidArgument>(kWhere, "probe_rank = ", probe_rank, ", expected >= 1");
  }
  const auto tail_at = [&](const std::vector<ProjectedBasis>& groups) {
    double tail = 0.0;
    for (const ProjectedBasis& g : groups) {
      const Index keep = std::min<Index>(probe_rank, g.variance.size());
      const double total = g.variance.sum();
      tail += total > 0.0 ? g.variance.tail(g.variance.size() - keep).sum() / total : 0.0;
    }
    return std::max(tail / static_cast<double>(std::max<std::size_t>(groups.size(), 1)), 1e-12);
  };
  LayerSensitivities out = measured;
  for (std::size_t l = 0; l < layers; ++l) {
    out.k[l] = measured.k[l] / tail_at(full.layers[l].k);
    out.v[l] = measured.v[l] / tail_at(full.layers[l].v);
  }
  return out;
}

}  // namespace latentkv
