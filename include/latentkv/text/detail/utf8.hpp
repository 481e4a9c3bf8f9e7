// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// UTF-8 decoding with llama.cpp's error handling (unicode_cpts_from_utf8 in its src/unicode.cpp),
// so that ill-formed input gives the same token ids as llama.cpp (not API; std-only).
//   lead byte   0xxxxxxx → 1 byte    110xxxxx → 2    1110xxxx → 3    11110xxx → 4
//   ill-formed  a stray continuation byte (10xxxxxx), a lead byte F8..FF, or a lead byte whose
//               continuation bytes are missing or not 10xxxxxx  → U+FFFD, resume at the next byte
//   lenient     overlong forms and surrogates are decoded, not rejected (C0 80 → U+0000,
//               ED A0 80 → U+D800), exactly as llama.cpp does
//   above       a 4-byte form decoding above U+10FFFF (F4 90.., F5..F7 leads): llama.cpp aborts
//   U+10FFFF    (std::invalid_argument "invalid codepoint"); here it is ill-formed → U+FFFD
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace latentkv::detail {

inline constexpr char32_t kReplacementCharacter = 0xFFFD;
inline constexpr char32_t kMaxCodePoint = 0x10FFFF;

/// One decoded code point and how many input bytes it took (≥ 1).
struct Utf8Decoded {
  char32_t code_point = 0;
  std::size_t length = 1;
};

/// Decodes the code point starting at text[at] (at < text.size()) with the rules above.
[[nodiscard]] constexpr Utf8Decoded decode_utf8(std::string_view text, std::size_t at) noexcept {
  const auto byte = [&](std::size_t i) {
    return static_cast<char32_t>(static_cast<unsigned char>(text[i]));
  };
  const auto continuation = [&](std::size_t i) {
    return i < text.size() && (byte(i) & 0xC0) == 0x80;
  };
  constexpr Utf8Decoded kIllFormed{kReplacementCharacter, 1};
  const char32_t b0 = byte(at);
  if (b0 < 0x80) return {b0, 1};
  if ((b0 & 0x40) == 0) return kIllFormed;  // 10xxxxxx: continuation byte without a lead
  if ((b0 & 0x20) == 0) {
    if (!continuation(at + 1)) return kIllFormed;
    return {((b0 & 0x1F) << 6) | (byte(at + 1) & 0x3F), 2};
  }
  if ((b0 & 0x10) == 0) {
    if (!continuation(at + 1) || !continuation(at + 2)) return kIllFormed;
    return {((b0 & 0x0F) << 12) | ((byte(at + 1) & 0x3F) << 6) | (byte(at + 2) & 0x3F), 3};
  }
  if ((b0 & 0x08) == 0) {
    if (!continuation(at + 1) || !continuation(at + 2) || !continuation(at + 3)) return kIllFormed;
    const char32_t cp = ((b0 & 0x07) << 18) | ((byte(at + 1) & 0x3F) << 12) |
                        ((byte(at + 2) & 0x3F) << 6) | (byte(at + 3) & 0x3F);
    if (cp > kMaxCodePoint) return kIllFormed;
    return {cp, 4};
  }
  return kIllFormed;  // F8..FF
}

/// Appends the UTF-8 form of `cp` (≤ U+10FFFF; surrogates are encoded like any other value, as
/// llama.cpp does) to `out`.
inline void append_utf8(char32_t cp, std::string& out) {
  const auto put = [&](char32_t bits) {
    out.push_back(static_cast<char>(static_cast<unsigned char>(bits)));
  };
  if (cp < 0x80) {
    put(cp);
  } else if (cp < 0x800) {
    put(0xC0 | (cp >> 6));
    put(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    put(0xE0 | (cp >> 12));
    put(0x80 | ((cp >> 6) & 0x3F));
    put(0x80 | (cp & 0x3F));
  } else {
    put(0xF0 | (cp >> 18));
    put(0x80 | ((cp >> 12) & 0x3F));
    put(0x80 | ((cp >> 6) & 0x3F));
    put(0x80 | (cp & 0x3F));
  }
}

}  // namespace latentkv::detail
