// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Compressor<Factorizer, Grouping, Schedule>: model weights + a global budget → the factors of
// every layer's K and V (DESIGN §2–5), streamed layer by layer.
//   pass 1 (spectra):  for each selected layer l, each group g of s KV heads:
//                      σ(M) of the matrix the factorizer decomposes, M = W_k[:, g] or W_v[:, g]
//                      (Lᵀ·W for whitening), min(d, s·h) values  →  RankProblem
//   plan:              schedule.plan(problem, budget) → ranks r_k, r_v per (layer, group);
//                      unselected layers stay dense (their entries are max_rank)
//   pass 2 (factors):  per layer: W_k[:, g] ≈ A_k·B_k at r_k, W_v[:, g] ≈ A_v·B_v at r_v,
//                      W̃_o,g[:, block m] = B_v[:, head m/g of the group]·W_o[rows of head i]
//                      (i = g·s·gq + m, compressed_model.hpp) → sink.layer(l, CompressedLayer)
// Only one layer's weights and factors are alive at a time (plus the spectra, L·2·G·min(d, s·h)
// doubles), so a checkpoint larger than memory compresses with a few layers' worth of memory when
// the sink writes each layer out (CompressedCheckpointWriter). The factorizer policy may differ
// per layer (LayerFactorizerPolicy: whitening with each layer's calibration Gram matrix).
//
// Policies compose by value (STYLE §3): any Factorizer (or LayerFactorizerPolicy), Grouping and
// RankSchedule; runtime choices map to instantiations in compress/dispatch.hpp.
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "latentkv/compress/attention_source.hpp"
#include "latentkv/compress/compressed_model.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/factorize/factorize_batch.hpp"
#include "latentkv/factorize/factorizer.hpp"
#include "latentkv/factorize/gram_eigen_factorizer.hpp"
#include "latentkv/factorize/grouping.hpp"
#include "latentkv/factorize/whitened_factorizer.hpp"
#include "latentkv/linalg/decompositions.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/schedule/energy_rank_schedule.hpp"
#include "latentkv/schedule/rank_plan.hpp"
#include "latentkv/schedule/rank_schedule.hpp"

namespace latentkv {

/// A factorizer chosen per layer: p.for_layer(l) returns the Factorizer for layer l's K and V.
template <class P>
concept LayerFactorizerPolicy = requires(const P& p, Index layer) {
  typename P::Scalar;
  { p.for_layer(layer) } -> Factorizer;
};

/// Activation-aware factorization with one calibration Gram matrix per layer: layer l's K and V
/// share G_l = X_lᵀ·X_l (both project the same normed input X_l: (tokens, d)).
template <Factorizer Inner = GramEigenFactorizer<float>>
class CalibratedWhitening {
 public:
  using Scalar = typename Inner::Scalar;
  using Options = typename WhitenedFactorizer<Inner>::Options;

  /// grams: (L) matrices (d, d), symmetric positive semi-definite.
  explicit CalibratedWhitening(std::vector<RowMatrix<double>> grams, Inner inner = Inner{},
                               Options options = {})
      : grams_(std::move(grams)), inner_(std::move(inner)), options_(options) {
    if (grams_.empty()) {
      detail::raise<InvalidArgument>("latentkv::CalibratedWhitening", "no Gram matrices");
    }
  }

  [[nodiscard]] WhitenedFactorizer<Inner> for_layer(Index layer) const {
    if (layer < 0 || layer >= num_layers()) {
      detail::raise<InvalidArgument>("latentkv::CalibratedWhitening::for_layer", "layer = ", layer,
                                     ", expected 0..", num_layers() - 1, " (one Gram per layer)");
    }
    return WhitenedFactorizer<Inner>(grams_[static_cast<std::size_t>(layer)], inner_, options_);
  }
  [[nodiscard]] Index num_layers() const noexcept { return static_cast<Index>(grams_.size()); }

 private:
  std::vector<RowMatrix<double>> grams_;
  Inner inner_;
  Options options_;
};

struct CompressorOptions {
  Index first_layer = 0;  ///< layers first_layer..last_layer are compressed, the others dense
  Index last_layer = -1;  ///< inclusive; -1 = the last layer
  unsigned threads = 0;   ///< matrices of a layer factorized concurrently (0 = every core)
  std::string factorizer_name = "svd";  ///< recorded in CompressedModel::factorizer
};

/// Quality of one factorized matrix.
struct MatrixReport {
  Index layer = 0;
  Projection side = Projection::kKey;  ///< kKey or kValue
  Index group = 0;
  Index rank = 0;
  Index max_rank = 0;
  double retained_energy = 1.0;  ///< Σ_{i≤r} σ_i² / Σ σ_i² of the decomposed matrix
  double relative_error = 0.0;   ///< ‖W − A·B‖_F / ‖W‖_F
};

struct CompressionReport {
  RankPlan plan;                             ///< every layer (dense layers at max_rank)
  std::vector<Index> dense_layers;           ///< layers left uncompressed
  std::vector<MatrixReport> matrices;        ///< (compressed layers · 2 · G), in layer order
  std::int64_t kv_numbers_dense = 0;         ///< per token: L·2·n_kv·h
  std::int64_t kv_numbers_latent = 0;        ///< per token: Σ widths (dense layers at 2·n_kv·h)
  std::int64_t weight_parameters_dense = 0;  ///< W_k + W_v + W_o of every layer
  std::int64_t weight_parameters_compressed = 0;  ///< A_k + B_k + A_v + W̃_o (+ dense layers)
  double spectra_seconds = 0.0;
  double factorize_seconds = 0.0;

  /// Achieved budget over the whole model (dense layers count at full width).
  [[nodiscard]] double budget_achieved() const noexcept {
    return kv_numbers_dense > 0
               ? static_cast<double>(kv_numbers_latent) / static_cast<double>(kv_numbers_dense)
               : 0.0;
  }
};

/// Receives the plan, then every layer in order: sink.begin(model_config, plan, dense_layers),
/// sink.layer(l, CompressedLayer&&) for l = 0..L−1, sink.end().
template <class S>
concept CompressionSink = requires(S& s, const ModelConfig& c, const RankPlan& p,
                                   const std::vector<Index>& dense, Index l,
                                   CompressedLayer&& layer) {
  s.begin(c, p, dense);
  s.layer(l, std::move(layer));
  s.end();
};

/// Collects every layer into a CompressedModel.
struct InMemorySink {
  CompressedModel model;
  void begin(const ModelConfig& c, const RankPlan& p, const std::vector<Index>&) {
    model.config = c;
    model.plan = p;
    model.layers.clear();
    model.layers.reserve(static_cast<std::size_t>(c.num_layers));
  }
  void layer(Index, CompressedLayer&& layer) { model.layers.push_back(std::move(layer)); }
  void end() {}
};

/// progress(stage, done, total): stage "spectra" or "factorize", done of total layers.
using CompressionProgress = std::function<void(std::string_view stage, Index done, Index total)>;

namespace detail {

template <class P>
[[nodiscard]] decltype(auto) factorizer_for_layer(const P& policy, Index layer) {
  if constexpr (LayerFactorizerPolicy<P>) {
    return policy.for_layer(layer);
  } else {
    return (policy);
  }
}

/// σ of what f decomposes for w: f.singular_values(w) when the policy defines it (whitening:
/// σ(Lᵀ·W)), else the singular values of w itself (double BDCSVD, values only).
template <class F>
[[nodiscard]] Vector<double> singular_values_for(const F& f,
                                                 const MatrixCRef<typename F::Scalar>& w) {
  if constexpr (requires {
                  { f.singular_values(w) } -> std::convertible_to<Vector<double>>;
                }) {
    return f.singular_values(w);
  } else {
    const Eigen::BDCSVD<ColMatrix<double>> svd(w.template cast<double>());
    return svd.singularValues();
  }
}

inline std::int64_t attention_parameters_dense(const ModelConfig& c) {
  return 2 * static_cast<std::int64_t>(c.d_model) * c.kv_dim() +
         static_cast<std::int64_t>(c.q_dim()) * c.d_model;
}

}  // namespace detail

/// Defaults: exact SVD (Gram-eigen), one latent for all KV heads, the energy schedule (the best
/// data-free schedule measured on SmolLM2, docs/quality/quality.md).
template <class F = GramEigenFactorizer<float>, Grouping G = JointGrouping,
          RankSchedule S = EnergyRankSchedule>
class Compressor {
  static_assert(Factorizer<F> || LayerFactorizerPolicy<F>,
                "latentkv::Compressor: F must model Factorizer (`LowRankFactors<Scalar> "
                "factorize(const MatrixCRef<Scalar>&, Index) const`) or LayerFactorizerPolicy "
                "(`for_layer(Index) const` returning a Factorizer)");
  static_assert(std::same_as<typename F::Scalar, float>,
                "latentkv::Compressor: the factorizer's Scalar must be float (the model is fp32)");

 public:
  using Scalar = float;

  explicit Compressor(F factorizer = F{}, G grouping = G{}, S schedule = S{},
                      CompressorOptions options = {})
      : factorizer_(std::move(factorizer)),
        grouping_(std::move(grouping)),
        schedule_(std::move(schedule)),
        options_(std::move(options)) {}

  [[nodiscard]] const F& factorizer() const noexcept { return factorizer_; }
  [[nodiscard]] const G& grouping() const noexcept { return grouping_; }
  [[nodiscard]] const S& schedule() const noexcept { return schedule_; }
  [[nodiscard]] const CompressorOptions& options() const noexcept { return options_; }

  /// The layers compressed for a model of `num_layers` (options.first_layer..last_layer).
  /// Throws InvalidArgument for a range outside 0..L−1.
  [[nodiscard]] std::vector<Index> selected_layers(Index num_layers) const {
    const Index first = options_.first_layer;
    const Index last = options_.last_layer < 0 ? num_layers - 1 : options_.last_layer;
    if (first < 0 || first > last || last >= num_layers) {
      detail::raise<InvalidArgument>("latentkv::Compressor", "layers ", options_.first_layer, "-",
                                     options_.last_layer, ", expected a range inside 0-",
                                     num_layers - 1);
    }
    std::vector<Index> layers;
    for (Index l = first; l <= last; ++l) layers.push_back(l);
    return layers;
  }

  /// Pass 1: the spectra of every group matrix of the selected layers (problem.layers[i] is
  /// selected_layers()[i]). Throws InvalidArgument naming the layer and tensor for non-finite
  /// weights, FormatError from the source for shapes that disagree with the config.
  template <AttentionSource Src>
  [[nodiscard]] RankProblem spectra(const Src& source,
                                    const CompressionProgress& progress = {}) const {
    const ModelConfig& c = source.config();
    const std::vector<Index> layers = selected_layers(c.num_layers);
    RankProblem problem;
    problem.d_model = c.d_model;
    problem.num_kv_heads = c.num_kv_heads;
    problem.head_dim = c.head_dim;
    problem.heads_per_group = grouping_.heads_per_group(c.num_kv_heads);
    const Index s = problem.heads_per_group;
    const Index block = s * c.head_dim;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const Index l = layers[i];
      const AttentionWeights w = source.attention(l);
      check_finite(source, l, w);
      const auto& f = detail::factorizer_for_layer(factorizer_, l);
      LayerSpectra spectra;
      for (Index g = 0; g < problem.num_groups(); ++g) {
        spectra.k.push_back(detail::singular_values_for(f, w.wk.middleCols(g * block, block)));
        spectra.v.push_back(detail::singular_values_for(f, w.wv.middleCols(g * block, block)));
      }
      problem.layers.push_back(std::move(spectra));
      if (progress)
        progress("spectra", static_cast<Index>(i) + 1, static_cast<Index>(layers.size()));
    }
    problem.validate();
    return problem;
  }

  /// The whole model's plan from a problem of the selected layers: schedule.plan for those, every
  /// other layer dense (max_rank). plan.budget_requested is the budget over the selected layers.
  [[nodiscard]] RankPlan plan(const RankProblem& problem, const RankBudget& budget,
                              Index num_layers) const {
    const std::vector<Index> layers = selected_layers(num_layers);
    if (static_cast<Index>(layers.size()) != problem.num_layers()) {
      detail::raise<InvalidArgument>("latentkv::Compressor::plan", "the problem has ",
                                     problem.num_layers(), " layers, but ", layers.size(),
                                     " are selected");
    }
    return expand_plan(schedule_.plan(problem, budget), num_layers, problem.max_rank());
  }

  /// A plan of the selected layers (in selected_layers() order) → the whole model's plan, every
  /// unselected layer at max_rank (dense).
  [[nodiscard]] RankPlan expand_plan(const RankPlan& selected, Index num_layers,
                                     Index max_rank) const {
    const std::vector<Index> layers = selected_layers(num_layers);
    if (static_cast<Index>(layers.size()) != selected.num_layers()) {
      detail::raise<InvalidArgument>("latentkv::Compressor::expand_plan", "the plan has ",
                                     selected.num_layers(), " layers, but ", layers.size(),
                                     " are selected");
    }
    RankPlan full = selected;
    full.layers.clear();
    const auto groups = static_cast<std::size_t>(selected.num_groups());
    std::size_t next = 0;
    for (Index l = 0; l < num_layers; ++l) {
      if (next < layers.size() && layers[next] == l) {
        full.layers.push_back(selected.layers[next++]);
      } else {
        full.layers.push_back(
            LayerRanks{std::vector<Index>(groups, max_rank), std::vector<Index>(groups, max_rank)});
      }
    }
    return full;
  }

  /// Pass 2 for one layer: its factors at the plan's ranks (or a dense marker for an unselected
  /// layer), spectra attached from `problem`. Appends one MatrixReport per factorized matrix.
  template <AttentionSource Src>
  [[nodiscard]] CompressedLayer compress_layer(const Src& source, const RankProblem& problem,
                                               const RankPlan& plan, Index layer,
                                               std::vector<MatrixReport>* reports = nullptr) const {
    constexpr const char* kWhere = "latentkv::Compressor::compress_layer";
    const ModelConfig& c = source.config();
    const std::vector<Index> layers = selected_layers(c.num_layers);
    const auto it = std::find(layers.begin(), layers.end(), layer);
    CompressedLayer out;
    if (it == layers.end()) {
      out.compressed = false;
      return out;
    }
    const LayerSpectra& spectra = problem.layers[static_cast<std::size_t>(it - layers.begin())];
    const LayerRanks& ranks = plan.layers[static_cast<std::size_t>(layer)];
    const AttentionWeights w = source.attention(layer);
    check_finite(source, layer, w);
    const Index s = problem.heads_per_group;
    const Index groups = problem.num_groups();
    const Index h = c.head_dim;
    const Index block = s * h;
    const Index gq = c.group_size();  // query heads per KV head

    std::vector<MatrixCRef<float>> matrices;
    std::vector<Index> matrix_ranks;
    for (Index g = 0; g < groups; ++g) {
      matrices.emplace_back(w.wk.middleCols(g * block, block));
      matrix_ranks.push_back(ranks.k[static_cast<std::size_t>(g)]);
    }
    for (Index g = 0; g < groups; ++g) {
      matrices.emplace_back(w.wv.middleCols(g * block, block));
      matrix_ranks.push_back(ranks.v[static_cast<std::size_t>(g)]);
    }
    std::vector<LowRankFactors<float>> factors;
    try {
      factors = factorize_batch(detail::factorizer_for_layer(factorizer_, layer),
                                std::span<const MatrixCRef<float>>(matrices),
                                std::span<const Index>(matrix_ranks), options_.threads);
    } catch (const Error& e) {
      detail::raise<NumericalError>(kWhere, "layer ", layer, ": ", e.what());
    }
    for (Index g = 0; g < groups; ++g) {
      LowRankFactors<float>& k = factors[static_cast<std::size_t>(g)];
      out.k.push_back({std::move(k.down), std::move(k.up), spectra.k[static_cast<std::size_t>(g)]});
    }
    for (Index g = 0; g < groups; ++g) {
      LowRankFactors<float>& v = factors[static_cast<std::size_t>(groups + g)];
      const Index r = v.rank();
      RowMatrix<float> folded(r, s * gq * c.d_model);  // W̃_o: (r_v, s·g·d)
      for (Index m = 0; m < s * gq; ++m) {
        const Index head = g * s * gq + m;  // query head
        folded.middleCols(m * c.d_model, c.d_model).noalias() =
            v.up.middleCols((m / gq) * h, h) * w.wo.middleRows(head * h, h);
      }
      out.v.push_back(
          {std::move(v.down), std::move(folded), spectra.v[static_cast<std::size_t>(g)]});
    }
    if (reports != nullptr) {
      for (Index i = 0; i < 2 * groups; ++i) {
        const LowRankFactors<float>& f = factors[static_cast<std::size_t>(i)];
        const bool key = i < groups;
        const Index g = key ? i : i - groups;
        const Vector<double>& sigma = (key ? spectra.k : spectra.v)[static_cast<std::size_t>(g)];
        const double total = sigma.squaredNorm();
        const Index r = matrix_ranks[static_cast<std::size_t>(i)];
        reports->push_back(
            {layer, key ? Projection::kKey : Projection::kValue, g, r, problem.max_rank(),
             total > 0.0 ? sigma.head(r).squaredNorm() / total : 1.0, f.relative_error});
      }
    }
    return out;
  }

  /// The whole job: spectra, plan, then every layer to `sink` in order (see CompressionSink).
  template <AttentionSource Src, CompressionSink Sink>
  CompressionReport compress(const Src& source, const RankBudget& budget, Sink& sink,
                             const CompressionProgress& progress = {}) const {
    const ModelConfig& c = source.config();
    const auto start = std::chrono::steady_clock::now();
    const RankProblem problem = spectra(source, progress);
    CompressionReport report;
    report.plan = plan(problem, budget, c.num_layers);
    const auto planned = std::chrono::steady_clock::now();
    report.spectra_seconds = std::chrono::duration<double>(planned - start).count();
    const std::vector<Index> layers = selected_layers(c.num_layers);
    for (Index l = 0; l < c.num_layers; ++l) {
      if (std::find(layers.begin(), layers.end(), l) == layers.end()) {
        report.dense_layers.push_back(l);
      }
    }
    sink.begin(c, report.plan, report.dense_layers);
    for (Index l = 0; l < c.num_layers; ++l) {
      CompressedLayer layer = compress_layer(source, problem, report.plan, l, &report.matrices);
      if (layer.compressed) {
        for (const LatentKeyGroup& k : layer.k) {
          report.weight_parameters_compressed += k.down.size() + k.up.size();
        }
        for (const LatentValueGroup& v : layer.v) {
          report.weight_parameters_compressed += v.down.size() + v.out.size();
        }
      } else {
        report.weight_parameters_compressed += detail::attention_parameters_dense(c);
      }
      sink.layer(l, std::move(layer));
      if (progress) progress("factorize", l + 1, c.num_layers);
    }
    sink.end();
    report.weight_parameters_dense = c.num_layers * detail::attention_parameters_dense(c);
    report.kv_numbers_dense = c.num_layers * 2 * c.kv_dim();
    report.kv_numbers_latent = report.plan.latent_width();
    report.factorize_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - planned).count();
    return report;
  }

  /// In memory: the CompressedModel (factorizer and grouping names filled in).
  template <AttentionSource Src>
  [[nodiscard]] CompressedModel compress(const Src& source, const RankBudget& budget,
                                         CompressionReport* report = nullptr,
                                         const CompressionProgress& progress = {}) const {
    InMemorySink sink;
    CompressionReport r = compress(source, budget, sink, progress);
    sink.model.factorizer = options_.factorizer_name;
    sink.model.grouping = grouping_.name();
    if (report != nullptr) *report = std::move(r);
    return std::move(sink.model);
  }

 private:
  template <AttentionSource Src>
  static void check_finite(const Src& source, Index layer, const AttentionWeights& w) {
    constexpr const char* kWhere = "latentkv::Compressor";
    const auto check = [&](const RowMatrix<float>& m, Projection p) {
      if (m.allFinite()) return;
      const std::string what = "layer " + std::to_string(layer) + " " + std::string(to_string(p)) +
                               " (" + source.tensor_name(layer, p) + ")";
      detail::require_finite(m, kWhere, what);
    };
    check(w.wk, Projection::kKey);
    check(w.wv, Projection::kValue);
    check(w.wo, Projection::kOutput);
  }

  F factorizer_;
  G grouping_;
  S schedule_;
  CompressorOptions options_;
};

}  // namespace latentkv
