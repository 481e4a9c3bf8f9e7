// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Budget fitting shared by the rank schedules (not API).
//   entries e = (2·l + side)·G + g, side 0 = K, 1 = V: E = L·2·G entries, one rank r_e each
//   cap_e   = min(max_rank, ceiling_e)                 (max_rank = min(d, s·h))
//   floor_e = min(multiple, cap_e)                     (the smallest allowed rank)
//   allowed values of e: floor_e, then every multiple of `multiple` in (floor_e, cap_e], then cap_e
//     (consecutive allowed values differ by at most `multiple`)
//   dense = L·2·n_kv·h;  target T = budget·dense latent numbers per token
//
// Priority fill (fill_by_priority): a schedule describes its monotone one-parameter family
// t ↦ r_e(t) by its inverse, key(e, from, to) = the t at which entry e steps from one allowed value
// to the next. The events (e, from → to) are sorted by (key, e, to) and applied in that order, from
// every entry at floor_e, while the total width stays ≤ T. Hence
//   - T − width < one step ≤ multiple: the plan meets the budget within one rounding step, from
//     below;
//   - the applied events for a smaller T are a prefix of those for a larger T: no rank grows when
//     the budget shrinks (monotone);
//   - with ceiling = the plan for T, the events the ceiling removes all come after that plan's
//     prefix, so planning T' ≤ T under it gives the same plan as without it.
// Keys are made non-decreasing per entry (running maximum) so an entry's steps apply in order.
#pragma once

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/schedule/rank_plan.hpp"
#include "latentkv/schedule/rank_schedule.hpp"

namespace latentkv::detail {

/// A budget as text with 3 significant digits ("0.0417").
[[nodiscard]] inline std::string format_budget(double b) {
  std::ostringstream out;
  out << std::setprecision(3) << b;
  return out.str();
}

/// The validated problem + budget, flattened to entries.
struct RankGrid {
  Index num_layers = 0;          ///< L
  Index num_groups = 0;          ///< G
  Index max_rank = 0;            ///< min(d, s·h)
  Index multiple = 1;            ///< rounding multiple (>= 1)
  Index dense_width = 0;         ///< L·2·n_kv·h
  double target_width = 0.0;     ///< T = budget·dense_width
  std::vector<Index> floor;      ///< (E) smallest allowed rank of each entry
  std::vector<Index> cap;        ///< (E) largest allowed rank of each entry
  const RankProblem* problem{};  ///< the problem planned over (not owned)

  [[nodiscard]] Index num_entries() const noexcept { return static_cast<Index>(cap.size()); }
  [[nodiscard]] Index entry(Index layer, int side, Index group) const noexcept {
    return (2 * layer + side) * num_groups + group;
  }
  [[nodiscard]] Index layer_of(Index e) const noexcept { return e / (2 * num_groups); }
  [[nodiscard]] int side_of(Index e) const noexcept {
    return static_cast<int>((e / num_groups) % 2);
  }
  [[nodiscard]] Index group_of(Index e) const noexcept { return e % num_groups; }
  /// σ of entry e: (max_rank), descending.
  [[nodiscard]] const Vector<double>& spectrum(Index e) const {
    const LayerSpectra& l = problem->layers[static_cast<std::size_t>(layer_of(e))];
    return (side_of(e) == 0 ? l.k : l.v)[static_cast<std::size_t>(group_of(e))];
  }

  /// The smallest allowed value of e above r (r < cap_e).
  [[nodiscard]] Index next_value(Index e, Index r) const noexcept {
    const Index next = (r / multiple + 1) * multiple;
    return std::min(next, cap[static_cast<std::size_t>(e)]);
  }
  /// The smallest allowed value of e that is >= r (floor_e <= r <= cap_e).
  [[nodiscard]] Index snap_up(Index e, Index r) const noexcept {
    const auto i = static_cast<std::size_t>(e);
    if (r <= floor[i]) return floor[i];
    const Index up = (r + multiple - 1) / multiple * multiple;
    return std::min(up, cap[i]);
  }

  [[nodiscard]] static Index width(const std::vector<Index>& ranks) noexcept {
    Index w = 0;
    for (const Index r : ranks) w += r;
    return w;
  }

  /// Builds the plan of per-entry ranks (E).
  [[nodiscard]] RankPlan to_plan(const std::vector<Index>& ranks, std::string schedule,
                                 double budget) const {
    RankPlan plan;
    plan.schedule = std::move(schedule);
    plan.budget_requested = budget;
    plan.num_kv_heads = problem->num_kv_heads;
    plan.head_dim = problem->head_dim;
    plan.heads_per_group = problem->heads_per_group;
    plan.layers.resize(static_cast<std::size_t>(num_layers));
    for (Index l = 0; l < num_layers; ++l) {
      LayerRanks& out = plan.layers[static_cast<std::size_t>(l)];
      for (Index g = 0; g < num_groups; ++g) {
        out.k.push_back(ranks[static_cast<std::size_t>(entry(l, 0, g))]);
        out.v.push_back(ranks[static_cast<std::size_t>(entry(l, 1, g))]);
      }
    }
    return plan;
  }
};

/// Validates problem and budget for `where` ("latentkv::XRankSchedule::plan") and flattens them.
/// Throws InvalidArgument for an invalid problem, a budget outside (0, 1], multiple < 1, a ceiling
/// of another layout, a budget below the smallest plan or above the largest one.
[[nodiscard]] inline RankGrid make_rank_grid(const char* where, const RankProblem& problem,
                                             const RankBudget& budget) {
  problem.validate();
  const double b = budget.budget;
  if (!(b > 0.0 && b <= 1.0)) raise<InvalidArgument>(where, "budget = ", b, ", expected in (0, 1]");
  if (budget.multiple < 1) {
    raise<InvalidArgument>(where, "multiple = ", budget.multiple, ", expected >= 1");
  }
  RankGrid grid;
  grid.problem = &problem;
  grid.num_layers = problem.num_layers();
  grid.num_groups = problem.num_groups();
  grid.max_rank = problem.max_rank();
  grid.multiple = budget.multiple;
  grid.dense_width = grid.num_layers * 2 * problem.num_kv_heads * problem.head_dim;
  grid.target_width = b * static_cast<double>(grid.dense_width);
  const auto n = static_cast<std::size_t>(grid.num_layers * 2 * grid.num_groups);
  grid.cap.assign(n, grid.max_rank);
  if (budget.ceiling) {
    const RankPlan& c = *budget.ceiling;
    if (c.num_kv_heads != problem.num_kv_heads || c.head_dim != problem.head_dim ||
        c.heads_per_group != problem.heads_per_group || c.num_layers() != problem.num_layers()) {
      raise<InvalidArgument>(where, "the ceiling plan is ", c.num_layers(), " layers x ",
                             c.num_kv_heads, " heads x ", c.head_dim, " (", c.heads_per_group,
                             " per group), expected ", problem.num_layers(), " x ",
                             problem.num_kv_heads, " x ", problem.head_dim, " (",
                             problem.heads_per_group, " per group)");
    }
    c.validate(grid.max_rank);
    for (Index l = 0; l < grid.num_layers; ++l) {
      const LayerRanks& r = c.layers[static_cast<std::size_t>(l)];
      for (Index g = 0; g < grid.num_groups; ++g) {
        grid.cap[static_cast<std::size_t>(grid.entry(l, 0, g))] = r.k[static_cast<std::size_t>(g)];
        grid.cap[static_cast<std::size_t>(grid.entry(l, 1, g))] = r.v[static_cast<std::size_t>(g)];
      }
    }
  }
  grid.floor.resize(n);
  bool floors_equal = true;
  for (std::size_t e = 0; e < n; ++e) {
    grid.floor[e] = std::min(grid.multiple, grid.cap[e]);
    floors_equal = floors_equal && grid.floor[e] == grid.multiple;
  }
  const double dense = static_cast<double>(grid.dense_width);
  const double smallest = static_cast<double>(RankGrid::width(grid.floor)) / dense;
  const double largest = static_cast<double>(RankGrid::width(grid.cap)) / dense;
  // Tolerances of 1e-12 absorb the rounding of b·dense for budgets given as decimals.
  if (b < smallest - 1e-12) {
    raise<InvalidArgument>(where, "budget = ", b, " is below ", format_budget(smallest),
                           ", the smallest plan (every rank = ", grid.multiple,
                           floors_equal ? "" : ", or max_rank / its ceiling where lower", ")");
  }
  if (b > largest + 1e-12) {
    raise<InvalidArgument>(
        where, "budget = ", b, " is above ", format_budget(largest),
        ", the largest plan (every rank = ", budget.ceiling ? "its ceiling" : "max_rank = ",
        budget.ceiling ? "" : std::to_string(grid.max_rank), ")");
  }
  return grid;
}

/// Result of a priority fill.
struct PriorityFill {
  std::vector<Index> ranks;  ///< (E) rank of each entry
  /// key of the first event not applied (the family parameter the budget stopped at);
  /// +infinity when every entry reached its cap.
  double stop_key = std::numeric_limits<double>::infinity();
};

/// Applies the events (e, from → to) in order of (key(e, from, to), e, to) from every entry at
/// floor_e while the width stays <= T (see the notation block). key must be finite.
template <class Key>
[[nodiscard]] PriorityFill fill_by_priority(const char* where, const RankGrid& grid, Key&& key) {
  struct Event {
    double key;
    Index entry;
    Index to;
    Index step;
  };
  std::vector<Event> events;
  for (Index e = 0; e < grid.num_entries(); ++e) {
    const auto i = static_cast<std::size_t>(e);
    double running = -std::numeric_limits<double>::infinity();
    for (Index r = grid.floor[i]; r < grid.cap[i];) {
      const Index next = grid.next_value(e, r);
      const double k = static_cast<double>(key(e, r, next));
      if (std::isnan(k)) {
        raise<NumericalError>(where, "priority of layer ", grid.layer_of(e), " ",
                              grid.side_of(e) == 0 ? "k" : "v", " group ", grid.group_of(e),
                              " at rank ", next, " is NaN");
      }
      running = std::max(running, k);
      events.push_back({running, e, next, next - r});
      r = next;
    }
  }
  std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    return std::tie(a.key, a.entry, a.to) < std::tie(b.key, b.entry, b.to);
  });
  PriorityFill fill;
  fill.ranks = grid.floor;
  Index width = RankGrid::width(fill.ranks);
  // Integer target: the largest width <= T (T = b·dense; 1e-9 absorbs decimal rounding).
  const auto target = static_cast<Index>(std::floor(grid.target_width + 1e-9));
  for (const Event& ev : events) {
    if (width + ev.step > target) {
      fill.stop_key = ev.key;
      break;
    }
    fill.ranks[static_cast<std::size_t>(ev.entry)] = ev.to;
    width += ev.step;
  }
  return fill;
}

/// Σ_{i<r} σ_i^p / Σ σ_i^p for r = 0..m: (m + 1) cumulative energy fractions of σ (1 when σ = 0).
[[nodiscard]] inline Vector<double> cumulative_energy(const Vector<double>& sigma, double power) {
  const Index m = sigma.size();
  Vector<double> c(m + 1);
  c(0) = 0.0;
  for (Index i = 0; i < m; ++i) c(i + 1) = c(i) + std::pow(sigma(i), power);
  const double total = c(m);
  if (total > 0.0) {
    c /= total;
  } else {
    c.setOnes();
  }
  c(m) = 1.0;
  return c;
}

}  // namespace latentkv::detail
