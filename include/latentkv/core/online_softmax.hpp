// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Online softmax (Milakov & Gimelshein 2018) and its split merge (flash-decoding), shared by the
// CPU kernel and the CUDA kernels (std-only). One query row against keys seen block by block:
//   state (acc, max, sum): acc = Σ_u e^(s_u − max)·v_u (unnormalized), sum = Σ_u e^(s_u − max)
//   block with scores s_u:  max' = max(max, max_u s_u), c = e^(max − max'),
//                           acc ← c·acc + Σ_u e^(s_u − max')·v_u,  sum ← c·sum + Σ_u e^(s_u − max')
//   result                  o = acc / sum
// Key splits q = 1..Q computed apart (each its own state) merge exactly:
//   M = max_q max_q,  w_q = e^(max_q − M) (0 for a split that saw no key: sum_q = 0),
//   o = Σ_q w_q·acc_q / Σ_q w_q·sum_q.
// Empty state: max = −inf, sum = 0, acc = 0. All fp32.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "latentkv/core/config.hpp"

namespace latentkv {

/// Running max and sum of one query row (the acc row lives with the caller).
struct OnlineSoftmaxState {
  float max = -std::numeric_limits<float>::infinity();  // max_u s_u so far (−inf: no key yet)
  float sum = 0.0f;                                     // Σ_u e^(s_u − max)
};

/// Moves `state` to the maximum max(state.max, block_max) and rescales its sum; returns the factor
/// c = e^(old max − new max) the caller multiplies its acc row by (0 for the first block). The
/// caller then adds the block's Σ e^(s_u − state.max) to state.sum. block_max must be finite.
LATENTKV_HOST_DEVICE inline float online_softmax_rescale(OnlineSoftmaxState& state,
                                                         float block_max) noexcept {
  const float new_max = state.max < block_max ? block_max : state.max;  // as std::max
  const float correction = std::exp(state.max - new_max);
  state.sum = state.sum * correction;
  state.max = new_max;
  return correction;
}

/// Weight e^(part_max − merged_max) of a split with a non-empty state in the merged result.
LATENTKV_HOST_DEVICE inline float split_merge_weight(float part_max, float merged_max) noexcept {
  return std::exp(part_max - merged_max);
}

/// Merges `splits` states of one query row, one output channel:
///   acc: split q's unnormalized channel at acc[q·acc_stride]
///   max, sum: (splits) the splits' states
/// Returns Σ_q w_q·acc_q / Σ_q w_q·sum_q (splits with sum = 0 skipped); NaN when every split is
/// empty (no key was visible).
LATENTKV_HOST_DEVICE inline float merge_split_channel(const float* acc, std::int64_t acc_stride,
                                                      const float* max, const float* sum,
                                                      std::int64_t splits) noexcept {
  float merged_max = -std::numeric_limits<float>::infinity();
  for (std::int64_t q = 0; q < splits; ++q) {
    if (sum[q] != 0.0f && max[q] > merged_max) merged_max = max[q];
  }
  float total = 0.0f;
  float value = 0.0f;
  for (std::int64_t q = 0; q < splits; ++q) {
    if (sum[q] == 0.0f) continue;  // no visible key in this split
    const float w = split_merge_weight(max[q], merged_max);
    total += w * sum[q];
    value += w * acc[q * acc_stride];
  }
  return value / total;
}

}  // namespace latentkv
