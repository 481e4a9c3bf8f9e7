// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// linalg/parallel.hpp: set_threads/max_threads for OpenMP and Eigen, LATENTKV_OMP regions,
// parallel_product against Eigen's product (row and column splits, GEMV, transposed operands).
// Built with OpenMP when CMake finds it (latentkv_cpu_tuning); the no-OpenMP branch is covered by
// the header self-containment build, and its behaviour is checked here when OpenMP is absent.
#include "latentkv/linalg/parallel.hpp"

#include <gtest/gtest.h>

#include <random>
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

RowMatrix<float> random(Index rows, Index cols, std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  RowMatrix<float> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = normal(engine);
  return m;
}

TEST(ParallelProduct, EqualsThePlainProductForEveryShape) {
  const int before = max_threads();
  for (const int threads : {1, 2, 3}) {
    if (threads > 1 && !has_openmp()) continue;
    set_threads(threads);
    struct Shape {
      Index m, k, n;
    };
    // Row split (m ≥ n), column split (n > m), a row vector (decode), tiny (no split), ragged
    // slices (extents not multiples of the slice).
    for (const Shape s : {Shape{1000, 64, 96}, Shape{70, 64, 3001}, Shape{1, 576, 20000},
                          Shape{5, 4, 3}, Shape{517, 33, 129}}) {
      const RowMatrix<float> a = random(s.m, s.k, 1);
      const RowMatrix<float> b = random(s.k, s.n, 2);
      const RowMatrix<float> want = a * b;
      RowMatrix<float> out = RowMatrix<float>::Constant(s.m, s.n, NAN);
      parallel_product(a, b, out);
      EXPECT_LT((out - want).cwiseAbs().maxCoeff(), 1e-4f) << threads << " " << s.m << "x" << s.n;
      // A transposed (column-major) right operand and a block of a larger output.
      const RowMatrix<float> bt = b.transpose();
      RowMatrix<float> wide = RowMatrix<float>::Zero(s.m + 2, s.n);
      parallel_product(a, bt.transpose(), wide.middleRows(1, s.m));
      EXPECT_LT((wide.middleRows(1, s.m) - want).cwiseAbs().maxCoeff(), 1e-4f);
      EXPECT_EQ(wide.row(0).cwiseAbs().maxCoeff(), 0.0f);
      EXPECT_EQ(wide.row(s.m + 1).cwiseAbs().maxCoeff(), 0.0f);
    }
  }
  set_threads(before);
}

TEST(ParallelProduct, WorksInsideAParallelRegion) {
  const RowMatrix<float> a = random(300, 64, 3);
  const RowMatrix<float> b = random(64, 200, 4);
  const RowMatrix<float> want = a * b;
  std::vector<RowMatrix<float>> outs(4, RowMatrix<float>(300, 200));
  LATENTKV_OMP(parallel for)
  for (int i = 0; i < 4; ++i) parallel_product(a, b, outs[static_cast<std::size_t>(i)]);
  for (const RowMatrix<float>& out : outs) EXPECT_LT((out - want).cwiseAbs().maxCoeff(), 1e-4f);
}

TEST(ParallelProduct, RejectsMismatchedShapes) {
  const RowMatrix<float> a = random(4, 3, 5);
  const RowMatrix<float> b = random(3, 2, 6);
  RowMatrix<float> out(4, 3);
  EXPECT_THROW(parallel_product(a, b, out), InvalidArgument);
  RowMatrix<float> ok(4, 2);
  EXPECT_THROW(parallel_product(b, a, ok), InvalidArgument);
}

}  // namespace
}  // namespace latentkv
