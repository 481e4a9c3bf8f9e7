// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The CPU benchmarks' main(): it records the program's own build first — a benchmark compiled with
// LATENTKV_BENCH_OPTIMIZE (CI's compile check, -O1) is not a timing build, and says so in its
// context and on stderr instead of printing numbers that look like measurements.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>

namespace latentkv::bench {

inline void record_build_flags() {
#ifdef LATENTKV_BENCH_OPTIMIZE
  benchmark::AddCustomContext("latentkv_optimize",
                              LATENTKV_BENCH_OPTIMIZE " (compile check only, not a timing build)");
  std::fprintf(stderr,
               "warning: built with LATENTKV_BENCH_OPTIMIZE=%s (a compile check); these timings "
               "are not comparable: rebuild with it empty\n",
               LATENTKV_BENCH_OPTIMIZE);
#endif
}

/// A benchmark program's main() after registration: records the build flags, then runs what
/// the command line selects (Google Benchmark's flags). Returns the exit status.
inline int run_benchmarks(int argc, char** argv) {
  record_build_flags();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace latentkv::bench
