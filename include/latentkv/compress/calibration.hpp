// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Calibration statistics for the activation-aware paths (DESIGN §4, §5).
//   tokens (n) of calibration text, cut into chunks of ctx tokens (a short tail is kept as a
//   shorter chunk), each run through the dense model from an empty cache
//   G_l = Σ_t x_t·x_tᵀ: (d, d) in double, x_t = RMSNorm(h_t)·g_attn the input of layer l's
//   attention (what W_q, W_k, W_v multiply) → CalibratedWhitening
// The inputs are captured by GramRecordingCache, a KvCache wrapper that accumulates the x of every
// attend() call and forwards it to the wrapped cache, so the model code does not change.
//
// Divergence (the greedy search and the sensitivity weights, DESIGN §5):
//   D(plan) = 1/n Σ_t KL(p_t ‖ q_t),  p_t = softmax(dense logits after token t),
//             q_t = softmax(logits of the model compressed to `plan`, run through LatentKvCache)
//   over n calibration tokens (one chunk from an empty cache); log-softmax in double. The dense
//   log-probabilities are computed once. The compressed model at `plan` is a truncation of one
//   factorization at full rank (CompressedModel::truncated), so a plan costs one forward pass and
//   no factorization; for exact SVD the truncation is the rank-r factorization itself.
//   Sensitivity: w_l^K = D(full plan with only layer l's K groups at probe rank) − D(full), and
//   w_l^V likewise: 2·L' forward passes for L' compressed layers (a forward-only proxy of
//   Palu's Fisher information: how much the output moves when that layer alone is compressed).
//   SensitivityRankSchedule models a layer's divergence as w·(relative tail energy at r);
//   per_unit_tail_energy() divides each measurement by the tail energy at the probe rank so that
//   model passes through the measured point (w = D(probe) / tail(probe)).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "latentkv/cache/latent_kv_cache.hpp"
#include "latentkv/compress/compressed_model.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/factorize/whitened_factorizer.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/model/dense_kv_cache.hpp"
#include "latentkv/model/kv_cache.hpp"
#include "latentkv/model/llama_model.hpp"

namespace latentkv {

/// A KvCache that records every layer's attention input into a GramAccumulator, then forwards
/// the call to `inner` (which must outlive it).
template <KvCache C>
class GramRecordingCache {
 public:
  explicit GramRecordingCache(C& inner, Index d_model) : inner_(&inner) {
    grams_.reserve(static_cast<std::size_t>(inner.num_layers()));
    for (Index l = 0; l < inner.num_layers(); ++l) grams_.emplace_back(d_model);
  }

  /// x: (tokens, d_model): added to layer `layer`'s Gram matrix, then inner.attend(...).
  [[nodiscard]] RowMatrix<float> attend(Index layer, const MatrixCRef<float>& x, Index position) {
    RowMatrix<float> out = inner_->attend(layer, x, position);  // checks layer and shapes first
    grams_[static_cast<std::size_t>(layer)].add(x);
    return out;
  }
  void reset() { inner_->reset(); }
  [[nodiscard]] Index length(Index layer) const { return inner_->length(layer); }
  [[nodiscard]] Index num_layers() const { return inner_->num_layers(); }
  [[nodiscard]] std::int64_t bytes_per_token() const { return inner_->bytes_per_token(); }

  [[nodiscard]] const std::vector<GramAccumulator>& grams() const noexcept { return grams_; }

 private:
  C* inner_;
  std::vector<GramAccumulator> grams_;
};

/// G_l for every layer from calibration `tokens` (see the notation block): (L) matrices (d, d).
/// ctx >= 1 tokens per chunk; throws InvalidArgument for no tokens.
[[nodiscard]] inline std::vector<RowMatrix<double>> collect_attention_grams(
    const LlamaModel& model, std::span<const std::int32_t> tokens, Index ctx = 1024) {
  constexpr const char* kWhere = "latentkv::collect_attention_grams";
  if (tokens.empty()) detail::raise<InvalidArgument>(kWhere, "no calibration tokens");
  if (ctx < 1) detail::raise<InvalidArgument>(kWhere, "ctx = ", ctx, ", expected >= 1");
  DenseKvCache dense(model.weights(), std::min<Index>(ctx, static_cast<Index>(tokens.size())));
  GramRecordingCache<DenseKvCache> cache(dense, model.config().d_model);
  for (std::size_t start = 0; start < tokens.size(); start += static_cast<std::size_t>(ctx)) {
    const std::size_t count = std::min(tokens.size() - start, static_cast<std::size_t>(ctx));
    cache.reset();
    (void)model.hidden_states(tokens.subspan(start, count), cache);
  }
  std::vector<RowMatrix<double>> grams;
  for (const GramAccumulator& g : cache.grams()) grams.push_back(g.gram());
  return grams;
}

/// log softmax of each row in double: logits (rows, vocab) → (rows, vocab).
[[nodiscard]] inline RowMatrix<double> log_softmax_rows(const MatrixCRef<float>& logits) {
  RowMatrix<double> out = logits.cast<double>();
  for (Index t = 0; t < out.rows(); ++t) {
    const double max = out.row(t).maxCoeff();
    const double lse = max + std::log((out.row(t).array() - max).exp().sum());
    out.row(t).array() -= lse;
  }
  return out;
}

/// D(plan) of the notation block: the mean next-token KL divergence of the model compressed to
/// `plan` from the dense model, on calibration tokens. Holds references to the model and the
/// full-rank compressed model (both must outlive it). Not thread-safe (it counts evaluations).
class KlDivergence {
 public:
  /// full: the model's factors at the largest ranks plans may ask for (usually max_rank);
  /// tokens: (n >= 2) calibration ids, run as one chunk.
  KlDivergence(const LlamaModel& model, const CompressedModel& full,
               std::vector<std::int32_t> tokens)
      : model_(&model), full_(&full), tokens_(std::move(tokens)) {
    constexpr const char* kWhere = "latentkv::KlDivergence";
    if (tokens_.size() < 2) {
      detail::raise<InvalidArgument>(kWhere, tokens_.size(), " calibration tokens, expected >= 2");
    }
    DenseKvCache dense(model.weights(), static_cast<Index>(tokens_.size()));
    reference_ = log_softmax_rows(model.forward(tokens_, dense));
  }

  /// D(plan) >= 0 (up to rounding); plan: the full model's layout, entries <= the full model's.
  [[nodiscard]] double operator()(const RankPlan& plan) const {
    const CompressedModel truncated = full_->truncated(plan);
    LatentKvCache<float> cache(model_->weights(), truncated, static_cast<Index>(tokens_.size()));
    const RowMatrix<double> q = log_softmax_rows(model_->forward(tokens_, cache));
    ++evaluations_;
    const double kl = (reference_.array().exp() * (reference_ - q).array()).sum();
    return kl / static_cast<double>(reference_.rows());
  }

  [[nodiscard]] Index evaluations() const noexcept { return evaluations_; }
  [[nodiscard]] Index num_tokens() const noexcept { return static_cast<Index>(tokens_.size()); }

 private:
  const LlamaModel* model_;
  const CompressedModel* full_;
  std::vector<std::int32_t> tokens_;
  RowMatrix<double> reference_;  // (n, vocab) dense log-probabilities
  mutable Index evaluations_ = 0;
};

/// Per-layer sensitivity weights (see the notation block): k[i], v[i] for the i-th layer of
/// `layers` (the compressed layers, in order), from `divergence` over plans of the full layout.
struct LayerSensitivities {
  std::vector<double> k;  ///< (L') w_l^K >= 0
  std::vector<double> v;  ///< (L') w_l^V >= 0
};

/// full_plan: every layer at its largest ranks; probe_rank: the rank every group of the probed
/// side is cut to (1..max rank). Negative differences (rounding at full rank) count as 0.
template <class Divergence>
[[nodiscard]] LayerSensitivities measure_layer_sensitivities(const Divergence& divergence,
                                                             const RankPlan& full_plan,
                                                             const std::vector<Index>& layers,
                                                             Index probe_rank) {
  constexpr const char* kWhere = "latentkv::measure_layer_sensitivities";
  if (probe_rank < 1) {
    detail::raise<InvalidArgument>(kWhere, "probe_rank = ", probe_rank, ", expected >= 1");
  }
  const double base = divergence(full_plan);
  LayerSensitivities out;
  for (const Index l : layers) {
    if (l < 0 || l >= full_plan.num_layers()) {
      detail::raise<InvalidArgument>(kWhere, "layer ", l, " is not in the plan (",
                                     full_plan.num_layers(), " layers)");
    }
    for (const bool key : {true, false}) {
      RankPlan probe = full_plan;
      auto& ranks = key ? probe.layers[static_cast<std::size_t>(l)].k
                        : probe.layers[static_cast<std::size_t>(l)].v;
      for (Index& r : ranks) r = std::min(r, probe_rank);
      const double d = std::max(0.0, divergence(probe) - base);
      (key ? out.k : out.v).push_back(d);
    }
  }
  return out;
}

/// measured / (relative tail energy of the probed side at probe_rank, averaged over its groups):
/// the weights SensitivityRankSchedule takes. full: the model the probes were cut from.
[[nodiscard]] inline LayerSensitivities per_unit_tail_energy(const LayerSensitivities& measured,
                                                             const CompressedModel& full,
                                                             const std::vector<Index>& layers,
                                                             Index probe_rank) {
  constexpr const char* kWhere = "latentkv::per_unit_tail_energy";
  if (measured.k.size() != layers.size() || measured.v.size() != layers.size()) {
    detail::raise<InvalidArgument>(kWhere, measured.k.size(), " K and ", measured.v.size(),
                                   " V weights for ", layers.size(), " layers");
  }
  const auto tail_at = [&](const auto& groups) {
    double tail = 0.0;
    for (const auto& g : groups) {
      const Index keep = std::min<Index>(probe_rank, g.spectrum.size());
      const double total = g.spectrum.squaredNorm();
      tail += total > 0.0 ? g.spectrum.tail(g.spectrum.size() - keep).squaredNorm() / total : 0.0;
    }
    return std::max(tail / static_cast<double>(std::max<std::size_t>(groups.size(), 1)), 1e-12);
  };
  LayerSensitivities out = measured;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] < 0 || layers[i] >= static_cast<Index>(full.layers.size()) ||
        !full.layers[static_cast<std::size_t>(layers[i])].compressed) {
      detail::raise<InvalidArgument>(kWhere, "layer ", layers[i], " is not a compressed layer");
    }
    const CompressedLayer& layer = full.layers[static_cast<std::size_t>(layers[i])];
    out.k[i] = measured.k[i] / tail_at(layer.k);
    out.v[i] = measured.v[i] / tail_at(layer.v);
  }
  return out;
}

}  // namespace latentkv
