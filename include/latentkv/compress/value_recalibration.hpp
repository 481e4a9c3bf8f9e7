// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Calibration inputs kept per layer, and closed-form value recalibration (ReCalKV-style; issue 9
// "better factors"): after truncation, refit each query head's folded output matrix W̃_o by ridge
// least squares so the latent attention output matches the dense one on calibration activations.
//   inputs   X_l,c: (n_c, d) the attention input of layer l on calibration chunk c (each chunk run
//            through the dense model from an empty cache, positions 0..n_c−1)
//   dense    per chunk: Q = RoPE(X·W_q), K = RoPE(X·W_k), V = X·W_v; P_i = causal softmax of
//            head i's scores (scale 1/√h); o_i = P_i·V_g(i): (n, h); target Y_i = o_i·W_o,i: (n, d)
//   latent   C_j = X·A_v,j: (n, r_j) for value group j; z_i = P_i·C_j(i): (n, r_j) — the same
//            dense probabilities, so the fit is layer-local and linear in W̃
//   refit    per query head i (block m of its group's W̃_o,j, W⁰ = the current block: (r_j, d)):
//              S = Σ_c z_iᵀz_i (r, r),  R = Σ_c z_iᵀY_i (r, d),  λ = ridge·tr(S)/r
//              W = (S + λI)⁻¹·(R + λ·W⁰)   (ridge pulls toward W⁰: ridge → ∞ keeps the fold)
//            which minimizes Σ_c ‖z_i·W − Y_i‖² + λ‖W − W⁰‖² (per head, not the error of the heads'
//            sum). With exact SVD factors at full rank W⁰ already gives z_i·W⁰ = Y_i, so nothing
//            moves. A_v and the cache are untouched; only W̃_o changes, so the cache bytes are too.
// Elastic loading truncates W̃_o's first rows; a refit file truncated to a smaller rank is valid
// but no longer the least-squares fit at that rank (recompress for that).
// Sink tokens (the first positions of every chunk, where attention sinks and massive activations
// sit) may be down-weighted in the whitening Gram matrices: attention_input_grams(sink_tokens, w).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "latentkv/attention/causal_attention.hpp"
#include "latentkv/compress/compressed_model.hpp"
#include "latentkv/compress/compressor.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/core/rope.hpp"
#include "latentkv/linalg/decompositions.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/linalg/parallel.hpp"
#include "latentkv/model/dense_kv_cache.hpp"
#include "latentkv/model/kv_cache.hpp"
#include "latentkv/model/llama_model.hpp"

namespace latentkv {

/// X_l,c of the notation block: chunks[l][c]: (n_c, d_model), c in the order the chunks ran.
struct AttentionInputs {
  std::vector<std::vector<RowMatrix<float>>> chunks;  ///< (L) × (chunks)
  [[nodiscard]] Index num_layers() const noexcept { return static_cast<Index>(chunks.size()); }
};

/// A KvCache that appends every layer's attention input to `inputs` (a new chunk when the call
/// starts at position 0), then forwards the call to `inner` (which must outlive it).
template <KvCache C>
class InputRecordingCache {
 public:
  InputRecordingCache(C& inner, AttentionInputs& inputs) : inner_(&inner), inputs_(&inputs) {
    inputs_->chunks.resize(static_cast<std::size_t>(inner.num_layers()));
  }
  /// x: (tokens, d_model), recorded (appended to the layer's current chunk unless position is 0).
  [[nodiscard]] RowMatrix<float> attend(Index layer, const MatrixCRef<float>& x, Index position) {
    RowMatrix<float> out = inner_->attend(layer, x, position);  // checks layer and shapes first
    std::vector<RowMatrix<float>>& chunks = inputs_->chunks[static_cast<std::size_t>(layer)];
    if (position == 0 || chunks.empty()) {
      chunks.emplace_back(x);
    } else {
      RowMatrix<float>& last = chunks.back();
      const Index rows = last.rows();
      last.conservativeResize(rows + x.rows(), Eigen::NoChange);
      last.bottomRows(x.rows()) = x;
    }
    return out;
  }
  void reset() { inner_->reset(); }
  [[nodiscard]] Index length(Index layer) const { return inner_->length(layer); }
  [[nodiscard]] Index num_layers() const { return inner_->num_layers(); }
  [[nodiscard]] std::int64_t bytes_per_token() const { return inner_->bytes_per_token(); }

 private:
  C* inner_;
  AttentionInputs* inputs_;
};

/// Every layer's attention input on calibration `tokens`, cut into chunks of ctx (>= 1) tokens
/// (a short tail is its own chunk), each from an empty dense cache. Memory: L·n·d floats.
[[nodiscard]] inline AttentionInputs collect_attention_inputs(const LlamaModel& model,
                                                              std::span<const std::int32_t> tokens,
                                                              Index ctx = 1024) {
  constexpr const char* kWhere = "latentkv::collect_attention_inputs";
  if (tokens.empty()) detail::raise<InvalidArgument>(kWhere, "no calibration tokens");
  if (ctx < 1) detail::raise<InvalidArgument>(kWhere, "ctx = ", ctx, ", expected >= 1");
  DenseKvCache dense(model.weights(), std::min<Index>(ctx, static_cast<Index>(tokens.size())));
  AttentionInputs inputs;
  InputRecordingCache<DenseKvCache> cache(dense, inputs);
  for (std::size_t start = 0; start < tokens.size(); start += static_cast<std::size_t>(ctx)) {
    const std::size_t count = std::min(tokens.size() - start, static_cast<std::size_t>(ctx));
    cache.reset();
    (void)model.hidden_states(tokens.subspan(start, count), cache);
  }
  return inputs;
}

/// G_l = Σ_c Σ_t w_t·x_tᵀx_t: (L) matrices (d, d) for CalibratedWhitening, with w_t = sink_weight
/// for the first sink_tokens positions of every chunk and 1 elsewhere (sink_tokens = 0: the plain
/// Gram of collect_attention_grams). sink_tokens >= 0 and sink_weight >= 0, else InvalidArgument.
[[nodiscard]] inline std::vector<RowMatrix<double>> attention_input_grams(
    const AttentionInputs& inputs, Index sink_tokens = 0, double sink_weight = 1.0) {
  constexpr const char* kWhere = "latentkv::attention_input_grams";
  if (sink_tokens < 0) {
    detail::raise<InvalidArgument>(kWhere, "sink_tokens = ", sink_tokens, ", expected >= 0");
  }
  if (!(sink_weight >= 0.0) || !std::isfinite(sink_weight)) {
    detail::raise<InvalidArgument>(kWhere, "sink_weight = ", sink_weight,
                                   ", expected a finite weight >= 0");
  }
  std::vector<RowMatrix<double>> grams;
  for (const std::vector<RowMatrix<float>>& layer : inputs.chunks) {
    if (layer.empty()) detail::raise<InvalidArgument>(kWhere, "a layer has no inputs");
    GramAccumulator g(layer.front().cols());
    for (const RowMatrix<float>& x : layer) {
      const Index sinks = std::min(sink_tokens, x.rows());
      if (sinks == 0 || sink_weight == 1.0) {
        g.add(x);
        continue;
      }
      RowMatrix<float> weighted = x;
      weighted.topRows(sinks) *= static_cast<float>(std::sqrt(sink_weight));
      g.add(weighted);
    }
    grams.push_back(g.gram());
  }
  return grams;
}

struct ValueRecalibrationOptions {
  double ridge = 1e-2;  ///< λ = ridge·tr(S)/r per head (>= 0; 0 = plain least squares)
};

/// Output error of a layer's latent values on the calibration inputs, per the notation block:
/// sqrt(Σ_i Σ_c ‖z_i·W̃_i − Y_i‖² / Σ_i Σ_c ‖Y_i‖²) before and after the refit.
struct ValueRecalibrationReport {
  double relative_error_before = 0.0;
  double relative_error_after = 0.0;
};

namespace detail {

/// Q, K (post-RoPE) and V of one chunk: x (n, d) at positions 0..n−1.
struct DenseProjections {
  RowMatrix<float> q, k, v;
};

inline DenseProjections dense_projections(const ModelConfig& c, const AttentionWeights& w,
                                          const MatrixCRef<float>& x) {
  DenseProjections p{RowMatrix<float>(x.rows(), c.q_dim()), RowMatrix<float>(x.rows(), c.kv_dim()),
                     RowMatrix<float>(x.rows(), c.kv_dim())};
  parallel_product(x, w.wq, p.q);
  parallel_product(x, w.wk, p.k);
  parallel_product(x, w.wv, p.v);
  rope_rotate_rows(p.q.data(), x.rows(), p.q.cols(), static_cast<int>(c.num_heads),
                   static_cast<int>(c.head_dim), static_cast<int>(c.rope_dim), c.rope_base, 0);
  rope_rotate_rows(p.k.data(), x.rows(), p.k.cols(), static_cast<int>(c.num_kv_heads),
                   static_cast<int>(c.head_dim), static_cast<int>(c.rope_dim), c.rope_base, 0);
  return p;
}

}  // namespace detail

/// Refits every W̃_o block of `layer` (a compressed layer of a model with config `c`; `w` the
/// layer's dense W_q, W_k, W_v, W_o) on `inputs` (the layer's calibration chunks, (n_c, d) each),
/// per the notation block. Throws InvalidArgument for an uncompressed layer, shapes that disagree
/// with `c`, no inputs or a negative ridge.
[[nodiscard]] inline ValueRecalibrationReport recalibrate_values(
    const ModelConfig& c, const AttentionWeights& w, std::span<const RowMatrix<float>> inputs,
    CompressedLayer& layer, const ValueRecalibrationOptions& options = {}) {
  constexpr const char* kWhere = "latentkv::recalibrate_values";
  if (!(options.ridge >= 0.0) || !std::isfinite(options.ridge)) {
    detail::raise<InvalidArgument>(kWhere, "ridge = ", options.ridge, ", expected >= 0");
  }
  if (!layer.compressed || layer.v.empty()) {
    detail::raise<InvalidArgument>(kWhere, "the layer is not compressed (no value factors)");
  }
  if (inputs.empty()) detail::raise<InvalidArgument>(kWhere, "no calibration inputs");
  const Index d = c.d_model;
  const Index h = c.head_dim;
  const Index gq = c.group_size();
  const auto groups = static_cast<Index>(layer.v.size());
  if (c.num_kv_heads % groups != 0) {
    detail::raise<InvalidArgument>(kWhere, groups, " value groups do not divide ", c.num_kv_heads,
                                   " KV heads");
  }
  const Index s = c.num_kv_heads / groups;  // KV heads per group
  const Index heads = s * gq;               // query heads per group
  if (w.wq.rows() != d || w.wq.cols() != c.q_dim() || w.wk.cols() != c.kv_dim() ||
      w.wv.cols() != c.kv_dim() || w.wo.rows() != c.q_dim() || w.wo.cols() != d) {
    detail::raise<InvalidArgument>(kWhere, "the dense weights' shapes disagree with the config");
  }
  for (const LatentValueGroup& v : layer.v) {
    if (v.down.rows() != d || v.out.rows() != v.rank() || v.out.cols() != heads * d) {
      detail::raise<InvalidArgument>(kWhere, "a value group is A_v (", v.down.rows(), ", ",
                                     v.down.cols(), "), W̃_o (", v.out.rows(), ", ", v.out.cols(),
                                     "), expected (", d, ", r) and (r, ", heads * d, ")");
    }
  }
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(h)));
  // Per query head (group-major): S, R, Σ‖Y‖².
  std::vector<ColMatrix<double>> gram(static_cast<std::size_t>(c.num_heads));
  std::vector<ColMatrix<double>> cross(static_cast<std::size_t>(c.num_heads));
  double target_energy = 0.0;
  for (Index i = 0; i < c.num_heads; ++i) {
    const Index r = layer.v[static_cast<std::size_t>(i / heads)].rank();
    gram[static_cast<std::size_t>(i)] = ColMatrix<double>::Zero(r, r);
    cross[static_cast<std::size_t>(i)] = ColMatrix<double>::Zero(r, d);
  }
  for (const RowMatrix<float>& x : inputs) {
    if (x.cols() != d) {
      detail::raise<InvalidArgument>(kWhere, "an input chunk has ", x.cols(),
                                     " columns, expected d_model = ", d);
    }
    const Index n = x.rows();
    const detail::DenseProjections p = detail::dense_projections(c, w, x);
    const RowMatrix<float> dense =
        causal_attention(p.q, p.k, p.v, c.num_heads, c.num_kv_heads, 0, scale);  // (n, n_q·h)
    for (Index j = 0; j < groups; ++j) {
      const LatentValueGroup& v = layer.v[static_cast<std::size_t>(j)];
      const Index r = v.rank();
      RowMatrix<float> latent(n, r);
      parallel_product(x, v.down, latent);
      RowMatrix<float> replicated(n, s * r);  // the group's s KV heads all read the one latent
      for (Index m = 0; m < s; ++m) replicated.middleCols(m * r, r) = latent;
      const RowMatrix<float> z =
          causal_attention(p.q.middleCols(j * heads * h, heads * h),
                           p.k.middleCols(j * s * h, s * h), replicated, heads, s, 0, scale);
      LATENTKV_OMP(parallel for schedule(dynamic) reduction(+ : target_energy))
      for (Index m = 0; m < heads; ++m) {
        const Index i = j * heads + m;
        const ColMatrix<double> zi = z.middleCols(m * r, r).cast<double>();
        const ColMatrix<double> yi = dense.middleCols(i * h, h).cast<double>() *
                                     w.wo.middleRows(i * h, h).cast<double>();  // (n, d)
        gram[static_cast<std::size_t>(i)].selfadjointView<Eigen::Lower>().rankUpdate(
            zi.transpose());
        cross[static_cast<std::size_t>(i)].noalias() += zi.transpose() * yi;
        target_energy += yi.squaredNorm();
      }
    }
  }
  ValueRecalibrationReport report;
  double before = 0.0;
  double after = 0.0;
  for (Index i = 0; i < c.num_heads; ++i) {
    LatentValueGroup& v = layer.v[static_cast<std::size_t>(i / heads)];
    const Index m = i % heads;
    const Index r = v.rank();
    const ColMatrix<double> S = gram[static_cast<std::size_t>(i)].selfadjointView<Eigen::Lower>();
    const ColMatrix<double>& R = cross[static_cast<std::size_t>(i)];
    const ColMatrix<double> w0 = v.out.middleCols(m * d, d).cast<double>();
    // ‖z·W − Y‖² = tr(Wᵀ·S·W) − 2·tr(Wᵀ·R) + ‖Y‖²  (the ‖Y‖² terms are added once below)
    const auto residual = [&](const ColMatrix<double>& W) {
      return (W.transpose() * S * W).trace() - 2.0 * (W.transpose() * R).trace();
    };
    const double lambda = options.ridge * S.trace() / static_cast<double>(r);
    ColMatrix<double> system = S;
    system.diagonal().array() += lambda;
    const Eigen::LDLT<ColMatrix<double>> ldlt(system);
    ColMatrix<double> fitted = ldlt.solve(R + lambda * w0);
    if (ldlt.info() != Eigen::Success || !fitted.allFinite()) {
      fitted = w0;  // a singular system (no signal reached this head): keep the fold
    }
    before += residual(w0);
    after += residual(fitted);
    v.out.middleCols(m * d, d) = fitted.cast<float>();
  }
  if (target_energy > 0.0) {
    report.relative_error_before = std::sqrt(std::max(0.0, before + target_energy) / target_energy);
    report.relative_error_after = std::sqrt(std::max(0.0, after + target_energy) / target_energy);
  }
  return report;
}

/// A CompressionSink that recalibrates every compressed layer's values (recalibrate_values on
/// that layer's calibration inputs and the model's dense weights) before handing it to `inner`.
/// The model, the inputs and the inner sink must outlive it.
template <CompressionSink Inner>
class ValueRecalibrationSink {
 public:
  ValueRecalibrationSink(Inner& inner, const LlamaWeights& weights, const AttentionInputs& inputs,
                         ValueRecalibrationOptions options = {})
      : inner_(&inner), weights_(&weights), inputs_(&inputs), options_(options) {
    if (inputs.num_layers() != weights.config.num_layers) {
      detail::raise<InvalidArgument>("latentkv::ValueRecalibrationSink", "inputs for ",
                                     inputs.num_layers(), " layers, the model has ",
                                     weights.config.num_layers);
    }
  }

  void begin(const ModelConfig& c, const RankPlan& p, const std::vector<Index>& dense) {
    reports_.clear();
    inner_->begin(c, p, dense);
  }
  void layer(Index l, CompressedLayer&& layer) {
    if (layer.compressed) {
      const std::vector<RowMatrix<float>>& chunks = inputs_->chunks[static_cast<std::size_t>(l)];
      reports_.push_back(recalibrate_values(
          weights_->config, weights_->layers[static_cast<std::size_t>(l)].attention,
          std::span<const RowMatrix<float>>(chunks), layer, options_));
    }
    inner_->layer(l, std::move(layer));
  }
  void end() { inner_->end(); }

  /// One report per compressed layer, in layer order.
  [[nodiscard]] const std::vector<ValueRecalibrationReport>& reports() const noexcept {
    return reports_;
  }

 private:
  Inner* inner_;
  const LlamaWeights* weights_;
  const AttentionInputs* inputs_;
  ValueRecalibrationOptions options_;
  std::vector<ValueRecalibrationReport> reports_;
};

}  // namespace latentkv
