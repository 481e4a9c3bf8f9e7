// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Rotary position embedding (RoPE, Su et al. 2021) in the NeoX "rotate-half" convention that
// Hugging Face transformers uses for LLaMA (std-only; shared by host code and CUDA kernels).
//   head x: (h) channels, the first r = rope_dim of them rotated (r even, r ≤ h; r = h for LLaMA)
//   pair i = channels (i, i + r/2), 0 ≤ i < r/2;  inverse frequency θ_i = base^(-2i/r)
//   angle at position p: φ = p·θ_i;  (x_i, x_{i+r/2}) ← (x_i·cos φ − x_{i+r/2}·sin φ,
//                                                        x_{i+r/2}·cos φ + x_i·sin φ)
// Channels r..h-1 pass through. Rotations preserve norms and R_mᵀ·R_n = R_{n−m}, so a rotated
// query·key product depends only on the relative position n − m.
//
// Which pairing. llama.cpp's converter permutes the rows of W_q and W_k so that ggml can rotate
// adjacent pairs (2i, 2i+1) ("normal" RoPE); latentkv undoes that permutation when it loads a GGUF
// (model_config.hpp, unpermute_qk_rows) and rotates (i, i + r/2). Both give the same scores; this
// order is Hugging Face's, so per-head factors and projections of K match the papers' code.
//
// Precision: θ_i, the angle p·θ_i and cos/sin are fp32, computed as transformers computes them
// (inv_freq = 1 / base^(2i/r) in fp32, angle = float(p)·inv_freq rounded to fp32). At p ≈ 1000 the
// fp32 angle is off by up to ~6e-5 rad from the exact one; every reference implementation makes
// the same rounding, and matching it keeps agreement with transformers at the 1e-5 level.
#pragma once

#include <cmath>
#include <cstdint>

#include "latentkv/core/config.hpp"

namespace latentkv {

/// θ_i = 1 / base^(2i / rope_dim) in fp32, for pair 0 ≤ i < rope_dim / 2.
LATENTKV_HOST_DEVICE inline float rope_inverse_frequency(int pair, int rope_dim,
                                                         float base) noexcept {
  const float exponent = static_cast<float>(2 * pair) / static_cast<float>(rope_dim);
  return 1.0f / std::pow(base, exponent);
}

/// cos and sin of the angle position·θ (the angle rounded to fp32 first).
struct RopeCosSin {
  float cos;
  float sin;
};

LATENTKV_HOST_DEVICE inline RopeCosSin rope_cos_sin(std::int64_t position,
                                                    float inverse_frequency) noexcept {
  const float angle = static_cast<float>(position) * inverse_frequency;
  return {std::cos(angle), std::sin(angle)};
}

/// Rotates the pair (a, b) = (x_i, x_{i+r/2}) by the angle whose cos and sin are given.
LATENTKV_HOST_DEVICE inline void rope_rotate_pair(float& a, float& b, RopeCosSin cs) noexcept {
  const float a0 = a;
  const float b0 = b;
  a = a0 * cs.cos - b0 * cs.sin;
  b = b0 * cs.cos + a0 * cs.sin;
}

/// RoPE table format, shared by the CPU kernel and the CUDA kernels: one row of rope_dim floats per
/// position p, row = [cos(p·θ_0) .. cos(p·θ_{r/2−1}), sin(p·θ_0) .. sin(p·θ_{r/2−1})] (the fp32
/// values rope_cos_sin gives). Fills `row` (rope_dim floats) for `position`.
LATENTKV_HOST_DEVICE inline void rope_table_row(float* row, std::int64_t position, int rope_dim,
                                                float base) noexcept {
  const int half = rope_dim / 2;
  for (int i = 0; i < half; ++i) {
    const RopeCosSin cs = rope_cos_sin(position, rope_inverse_frequency(i, rope_dim, base));
    row[i] = cs.cos;
    row[half + i] = cs.sin;
  }
}

/// Rotates the pair (a, b) = (x_i, x_{i+r/2}) with the cos/sin of pair i from a table row
/// (see rope_table_row; half = rope_dim / 2).
LATENTKV_HOST_DEVICE inline void rope_rotate_pair_from_table(float& a, float& b, const float* row,
                                                             std::int64_t pair,
                                                             std::int64_t half) noexcept {
  rope_rotate_pair(a, b, RopeCosSin{row[pair], row[half + pair]});
}

/// Rotates one head in place: x (head_dim, contiguous; only the first rope_dim channels change)
/// at `position`. Computes its own cos/sin; loops over many heads at one position should use
/// rope_cos_sin once per pair and rope_rotate_pair (as rope_rotate_rows does).
LATENTKV_HOST_DEVICE inline void rope_rotate_head(float* x, int rope_dim, float base,
                                                  std::int64_t position) noexcept {
  const int half = rope_dim / 2;
  for (int i = 0; i < half; ++i) {
    rope_rotate_pair(x[i], x[i + half],
                     rope_cos_sin(position, rope_inverse_frequency(i, rope_dim, base)));
  }
}

/// Host loop: rotates `rows` rows of a row-major matrix in place. Row t (at data + t·row_stride)
/// holds num_heads heads of head_dim channels, one token at position first_position + t:
///   data: (rows, ≥ num_heads·head_dim), row stride = row_stride floats.
/// A CUDA kernel does the same per (row, head) with rope_cos_sin and rope_rotate_pair.
inline void rope_rotate_rows(float* data, std::int64_t rows, std::int64_t row_stride, int num_heads,
                             int head_dim, int rope_dim, float base,
                             std::int64_t first_position) noexcept {
  const int half = rope_dim / 2;
  for (std::int64_t t = 0; t < rows; ++t) {
    float* row = data + t * row_stride;
    for (int i = 0; i < half; ++i) {
      const RopeCosSin cs =
          rope_cos_sin(first_position + t, rope_inverse_frequency(i, rope_dim, base));
      for (int head = 0; head < num_heads; ++head) {
        float* x = row + static_cast<std::int64_t>(head) * head_dim;
        rope_rotate_pair(x[i], x[i + half], cs);
      }
    }
  }
}

}  // namespace latentkv
