// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Element types a latent cache stores, shared by the CPU kernel and the CUDA kernels (std-only).
//   float          fp32
//   std::uint16_t  IEEE binary16 bits (core/half.hpp); CUDA reads them as __half
//   Bf16           bfloat16 bits (the top 16 bits of an fp32); CUDA reads them as __nv_bfloat16
// Every kernel widens a stored latent to fp32 with latent_to_float and computes in fp32; appending
// rounds with latent_from_float (round to nearest even, overflow → ±inf).
#pragma once

#include <concepts>
#include <cstdint>
#include <type_traits>

#include "latentkv/core/config.hpp"
#include "latentkv/core/half.hpp"

namespace latentkv {

/// One bfloat16 number as its bit pattern: a distinct type so that a latent matrix of bf16 cannot
/// be mistaken for fp16 bits. Trivially copyable, 2 bytes, 2-byte aligned.
struct Bf16 {
  std::uint16_t bits = 0;
};
static_assert(sizeof(Bf16) == 2 && alignof(Bf16) == 2 && std::is_trivially_copyable_v<Bf16>);

/// Element types a latent cache stores: fp32 (`float`), fp16 bits (`std::uint16_t`) or `Bf16`.
/// The pointer-based kernels (run_latent_attention, the CUDA decode) take all three; the Eigen
/// front ends (latent_attention(), LatentKvCache) take float and fp16.
template <class S>
concept LatentElement =
    std::same_as<S, float> || std::same_as<S, std::uint16_t> || std::same_as<S, Bf16>;

/// A codec's view of one group's stored latents (quant/latent_codec.hpp: QuantizedLatentView):
/// trivially copyable, decodes tokens [k0, k0 + kb) into fp32 rows out: (kb, width), stride width.
/// The CPU kernel's latent pointer then points at one view per group (its ld = rank, unused).
/// CPU only: the CUDA kernels take LatentElement storage.
template <class S>
concept LatentBlockDecoder = std::is_trivially_copyable_v<S> &&
    requires(const S& s, std::int64_t k0, std::int64_t kb, float* out) {
  { s.decode_rows(k0, kb, out) }
  noexcept;
};

/// What the CPU kernel reads latents from: an element type, or a block decoder (quantized).
template <class S>
concept LatentStorage = LatentElement<S> || LatentBlockDecoder<S>;

/// fp16 bits → float, branch-free so a loop over a block vectorizes; equal to
/// fp16_bits_to_float for every input (tests check all 65536).
LATENTKV_HOST_DEVICE constexpr float fp16_bits_to_float_fast(std::uint16_t h) noexcept {
  constexpr std::uint32_t kExponentMask = 0x7c00u << 13;  // fp16 exponent after the shift
  const std::uint32_t shifted = (static_cast<std::uint32_t>(h) & 0x7fffu) << 13;
  const std::uint32_t exponent = shifted & kExponentMask;
  std::uint32_t bits = shifted + ((127u - 15u) << 23);            // rebias
  bits += exponent == kExponentMask ? ((128u - 16u) << 23) : 0u;  // inf / NaN: exponent 255
  // Zero / subnormal: m·2^-24 = (2^-14 + m·2^-24) − 2^-14, exact in fp32.
  const float subnormal =
      detail::bits_as_float(bits + (1u << 23)) - detail::bits_as_float(113u << 23);
  bits = exponent == 0u ? detail::float_as_bits(subnormal) : bits;
  return detail::bits_as_float(bits | ((static_cast<std::uint32_t>(h) & 0x8000u) << 16));
}

/// A stored latent as fp32 (exact for every storage type).
template <LatentElement S>
LATENTKV_HOST_DEVICE constexpr float latent_to_float(S value) noexcept {
  if constexpr (std::same_as<S, float>) {
    return value;
  } else if constexpr (std::same_as<S, Bf16>) {
    return bf16_bits_to_float(value.bits);
  } else {
    return fp16_bits_to_float_fast(value);
  }
}

/// fp32 → stored latent (16-bit: round to nearest even, overflow → ±inf).
template <LatentElement S>
LATENTKV_HOST_DEVICE constexpr S latent_from_float(float value) noexcept {
  if constexpr (std::same_as<S, float>) {
    return value;
  } else if constexpr (std::same_as<S, Bf16>) {
    return Bf16{float_to_bf16_bits(value)};
  } else {
    return float_to_fp16_bits(value);
  }
}

}  // namespace latentkv
