// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Factorizes many independent matrices (every K and V of a model) on a pool of threads.
//   matrices[i]: (rows_i, cols_i), ranks[i] in 1..min(rows_i, cols_i)  →  result[i]: A_i, B_i
// Eigen's SVD and eigensolvers run essentially single-threaded, so matrix-level parallelism is
// what fills the cores. Results are identical to calling f.factorize in order (policies are
// deterministic and const); the first exception thrown by any task is rethrown after all workers
// stop, with the index of the matrix prepended.
#pragma once

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "latentkv/factorize/factorizer.hpp"

namespace latentkv {

/// threads = 0: std::thread::hardware_concurrency().
template <Factorizer F>
[[nodiscard]] std::vector<LowRankFactors<typename F::Scalar>> factorize_batch(
    const F& factorizer, std::span<const MatrixCRef<typename F::Scalar>> matrices,
    std::span<const Index> ranks, unsigned threads = 0) {
  constexpr const char* kWhere = "latentkv::factorize_batch";
  if (matrices.size() != ranks.size()) {
    detail::raise<InvalidArgument>(kWhere, matrices.size(), " matrices but ", ranks.size(),
                                   " ranks, expected one rank per matrix");
  }
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<std::size_t>(threads, matrices.size()));
  std::vector<LowRankFactors<typename F::Scalar>> out(matrices.size());
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::size_t error_index = 0;
  std::mutex error_mutex;
  auto work = [&] {
    for (std::size_t i = next++; i < matrices.size(); i = next++) {
      try {
        out[i] = factorizer.factorize(matrices[i], ranks[i]);
      } catch (...) {
        const std::lock_guard lock(error_mutex);
        if (!error || i < error_index) {
          error = std::current_exception();
          error_index = i;
        }
        next = matrices.size();  // stop handing out work
      }
    }
  };
  {
    std::vector<std::jthread> pool;
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
  }
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (const InvalidArgument& e) {
      detail::raise<InvalidArgument>(kWhere, "matrix ", error_index, ": ", e.what());
    } catch (const NumericalError& e) {
      detail::raise<NumericalError>(kWhere, "matrix ", error_index, ": ", e.what());
    }
  }
  return out;
}

}  // namespace latentkv
