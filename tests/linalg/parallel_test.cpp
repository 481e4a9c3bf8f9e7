// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// linalg/parallel.hpp: set_threads/max_threads for OpenMP and Eigen, LATENTKV_OMP regions. Built
// with OpenMP when CMake finds it (latentkv_cpu_tuning); the no-OpenMP branch is covered by the
// header self-containment build, and its behaviour is checked here when OpenMP is absent.
#include "latentkv/linalg/parallel.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace latentkv {
namespace {

TEST(Parallel, SetThreadsControlsOpenMpAndEigen) {
  const int before = max_threads();
  set_threads(1);
  EXPECT_EQ(max_threads(), 1);
  EXPECT_EQ(Eigen::nbThreads(), 1);
  if (has_openmp()) {
    set_threads(3);
    EXPECT_EQ(max_threads(), 3);
    EXPECT_EQ(Eigen::nbThreads(), 3);
  } else {
    EXPECT_THROW(set_threads(3), InvalidArgument);  // never silently ignored
  }
  set_threads(before);
}

TEST(Parallel, RejectsNonPositiveCounts) {
  EXPECT_THROW(set_threads(0), InvalidArgument);
  EXPECT_THROW(set_threads(-2), InvalidArgument);
}

TEST(Parallel, OmpLoopsCoverEveryIterationOnce) {
  set_threads(has_openmp() ? 2 : 1);
  std::vector<int> hits(1000, 0);
  LATENTKV_OMP(parallel for schedule(dynamic, 7))
  for (int i = 0; i < 1000; ++i) hits[static_cast<std::size_t>(i)] += 1;
  for (const int h : hits) EXPECT_EQ(h, 1);
  long sum = 0;
  LATENTKV_OMP(parallel for reduction(+ : sum))
  for (int i = 1; i <= 100; ++i) sum += i;
  EXPECT_EQ(sum, 5050);
}

}  // namespace
}  // namespace latentkv
