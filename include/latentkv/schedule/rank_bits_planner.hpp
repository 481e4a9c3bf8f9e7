// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// RankBitsPlanner: a rank AND a bit width for every latent, under a budget in bytes (issue 9).
// It extends the rank schedules (rank_schedule.hpp) from "numbers per token" to "bytes per token":
// the same RankProblem (spectra of every group matrix), the same per-layer, per-side weights as
// the sensitivity schedule, and per entry a choice of (rank, bits) instead of a rank alone.
//   entries    e = (layer l, side K|V, group g), spectrum σ_e (max_rank values), cap_e (ceiling)
//   options    (r, b): r ∈ {multiple, 2·multiple, …, cap_e} ∪ {cap_e}, b ∈ Options.bits
//              (16 = fp16 latents, 8/4/3/2 = the side's codec at that width)
//   bytes      bytes_e(r, b) = latent_bytes_per_token(r, codec_side with bits b, context)
//              (quant/latent_codec.hpp: codes, fp16 scales and zeros, sinks, window — every byte)
//   loss       loss_e(r, b) = ŵ_e · [(1 − E_e(r)) + γ_side · κ_side(b, r) · E_e(r)]
//              E_e(r) = Σ_{i<r} σ_i² / Σ_i σ_i²: the energy the rank keeps (Eckart–Young); for
//              whitened factors σ² is output energy on calibration activations, so 1 − E_e is the
//              relative squared error of the layer's K (or V) that truncation leaves
//              κ_side(b, r) = codec_gaussian_error(codec, r): the codec's relative squared error on
//              rotated (≈ Gaussian) latents — the noise a quantized latent adds on what it keeps
//              ŵ_e = max(w_e, weight_floor · max w)^α: the measured sensitivity of layer l's side
//              (SensitivityRankSchedule's weights; all 1 when none were measured)
//   budget     Σ_e bytes_e ≤ budget_bytes (bytes per token available to the planned layers)
// Solved as a multiple-choice knapsack by the convex-hull greedy: each entry's options reduced to
// the lower convex hull of (bytes, loss); every entry starts at its cheapest option; the hull steps
// of all entries, sorted by loss decrease per byte (descending; ties in (entry, bytes) order), are
// taken while they fit; an entry whose next step does not fit stops there (its later, flatter
// steps need that one first). The loss estimate is a model, not a measurement: it is verified
// against the measured KL divergence of the plans it makes (docs/quality/bytes.md).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/quant/latent_codec.hpp"
#include "latentkv/schedule/rank_plan.hpp"
#include "latentkv/schedule/rank_schedule.hpp"

namespace latentkv {

/// What the planner returns: ranks (a RankPlan, as the rank schedules make) and bit widths.
struct RankBitsPlan {
  RankPlan ranks;                ///< (L) ranks; ranks.schedule = "rank-bits"
  std::vector<LayerBits> bits;   ///< (L) bits per layer, side and group
  double bytes_per_token = 0.0;  ///< Σ_e bytes_e of the chosen options
  double budget_bytes = 0.0;     ///< what it was asked to fit
  double loss = 0.0;             ///< Σ_e loss_e (the planner's estimate)

  /// {"bytes_per_token", "budget_bytes", "loss", "layers": [{"layer", "rank_k", "rank_v",
  ///  "bits_k", "bits_v"}]} (layer indices are the planned layers', 0..L−1).
  [[nodiscard]] nlohmann::json to_json() const {
    nlohmann::json j;
    j["bytes_per_token"] = bytes_per_token;
    j["budget_bytes"] = budget_bytes;
    j["loss"] = loss;
    nlohmann::json list = nlohmann::json::array();
    for (std::size_t l = 0; l < bits.size(); ++l) {
      list.push_back({{"layer", l},
                      {"rank_k", ranks.layers[l].k},
                      {"rank_v", ranks.layers[l].v},
                      {"bits_k", bits[l].k},
                      {"bits_v", bits[l].v}});
    }
    j["layers"] = std::move(list);
    return j;
  }
};

class RankBitsPlanner {
 public:
  struct Options {
    std::vector<int> bits = {16, 8, 4, 3, 2};  ///< widths to choose from (each 2..6, 8 or 16)
    LatentCodec key;                           ///< keys' codec (axis, group, grid, sinks)
    LatentCodec value;                         ///< values' codec
    Index context = 4096;                      ///< context length bytes are counted at (≥ 1)
    Index multiple = 8;                        ///< ranks are multiples of this (or the cap), ≥ 1
    double alpha = 1.0;                        ///< ŵ exponent (0: weights ignored), ≥ 0
    double weight_floor = 0.05;                ///< as SensitivityRankSchedule, in [0, 1]
    /// γ_K, γ_V: what a unit of quantization noise costs against a unit of truncated energy
    /// (≥ 0). Noise is independent per token and partly averages out in attention; truncation
    /// removes the same directions from every token; and the truncated energy is measured on
    /// the calibration activations the whitened factors were fitted to, so it understates what
    /// truncation costs on other text. 0.03: chosen on SmolLM2 on a dev slice of WikiText-2's
    /// test split (the 8 chunks before the compressor's calibration tail; never scored): at 0.25
    /// of fp16 bytes, bits {4, 3}, groups of 128, γ = 0.3 / 0.1 / 0.03 / 0.01 gave mean KL
    /// 0.0304 / 0.0267 / 0.0213 / 0.0218 (docs/quality/bytes.md). (0.3, the first choice, was
    /// made on the calibration tail itself, where rank cuts look nearly free.)
    double key_noise_weight = 0.03;
    double value_noise_weight = 0.03;
  };

  /// No measured weights: every entry weighs 1.
  explicit RankBitsPlanner(Options options) : options_(std::move(options)) { check_options(); }

  /// k_weights, v_weights: (L) measured sensitivities ≥ 0 of each planned layer's K and V side
  /// (SensitivityRankSchedule's), not all zero.
  RankBitsPlanner(std::vector<double> k_weights, std::vector<double> v_weights, Options options)
      : k_weights_(std::move(k_weights)),
        v_weights_(std::move(v_weights)),
        options_(std::move(options)) {
    constexpr const char* kWhere = "latentkv::RankBitsPlanner";
    check_options();
    if (k_weights_.size() != v_weights_.size() || k_weights_.empty()) {
      detail::raise<InvalidArgument>(kWhere, "k_weights has ", k_weights_.size(),
                                     " entries and v_weights ", v_weights_.size(),
                                     ", expected the same non-zero number (one per layer)");
    }
    double top = 0.0;
    for (const auto* list : {&k_weights_, &v_weights_}) {
      for (std::size_t l = 0; l < list->size(); ++l) {
        const double w = (*list)[l];
        if (!std::isfinite(w) || w < 0.0) {
          detail::raise<InvalidArgument>(kWhere, list == &k_weights_ ? "k" : "v", "_weights[", l,
                                         "] = ", w, ", expected finite and >= 0");
        }
        top = std::max(top, w);
      }
    }
    if (top <= 0.0) detail::raise<InvalidArgument>(kWhere, "every weight is 0");
  }

  [[nodiscard]] const Options& options() const noexcept { return options_; }

  /// The smallest bytes per token any plan of `problem` takes (every entry at its cheapest
  /// option, under `ceiling` when given).
  [[nodiscard]] double min_bytes(const RankProblem& problem,
                                 const std::optional<RankPlan>& ceiling = std::nullopt) const {
    double total = 0.0;
    for (const Entry& e : entries(problem, ceiling)) total += e.hull.front().bytes;
    return total;
  }

  /// The plan for `budget_bytes` bytes per token over problem's layers, ranks ≤ `ceiling` (a plan
  /// of the same layout) when given. Throws InvalidArgument naming the budget and the smallest
  /// plan's bytes when no plan fits, or naming the layer when the weights do not match.
  [[nodiscard]] RankBitsPlan plan(const RankProblem& problem, double budget_bytes,
                                  const std::optional<RankPlan>& ceiling = std::nullopt) const {
    constexpr const char* kWhere = "latentkv::RankBitsPlanner::plan";
    std::vector<Entry> list = entries(problem, ceiling);
    double used = 0.0;
    for (const Entry& e : list) used += e.hull.front().bytes;
    if (!(budget_bytes >= used - 1e-9) || !std::isfinite(budget_bytes)) {
      detail::raise<InvalidArgument>(
          kWhere, "a budget of ", budget_bytes, " bytes per token is below the smallest plan (",
          used, " bytes: every latent at rank ", options_.multiple, " and ",
          *std::min_element(options_.bits.begin(), options_.bits.end()), " bits)");
    }
    struct Step {
      double slope;  // loss decrease per byte
      std::size_t entry;
      std::size_t to;  // hull index after the step
    };
    std::vector<Step> steps;
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::vector<Option>& hull = list[i].hull;
      for (std::size_t k = 1; k < hull.size(); ++k) {
        steps.push_back(
            {(hull[k - 1].loss - hull[k].loss) / (hull[k].bytes - hull[k - 1].bytes), i, k});
      }
    }
    std::stable_sort(steps.begin(), steps.end(), [](const Step& a, const Step& b) {
      return std::tie(b.slope, a.entry, a.to) < std::tie(a.slope, b.entry, b.to);
    });
    std::vector<std::size_t> at(list.size(), 0);
    std::vector<bool> stopped(list.size(), false);
    for (const Step& s : steps) {
      if (stopped[s.entry] || at[s.entry] + 1 != s.to) continue;
      const std::vector<Option>& hull = list[s.entry].hull;
      const double extra = hull[s.to].bytes - hull[s.to - 1].bytes;
      if (used + extra > budget_bytes + 1e-9) {
        stopped[s.entry] = true;
        continue;
      }
      used += extra;
      at[s.entry] = s.to;
    }

    RankBitsPlan out;
    out.budget_bytes = budget_bytes;
    out.ranks.schedule = "rank-bits";
    out.ranks.num_kv_heads = problem.num_kv_heads;
    out.ranks.head_dim = problem.head_dim;
    out.ranks.heads_per_group = problem.heads_per_group;
    const auto layers = static_cast<std::size_t>(problem.num_layers());
    const auto groups = static_cast<std::size_t>(problem.num_groups());
    out.ranks.layers.assign(
        layers, LayerRanks{std::vector<Index>(groups, 0), std::vector<Index>(groups, 0)});
    out.bits.assign(layers, LayerBits{std::vector<int>(groups, 0), std::vector<int>(groups, 0)});
    for (std::size_t i = 0; i < list.size(); ++i) {
      const Entry& e = list[i];
      const Option& o = e.hull[at[i]];
      (e.side == 0 ? out.ranks.layers[e.layer].k : out.ranks.layers[e.layer].v)[e.group] = o.rank;
      (e.side == 0 ? out.bits[e.layer].k : out.bits[e.layer].v)[e.group] = o.bits;
      out.bytes_per_token += o.bytes;
      out.loss += o.loss;
    }
    out.ranks.budget_requested = out.ranks.budget();
    return out;
  }

  /// The codec a side uses at `bits` (16: fp16; Lloyd-Max at 8 falls back to the uniform grid).
  [[nodiscard]] static LatentCodec codec_at(LatentCodec codec, int bits) {
    codec.bits = bits;
    if (bits >= 8) codec.grid = QuantGrid::kUniform;
    return codec;
  }

 private:
  struct Option {
    double bytes;
    double loss;
    Index rank;
    int bits;
  };
  struct Entry {
    std::size_t layer;
    int side;  // 0: K, 1: V
    std::size_t group;
    std::vector<Option> hull;  // lower convex hull of (bytes, loss), bytes ascending
  };

  void check_options() const {
    constexpr const char* kWhere = "latentkv::RankBitsPlanner";
    if (options_.bits.empty()) {
      detail::raise<InvalidArgument>(kWhere,
                                     "bits is empty, expected widths out of 2, 3, 4, 5, 6, 8, 16");
    }
    for (const int b : options_.bits) {
      codec_at(options_.key, b).validate("latentkv::RankBitsPlanner: key codec");
      codec_at(options_.value, b).validate("latentkv::RankBitsPlanner: value codec");
    }
    if (options_.context < 1) {
      detail::raise<InvalidArgument>(kWhere, "context = ", options_.context, ", expected >= 1");
    }
    if (options_.multiple < 1) {
      detail::raise<InvalidArgument>(kWhere, "multiple = ", options_.multiple, ", expected >= 1");
    }
    if (!(options_.alpha >= 0.0) || !std::isfinite(options_.alpha)) {
      detail::raise<InvalidArgument>(kWhere, "alpha = ", options_.alpha,
                                     ", expected finite and >= 0");
    }
    for (const double gamma : {options_.key_noise_weight, options_.value_noise_weight}) {
      if (!(gamma >= 0.0) || !std::isfinite(gamma)) {
        detail::raise<InvalidArgument>(kWhere, "noise weight = ", gamma,
                                       ", expected finite and >= 0");
      }
    }
    if (!(options_.weight_floor >= 0.0 && options_.weight_floor <= 1.0)) {
      detail::raise<InvalidArgument>(kWhere, "weight_floor = ", options_.weight_floor,
                                     ", expected in [0, 1]");
    }
  }

  /// Every entry with its hull (validates the problem, the ceiling and the weights' length).
  [[nodiscard]] std::vector<Entry> entries(const RankProblem& problem,
                                           const std::optional<RankPlan>& ceiling) const {
    constexpr const char* kWhere = "latentkv::RankBitsPlanner::plan";
    problem.validate();
    const Index L = problem.num_layers();
    const Index G = problem.num_groups();
    const Index m = problem.max_rank();
    if (ceiling) {
      ceiling->validate(m);
      if (ceiling->num_layers() != L || ceiling->num_groups() != G) {
        detail::raise<InvalidArgument>(kWhere, "the ceiling has ", ceiling->num_layers(),
                                       " layers of ", ceiling->num_groups(),
                                       " groups, the problem ", L, " of ", G);
      }
    }
    if (!k_weights_.empty() && static_cast<Index>(k_weights_.size()) != L) {
      detail::raise<InvalidArgument>(kWhere, "the planner has weights for ", k_weights_.size(),
                                     " layers, the problem has ", L);
    }
    double top = 0.0;
    for (const auto* list : {&k_weights_, &v_weights_}) {
      for (const double w : *list) top = std::max(top, w);
    }
    const auto weight = [&](Index l, int side) {
      if (k_weights_.empty()) return 1.0;
      const double w = (side == 0 ? k_weights_ : v_weights_)[static_cast<std::size_t>(l)];
      return std::pow(std::max(w, options_.weight_floor * top), options_.alpha);
    };
    // κ(b, r) per side: the codec's error depends on the width only through the last group.
    std::vector<std::vector<double>> kappa_cache(2 * static_cast<std::size_t>(m + 1));
    const auto kappa = [&](int side, Index r, int bits) {
      if (bits == 16) return 0x1p-24;  // fp16's relative rounding error (squared, order of)
      std::vector<double>& row = kappa_cache[static_cast<std::size_t>(side * (m + 1) + r)];
      if (row.empty()) row.assign(17, -1.0);
      double& k = row[static_cast<std::size_t>(bits)];
      if (k < 0.0) {
        k = codec_gaussian_error(codec_at(side == 0 ? options_.key : options_.value, bits), r,
                                 1024);
      }
      return k;
    };
    std::vector<Entry> out;
    for (Index l = 0; l < L; ++l) {
      const LayerSpectra& spectra = problem.layers[static_cast<std::size_t>(l)];
      for (int side = 0; side < 2; ++side) {
        const double w = weight(l, side);
        for (Index g = 0; g < G; ++g) {
          const Vector<double>& s =
              (side == 0 ? spectra.k : spectra.v)[static_cast<std::size_t>(g)];
          Index cap = m;
          if (ceiling) {
            const LayerRanks& c = ceiling->layers[static_cast<std::size_t>(l)];
            cap = std::min(cap, (side == 0 ? c.k : c.v)[static_cast<std::size_t>(g)]);
          }
          std::vector<double> prefix(static_cast<std::size_t>(m) + 1, 0.0);
          for (Index i = 0; i < m; ++i) {
            prefix[static_cast<std::size_t>(i) + 1] =
                prefix[static_cast<std::size_t>(i)] + s(i) * s(i);
          }
          const double total = prefix.back() > 0.0 ? prefix.back() : 1.0;
          std::vector<Index> ranks;
          for (Index r = std::min(options_.multiple, cap); r < cap; r += options_.multiple) {
            if (ranks.empty() || r > ranks.back()) ranks.push_back(r);
          }
          ranks.push_back(cap);
          std::vector<Option> options;
          for (const Index r : ranks) {
            const double kept = prefix[static_cast<std::size_t>(r)] / total;
            const double gamma =
                side == 0 ? options_.key_noise_weight : options_.value_noise_weight;
            for (const int b : options_.bits) {
              const LatentCodec c = codec_at(side == 0 ? options_.key : options_.value, b);
              options.push_back({latent_bytes_per_token(r, c, options_.context),
                                 w * ((1.0 - kept) + gamma * kappa(side, r, b) * kept), r, b});
            }
          }
          out.push_back({static_cast<std::size_t>(l), side, static_cast<std::size_t>(g),
                         lower_hull(std::move(options))});
        }
      }
    }
    return out;
  }

  /// The lower convex hull of (bytes, loss), bytes ascending, loss strictly descending.
  [[nodiscard]] static std::vector<Option> lower_hull(std::vector<Option> options) {
    std::stable_sort(options.begin(), options.end(), [](const Option& a, const Option& b) {
      return std::tie(a.bytes, a.loss) < std::tie(b.bytes, b.loss);
    });
    std::vector<Option> hull;
    for (const Option& o : options) {
      if (!hull.empty() && o.loss >= hull.back().loss) continue;  // dominated
      if (!hull.empty() && o.bytes == hull.back().bytes) hull.pop_back();
      while (hull.size() >= 2) {
        const Option& a = hull[hull.size() - 2];
        const Option& b = hull.back();
        // b is above the segment a → o (or on it): drop it
        if ((b.loss - a.loss) * (o.bytes - a.bytes) >= (o.loss - a.loss) * (b.bytes - a.bytes)) {
          hull.pop_back();
        } else {
          break;
        }
      }
      hull.push_back(o);
    }
    return hull;
  }

  std::vector<double> k_weights_;  // (L) or empty
  std::vector<double> v_weights_;  // (L) or empty
  Options options_;
};

}  // namespace latentkv
