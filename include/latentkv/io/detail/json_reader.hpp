// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Not API. Strict JSON input for the file readers (nlohmann-json underneath):
//   - RFC 8259 only: no comments, no byte-order mark (nlohmann would skip one; serde_json, which
//     the reference safetensors reader uses, rejects it), no NUL byte (nlohmann takes one for the
//     end of the input), nothing but whitespace after the value;
//   - duplicate keys in any object are errors (nlohmann's DOM parser silently keeps the last one);
//   - every error is a FormatError naming the file and the byte offset in the file.
// Byte offsets: nlohmann's SAX and callback interfaces do not report positions, so the input is
// read through JsonPosition::Iterator, which counts the bytes the lexer has consumed. A callback
// fires right after its token was read (numbers read one byte past their end), so the token's
// first byte is the first byte after the previous token that is not whitespace, ',' or ':'.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/io/detail/gguf_cursor.hpp"

namespace latentkv::detail {

/// Tracks how far the lexer has read into `text` and where the latest token started.
class JsonPosition {
 public:
  /// A const char* that advances the owner's count of consumed bytes (an input iterator).
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = char;
    using difference_type = std::ptrdiff_t;
    using pointer = const char*;
    using reference = const char&;

    Iterator() = default;
    Iterator(const char* p, std::size_t* consumed) noexcept : p_(p), consumed_(consumed) {}

    reference operator*() const noexcept { return *p_; }
    Iterator& operator++() noexcept {
      ++p_;
      if (consumed_ != nullptr) ++*consumed_;
      return *this;
    }
    Iterator operator++(int) noexcept {
      Iterator before = *this;
      ++*this;
      return before;
    }
    friend bool operator==(const Iterator& a, const Iterator& b) noexcept { return a.p_ == b.p_; }

   private:
    const char* p_ = nullptr;
    std::size_t* consumed_ = nullptr;
  };

  explicit JsonPosition(std::string_view text) noexcept : text_(text) {}
  JsonPosition(const JsonPosition&) = delete;  // the iterators point at consumed_
  JsonPosition& operator=(const JsonPosition&) = delete;

  [[nodiscard]] Iterator begin() noexcept { return {text_.data(), &consumed_}; }
  [[nodiscard]] Iterator end() noexcept { return {text_.data() + text_.size(), nullptr}; }

  /// Call from every callback: returns the index in `text` where the token just read starts.
  std::size_t token_start() noexcept {
    std::size_t i = last_end_;
    while (i < consumed_ && is_separator(text_[i])) ++i;
    last_end_ = consumed_;
    return i < consumed_ ? i : (consumed_ > 0 ? consumed_ - 1 : 0);
  }

  /// After a parse error: the index where the offending token starts (the end of the input when
  /// only separators followed the last good token).
  [[nodiscard]] std::size_t error_start() const noexcept {
    std::size_t i = last_end_;
    while (i < consumed_ && is_separator(text_[i])) ++i;
    return i;
  }

 private:
  static constexpr bool is_separator(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ':';
  }

  std::string_view text_;
  std::size_t consumed_ = 0;
  std::size_t last_end_ = 0;
};

/// The message of a nlohmann exception without its "[json.exception.parse_error.101] " tag.
[[nodiscard]] inline std::string_view json_message(const std::exception& e) noexcept {
  std::string_view message = e.what();
  if (message.starts_with("[json.exception.")) {
    const std::size_t close = message.find("] ");
    if (close != std::string_view::npos) message.remove_prefix(close + 2);
  }
  return message;
}

/// Throws FormatError for what nlohmann would let through: a byte-order mark at the start of
/// `text` (it skips one) or a NUL byte anywhere (it ends its input there, so "{}\0junk" would parse
/// as "{}"). JSON text never contains a NUL: inside strings control characters are escaped.
inline void reject_bom_and_nul(std::string_view text, const std::filesystem::path& file,
                               const char* where, std::uint64_t base, std::string_view what) {
  if (text.starts_with("\xef\xbb\xbf")) {
    raise<FormatError>(where, file.string(), ": ", what,
                       " starts with a UTF-8 byte-order mark, expected '{' or whitespace (at byte "
                       "offset ",
                       base, ")");
  }
  if (const std::size_t nul = text.find('\0'); nul != std::string_view::npos) {
    raise<FormatError>(where, file.string(), ": ", what,
                       " contains a NUL byte, which JSON never does (padding is spaces) (at byte "
                       "offset ",
                       base + nul, ")");
  }
}

/// Parses `text` (which starts at byte offset `base` of `file`) into a DOM, rejecting duplicate
/// keys, comments, a byte-order mark and trailing content. Throws FormatError naming the file and
/// the byte offset.
[[nodiscard]] inline nlohmann::json parse_json_document(std::string_view text,
                                                        const std::filesystem::path& file,
                                                        const char* where, std::uint64_t base = 0) {
  reject_bom_and_nul(text, file, where, base, "the JSON");
  JsonPosition position(text);
  struct Frame {
    bool object = false;
    std::string name;                         // "/"-joined path of this container, for messages
    std::set<std::string, std::less<>> keys;  // the keys seen so far (objects only)
  };
  std::vector<Frame> frames;
  std::string pending_key;  // the key of the value about to be parsed (in an object)
  const auto callback = [&](int /*depth*/, nlohmann::json::parse_event_t event,
                            nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    const std::size_t start = position.token_start();
    switch (event) {
      case Event::object_start:
      case Event::array_start: {
        std::string name;
        if (!frames.empty()) {
          name = frames.back().name + "/" + (frames.back().object ? pending_key : "[]");
        }
        frames.push_back({event == Event::object_start, std::move(name), {}});
        break;
      }
      case Event::object_end:
      case Event::array_end:
        frames.pop_back();
        break;
      case Event::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (!frames.back().keys.insert(key).second) {
          const std::string& in = frames.back().name;
          raise<FormatError>(where, file.string(), ": duplicate key ", detail::quoted(key),
                             " in object ", detail::quoted(in.empty() ? "/" : in),
                             " (at byte offset ", base + start, ")");
        }
        pending_key = key;
        break;
      }
      case Event::value:
        break;
    }
    return true;
  };
  try {
    return nlohmann::json::parse(position.begin(), position.end(), callback,
                                 /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e400
    raise<FormatError>(where, file.string(), ": invalid JSON: ", json_message(e),
                       " (at byte offset ", base + position.error_start(), ")");
  }
}

}  // namespace latentkv::detail
