// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Not API. Row kernels turning ggml block formats into float (layouts of ggml-common.h, values of
// ggml-quants.c dequantize_row_*): n elements from `src` into dst[0, n), n a multiple of the block
// size (the caller checked the byte count). Blocks of QK = 32 elements, little-endian fields;
// within a block, element j < 16 is the low nibble of qs[j] and element j + 16 its high nibble:
//   Q4_0: fp16 d, u8 qs[16]                  x = d·(q − 8)
//   Q4_1: fp16 d, fp16 m, u8 qs[16]          x = d·q + m
//   Q5_0: fp16 d, u32 qh, u8 qs[16]          x = d·(q − 16), bit 4 of q_j is bit j of qh
//   Q5_1: fp16 d, fp16 m, u32 qh, u8 qs[16]  x = d·q + m,    bit 4 of q_j is bit j of qh
//   Q8_0: fp16 d, i8 qs[32]                  x = d·q
// The element loops are fixed-trip and branch-free so the compiler vectorizes them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "latentkv/core/half.hpp"

namespace latentkv::detail {

inline constexpr std::int64_t kQk = 32;  // block size of the Q4/Q5/Q8 formats

[[nodiscard]] inline std::uint16_t load_u16(const std::byte* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

[[nodiscard]] inline std::uint32_t load_u32(const std::byte* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

[[nodiscard]] inline float load_fp16(const std::byte* p) noexcept {
  return fp16_bits_to_float(load_u16(p));
}

inline void dequantize_row_f32(const std::byte* src, float* dst, std::int64_t n) noexcept {
  std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float));
}

inline void dequantize_row_f16(const std::byte* src, float* dst, std::int64_t n) noexcept {
  for (std::int64_t i = 0; i < n; ++i) dst[i] = load_fp16(src + 2 * i);
}

inline void dequantize_row_bf16(const std::byte* src, float* dst, std::int64_t n) noexcept {
  for (std::int64_t i = 0; i < n; ++i) dst[i] = bf16_bits_to_float(load_u16(src + 2 * i));
}

inline void dequantize_row_q4_0(const std::byte* src, float* dst, std::int64_t n) noexcept {
  constexpr std::int64_t kBlockBytes = 2 + kQk / 2;
  for (std::int64_t b = 0; b < n / kQk; ++b, src += kBlockBytes, dst += kQk) {
    const float d = load_fp16(src);
    const auto* qs = reinterpret_cast<const std::uint8_t*>(src + 2);
    for (int j = 0; j < kQk / 2; ++j) {
      dst[j] = d * static_cast<float>((qs[j] & 0x0f) - 8);
      dst[j + kQk / 2] = d * static_cast<float>((qs[j] >> 4) - 8);
    }
  }
}

inline void dequantize_row_q4_1(const std::byte* src, float* dst, std::int64_t n) noexcept {
  constexpr std::int64_t kBlockBytes = 4 + kQk / 2;
  for (std::int64_t b = 0; b < n / kQk; ++b, src += kBlockBytes, dst += kQk) {
    const float d = load_fp16(src);
    const float m = load_fp16(src + 2);
    const auto* qs = reinterpret_cast<const std::uint8_t*>(src + 4);
    for (int j = 0; j < kQk / 2; ++j) {
      dst[j] = d * static_cast<float>(qs[j] & 0x0f) + m;
      dst[j + kQk / 2] = d * static_cast<float>(qs[j] >> 4) + m;
    }
  }
}

inline void dequantize_row_q5_0(const std::byte* src, float* dst, std::int64_t n) noexcept {
  constexpr std::int64_t kBlockBytes = 2 + 4 + kQk / 2;
  for (std::int64_t b = 0; b < n / kQk; ++b, src += kBlockBytes, dst += kQk) {
    const float d = load_fp16(src);
    const std::uint32_t qh = load_u32(src + 2);
    const auto* qs = reinterpret_cast<const std::uint8_t*>(src + 6);
    for (int j = 0; j < kQk / 2; ++j) {
      const int lo = static_cast<int>((qs[j] & 0x0fu) | (((qh >> j) & 1u) << 4));
      const int hi = static_cast<int>((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
      dst[j] = d * static_cast<float>(lo - 16);
      dst[j + kQk / 2] = d * static_cast<float>(hi - 16);
    }
  }
}

inline void dequantize_row_q5_1(const std::byte* src, float* dst, std::int64_t n) noexcept {
  constexpr std::int64_t kBlockBytes = 2 + 2 + 4 + kQk / 2;
  for (std::int64_t b = 0; b < n / kQk; ++b, src += kBlockBytes, dst += kQk) {
    const float d = load_fp16(src);
    const float m = load_fp16(src + 2);
    const std::uint32_t qh = load_u32(src + 4);
    const auto* qs = reinterpret_cast<const std::uint8_t*>(src + 8);
    for (int j = 0; j < kQk / 2; ++j) {
      const auto lo = (qs[j] & 0x0fu) | (((qh >> j) & 1u) << 4);
      const auto hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4);
      dst[j] = d * static_cast<float>(lo) + m;
      dst[j + kQk / 2] = d * static_cast<float>(hi) + m;
    }
  }
}

inline void dequantize_row_q8_0(const std::byte* src, float* dst, std::int64_t n) noexcept {
  constexpr std::int64_t kBlockBytes = 2 + kQk;
  for (std::int64_t b = 0; b < n / kQk; ++b, src += kBlockBytes, dst += kQk) {
    const float d = load_fp16(src);
    const auto* qs = reinterpret_cast<const std::int8_t*>(src + 2);
    for (int j = 0; j < kQk; ++j) dst[j] = d * static_cast<float>(qs[j]);
  }
}

}  // namespace latentkv::detail
