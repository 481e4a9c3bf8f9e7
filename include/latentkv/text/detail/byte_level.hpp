// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// GPT-2's byte-level alphabet (bytes_to_unicode in openai/gpt-2 encoder.py; not API; std-only):
// every byte b maps to one printable code point, so a byte string becomes a text without spaces or
// control characters that BPE vocabularies can spell.
//   b in '!'..'~', '¡'..'¬', '®'..'ÿ'   → U+00bb itself (188 bytes)
//   the other 68 bytes, in increasing order → U+0100, U+0101, ... U+0143
//   e.g. ' ' (0x20) → 'Ġ' (U+0120), '\n' → 'Ċ' (U+010A), '\r' → 'č' (U+010D), '\t' → 'ĉ' (U+0109)
#pragma once

#include <array>
#include <cstdint>
#include <optional>

namespace latentkv::detail {

/// byte → code point of the byte-level alphabet.
[[nodiscard]] constexpr std::array<char32_t, 256> byte_level_alphabet() noexcept {
  std::array<char32_t, 256> alphabet{};
  const auto printable = [](unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  char32_t next = 0x100;
  for (unsigned b = 0; b < 256; ++b) alphabet[b] = printable(b) ? char32_t{b} : next++;
  return alphabet;
}

inline constexpr std::array<char32_t, 256> kByteLevelAlphabet = byte_level_alphabet();

/// The code point that stands for `byte`.
[[nodiscard]] constexpr char32_t byte_to_code_point(std::uint8_t byte) noexcept {
  return kByteLevelAlphabet[byte];
}

/// The byte that `cp` stands for, or nullopt when cp is not in the alphabet.
[[nodiscard]] constexpr std::optional<std::uint8_t> code_point_to_byte(char32_t cp) noexcept {
  if (cp <= 0xFF && kByteLevelAlphabet[cp] == cp) return static_cast<std::uint8_t>(cp);
  if (cp >= 0x100 && cp < 0x100 + 68) {
    for (unsigned b = 0; b < 256; ++b) {
      if (kByteLevelAlphabet[b] == cp) return static_cast<std::uint8_t>(b);
    }
  }
  return std::nullopt;
}

}  // namespace latentkv::detail
