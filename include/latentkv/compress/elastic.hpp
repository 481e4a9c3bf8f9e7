// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Elastic budgets: a compressed model made at budget b serves any b' < b.
//   problem  = the spectra the model was planned on (every compressed layer's groups keep their
//              full σ, compressed_model.hpp), restricted to the compressed layers
//   plan'    = schedule.plan(problem, {b', multiple, ceiling = the model's own plan})
//   model'   = model.truncated(plan')  (prefix columns of A, rows of B and W̃_o)
// The schedules are monotone in the budget (rank_schedule.hpp), so with the schedule and options
// the model was made with, plan' equals the plan of compressing at b' directly, and for exact SVD
// the truncated factors are the rank-r' factors themselves: rebudgeting equals recompressing.
// Dense layers stay dense; b' is, as at compression, the budget over the compressed layers.
#pragma once

#include <vector>

#include "latentkv/compress/compressed_model.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/schedule/rank_schedule.hpp"

namespace latentkv {

/// Indices of the layers with factors, ascending.
[[nodiscard]] inline std::vector<Index> compressed_layers(const CompressedModel& model) {
  std::vector<Index> out;
  for (std::size_t l = 0; l < model.layers.size(); ++l) {
    if (model.layers[l].compressed) out.push_back(static_cast<Index>(l));
  }
  return out;
}

/// The RankProblem of the compressed layers (problem.layers[i] ↔ compressed_layers()[i]).
[[nodiscard]] inline RankProblem spectra_of(const CompressedModel& model) {
  RankProblem problem;
  problem.d_model = model.config.d_model;
  problem.num_kv_heads = model.config.num_kv_heads;
  problem.head_dim = model.config.head_dim;
  problem.heads_per_group = model.heads_per_group();
  for (const Index l : compressed_layers(model)) {
    const CompressedLayer& layer = model.layers[static_cast<std::size_t>(l)];
    LayerSpectra s;
    for (const LatentKeyGroup& g : layer.k) s.k.push_back(g.spectrum);
    for (const LatentValueGroup& g : layer.v) s.v.push_back(g.spectrum);
    problem.layers.push_back(std::move(s));
  }
  if (problem.layers.empty()) {
    detail::raise<InvalidArgument>("latentkv::spectra_of", "the model has no compressed layer");
  }
  problem.validate();
  return problem;
}

/// The model's plan restricted to its compressed layers (the ceiling of a re-plan).
[[nodiscard]] inline RankPlan compressed_plan(const CompressedModel& model) {
  RankPlan plan = model.plan;
  plan.layers.clear();
  for (const Index l : compressed_layers(model)) {
    plan.layers.push_back(model.plan.layers[static_cast<std::size_t>(l)]);
  }
  return plan;
}

/// The model's plan with the compressed layers' entries replaced by `selected`
/// (selected.layers[i] ↔ compressed_layers()[i]).
[[nodiscard]] inline RankPlan expand_compressed_plan(const CompressedModel& model,
                                                     const RankPlan& selected) {
  const std::vector<Index> layers = compressed_layers(model);
  if (static_cast<Index>(layers.size()) != selected.num_layers()) {
    detail::raise<InvalidArgument>("latentkv::expand_compressed_plan", "the plan has ",
                                   selected.num_layers(), " layers, the model ", layers.size(),
                                   " compressed ones");
  }
  RankPlan full = selected;
  full.layers = model.plan.layers;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    full.layers[static_cast<std::size_t>(layers[i])] = selected.layers[i];
  }
  return full;
}

/// The model re-planned at `budget` (<= its own budget over the compressed layers) by `schedule`
/// and truncated (see the notation block). Throws InvalidArgument when the budget is above what
/// the model holds or the schedule cannot meet it.
template <RankSchedule S>
[[nodiscard]] CompressedModel rebudget(const CompressedModel& model, const S& schedule,
                                       double budget, Index multiple = 1) {
  const RankPlan ceiling = compressed_plan(model);
  if (budget > ceiling.budget() + 1e-12) {
    detail::raise<InvalidArgument>("latentkv::rebudget", "budget = ", budget,
                                   " is above the model's own ", ceiling.budget(),
                                   ": a compressed model can only shrink (recompress instead)");
  }
  const RankPlan selected = schedule.plan(
      spectra_of(model), {.budget = budget, .multiple = multiple, .ceiling = ceiling});
  return model.truncated(expand_compressed_plan(model, selected));
}

}  // namespace latentkv
