// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Runtime names → policy types, in one place (STYLE §3): the command-line tools parse a name
// into a variant of policies and std::visit the Compressor over the three of them, so every
// combination is one template instantiation and no `if` ladder is spread across files.
//   factorizer  "svd"      GramEigenFactorizer<float> (exact truncated SVD via WᵀW in double)
//               "rsvd"     RandomizedSvdFactorizer<float> (seeded, q = 4 power iterations)
//               "whitened" CalibratedWhitening<GramEigenFactorizer<float>> (needs calibration)
//               "svd-gain" the same type with Gram diag(g²) per layer: data-free SVD with the
//                          attention RMSNorm gain folded in (compress/gain_folding.hpp; the caller
//                          builds it from the model's gains)
//   grouping    "joint" | "per-head" | "group:N" (N KV heads per group, N divides n_kv)
//   schedule    "uniform" | "progressive" | "energy" (data-free)
//               "sensitivity" | "search" (need measured weights or a divergence: built by the
//               caller, see compress/calibration.hpp)
// Names outside these sets throw InvalidArgument listing the valid ones.
#pragma once

#include <array>
#include <charconv>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "latentkv/compress/compressor.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/factorize/gram_eigen_factorizer.hpp"
#include "latentkv/factorize/grouping.hpp"
#include "latentkv/factorize/randomized_svd_factorizer.hpp"
#include "latentkv/schedule/energy_rank_schedule.hpp"
#include "latentkv/schedule/greedy_search_rank_schedule.hpp"
#include "latentkv/schedule/progressive_rank_schedule.hpp"
#include "latentkv/schedule/sensitivity_rank_schedule.hpp"
#include "latentkv/schedule/uniform_rank_schedule.hpp"

namespace latentkv {

using AnyFactorizer = std::variant<GramEigenFactorizer<float>, RandomizedSvdFactorizer<float>,
                                   CalibratedWhitening<GramEigenFactorizer<float>>>;
using AnyGrouping = std::variant<JointGrouping, PerHeadGrouping, GroupedHeadsGrouping>;
using AnyRankSchedule =
    std::variant<UniformRankSchedule, ProgressiveRankSchedule, EnergyRankSchedule,
                 SensitivityRankSchedule, GreedySearchRankSchedule>;

inline constexpr std::array<std::string_view, 4> kFactorizerNames = {"svd", "rsvd", "whitened",
                                                                     "svd-gain"};
inline constexpr std::array<std::string_view, 5> kScheduleNames = {
    "uniform", "progressive", "energy", "sensitivity", "search"};

/// True for the schedules plan() can run from spectra alone (no calibration data).
[[nodiscard]] inline bool is_data_free_schedule(std::string_view name) noexcept {
  return name == "uniform" || name == "progressive" || name == "energy";
}

namespace detail {

template <std::size_t N>
[[noreturn]] void unknown_name(const char* where, std::string_view what, std::string_view name,
                               const std::array<std::string_view, N>& valid) {
  std::string list;
  for (std::string_view v : valid) list += (list.empty() ? "" : ", ") + std::string(v);
  raise<InvalidArgument>(where, what, " ", quoted(name), " is unknown, expected one of ", list);
}

}  // namespace detail

/// "joint" | "per-head" | "group:N" (N >= 1; whether it divides n_kv is checked on use).
[[nodiscard]] inline AnyGrouping parse_grouping(std::string_view name) {
  if (name == "joint") return JointGrouping{};
  if (name == "per-head") return PerHeadGrouping{};
  if (name.starts_with("group:")) {
    const std::string_view digits = name.substr(6);
    Index n = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (ec == std::errc() && end == digits.data() + digits.size() && n >= 1) {
      return GroupedHeadsGrouping(n);
    }
  }
  detail::unknown_name("latentkv::parse_grouping", "grouping", name,
                       std::array<std::string_view, 3>{"joint", "per-head", "group:N (N >= 1)"});
}

/// The grouping's name ("joint", "per-head", "group:N").
[[nodiscard]] inline std::string grouping_name(const AnyGrouping& g) {
  return std::visit([](const auto& x) { return x.name(); }, g);
}

/// "uniform" | "progressive" | "energy" with default options; the calibrated schedules need
/// their data and are constructed directly.
[[nodiscard]] inline AnyRankSchedule make_data_free_schedule(std::string_view name) {
  if (name == "uniform") return UniformRankSchedule{};
  if (name == "progressive") return ProgressiveRankSchedule{};
  if (name == "energy") return EnergyRankSchedule{};
  detail::unknown_name("latentkv::make_data_free_schedule", "schedule", name,
                       std::array<std::string_view, 3>{"uniform", "progressive", "energy"});
}

/// Throws InvalidArgument unless `name` is one of kScheduleNames.
inline void check_schedule_name(std::string_view name) {
  for (std::string_view v : kScheduleNames) {
    if (v == name) return;
  }
  detail::unknown_name("latentkv::check_schedule_name", "schedule", name, kScheduleNames);
}

/// Throws InvalidArgument unless `name` is one of kFactorizerNames.
inline void check_factorizer_name(std::string_view name) {
  for (std::string_view v : kFactorizerNames) {
    if (v == name) return;
  }
  detail::unknown_name("latentkv::check_factorizer_name", "factorizer", name, kFactorizerNames);
}

/// The schedule a compressed checkpoint was planned with, rebuilt from its name and the state the
/// tool stored beside it (metadata "schedule_state": sensitivity weights "k_weights" /
/// "v_weights" and options "alpha" / "weight_floor" / "power"; search options "step" /
/// "decrements_per_round"). A search needs `divergence`
/// (over plans of the compressed layers). Throws InvalidArgument naming what is missing.
[[nodiscard]] inline AnyRankSchedule schedule_from_state(
    std::string_view name, const nlohmann::json& state,
    GreedySearchRankSchedule::Divergence divergence = {}) {
  constexpr const char* kWhere = "latentkv::schedule_from_state";
  if (is_data_free_schedule(name)) return make_data_free_schedule(name);
  const auto weights = [&](const char* key) {
    if (!state.is_object() || !state.contains(key) || !state[key].is_array()) {
      detail::raise<InvalidArgument>(kWhere, "schedule ", detail::quoted(name), ": state has no ",
                                     key);
    }
    return state[key].get<std::vector<double>>();
  };
  if (name == "sensitivity") {
    std::vector<double> k = weights("k_weights");
    std::vector<double> v = weights("v_weights");
    SensitivityRankSchedule::Options options;
    if (state.is_object()) {
      options.alpha = state.value("alpha", options.alpha);
      options.weight_floor = state.value("weight_floor", options.weight_floor);
      options.power = state.value("power", options.power);
    }
    return SensitivityRankSchedule(std::move(k), std::move(v), options);
  }
  if (name == "search") {
    if (!divergence) {
      detail::raise<InvalidArgument>(kWhere, "re-planning a search plan needs its divergence");
    }
    GreedySearchRankSchedule::Options options;
    if (state.is_object()) {
      options.step = state.value("step", options.step);
      options.decrements_per_round =
          state.value("decrements_per_round", options.decrements_per_round);
    }
    return GreedySearchRankSchedule(std::move(divergence), options);
  }
  check_schedule_name(name);
  detail::raise<InvalidArgument>(kWhere, "schedule ", detail::quoted(name), " cannot be rebuilt");
}

/// A Grouping chosen at run time: forwards to the policy the variant holds (one call per layer,
/// so visiting costs nothing measurable and the Compressor is instantiated once, not per grouping).
class RuntimeGrouping {
 public:
  RuntimeGrouping(AnyGrouping grouping) : grouping_(std::move(grouping)) {}  // NOLINT: implicit
  [[nodiscard]] Index heads_per_group(Index num_kv_heads) const {
    return std::visit([&](const auto& g) { return g.heads_per_group(num_kv_heads); }, grouping_);
  }
  [[nodiscard]] std::string name() const { return grouping_name(grouping_); }

 private:
  AnyGrouping grouping_;
};

/// A RankSchedule chosen at run time (see RuntimeGrouping): plan() runs the variant's policy.
class RuntimeRankSchedule {
 public:
  RuntimeRankSchedule(AnyRankSchedule schedule)  // NOLINT: implicit
      : schedule_(std::move(schedule)) {}
  [[nodiscard]] RankPlan plan(const RankProblem& problem, const RankBudget& budget) const {
    return std::visit([&](const auto& s) { return s.plan(problem, budget); }, schedule_);
  }
  [[nodiscard]] std::string name() const {
    return std::visit([](const auto& s) { return std::string(s.name()); }, schedule_);
  }

 private:
  AnyRankSchedule schedule_;
};

static_assert(Grouping<RuntimeGrouping>);
static_assert(RankSchedule<RuntimeRankSchedule>);

/// fn(compressor) with a Compressor<F, RuntimeGrouping, RuntimeRankSchedule> of the factorizer the
/// variant holds: one instantiation per factorizer type, whatever the grouping and schedule.
template <class Fn>
decltype(auto) with_compressor(const AnyFactorizer& factorizer, const AnyGrouping& grouping,
                               const AnyRankSchedule& schedule, const CompressorOptions& options,
                               Fn&& fn) {
  return std::visit(
      [&](const auto& f) -> decltype(auto) {
        using F = std::decay_t<decltype(f)>;
        const Compressor<F, RuntimeGrouping, RuntimeRankSchedule> compressor(f, grouping, schedule,
                                                                             options);
        return fn(compressor);
      },
      factorizer);
}

/// plan(problem, budget) of whichever schedule the variant holds.
[[nodiscard]] inline RankPlan plan_with(const AnyRankSchedule& schedule, const RankProblem& problem,
                                        const RankBudget& budget) {
  return std::visit([&](const auto& s) { return s.plan(problem, budget); }, schedule);
}

}  // namespace latentkv
