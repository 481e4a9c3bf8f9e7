// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Not API. A bounds-checked little-endian reader over the bytes of a GGUF file: every read checks
// the remaining length first and reports a FormatError naming the file, the field (and tensor, when
// there is one) and the byte offset. Nothing is ever read past the end of the span.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "latentkv/core/error.hpp"

namespace latentkv::detail {

static_assert(
    std::endian::native == std::endian::little,
    "latentkv's GGUF reader assumes a little-endian host (GGUF v2/v3 files are little-endian)");

/// Streams a name read from a file as 'text' for an error message: control bytes, quotes and
/// backslashes escaped (a NUL must not cut the message short), at most kMaxBytes shown.
struct Quoted {
  static constexpr std::size_t kMaxBytes = 96;
  std::string_view text;

  friend std::ostream& operator<<(std::ostream& out, const Quoted& q) {
    constexpr char kHex[] = "0123456789abcdef";
    out << '\'';
    for (const char c : q.text.substr(0, kMaxBytes)) {
      const auto byte = static_cast<unsigned char>(c);
      if (byte < 0x20 || byte == 0x7f || c == '\\' || c == '\'') {
        out << '\\' << 'x' << kHex[byte >> 4] << kHex[byte & 0xf];
      } else {
        out << c;
      }
    }
    if (q.text.size() > kMaxBytes) out << "...";
    return out << '\'';
  }
};

[[nodiscard]] inline Quoted quoted(std::string_view text) noexcept { return {text}; }

/// Where a field lives, for error messages: "tensor 'blk.0.attn_k.weight': dims[1]".
struct GgufField {
  std::string_view what;         // "tensor count", "string length", ...
  std::string_view tensor = {};  // tensor name, when the field belongs to a tensor info
  std::string_view key = {};     // metadata key, when the field belongs to a metadata value
};

inline std::string describe(const GgufField& field) {
  std::string out;
  if (!field.tensor.empty()) out += concat("tensor ", quoted(field.tensor), ": ");
  out += field.what;
  if (!field.key.empty()) out += concat(" of metadata key ", quoted(field.key));
  return out;
}

class GgufCursor {
 public:
  GgufCursor(std::span<const std::byte> bytes, const std::filesystem::path& path,
             const char* where) noexcept
      : bytes_(bytes), path_(path), where_(where) {}

  [[nodiscard]] std::uint64_t position() const noexcept { return position_; }
  [[nodiscard]] std::uint64_t size() const noexcept { return bytes_.size(); }
  [[nodiscard]] std::uint64_t remaining() const noexcept { return bytes_.size() - position_; }

  /// Reads one little-endian scalar (an integer or a float type).
  template <class T>
  [[nodiscard]] T read(const GgufField& field) {
    static_assert(std::is_trivially_copyable_v<T>);
    require(sizeof(T), field);
    T value;
    std::memcpy(&value, bytes_.data() + position_, sizeof(T));
    position_ += sizeof(T);
    return value;
  }

  /// Reads a GGUF string (u64 length + bytes, no terminator) as a view into the file.
  [[nodiscard]] std::string_view read_string(const GgufField& field) {
    const std::uint64_t start = position_;
    const auto length = read<std::uint64_t>(field);
    if (length > remaining()) {
      fail(start, describe(field), " has length ", length, " but only ", remaining(),
           " bytes remain in the file (", size(), " bytes)");
    }
    const auto* chars = reinterpret_cast<const char*>(bytes_.data() + position_);
    position_ += length;
    return {chars, static_cast<std::size_t>(length)};
  }

  /// Throws FormatError: "<where>: <file>: <message> (at byte offset <offset>)".
  template <class... Parts>
  [[noreturn]] void fail(std::uint64_t offset, const Parts&... parts) const {
    raise<FormatError>(where_, path_.string(), ": ", parts..., " (at byte offset ", offset, ")");
  }

 private:
  void require(std::uint64_t count, const GgufField& field) const {
    if (count > remaining()) {
      fail(position_, "unexpected end of file reading ", describe(field), ": need ", count,
           " bytes, ", remaining(), " remain (file is ", size(), " bytes)");
    }
  }

  std::span<const std::byte> bytes_;
  const std::filesystem::path& path_;
  const char* where_;
  std::uint64_t position_ = 0;
};

}  // namespace latentkv::detail
