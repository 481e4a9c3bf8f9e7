// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// 16-bit floating-point formats as raw bit patterns (std-only; shared by host and device code).
//   fp16 (IEEE binary16): s·eeeee·mmmmmmmmmm, bias 15, max 65504, min normal 2^-14, min sub 2^-24
//   bf16 (bfloat16):      s·eeeeeeee·mmmmmmm,  bias 127, the top 16 bits of an fp32
// Narrowing rounds to nearest, ties to even; overflow gives ±inf; subnormals are exact both ways;
// NaN stays NaN (made quiet, sign and top payload bits kept). Integer-only arithmetic: the result
// does not depend on the floating-point environment (rounding mode, flush-to-zero, -ffast-math).
#pragma once

#include <cstdint>

#include "latentkv/core/config.hpp"

#if !defined(__CUDACC__)
#include <bit>
#endif

namespace latentkv {
namespace detail {

LATENTKV_HOST_DEVICE constexpr std::uint32_t float_as_bits(float f) noexcept {
#if defined(__CUDACC__)
  return __builtin_bit_cast(std::uint32_t, f);
#else
  return std::bit_cast<std::uint32_t>(f);
#endif
}

LATENTKV_HOST_DEVICE constexpr float bits_as_float(std::uint32_t u) noexcept {
#if defined(__CUDACC__)
  return __builtin_bit_cast(float, u);
#else
  return std::bit_cast<float>(u);
#endif
}

/// Shifts `value` right by `shift` (1..31) rounding to nearest, ties to even.
LATENTKV_HOST_DEVICE constexpr std::uint32_t shift_right_round_even(std::uint32_t value,
                                                                    std::uint32_t shift) noexcept {
  const std::uint32_t quotient = value >> shift;
  const std::uint32_t remainder = value & ((1u << shift) - 1u);
  const std::uint32_t halfway = 1u << (shift - 1u);
  const bool round_up = remainder > halfway || (remainder == halfway && (quotient & 1u) != 0u);
  return quotient + (round_up ? 1u : 0u);
}

}  // namespace detail

/// fp16 bits -> float (exact: every fp16 value is representable in fp32).
LATENTKV_HOST_DEVICE constexpr float fp16_bits_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = (static_cast<std::uint32_t>(h) & 0x8000u) << 16;
  const std::uint32_t exponent = (static_cast<std::uint32_t>(h) >> 10) & 0x1fu;
  std::uint32_t mantissa = static_cast<std::uint32_t>(h) & 0x3ffu;
  if (exponent == 0x1fu) {  // inf / NaN: keep the payload (a quiet NaN stays quiet)
    return detail::bits_as_float(sign | 0x7f800000u | (mantissa << 13));
  }
  if (exponent != 0u) {  // normal: rebias 15 -> 127
    return detail::bits_as_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  }
  if (mantissa == 0u) return detail::bits_as_float(sign);  // ±0
  // Subnormal m·2^-24: normalize so the leading one sits at bit 10, i.e. 1.f·2^(-14 - shifts).
  std::uint32_t biased = 113u;  // 127 - 14
  while ((mantissa & 0x400u) == 0u) {
    mantissa <<= 1;
    --biased;
  }
  return detail::bits_as_float(sign | (biased << 23) | ((mantissa & 0x3ffu) << 13));
}

/// float -> fp16 bits, round to nearest even; |x| >= 65520 -> ±inf.
LATENTKV_HOST_DEVICE constexpr std::uint16_t float_to_fp16_bits(float f) noexcept {
  const std::uint32_t x = detail::float_as_bits(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t magnitude = x & 0x7fffffffu;
  if (magnitude > 0x7f800000u) {  // NaN: quiet it, keep the top payload bits
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  }
  if (magnitude >= 0x477ff000u) {  // >= 65520 (the midpoint of 65504 and 2^16) or inf
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  }
  if (magnitude >= 0x38800000u) {  // >= 2^-14: normal fp16; a mantissa carry may bump the exponent
    const std::uint32_t rebiased = magnitude - (112u << 23);
    return static_cast<std::uint16_t>(sign | detail::shift_right_round_even(rebiased, 13));
  }
  if (magnitude <= 0x33000000u) {  // <= 2^-25: rounds to ±0 (2^-25 itself ties to the even 0)
    return static_cast<std::uint16_t>(sign);
  }
  // Subnormal fp16 result, in units of 2^-24: value = (1.f · 2^23) · 2^(e - 150) = m24 >> (126 -
  // e). e is 102..112 here, so the shift is 14..24; rounding up into 0x400 gives the smallest
  // normal.
  const std::uint32_t e = magnitude >> 23;
  const std::uint32_t m24 = (magnitude & 0x7fffffu) | 0x800000u;
  return static_cast<std::uint16_t>(sign | detail::shift_right_round_even(m24, 126u - e));
}

/// bf16 bits -> float (exact).
LATENTKV_HOST_DEVICE constexpr float bf16_bits_to_float(std::uint16_t b) noexcept {
  return detail::bits_as_float(static_cast<std::uint32_t>(b) << 16);
}

/// float -> bf16 bits, round to nearest even (the ggml / PyTorch rule); overflow -> ±inf.
LATENTKV_HOST_DEVICE constexpr std::uint16_t float_to_bf16_bits(float f) noexcept {
  const std::uint32_t x = detail::float_as_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) {  // NaN: quiet it (rounding could otherwise make it inf)
    return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
  }
  return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

}  // namespace latentkv
