// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// OpenMP without a hard dependency. latentkv's CPU kernels parallelize with OpenMP pragmas written
// through LATENTKV_OMP(...), which expands to `#pragma omp ...` when the consumer compiles with
// -fopenmp (CMake: link OpenMP::OpenMP_CXX) and to nothing otherwise — then the code runs on one
// thread and no unknown-pragma warning appears. Eigen's matrix products parallelize themselves
// under OpenMP too (and stay single-threaded inside an enclosing parallel region).
//   threads: one count for both, set_threads(n) / max_threads()
#pragma once

#include <Eigen/Core>

#include "latentkv/core/error.hpp"

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

}  // namespace latentkv
