// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Byte-level BPE tokenizer of GPT-2-style vocabularies (GGUF tokenizer.ggml.model = "gpt2"), giving
// the token ids of llama.cpp's llama_tokenize(text, add_special = false, parse_special = false):
//   encode  UTF-8 text → pieces (pre-tokenizer "gpt-2" or "smollm", text/detail/pre_tokenizer.hpp)
//           → per piece: one byte-level symbol per byte (text/detail/byte_level.hpp: ' ' → 'Ġ')
//           → merges applied lowest rank first, ties leftmost → token ids
//   decode  ids → each token's bytes (byte-level symbols mapped back to bytes), concatenated
//   vocabulary  tokens (n_vocab): byte-level strings ("Ġthe" spells " the"), id = index;
//               merges (n_merges): "left right" strings, rank = index (0 merges first)
// No BOS/EOS is added and special tokens written in the text ("<|im_end|>") are not recognised:
// they are tokenized as plain text (DESIGN §10).
//
// Ill-formed UTF-8 is handled as llama.cpp does (text/detail/utf8.hpp): each bad byte becomes
// U+FFFD (which is then tokenized), overlong forms are decoded (C0 80 → U+0000). Bytes whose
// byte-level symbol is not a token are dropped, as llama.cpp drops them (SmolLM2 lacks 0x04 0x06
// 0x13 0x14 0x16 0x1D 0xC0 0xC1 0xF1 0xF2 0xF5..0xFF). So decode(encode(s)) == s for well-formed
// UTF-8 without those bytes.
//
// Unicode classes come from ICU: a target that includes this header links ICU::uc (the
// latentkv::latentkv target does not). encode() and decode() are const and thread-safe.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/io/gguf_reader.hpp"
#include "latentkv/text/detail/byte_level.hpp"
#include "latentkv/text/detail/pre_tokenizer.hpp"
#include "latentkv/text/detail/utf8.hpp"

namespace latentkv {

/// The pre-tokenizers implemented (llama.cpp's LLAMA_VOCAB_PRE_TYPE_GPT2 and _SMOLLM).
enum class BpePreTokenizer : std::uint8_t {
  kGpt2,    // the GPT-2 pattern alone
  kSmollm,  // every \p{N} code point alone, then the GPT-2 pattern between them
};

inline constexpr std::array<BpePreTokenizer, 2> kBpePreTokenizers = {BpePreTokenizer::kGpt2,
                                                                     BpePreTokenizer::kSmollm};

/// The GGUF tokenizer.ggml.pre name: "gpt-2", "smollm".
[[nodiscard]] constexpr std::string_view to_string(BpePreTokenizer pre) noexcept {
  return pre == BpePreTokenizer::kGpt2 ? "gpt-2" : "smollm";
}

/// The pre-tokenizer a tokenizer.ggml.pre name stands for; nullopt when latentkv lacks it.
[[nodiscard]] constexpr std::optional<BpePreTokenizer> bpe_pre_tokenizer_from_name(
    std::string_view name) noexcept {
  for (const BpePreTokenizer pre : kBpePreTokenizers) {
    if (to_string(pre) == name) return pre;
  }
  return std::nullopt;
}

/// Token types; the values are GGUF's tokenizer.ggml.token_type codes (llama.cpp llama_token_type).
enum class TokenType : std::int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // special tokens such as <|endoftext|>: decoded as their text, verbatim
  kUserDefined = 4,  // rejected: llama.cpp matches these in raw text, which latentkv does not
  kUnused = 5,
  kByte = 6,
};

[[nodiscard]] constexpr std::string_view to_string(TokenType type) noexcept {
  constexpr std::array<std::string_view, 7> kNames = {
      "undefined", "normal", "unknown", "control", "user-defined", "unused", "byte"};
  const auto code = static_cast<std::int32_t>(type);
  return code >= 0 && code < 7 ? kNames[static_cast<std::size_t>(code)] : "invalid";
}

/// Everything a BpeTokenizer is built from.
struct BpeVocabulary {
  std::vector<std::string> tokens;     // (n_vocab) byte-level strings; id = index
  std::vector<std::string> merges;     // (n_merges) "left right"; rank = index
  std::vector<TokenType> token_types;  // (n_vocab), or empty: every token normal
  std::optional<std::int32_t> bos_id;  // in [0, n_vocab) when set
  std::optional<std::int32_t> eos_id;  // in [0, n_vocab) when set
  BpePreTokenizer pre_tokenizer = BpePreTokenizer::kSmollm;
};

/// The pieces `pre` cuts `utf8` into, as UTF-8 (after llama.cpp's replacement of ill-formed bytes,
/// so for well-formed input their concatenation is `utf8`). Empty input → no pieces.
[[nodiscard]] inline std::vector<std::string> pre_tokenize(BpePreTokenizer pre,
                                                           std::string_view utf8) {
  const detail::DecodedText text = detail::decode_text(utf8);
  const std::vector<std::size_t> ends = detail::split_pieces(text, pre == BpePreTokenizer::kSmollm);
  std::vector<std::string> pieces;
  pieces.reserve(ends.size());
  std::size_t begin = 0;
  for (const std::size_t end : ends) {
    pieces.emplace_back(text.bytes(begin, end));
    begin = end;
  }
  return pieces;
}

class BpeTokenizer {
 public:
  /// Validates and indexes `vocabulary`. Throws InvalidArgument when there are no tokens, when
  /// token_types has another length than tokens or holds an invalid or user-defined type, when a
  /// merge is not "left right" with left, right and left+right all tokens, or when bos_id / eos_id
  /// is out of range. A token text that occurs twice maps to its last id, and a merge listed twice
  /// keeps its first rank (both as llama.cpp).
  explicit BpeTokenizer(BpeVocabulary vocabulary)
      : BpeTokenizer(std::move(vocabulary),
                     Source{false, "latentkv::BpeTokenizer::BpeTokenizer", "", "vocabulary.tokens",
                            "vocabulary.merges", "vocabulary.token_types", "vocabulary.bos_id",
                            "vocabulary.eos_id"}) {}

  /// The tokenizer stored in a GGUF file's metadata: tokenizer.ggml.model (must be "gpt2"),
  /// .pre (a supported pre-tokenizer), .tokens, .merges (string arrays), and optionally
  /// .token_type (int32 array), .bos_token_id, .eos_token_id. Throws FormatError naming the file
  /// and the key when one is missing, has the wrong type or an unsupported / invalid value.
  [[nodiscard]] static BpeTokenizer from_gguf(const GgufReader& gguf) {
    constexpr const char* kWhere = "latentkv::BpeTokenizer::from_gguf";
    const std::string path = gguf.path().string();
    constexpr std::string_view kModelKey = "tokenizer.ggml.model";
    constexpr std::string_view kPreKey = "tokenizer.ggml.pre";
    constexpr std::string_view kTypesKey = "tokenizer.ggml.token_type";
    constexpr std::string_view kBosKey = "tokenizer.ggml.bos_token_id";
    constexpr std::string_view kEosKey = "tokenizer.ggml.eos_token_id";

    const auto model = gguf.get<std::string_view>(kModelKey);
    if (model != "gpt2") {
      detail::raise<FormatError>(kWhere, path, ": metadata key ", detail::quoted(kModelKey), " = ",
                                 detail::quoted(model),
                                 ", expected 'gpt2' (byte-level BPE, the only tokenizer model "
                                 "latentkv implements)");
    }
    if (!gguf.contains(kPreKey)) {
      detail::raise<FormatError>(kWhere, path, ": missing metadata key ", detail::quoted(kPreKey),
                                 " (the pre-tokenizer); supported: ", supported_pre_tokenizers());
    }
    const auto pre_name = gguf.get<std::string_view>(kPreKey);
    const std::optional<BpePreTokenizer> pre = bpe_pre_tokenizer_from_name(pre_name);
    if (!pre) {
      detail::raise<FormatError>(
          kWhere, path, ": metadata key ", detail::quoted(kPreKey), " = ", detail::quoted(pre_name),
          " is not a supported pre-tokenizer; supported: ", supported_pre_tokenizers());
    }

    BpeVocabulary vocabulary;
    vocabulary.pre_tokenizer = *pre;
    vocabulary.tokens = gguf.get_array_of<std::string>("tokenizer.ggml.tokens");
    vocabulary.merges = gguf.get_array_of<std::string>("tokenizer.ggml.merges");
    if (gguf.contains(kTypesKey)) {
      // any int32 is a TokenType value; the constructor rejects codes outside 0..6
      for (const std::int32_t code : gguf.get_array_of<std::int32_t>(kTypesKey)) {
        vocabulary.token_types.push_back(static_cast<TokenType>(code));
      }
    }
    if (gguf.contains(kBosKey)) vocabulary.bos_id = gguf.get_integer<std::int32_t>(kBosKey);
    if (gguf.contains(kEosKey)) vocabulary.eos_id = gguf.get_integer<std::int32_t>(kEosKey);

    const auto key = [](std::string_view k) {
      return detail::concat("metadata key ", detail::quoted(k));
    };
    return BpeTokenizer(
        std::move(vocabulary),
        Source{true, kWhere, path + ": ", key("tokenizer.ggml.tokens"),
               key("tokenizer.ggml.merges"), key(kTypesKey), key(kBosKey), key(kEosKey)});
  }

  /// Token ids of `utf8` (any bytes; see the header comment for ill-formed UTF-8): (n_tokens).
  /// No BOS, no special-token parsing. Each distinct piece is merged once per call (a cache keyed
  /// by its bytes); WikiText-2's test file (1.3 MB) takes about 0.1 s. Throws InvalidArgument only
  /// for a single piece longer than 2^31 - 1 bytes.
  [[nodiscard]] std::vector<std::int32_t> encode(std::string_view utf8) const {
    const detail::DecodedText text = detail::decode_text(utf8);
    const std::vector<std::size_t> ends =
        detail::split_pieces(text, pre_tokenizer_ == BpePreTokenizer::kSmollm);
    std::vector<std::int32_t> ids;
    ids.reserve(utf8.size() / 3 + 16);
    // piece bytes → where its ids were first written in `ids`
    std::unordered_map<std::string_view, std::pair<std::size_t, std::size_t>> seen;
    seen.reserve(ends.size() / 4 + 16);
    Scratch scratch;
    std::size_t begin = 0;
    for (const std::size_t end : ends) {
      const std::string_view piece = text.bytes(begin, end);
      begin = end;
      const auto [it, inserted] = seen.try_emplace(piece, ids.size(), 0);
      if (!inserted) {
        const auto [first, count] = it->second;
        for (std::size_t k = first; k < first + count; ++k) {
          const std::int32_t id = ids[k];
          ids.push_back(id);
        }
        continue;
      }
      const std::size_t first = ids.size();
      bpe(piece, scratch, ids);
      it->second.second = ids.size() - first;
    }
    return ids;
  }

  /// The bytes of `ids` ((n_tokens), each in [0, vocab_size())), concatenated. Normal tokens map
  /// their byte-level symbols back to bytes (a character outside the byte-level alphabet is kept
  /// as its UTF-8); control tokens give their text verbatim ("<|im_end|>"). No clean-up of
  /// spaces. Throws InvalidArgument naming the first id out of range.
  [[nodiscard]] std::string decode(std::span<const std::int32_t> ids) const {
    std::string out;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      check_id(ids[i], "latentkv::BpeTokenizer::decode", "ids[", i, "]");
      out += token_bytes_[static_cast<std::size_t>(ids[i])];
    }
    return out;
  }

  [[nodiscard]] std::int32_t vocab_size() const noexcept {
    return static_cast<std::int32_t>(tokens_.size());
  }
  [[nodiscard]] std::int32_t merge_count() const noexcept { return merge_count_; }
  [[nodiscard]] std::optional<std::int32_t> bos_id() const noexcept { return bos_id_; }
  [[nodiscard]] std::optional<std::int32_t> eos_id() const noexcept { return eos_id_; }
  [[nodiscard]] BpePreTokenizer pre_tokenizer() const noexcept { return pre_tokenizer_; }

  /// The vocabulary string of `id` (byte-level: "Ġthe"). Throws InvalidArgument when out of range.
  [[nodiscard]] const std::string& token(std::int32_t id) const {
    check_id(id, "latentkv::BpeTokenizer::token", "id");
    return tokens_[static_cast<std::size_t>(id)];
  }

  /// The bytes decode() gives for `id` alone (" the" for "Ġthe").
  [[nodiscard]] const std::string& token_bytes(std::int32_t id) const {
    check_id(id, "latentkv::BpeTokenizer::token_bytes", "id");
    return token_bytes_[static_cast<std::size_t>(id)];
  }

  [[nodiscard]] TokenType token_type(std::int32_t id) const {
    check_id(id, "latentkv::BpeTokenizer::token_type", "id");
    return types_.empty() ? TokenType::kNormal : types_[static_cast<std::size_t>(id)];
  }

  /// The id of the vocabulary string `text` (byte-level spelling), or nullopt.
  [[nodiscard]] std::optional<std::int32_t> find_token(std::string_view text) const {
    const auto it = token_ids_.find(std::string(text));
    return it == token_ids_.end() ? std::nullopt : std::optional<std::int32_t>(it->second);
  }

 private:
  static constexpr std::int32_t kNoToken = -1;  // a byte whose symbol is not in the vocabulary
  static constexpr std::int32_t kMerged = -2;   // a symbol merged into its left neighbour

  /// How validation failures are reported: exception type, function, and names of the fields.
  struct Source {
    bool format_error = false;  // FormatError (from_gguf) or InvalidArgument (constructor)
    const char* where = "";
    std::string prefix;  // "" or "<file>: "
    std::string tokens, merges, types, bos, eos;
  };

  struct MergeRule {
    std::int32_t rank = 0;
    std::int32_t merged = 0;  // id of left + right
  };

  /// One symbol of the word being merged: a token id (or kNoToken / kMerged) in a linked list.
  struct Symbol {
    std::int32_t id;
    std::int32_t prev;
    std::int32_t next;
    std::uint8_t byte;  // the input byte it started as (for symbols that are not tokens)
  };

  /// A pair of adjacent symbols that a merge applies to, as seen when it was queued.
  struct Candidate {
    std::int32_t rank;
    std::int32_t left;
    std::int32_t right;
    std::int32_t left_id;
    std::int32_t right_id;
    std::int32_t merged;
  };

  /// Buffers reused across the pieces of one encode() call.
  struct Scratch {
    std::vector<Symbol> symbols;
    std::vector<Candidate> queue;  // a heap: lowest rank, then leftmost, on top
  };

  BpeTokenizer(BpeVocabulary vocabulary, const Source& source)
      : tokens_(std::move(vocabulary.tokens)),
        types_(std::move(vocabulary.token_types)),
        bos_id_(vocabulary.bos_id),
        eos_id_(vocabulary.eos_id),
        pre_tokenizer_(vocabulary.pre_tokenizer) {
    if (tokens_.empty()) fail(source, source.tokens, " is empty, expected at least one token");
    if (tokens_.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
      fail(source, source.tokens, " has ", tokens_.size(), " entries, more than int32 ids hold");
    }
    const auto n_vocab = static_cast<std::int32_t>(tokens_.size());
    check_types(source);
    check_special(source, bos_id_, source.bos, n_vocab);
    check_special(source, eos_id_, source.eos, n_vocab);

    token_ids_.reserve(tokens_.size());
    for (std::int32_t id = 0; id < n_vocab; ++id) {
      token_ids_.insert_or_assign(tokens_[static_cast<std::size_t>(id)], id);  // last one wins
    }
    index_bytes();
    index_merges(std::move(vocabulary.merges), source);

    token_bytes_.reserve(tokens_.size());
    for (std::size_t id = 0; id < tokens_.size(); ++id) {
      const bool verbatim = !types_.empty() && types_[id] == TokenType::kControl;
      token_bytes_.push_back(verbatim ? tokens_[id] : byte_level_to_bytes(tokens_[id]));
    }
  }

  template <class... Parts>
  [[noreturn]] static void fail(const Source& source, const Parts&... parts) {
    if (source.format_error) detail::raise<FormatError>(source.where, source.prefix, parts...);
    detail::raise<InvalidArgument>(source.where, source.prefix, parts...);
  }

  static std::string supported_pre_tokenizers() {
    std::string out;
    for (const BpePreTokenizer pre : kBpePreTokenizers) {
      if (!out.empty()) out += ", ";
      out += detail::concat(detail::quoted(to_string(pre)));
    }
    return out;
  }

  template <class... Parts>
  void check_id(std::int32_t id, const char* where, const Parts&... name) const {
    if (id < 0 || id >= vocab_size()) {
      detail::raise<InvalidArgument>(where, name..., " = ", id, ", expected 0..", vocab_size() - 1);
    }
  }

  void check_types(const Source& source) const {
    if (types_.empty()) return;
    if (types_.size() != tokens_.size()) {
      fail(source, source.types, " has ", types_.size(), " entries, expected ", tokens_.size(),
           " (one per token)");
    }
    for (std::size_t i = 0; i < types_.size(); ++i) {
      const auto code = static_cast<std::int32_t>(types_[i]);
      if (code < 0 || code > static_cast<std::int32_t>(TokenType::kByte)) {
        fail(source, source.types, "[", i, "] = ", code, ", expected a token type 0..6");
      }
      if (types_[i] == TokenType::kUserDefined) {
        fail(source, source.types, "[", i, "] = 4 (user-defined) for token ",
             detail::quoted(tokens_[i]),
             ": not supported (llama.cpp matches user-defined tokens in raw text)");
      }
    }
  }

  static void check_special(const Source& source, std::optional<std::int32_t> id,
                            const std::string& name, std::int32_t n_vocab) {
    if (id && (*id < 0 || *id >= n_vocab)) {
      fail(source, name, " = ", *id, ", expected 0..", n_vocab - 1, " (the vocabulary size is ",
           n_vocab, ")");
    }
  }

  /// byte_ids_[b]: the token of b's byte-level symbol. When there is none, llama.cpp looks up
  /// each UTF-8 byte of the symbol as a one-byte token string (dropping those that are not
  /// tokens); byte_fallback_[b] holds what that gives.
  void index_bytes() {
    for (std::size_t b = 0; b < 256; ++b) {
      std::string symbol;
      detail::append_utf8(detail::byte_to_code_point(static_cast<std::uint8_t>(b)), symbol);
      const auto it = token_ids_.find(symbol);
      byte_ids_[b] = it == token_ids_.end() ? kNoToken : it->second;
      if (it != token_ids_.end()) continue;
      for (const char c : symbol) {
        const auto one = token_ids_.find(std::string(1, c));
        if (one != token_ids_.end()) byte_fallback_[b].push_back(one->second);
      }
    }
  }

  void index_merges(std::vector<std::string> merges, const Source& source) {
    if (merges.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
      fail(source, source.merges, " has ", merges.size(), " entries, more than int32 ranks hold");
    }
    merge_count_ = static_cast<std::int32_t>(merges.size());
    merge_rules_.reserve(merges.size());
    for (std::size_t rank = 0; rank < merges.size(); ++rank) {
      const std::string& merge = merges[rank];
      const std::size_t space = merge.find(' ', 1);  // as llama.cpp: a leading ' ' is a symbol
      if (space == std::string::npos || space + 1 == merge.size()) {
        fail(source, source.merges, "[", rank, "] = ", detail::quoted(merge),
             " is not 'left right'");
      }
      const std::string_view left = std::string_view(merge).substr(0, space);
      const std::string_view right = std::string_view(merge).substr(space + 1);
      const std::int32_t left_id = require_token(source, rank, merge, left, "left side");
      const std::int32_t right_id = require_token(source, rank, merge, right, "right side");
      const std::int32_t merged_id =
          require_token(source, rank, merge, std::string(left) + std::string(right), "result");
      merge_rules_.try_emplace(pair_key(left_id, right_id),
                               MergeRule{static_cast<std::int32_t>(rank), merged_id});
    }
  }

  std::int32_t require_token(const Source& source, std::size_t rank, const std::string& merge,
                             std::string_view text, const char* what) const {
    const auto it = token_ids_.find(std::string(text));
    if (it == token_ids_.end()) {
      fail(source, source.merges, "[", rank, "] = ", detail::quoted(merge), ": its ", what, " ",
           detail::quoted(text), " is not a token");
    }
    return it->second;
  }

  [[nodiscard]] static constexpr std::uint64_t pair_key(std::int32_t left,
                                                        std::int32_t right) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
           static_cast<std::uint32_t>(right);
  }

  /// Maps a byte-level token string back to bytes; characters outside the alphabet stay UTF-8.
  static std::string byte_level_to_bytes(std::string_view token) {
    std::string out;
    for (std::size_t at = 0; at < token.size();) {
      const detail::Utf8Decoded d = detail::decode_utf8(token, at);
      if (const std::optional<std::uint8_t> byte = detail::code_point_to_byte(d.code_point)) {
        out.push_back(static_cast<char>(*byte));
      } else {
        out.append(token.substr(at, d.length));
      }
      at += d.length;
    }
    return out;
  }

  /// Queues the merge of symbols `left` and `right` when there is one (and both are tokens).
  void consider(Scratch& s, std::int32_t left, std::int32_t right) const {
    if (left < 0 || right < 0) return;
    const std::int32_t left_id = s.symbols[static_cast<std::size_t>(left)].id;
    const std::int32_t right_id = s.symbols[static_cast<std::size_t>(right)].id;
    if (left_id < 0 || right_id < 0) return;
    const auto it = merge_rules_.find(pair_key(left_id, right_id));
    if (it == merge_rules_.end()) return;
    s.queue.push_back({it->second.rank, left, right, left_id, right_id, it->second.merged});
    std::push_heap(s.queue.begin(), s.queue.end(), later);
  }

  /// Heap order: `a` comes out after `b` (higher rank, or same rank further right).
  static bool later(const Candidate& a, const Candidate& b) noexcept {
    return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
  }

  /// BPE on one piece (its bytes), appending its token ids to `out`. Same order as llama.cpp's
  /// llm_tokenizer_bpe_session: the queued merge of lowest rank first, ties to the leftmost pair.
  void bpe(std::string_view piece, Scratch& s, std::vector<std::int32_t>& out) const {
    if (piece.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
      detail::raise<InvalidArgument>("latentkv::BpeTokenizer::encode", "a piece of ", piece.size(),
                                     " bytes (one word or white-space run) is longer than the "
                                     "2^31 - 1 bytes BPE indexes");
    }
    const auto n = static_cast<std::int32_t>(piece.size());
    s.symbols.clear();
    s.queue.clear();
    for (std::int32_t i = 0; i < n; ++i) {
      const auto byte = static_cast<std::uint8_t>(piece[static_cast<std::size_t>(i)]);
      s.symbols.push_back({byte_ids_[byte], i - 1, i + 1 < n ? i + 1 : -1, byte});
    }
    for (std::int32_t i = 1; i < n; ++i) consider(s, i - 1, i);
    while (!s.queue.empty()) {
      std::pop_heap(s.queue.begin(), s.queue.end(), later);
      const Candidate c = s.queue.back();
      s.queue.pop_back();
      Symbol& left = s.symbols[static_cast<std::size_t>(c.left)];
      Symbol& right = s.symbols[static_cast<std::size_t>(c.right)];
      if (left.id != c.left_id || right.id != c.right_id || left.next != c.right) continue;
      left.id = c.merged;
      left.next = right.next;
      if (right.next >= 0) s.symbols[static_cast<std::size_t>(right.next)].prev = c.left;
      right.id = kMerged;
      consider(s, left.prev, c.left);
      consider(s, c.left, left.next);
    }
    for (std::int32_t i = n > 0 ? 0 : -1; i >= 0; i = s.symbols[static_cast<std::size_t>(i)].next) {
      const Symbol& symbol = s.symbols[static_cast<std::size_t>(i)];
      if (symbol.id >= 0) {
        out.push_back(symbol.id);
      } else {
        const std::vector<std::int32_t>& fallback = byte_fallback_[symbol.byte];
        out.insert(out.end(), fallback.begin(), fallback.end());
      }
    }
  }

  std::vector<std::string> tokens_;       // (n_vocab)
  std::vector<TokenType> types_;          // (n_vocab) or empty
  std::vector<std::string> token_bytes_;  // (n_vocab) what decode() gives per token
  std::unordered_map<std::string, std::int32_t> token_ids_;
  std::unordered_map<std::uint64_t, MergeRule> merge_rules_;    // (left id, right id) → rule
  std::array<std::int32_t, 256> byte_ids_{};                    // byte → token or kNoToken
  std::array<std::vector<std::int32_t>, 256> byte_fallback_{};  // for bytes without a token
  std::int32_t merge_count_ = 0;
  std::optional<std::int32_t> bos_id_;
  std::optional<std::int32_t> eos_id_;
  BpePreTokenizer pre_tokenizer_;
};

}  // namespace latentkv
