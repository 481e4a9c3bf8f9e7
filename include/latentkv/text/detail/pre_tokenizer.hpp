// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Pre-tokenization of byte-level BPE models as llama.cpp does it (not API; needs ICU, link
// ICU::uc). The text is cut into pieces ("words"); BPE then runs inside each piece only.
//   classes   \p{L} = Lu Ll Lt Lm Lo,  \p{N} = Nd Nl No   (ICU general category, u_charType)
//             \s    = the Unicode White_Space property     (ICU u_isUWhiteSpace), which is what
//                     llama.cpp's tables hold (Python `regex` \s: 09-0D 20 85 A0 1680 2000-200A
//                     2028 2029 202F 205F 3000)
//   gpt-2     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//             evaluated like llama.cpp's unicode_regex_split_custom_gpt2: contractions are
//             lower-case only; `\s+(?!\S)` leaves the last white space of a run to the next piece
//             when something follows inside the same range, so "a   b" → "a", "  ", " b"
//   smollm    first every \p{N} code point becomes a piece of its own ("2024" → 2 0 2 4, and
//             " 1" → " " 1), then gpt-2 runs on each stretch between them *separately*: a piece
//             never crosses a number, and `(?!\S)` sees the stretch's end as the end of text, so
//             "a  1" → "a", "  ", "1" (llama.cpp's regex list {"\p{N}", gpt-2})
// Code point indices: pieces are half-open ranges [begin, end) of a DecodedText's code points.
#pragma once

#if !__has_include(<unicode/uchar.h>)
#error "latentkv/text needs the ICU headers (libicu-dev); link ICU::uc"
#endif

#include <unicode/uchar.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "latentkv/text/detail/utf8.hpp"

namespace latentkv::detail {

/// The character classes the GPT-2 pattern distinguishes; kOutside stands for "past the end of
/// the range being split" (llama.cpp's OUT_OF_RANGE), which matches no class.
enum class CodePointClass : std::uint8_t { kLetter, kNumber, kWhitespace, kOther, kOutside };

[[nodiscard]] inline CodePointClass classify_with_icu(char32_t cp) noexcept {
  const auto c = static_cast<UChar32>(cp);
  if (u_isUWhiteSpace(c)) return CodePointClass::kWhitespace;
  const std::uint32_t category_mask = U_GET_GC_MASK(c);
  if ((category_mask & U_GC_L_MASK) != 0) return CodePointClass::kLetter;
  if ((category_mask & U_GC_N_MASK) != 0) return CodePointClass::kNumber;
  return CodePointClass::kOther;
}

/// ICU's answer, with ASCII answered from a table built once from ICU.
[[nodiscard]] inline CodePointClass classify(char32_t cp) noexcept {
  static const std::array<CodePointClass, 128> kAscii = [] {
    std::array<CodePointClass, 128> table{};
    for (char32_t c = 0; c < 128; ++c) table[c] = classify_with_icu(c);
    return table;
  }();
  return cp < 128 ? kAscii[cp] : classify_with_icu(cp);
}

/// A text decoded once for pre-tokenization. `utf8` is the text re-encoded from its code points:
/// identical to the input when that is well-formed UTF-8, otherwise with llama.cpp's
/// replacements (detail/utf8.hpp).
struct DecodedText {
  std::u32string code_points;             // (n)
  std::vector<CodePointClass> classes;    // (n)
  std::string utf8;                       // re-encoded text
  std::vector<std::size_t> byte_offsets;  // (n + 1): code point i is utf8[off[i], off[i + 1])

  [[nodiscard]] std::size_t size() const noexcept { return code_points.size(); }
  [[nodiscard]] std::string_view bytes(std::size_t begin, std::size_t end) const noexcept {
    return std::string_view(utf8).substr(byte_offsets[begin],
                                         byte_offsets[end] - byte_offsets[begin]);
  }
};

[[nodiscard]] inline DecodedText decode_text(std::string_view text) {
  DecodedText out;
  out.code_points.reserve(text.size());
  out.classes.reserve(text.size());
  out.utf8.reserve(text.size());
  out.byte_offsets.reserve(text.size() + 1);
  for (std::size_t at = 0; at < text.size();) {
    const Utf8Decoded d = decode_utf8(text, at);
    out.byte_offsets.push_back(out.utf8.size());
    out.code_points.push_back(d.code_point);
    out.classes.push_back(classify(d.code_point));
    append_utf8(d.code_point, out.utf8);  // the input bytes, except for overlong / ill-formed ones
    at += d.length;
  }
  out.byte_offsets.push_back(out.utf8.size());
  return out;
}

/// Splits code points [begin, end) of `text` with the GPT-2 pattern; appends each piece's end.
inline void split_gpt2(const DecodedText& text, std::size_t begin, std::size_t end,
                       std::vector<std::size_t>& ends) {
  const std::u32string_view cps = text.code_points;
  const auto class_at = [&](std::size_t i) {
    return i < end ? text.classes[i] : CodePointClass::kOutside;
  };
  std::size_t pos = begin;
  while (pos < end) {
    const char32_t cp = cps[pos];
    // 's|'t|'re|'ve|'m|'ll|'d
    if (cp == U'\'' && pos + 1 < end) {
      const char32_t c1 = cps[pos + 1];
      if (c1 == U's' || c1 == U't' || c1 == U'm' || c1 == U'd') {
        pos += 2;
        ends.push_back(pos);
        continue;
      }
      if (pos + 2 < end) {
        const char32_t c2 = cps[pos + 2];
        if ((c1 == U'r' && c2 == U'e') || (c1 == U'v' && c2 == U'e') ||
            (c1 == U'l' && c2 == U'l')) {
          pos += 3;
          ends.push_back(pos);
          continue;
        }
      }
    }
    //  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+
    const std::size_t body = pos + (cp == U' ' ? 1 : 0);
    const CodePointClass run = class_at(body);
    if (run == CodePointClass::kLetter || run == CodePointClass::kNumber ||
        run == CodePointClass::kOther) {
      pos = body;
      while (class_at(pos) == run) ++pos;
      ends.push_back(pos);
      continue;
    }
    // \s+(?!\S) | \s+ : here cps[pos] is white space (a lone ' ' at the end included)
    std::size_t n = 0;
    while (class_at(pos + n) == CodePointClass::kWhitespace) ++n;
    pos += (n > 1 && pos + n < end) ? n - 1 : (n > 0 ? n : 1);
    ends.push_back(pos);
  }
}

/// Piece ends (exclusive code point indices, increasing, the last one = text.size()).
/// `numbers_alone`: smollm's first stage (every \p{N} code point is a piece of its own).
[[nodiscard]] inline std::vector<std::size_t> split_pieces(const DecodedText& text,
                                                           bool numbers_alone) {
  std::vector<std::size_t> ends;
  ends.reserve(text.size() / 3 + 1);
  if (!numbers_alone) {
    split_gpt2(text, 0, text.size(), ends);
    return ends;
  }
  std::size_t stretch = 0;  // start of the current run without numbers
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text.classes[i] != CodePointClass::kNumber) continue;
    split_gpt2(text, stretch, i, ends);
    ends.push_back(i + 1);
    stretch = i + 1;
  }
  split_gpt2(text, stretch, text.size(), ends);
  return ends;
}

}  // namespace latentkv::detail
