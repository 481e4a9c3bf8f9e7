// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// An orthogonal rotation of each latent before quantization (DESIGN §8): a blocked, sign-flipped
// Walsh–Hadamard transform, folded into the factors so the cache stores rotated latents and the
// model's outputs do not change.
//   width r = 2^{e_1} + 2^{e_2} + ... (e_1 > e_2 > ..., the binary digits of r, largest first):
//             r = 96 → blocks [0, 64) and [64, 96); r = 75 → 64 + 8 + 2 + 1
//   H_r:      block-diagonal, block of n = the orthonormal Sylvester–Hadamard matrix H_n / √n
//             (H_1 = [1], H_2n = [[H_n, H_n], [H_n, −H_n]]): symmetric, H_r·H_r = I
//   D:        (r) diagonal ±1 from a fixed seed (a "randomized" Hadamard, as QuaRot and
//             TurboQuant use, so a channel that is large in every token is spread, not aligned
//             with a Hadamard row)
//   R = D·H_r: (r, r) orthogonal; c' = c·R rotates a latent row c: (r) in O(r·log r)
// Folding into one head group's factors (compress/compressed_model.hpp), exact in real arithmetic:
//   A' = A·R: (d, r)          so c' = x·A' = c·R
//   B_k' = Rᵀ·B_k: (r, s·h)   so c'·B_k' = c·B_k (the rebuilt pre-RoPE keys)
//   W̃_o' = Rᵀ·W̃_o: (r, s·g·d) so Σ_t p_t·c'_t·W̃_o' = Σ_t p_t·c_t·W̃_o
// Apply it when a cache is built, after truncation: blocks depend on r, so rotating a file would
// break its prefix nesting (the rank-r' model is the first r' columns of A only before rotation).
// Blocks of 1 or 2 channels (odd widths) mix little; widths that are multiples of 32 (kernel
// tiles, `--multiple`) have no such blocks below 32.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "latentkv/compress/compressed_model.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/linalg/matrix.hpp"

namespace latentkv {

/// Default seed of the ±1 diagonal D.
inline constexpr std::uint64_t kHadamardSeed = 0x9e3779b97f4a7c15ull;

/// The power-of-two blocks a width splits into (largest first): 96 → {64, 32}; 0 → {}.
[[nodiscard]] inline std::vector<Index> hadamard_blocks(Index width) {
  if (width < 0) {
    detail::raise<InvalidArgument>("latentkv::hadamard_blocks", "width = ", width,
                                   ", expected >= 0");
  }
  std::vector<Index> blocks;
  for (Index bit = Index{1} << 62; bit > 0; bit >>= 1) {
    if ((width & bit) != 0) blocks.push_back(bit);
  }
  return blocks;
}

/// The ±1 signs of D: (width), deterministic in `seed` (splitmix64), the same for every width's
/// prefix.
[[nodiscard]] inline std::vector<float> hadamard_signs(Index width,
                                                       std::uint64_t seed = kHadamardSeed) {
  std::vector<float> signs(static_cast<std::size_t>(width));
  std::uint64_t state = seed;
  for (float& s : signs) {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    s = (z & 1u) != 0u ? -1.0f : 1.0f;
  }
  return signs;
}

/// The orthonormal fast Walsh–Hadamard transform H_r of one row, in place: x: (width), blocked
/// as in the notation block (x ← x·H_r; H_r is symmetric, so also H_r·x and its own inverse).
inline void hadamard_transform(float* x, Index width) noexcept {
  Index start = 0;
  for (Index bit = Index{1} << 62; bit > 0; bit >>= 1) {
    if ((width & bit) == 0) continue;
    float* block = x + start;
    const Index n = bit;
    for (Index len = 1; len < n; len <<= 1) {
      for (Index i = 0; i < n; i += 2 * len) {
        for (Index j = i; j < i + len; ++j) {
          const float a = block[j];
          const float b = block[j + len];
          block[j] = a + b;
          block[j + len] = a - b;
        }
      }
    }
    const float norm = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
    for (Index i = 0; i < n; ++i) block[i] *= norm;
    start += n;
  }
}

/// Rotates every row of `rows` in place: row ← row·R = (row ⊙ signs)·H_r.
/// rows: (n, width); signs: (width) from hadamard_signs().
inline void rotate_rows(MatrixRef<float> rows, const std::vector<float>& signs) {
  if (static_cast<Index>(signs.size()) != rows.cols()) {
    detail::raise<InvalidArgument>("latentkv::rotate_rows", "signs has ", signs.size(),
                                   " entries, expected ", rows.cols(), " (the rows' width)");
  }
  for (Index i = 0; i < rows.rows(); ++i) {
    float* row = rows.row(i).data();
    for (Index c = 0; c < rows.cols(); ++c) row[c] *= signs[static_cast<std::size_t>(c)];
    hadamard_transform(row, rows.cols());
  }
}

/// The rotation R = D·H_r as a dense matrix: (width, width). For tests and small widths.
[[nodiscard]] inline RowMatrix<float> hadamard_rotation(Index width,
                                                        std::uint64_t seed = kHadamardSeed) {
  RowMatrix<float> r = RowMatrix<float>::Identity(width, width);
  rotate_rows(r, hadamard_signs(width, seed));
  return r;
}

/// Left-multiplies by Rᵀ in place: m ← Rᵀ·m, m: (width, cols) (every column c ← Rᵀ·c, i.e. its
/// transpose row·R).
inline void rotate_transposed_left(RowMatrix<float>& m, const std::vector<float>& signs) {
  RowMatrix<float> t = m.transpose();  // (cols, width)
  rotate_rows(t, signs);
  m = t.transpose();
}

/// The compressed model with every group's latents rotated (see the notation block): per key
/// group A_k ← A_k·R, B_k ← Rᵀ·B_k; per value group A_v ← A_v·R, W̃_o ← Rᵀ·W̃_o, R of the group's
/// own rank. Dense layers, spectra and the plan are unchanged. The rotated model is not a prefix
/// of the unrotated file: rotate after truncated(), never before.
[[nodiscard]] inline CompressedModel rotate_latents(const CompressedModel& model,
                                                    std::uint64_t seed = kHadamardSeed) {
  CompressedModel out = model;
  for (CompressedLayer& layer : out.layers) {
    for (LatentKeyGroup& g : layer.k) {
      const std::vector<float> signs = hadamard_signs(g.rank(), seed);
      rotate_rows(g.down, signs);
      rotate_transposed_left(g.up, signs);
    }
    for (LatentValueGroup& g : layer.v) {
      const std::vector<float> signs = hadamard_signs(g.rank(), seed);
      rotate_rows(g.down, signs);
      rotate_transposed_left(g.out, signs);
    }
  }
  return out;
}

}  // namespace latentkv
