// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Test support (not public API): a RankSchedule that ignores the spectra and gives every entry
// the same rank (capped at max_rank), so compressor tests control the ranks exactly.
#pragma once

#include <algorithm>
#include <string>

#include "latentkv/schedule/rank_schedule.hpp"

namespace latentkv::testing {

struct FixedRankSchedule {
  Index rank = 1;
  [[nodiscard]] std::string name() const { return "fixed"; }
  [[nodiscard]] RankPlan plan(const RankProblem& problem, const RankBudget& budget) const {
    RankPlan p = problem.uniform_plan(std::min(rank, problem.max_rank()));
    p.schedule = name();
    p.budget_requested = budget.budget;
    return p;
  }
};

static_assert(RankSchedule<FixedRankSchedule>);

}  // namespace latentkv::testing
