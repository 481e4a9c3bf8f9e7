// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// OpenMP without a hard dependency. latentkv's CPU kernels parallelize with OpenMP pragmas written
// through LATENTKV_OMP(...), which expands to `#pragma omp ...` when the consumer compiles with
// -fopenmp (CMake: link OpenMP::OpenMP_CXX) and to nothing otherwise — then the code runs on one
// thread and no unknown-pragma warning appears.
//   threads: one count for OpenMP and Eigen, set_threads(n) / max_threads()
//   parallel_product(A, B, C): C = A·B, A: (m, k), B: (k, n), C: (m, n), as independent slices
//
// Why parallel_product instead of Eigen's own threaded GEMM: Eigen's threads share packed blocks
// of B and spin until every thread has packed its part. When another process holds a core (a
// shared machine, a busy laptop) a spinning thread waits for a descheduled one and two threads run
// ~3x slower than one (measured on SmolLM2 prefill, 2 cores under load). Independent slices never
// wait for each other; each slice repacks the other operand, which costs a few percent.
#pragma once

#include <Eigen/Core>
#include <algorithm>

#include "latentkv/core/error.hpp"
#include "latentkv/linalg/matrix.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

#define LATENTKV_PRAGMA(text) _Pragma(#text)
#if defined(_OPENMP)
#define LATENTKV_OMP(directive) LATENTKV_PRAGMA(omp directive)
#else
#define LATENTKV_OMP(directive)
#endif

namespace latentkv {

/// True when this translation unit was compiled with OpenMP.
[[nodiscard]] constexpr bool has_openmp() noexcept {
#if defined(_OPENMP)
  return true;
#else
  return false;
#endif
}

/// The threads a parallel region and an Eigen product use: 1 without OpenMP.
[[nodiscard]] inline int max_threads() noexcept {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Sets the thread count for OpenMP regions and Eigen products (n ≥ 1). Without OpenMP only
/// n = 1 is possible; a larger n throws InvalidArgument rather than being silently ignored.
inline void set_threads(int n) {
  constexpr const char* kWhere = "latentkv::set_threads";
  if (n < 1) detail::raise<InvalidArgument>(kWhere, "n = ", n, ", expected >= 1");
#if defined(_OPENMP)
  omp_set_num_threads(n);
#else
  if (n != 1) {
    detail::raise<InvalidArgument>(kWhere, "n = ", n,
                                   " but this build has no OpenMP (compile with -fopenmp / link "
                                   "OpenMP::OpenMP_CXX), so only 1 thread is possible");
  }
#endif
  Eigen::setNbThreads(n);
}

/// Output rows/cols per parallel_product slice never go below this (keeps Eigen's kernels
/// efficient).
inline constexpr Index kMinProductSlice = 64;

/// out = lhs·rhs: lhs (m, k), rhs (k, n), out (m, n). With more than one thread and enough work
/// (≥ ~4M multiply-adds) the larger of m and n is cut into up to 4·threads slices, each an
/// independent single-threaded Eigen product, scheduled dynamically. Inside a parallel region, or
/// with one thread, it is a plain product. `out` must not alias lhs or rhs.
template <class Lhs, class Rhs>
void parallel_product(
    const Eigen::MatrixBase<Lhs>& lhs, const Eigen::MatrixBase<Rhs>& rhs,
    Eigen::Ref<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> out) {
  const Index m = lhs.rows();
  const Index k = lhs.cols();
  const Index n = rhs.cols();
  if (rhs.rows() != k || out.rows() != m || out.cols() != n) {
    detail::raise<InvalidArgument>("latentkv::parallel_product", "lhs (", m, ", ", k, "), rhs (",
                                   rhs.rows(), ", ", n, "), out (", out.rows(), ", ", out.cols(),
                                   "), expected (m, k)·(k, n) → (m, n)");
  }
  int threads = max_threads();
#if defined(_OPENMP)
  if (omp_in_parallel()) threads = 1;
#endif
  const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const bool split_rows = m >= n;
  const Index extent = split_rows ? m : n;
  const Index slices = std::min<Index>(4 * threads, extent / kMinProductSlice);
  if (threads <= 1 || work < 4e6 || slices < 2) {
    out.noalias() = lhs * rhs;
    return;
  }
  const Index slice = (extent + slices - 1) / slices;
  LATENTKV_OMP(parallel for schedule(dynamic, 1))
  for (Index s = 0; s < slices; ++s) {
    const Index begin = s * slice;
    const Index size = std::min(slice, extent - begin);
    if (size <= 0) continue;
    if (split_rows) {
      out.middleRows(begin, size).noalias() = lhs.middleRows(begin, size) * rhs;
    } else {
      out.middleCols(begin, size).noalias() = lhs * rhs.middleCols(begin, size);
    }
  }
}

}  // namespace latentkv
