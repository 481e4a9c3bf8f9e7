// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// safetensors (Hugging Face; github.com/huggingface/safetensors) reader and writer:
//   file   = u64 N (little-endian) · header (N bytes of UTF-8 JSON) · data section
//   header = {"__metadata__": {"key": "value", ...},                      (optional; may be null)
//             "<tensor name>": {"dtype": "BF16", "shape": [out, in], "data_offsets": [b, e]}, ...}
//   data   = the tensors' bytes, little-endian, C order (row-major, last dimension contiguous);
//            tensor bytes are [8 + N + b, 8 + N + e) of the file and e − b = elements · dtype size.
// Shapes: shape[0] is the outermost dimension (the opposite of GGUF's ne[]). As a matrix a tensor
// is (rows, cols) = (shape[0]·…·shape[n−2], shape[n−1]): a checkpoint weight [out, in] is the
// row-major (out, in) matrix; a vector [n] is (1, n); a scalar [] is (1, 1).
//
// SafetensorsReader validates the whole file up front, as the reference implementation does and
// more strictly: the JSON is well-formed (no comments, no byte-order mark, no duplicate key — not
// even duplicate tensor names, which the reference silently collapses), metadata values are
// strings, every dtype is known, every shape has non-negative dimensions whose product fits in
// 64 bits, data_offsets are ordered and match shape × dtype, and the tensors tile the data section
// exactly (no overlap, no gap, nothing after the last one). Every FormatError names the file, the
// tensor (when there is one) and the byte offset. Fields other than dtype, shape and data_offsets
// in a tensor entry are ignored (as the reference does). After open() nothing can read out of
// bounds; the reader is immutable, so its const member functions may be called concurrently.
//
// SafetensorsWriter writes F32 / F16 / BF16 from float matrices (round to nearest even) or raw
// bytes of any dtype, plus string metadata, with the header padded with spaces to a multiple of 8
// bytes (so the data section is 8-byte aligned) and the tensors ordered by element size, largest
// first, so every tensor is aligned to its element size. The file appears at its destination
// atomically (temporary file in the same directory, fsync, rename).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <ostream>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/core/half.hpp"
#include "latentkv/io/detail/atomic_write.hpp"
#include "latentkv/io/detail/ggml_dequantize.hpp"
#include "latentkv/io/detail/gguf_cursor.hpp"
#include "latentkv/io/detail/json_reader.hpp"
#include "latentkv/io/mapped_file.hpp"
#include "latentkv/linalg/matrix.hpp"

namespace latentkv {

// ---- dtypes -------------------------------------------------------------------------------------

/// The dtypes of the safetensors format (the reference implementation's list). Spelled as in the
/// header (after the k), like GgmlType.
enum class SafetensorsDtype : std::uint8_t {
  kBOOL,
  kF4,
  kF6_E2M3,
  kF6_E3M2,
  kU8,
  kI8,
  kF8_E5M2,
  kF8_E4M3,
  kF8_E8M0,
  kF8_E4M3FNUZ,
  kF8_E5M2FNUZ,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kC64,
  kF64,
  kI64,
  kU64,
};

struct SafetensorsDtypeTraits {
  SafetensorsDtype dtype;
  std::string_view name;  // as in the header: "BF16"
  std::uint32_t bits;     // per element: 4 and 6 for the packed F4 / F6 formats
};

namespace detail {

inline constexpr std::array<SafetensorsDtypeTraits, 22> kSafetensorsDtypes = {{
    {SafetensorsDtype::kBOOL, "BOOL", 8},
    {SafetensorsDtype::kF4, "F4", 4},
    {SafetensorsDtype::kF6_E2M3, "F6_E2M3", 6},
    {SafetensorsDtype::kF6_E3M2, "F6_E3M2", 6},
    {SafetensorsDtype::kU8, "U8", 8},
    {SafetensorsDtype::kI8, "I8", 8},
    {SafetensorsDtype::kF8_E5M2, "F8_E5M2", 8},
    {SafetensorsDtype::kF8_E4M3, "F8_E4M3", 8},
    {SafetensorsDtype::kF8_E8M0, "F8_E8M0", 8},
    {SafetensorsDtype::kF8_E4M3FNUZ, "F8_E4M3FNUZ", 8},
    {SafetensorsDtype::kF8_E5M2FNUZ, "F8_E5M2FNUZ", 8},
    {SafetensorsDtype::kI16, "I16", 16},
    {SafetensorsDtype::kU16, "U16", 16},
    {SafetensorsDtype::kF16, "F16", 16},
    {SafetensorsDtype::kBF16, "BF16", 16},
    {SafetensorsDtype::kI32, "I32", 32},
    {SafetensorsDtype::kU32, "U32", 32},
    {SafetensorsDtype::kF32, "F32", 32},
    {SafetensorsDtype::kC64, "C64", 64},
    {SafetensorsDtype::kF64, "F64", 64},
    {SafetensorsDtype::kI64, "I64", 64},
    {SafetensorsDtype::kU64, "U64", 64},
}};

}  // namespace detail

[[nodiscard]] constexpr const SafetensorsDtypeTraits& safetensors_dtype_traits(
    SafetensorsDtype dtype) noexcept {
  return detail::kSafetensorsDtypes[static_cast<std::size_t>(dtype)];  // table is in enum order
}

[[nodiscard]] constexpr std::string_view to_string(SafetensorsDtype dtype) noexcept {
  return safetensors_dtype_traits(dtype).name;
}

/// The dtype spelled `name` in a header ("F32"), or nullptr (names are case-sensitive).
[[nodiscard]] constexpr const SafetensorsDtypeTraits* find_safetensors_dtype(
    std::string_view name) noexcept {
  for (const auto& traits : detail::kSafetensorsDtypes) {
    if (traits.name == name) return &traits;
  }
  return nullptr;
}

// ---- tensor infos -------------------------------------------------------------------------------

/// One validated header entry: its bytes lie inside the file.
struct SafetensorsTensorInfo {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::kF32;
  std::vector<std::int64_t> shape;  // outermost first (C order); empty for a scalar
  std::uint64_t begin = 0;          // data_offsets[0], relative to the data section
  std::uint64_t end = 0;            // data_offsets[1]
  std::uint64_t file_offset = 0;    // absolute: data section start + begin
  std::uint64_t header_offset = 0;  // where the entry's name starts in the file

  [[nodiscard]] std::uint64_t size_bytes() const noexcept { return end - begin; }
  /// Product of the dims (1 for a scalar); validated to fit in int64.
  [[nodiscard]] std::int64_t num_elements() const noexcept {
    std::int64_t n = 1;
    for (const std::int64_t d : shape) n *= d;
    return n;
  }
  /// Matrix view (rows, cols) = (shape[0]·…·shape[n−2], shape[n−1]); (1, 1) for a scalar.
  [[nodiscard]] Index rows() const noexcept {
    Index r = 1;
    for (std::size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
    return r;
  }
  [[nodiscard]] Index cols() const noexcept { return shape.empty() ? 1 : shape.back(); }
};

namespace detail {

/// Streams a shape as [2, 3].
struct ShapeText {
  std::span<const std::int64_t> shape;
  friend std::ostream& operator<<(std::ostream& out, const ShapeText& s) {
    out << '[';
    for (std::size_t i = 0; i < s.shape.size(); ++i) out << (i == 0 ? "" : ", ") << s.shape[i];
    return out << ']';
  }
};

/// A header entry as parsed, with where each field was, before the checks that need every entry.
struct SafetensorsEntry {
  SafetensorsTensorInfo info;
  std::uint64_t dtype_at = 0;  // byte offsets of the fields' values (0: field missing)
  std::uint64_t shape_at = 0;
  std::uint64_t offsets_at = 0;
  std::size_t offsets_read = 0;  // data_offsets elements seen
  std::uint64_t bound = 1;       // product of the non-zero dims so far (bounds every sub-product)
  std::uint64_t elements = 1;    // product of the dims so far
};

/// nlohmann SAX handler for a safetensors header: builds the entries and throws FormatError (with
/// the byte offset of the offending token) at the first violation, so nothing unexpected is ever
/// stored. Deeply nested values are only possible inside ignored fields, which are skipped with a
/// depth counter (nlohmann's parser is itself iterative).
class SafetensorsHeaderHandler {
 public:
  static constexpr std::size_t kMaxDims = 64;  // numpy's limit; the reference has none

  SafetensorsHeaderHandler(JsonPosition& position, const std::filesystem::path& file,
                           const char* where, std::uint64_t base)
      : position_(position), file_(file), where_(where), base_(base) {}

  std::vector<SafetensorsEntry> entries;
  std::map<std::string, std::string, std::less<>> metadata;

  bool null() {
    const std::uint64_t at = token();
    if (expect_ == Expect::kMetadataValue) {  // "__metadata__": null is an absent map
      expect_ = Expect::kEntryKey;
      return true;
    }
    return scalar(at, "null");
  }
  bool boolean(bool /*value*/) { return scalar(token(), "boolean"); }

  bool number_integer(std::int64_t value) {  // nlohmann reports only negative integers here
    const std::uint64_t at = token();
    if (expect_ == Expect::kShapeElement || expect_ == Expect::kOffsetsElement) {
      fail(at, tensor_prefix(), field_name(), " = ", value, " is negative, expected >= 0");
    }
    return scalar(at, "number");
  }

  bool number_unsigned(std::uint64_t value) {
    const std::uint64_t at = token();
    if (expect_ == Expect::kShapeElement) {
      shape_element(value, at);
      return true;
    }
    if (expect_ == Expect::kOffsetsElement) {
      SafetensorsEntry& e = entries.back();
      if (e.offsets_read == 2) {
        fail(at, tensor_prefix(), "data_offsets has more than 2 elements, expected [begin, end]");
      }
      (e.offsets_read == 0 ? e.info.begin : e.info.end) = value;
      ++e.offsets_read;
      return true;
    }
    return scalar(at, "number");
  }

  bool number_float(double /*value*/, const std::string& text) {
    const std::uint64_t at = token();
    if (expect_ == Expect::kShapeElement || expect_ == Expect::kOffsetsElement) {
      fail(at, tensor_prefix(), field_name(), " = ", detail::quoted(text),
           " is not an integer in 0..2^64 - 1");
    }
    return scalar(at, "number");
  }

  bool string(std::string& value) {
    const std::uint64_t at = token();
    switch (expect_) {
      case Expect::kMetadataString:
        metadata.emplace(std::move(metadata_key_), std::move(value));
        expect_ = Expect::kMetadataKey;
        return true;
      case Expect::kDtype: {
        const SafetensorsDtypeTraits* traits = find_safetensors_dtype(value);
        if (traits == nullptr) {
          fail(at, tensor_prefix(), "unknown dtype ", detail::quoted(value),
               ", expected one of BOOL F4 F6_E2M3 F6_E3M2 U8 I8 F8_E5M2 F8_E4M3 F8_E8M0 "
               "F8_E4M3FNUZ F8_E5M2FNUZ I16 U16 F16 BF16 I32 U32 F32 C64 F64 I64 U64");
        }
        entries.back().info.dtype = traits->dtype;
        entries.back().dtype_at = at;
        expect_ = Expect::kFieldKey;
        return true;
      }
      default:
        return scalar(at, "string");
    }
  }

  bool binary(nlohmann::json::binary_t& /*value*/) { return scalar(token(), "binary value"); }

  bool start_object(std::size_t /*size*/) {
    const std::uint64_t at = token();
    switch (expect_) {
      case Expect::kRoot:
        expect_ = Expect::kEntryKey;
        return true;
      case Expect::kMetadataValue:
        expect_ = Expect::kMetadataKey;
        return true;
      case Expect::kTensorValue:
        expect_ = Expect::kFieldKey;
        return true;
      case Expect::kSkip:
        ++skip_depth_;
        return true;
      default:
        return unexpected(at, "object");
    }
  }

  bool key(std::string& name) {
    const std::uint64_t at = token();
    switch (expect_) {
      case Expect::kEntryKey: {
        if (name == "__metadata__") {
          if (metadata_at_ != 0) {
            fail(at, "duplicate key '__metadata__' (first at byte offset ", metadata_at_, ")");
          }
          metadata_at_ = at;
          expect_ = Expect::kMetadataValue;
          return true;
        }
        const auto [it, inserted] = names_.emplace(name, at);
        if (!inserted) {
          fail(at, "duplicate tensor name ", detail::quoted(name), " (first at byte offset ",
               it->second, ")");
        }
        SafetensorsEntry& e = entries.emplace_back();
        e.info.name = std::move(name);
        e.info.header_offset = at;
        expect_ = Expect::kTensorValue;
        return true;
      }
      case Expect::kMetadataKey:
        if (metadata.contains(name)) fail(at, "duplicate __metadata__ key ", detail::quoted(name));
        metadata_key_ = std::move(name);
        expect_ = Expect::kMetadataString;
        return true;
      case Expect::kFieldKey: {
        SafetensorsEntry& e = entries.back();
        std::uint64_t* field_at = nullptr;
        if (name == "dtype") {
          field_at = &e.dtype_at;
          expect_ = Expect::kDtype;
        } else if (name == "shape") {
          field_at = &e.shape_at;
          expect_ = Expect::kShapeArray;
        } else if (name == "data_offsets") {
          field_at = &e.offsets_at;
          expect_ = Expect::kOffsetsArray;
        } else {
          expect_ = Expect::kSkip;  // an unknown field: ignored, as by the reference reader
          skip_depth_ = 0;
          return true;
        }
        if (*field_at != 0) fail(at, tensor_prefix(), "duplicate field ", detail::quoted(name));
        *field_at = at;  // provisional: the value's offset replaces it
        return true;
      }
      case Expect::kSkip:
        return true;
      default:  // unreachable: nlohmann only reports keys inside objects
        return unexpected(at, "key");
    }
  }

  bool end_object() {
    const std::uint64_t at = token();
    switch (expect_) {
      case Expect::kEntryKey:
        expect_ = Expect::kDone;
        return true;
      case Expect::kMetadataKey:
        expect_ = Expect::kEntryKey;
        return true;
      case Expect::kFieldKey:
        finish_entry(at);
        expect_ = Expect::kEntryKey;
        return true;
      case Expect::kSkip:
        end_skipped();
        return true;
      default:  // unreachable: nlohmann balances brackets
        return unexpected(at, "'}'");
    }
  }

  bool start_array(std::size_t /*size*/) {
    const std::uint64_t at = token();
    switch (expect_) {
      case Expect::kShapeArray:
        entries.back().shape_at = at;
        expect_ = Expect::kShapeElement;
        return true;
      case Expect::kOffsetsArray:
        entries.back().offsets_at = at;
        expect_ = Expect::kOffsetsElement;
        return true;
      case Expect::kSkip:
        ++skip_depth_;
        return true;
      default:
        return unexpected(at, "array");
    }
  }

  bool end_array() {
    const std::uint64_t at = token();
    switch (expect_) {
      case Expect::kShapeElement:
        expect_ = Expect::kFieldKey;
        return true;
      case Expect::kOffsetsElement:
        if (entries.back().offsets_read != 2) {
          fail(entries.back().offsets_at, tensor_prefix(), "data_offsets has ",
               entries.back().offsets_read, " elements, expected [begin, end]");
        }
        expect_ = Expect::kFieldKey;
        return true;
      case Expect::kSkip:
        end_skipped();
        return true;
      default:  // unreachable: nlohmann balances brackets
        return unexpected(at, "']'");
    }
  }

  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& e) {
    // Reported where the offending token starts, like every other error.
    fail(base_ + position_.error_start(), "header is not valid JSON: ", json_message(e));
  }

  template <class... Parts>
  [[noreturn]] void fail(std::uint64_t offset, const Parts&... parts) const {
    raise<FormatError>(where_, file_.string(), ": ", parts..., " (at byte offset ", offset, ")");
  }

 private:
  enum class Expect {
    kRoot,            // the header object
    kEntryKey,        // a tensor name, "__metadata__" or the end of the header
    kMetadataValue,   // an object of strings, or null
    kMetadataKey,     // a metadata key or the end of the metadata
    kMetadataString,  // a metadata value
    kTensorValue,     // a tensor entry object
    kFieldKey,        // dtype / shape / data_offsets / (ignored) or the end of the entry
    kDtype,
    kShapeArray,
    kShapeElement,
    kOffsetsArray,
    kOffsetsElement,
    kSkip,  // inside the value of an ignored field
    kDone,
  };

  std::uint64_t token() { return base_ + position_.token_start(); }

  std::string tensor_prefix() const {
    return concat("tensor ", detail::quoted(entries.back().info.name), ": ");
  }

  std::string field_name() const {
    const SafetensorsEntry& e = entries.back();
    return expect_ == Expect::kShapeElement ? concat("shape[", e.info.shape.size(), "]")
                                            : concat("data_offsets[", e.offsets_read, "]");
  }

  /// A scalar where the state does not want one: skipped inside ignored fields, else an error.
  bool scalar(std::uint64_t at, const char* kind) {
    if (expect_ == Expect::kSkip) {
      if (skip_depth_ == 0) expect_ = Expect::kFieldKey;
      return true;
    }
    return unexpected(at, kind);
  }

  void end_skipped() {
    if (--skip_depth_ == 0) expect_ = Expect::kFieldKey;
  }

  [[noreturn]] bool unexpected(std::uint64_t at, const char* kind) const {
    switch (expect_) {
      case Expect::kRoot:
        fail(at, "the header is a JSON ", kind, ", expected an object");
      case Expect::kMetadataValue:
        fail(at, "__metadata__ is a JSON ", kind, ", expected an object of strings (or null)");
      case Expect::kMetadataString:
        fail(at, "__metadata__ value of key ", detail::quoted(metadata_key_), " is a JSON ", kind,
             ", expected a string");
      case Expect::kTensorValue:
        fail(at, tensor_prefix(), "the entry is a JSON ", kind,
             ", expected an object with dtype, shape and data_offsets");
      case Expect::kDtype:
        fail(at, tensor_prefix(), "dtype is a JSON ", kind, ", expected a string");
      case Expect::kShapeArray:
        fail(at, tensor_prefix(), "shape is a JSON ", kind, ", expected an array of integers");
      case Expect::kOffsetsArray:
        fail(at, tensor_prefix(), "data_offsets is a JSON ", kind,
             ", expected an array [begin, end]");
      case Expect::kShapeElement:
      case Expect::kOffsetsElement:
        fail(at, tensor_prefix(), field_name(), " is a JSON ", kind,
             ", expected a non-negative integer");
      default:
        fail(at, "unexpected JSON ", kind, " in the header");
    }
  }

  void shape_element(std::uint64_t dim, std::uint64_t at) {
    SafetensorsEntry& e = entries.back();
    const std::size_t index = e.info.shape.size();
    if (index == kMaxDims) {
      fail(e.shape_at, tensor_prefix(), "shape has more than ", kMaxDims, " dimensions");
    }
    constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (dim > kMax) {
      fail(at, tensor_prefix(), "shape[", index, "] = ", dim, ", expected at most 2^63 - 1");
    }
    // The element count and the product of the non-zero dims (which bounds rows()) must both fit
    // in int64: a zero dim must not hide an overflow of the others.
    if (dim != 0 && e.bound > kMax / dim) {
      fail(at, tensor_prefix(), "shape[", index, "] = ", dim,
           ": the product of the dimensions overflows 64 bits");
    }
    e.bound *= std::max<std::uint64_t>(dim, 1);
    e.elements *= dim;
    e.info.shape.push_back(static_cast<std::int64_t>(dim));
  }

  void finish_entry(std::uint64_t at) {
    const SafetensorsEntry& e = entries.back();
    const char* missing = e.dtype_at == 0     ? "dtype"
                          : e.shape_at == 0   ? "shape"
                          : e.offsets_at == 0 ? "data_offsets"
                                              : nullptr;
    if (missing != nullptr) {
      fail(e.info.header_offset, tensor_prefix(), "the entry has no ", missing,
           " field (entry ends at byte offset ", at, ")");
    }
  }

  JsonPosition& position_;
  const std::filesystem::path& file_;
  const char* where_;
  std::uint64_t base_;
  Expect expect_ = Expect::kRoot;
  std::size_t skip_depth_ = 0;
  std::uint64_t metadata_at_ = 0;
  std::string metadata_key_;
  std::map<std::string, std::uint64_t, std::less<>> names_;  // tensor name -> header offset
};

}  // namespace detail

// ---- the reader ---------------------------------------------------------------------------------

class SafetensorsReader {
 public:
  /// The reference implementation's limit on the header length N.
  static constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

  /// Maps and validates `path`. Throws Error when the file cannot be mapped, FormatError when it is
  /// not a valid safetensors file.
  [[nodiscard]] static SafetensorsReader open(const std::filesystem::path& path) {
    MappedFile file = MappedFile::open(path);
    const std::span<const std::byte> bytes = file.bytes();
    SafetensorsReader reader(std::move(file), bytes, path);
    reader.parse();
    return reader;
  }

  /// Validates an in-memory file; `name` stands for the file in messages. The reader borrows
  /// `bytes`: they must outlive it and every view it returns.
  [[nodiscard]] static SafetensorsReader from_bytes(std::span<const std::byte> bytes,
                                                    std::filesystem::path name = "<memory>") {
    SafetensorsReader reader(std::nullopt, bytes, std::move(name));
    reader.parse();
    return reader;
  }

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] std::uint64_t file_size() const noexcept { return bytes_.size(); }
  /// N, the length of the JSON header.
  [[nodiscard]] std::uint64_t header_size() const noexcept { return data_offset_ - 8; }
  /// Absolute file offset of the data section (8 + N).
  [[nodiscard]] std::uint64_t data_offset() const noexcept { return data_offset_; }

  // -- metadata -----------------------------------------------------------------------------------

  /// The __metadata__ map (empty when absent or null).
  [[nodiscard]] const std::map<std::string, std::string, std::less<>>& metadata() const noexcept {
    return metadata_;
  }

  [[nodiscard]] const std::string* find_metadata(std::string_view key) const noexcept {
    const auto it = metadata_.find(key);
    return it == metadata_.end() ? nullptr : &it->second;
  }

  // -- tensors ------------------------------------------------------------------------------------

  /// Every tensor, in header order.
  [[nodiscard]] std::span<const SafetensorsTensorInfo> tensors() const noexcept { return tensors_; }

  [[nodiscard]] const SafetensorsTensorInfo* find_tensor(std::string_view name) const noexcept {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }

  /// The tensor called `name`; throws FormatError naming the file and tensor when there is none.
  [[nodiscard]] const SafetensorsTensorInfo& tensor(std::string_view name) const {
    if (const SafetensorsTensorInfo* info = find_tensor(name)) return *info;
    detail::raise<FormatError>("latentkv::SafetensorsReader::tensor", path_.string(),
                               ": no tensor named ", detail::quoted(name), " (the file has ",
                               tensors_.size(), " tensors)");
  }

  /// The tensor's bytes inside the file, zero-copy: (size_bytes). `info` must come from this
  /// reader.
  [[nodiscard]] std::span<const std::byte> raw(const SafetensorsTensorInfo& info) const {
    require_own(info, "latentkv::SafetensorsReader::raw");
    return bytes_.subspan(info.file_offset, info.size_bytes());
  }
  [[nodiscard]] std::span<const std::byte> raw(std::string_view name) const {
    return raw(tensor(name));
  }

  /// Zero-copy (rows, cols) row-major view of an F32 tensor. Throws FormatError when the tensor is
  /// not F32 or its data is not 4-byte aligned in memory (read_float() has no such requirement).
  [[nodiscard]] Eigen::Map<const RowMatrix<float>> map_f32(std::string_view name) const {
    constexpr const char* kWhere = "latentkv::SafetensorsReader::map_f32";
    const SafetensorsTensorInfo& info = tensor(name);
    if (info.dtype != SafetensorsDtype::kF32) {
      fail_tensor(kWhere, info, "has dtype ", to_string(info.dtype), ", expected F32");
    }
    const std::byte* data = raw(info).data();
    if (reinterpret_cast<std::uintptr_t>(data) % alignof(float) != 0) {
      fail_tensor(kWhere, info, "data is not ", alignof(float), "-byte aligned; use read_float()");
    }
    return Eigen::Map<const RowMatrix<float>>(reinterpret_cast<const float*>(data), info.rows(),
                                              info.cols());
  }

  /// The whole tensor as float: (rows, cols) = (shape[0]·…·shape[n−2], shape[n−1]). F32, F16 and
  /// BF16 are read exactly; another dtype throws FormatError naming the tensor and dtype.
  [[nodiscard]] RowMatrix<float> read_float(std::string_view name) const {
    return read_float(tensor(name));
  }
  [[nodiscard]] RowMatrix<float> read_float(const SafetensorsTensorInfo& info) const {
    return read_float_rows(info, 0, info.rows());
  }

  /// Rows [first_row, first_row + row_count) as float: (row_count, cols), e.g. a few token
  /// embeddings.
  [[nodiscard]] RowMatrix<float> read_float_rows(std::string_view name, Index first_row,
                                                 Index row_count) const {
    return read_float_rows(tensor(name), first_row, row_count);
  }
  [[nodiscard]] RowMatrix<float> read_float_rows(const SafetensorsTensorInfo& info, Index first_row,
                                                 Index row_count) const {
    constexpr const char* kWhere = "latentkv::SafetensorsReader::read_float_rows";
    require_own(info, kWhere);
    if (first_row < 0 || row_count < 0 || first_row > info.rows() - row_count) {
      detail::raise<InvalidArgument>(kWhere, "rows [", first_row, ", ", first_row, " + ", row_count,
                                     ") of tensor ", detail::quoted(info.name),
                                     ", expected within [0, ", info.rows(), ")");
    }
    using RowKernel = void (*)(const std::byte*, float*, std::int64_t) noexcept;
    RowKernel kernel = nullptr;
    switch (info.dtype) {
      case SafetensorsDtype::kF32:
        kernel = &detail::dequantize_row_f32;
        break;
      case SafetensorsDtype::kF16:
        kernel = &detail::dequantize_row_f16;
        break;
      case SafetensorsDtype::kBF16:
        kernel = &detail::dequantize_row_bf16;
        break;
      default:
        fail_tensor(kWhere, info, "has dtype ", to_string(info.dtype),
                    ", which cannot be read as float (supported: F32, F16, BF16)");
    }
    RowMatrix<float> out(row_count, info.cols());
    if (out.size() == 0) return out;  // a zero dim: nothing to read (cols may be near 2^63)
    const auto row_bytes =
        static_cast<std::size_t>(info.cols()) * (safetensors_dtype_traits(info.dtype).bits / 8);
    const std::byte* src = raw(info).data() + static_cast<std::size_t>(first_row) * row_bytes;
    for (Index r = 0; r < row_count; ++r) {
      kernel(src + static_cast<std::size_t>(r) * row_bytes, out.row(r).data(), info.cols());
    }
    return out;
  }

 private:
  SafetensorsReader(std::optional<MappedFile> file, std::span<const std::byte> bytes,
                    std::filesystem::path path)
      : file_(std::move(file)), bytes_(bytes), path_(std::move(path)) {}

  void require_own(const SafetensorsTensorInfo& info, const char* where) const {
    const std::less<const SafetensorsTensorInfo*> before;
    if (tensors_.empty() || before(&info, tensors_.data()) ||
        !before(&info, tensors_.data() + tensors_.size())) {
      detail::raise<InvalidArgument>(where, "tensor info ", detail::quoted(info.name),
                                     " does not belong to ", path_.string());
    }
  }

  template <class... Parts>
  [[noreturn]] void fail_tensor(const char* where, const SafetensorsTensorInfo& info,
                                const Parts&... parts) const {
    detail::raise<FormatError>(where, path_.string(), ": tensor ", detail::quoted(info.name), " ",
                               parts..., " (data at byte offset ", info.file_offset, ")");
  }

  template <class... Parts>
  [[noreturn]] void fail(std::uint64_t offset, const Parts&... parts) const {
    detail::raise<FormatError>("latentkv::SafetensorsReader::open", path_.string(), ": ", parts...,
                               " (at byte offset ", offset, ")");
  }

  void parse() {
    const std::uint64_t size = bytes_.size();
    if (size < 8) {
      fail(0, "the file is ", size, " bytes, too short for the 8-byte header length");
    }
    std::uint64_t n = 0;
    std::memcpy(&n, bytes_.data(), sizeof n);  // little-endian host (gguf_cursor.hpp asserts)
    if (n > size - 8) {
      fail(0, "header length ", n, " runs past the end of the file (", size - 8,
           " bytes follow the length field; the file is ", size, " bytes)");
    }
    if (n > kMaxHeaderBytes) {
      fail(0, "header length ", n, " exceeds the limit of ", kMaxHeaderBytes, " bytes");
    }
    data_offset_ = 8 + n;
    const std::string_view text(reinterpret_cast<const char*>(bytes_.data()) + 8,
                                static_cast<std::size_t>(n));
    constexpr const char* kWhere = "latentkv::SafetensorsReader::open";
    detail::reject_bom_and_nul(text, path_, kWhere, 8, "the header");
    detail::JsonPosition position(text);
    detail::SafetensorsHeaderHandler handler(position, path_, kWhere, 8);
    // With a SAX handler nlohmann reports errors through parse_error(), which throws.
    (void)nlohmann::json::sax_parse(position.begin(), position.end(), &handler,
                                    nlohmann::json::input_format_t::json, /*strict=*/true,
                                    /*ignore_comments=*/false);
    metadata_ = std::move(handler.metadata);
    check_entries(handler.entries);
    tensors_.reserve(handler.entries.size());
    for (detail::SafetensorsEntry& e : handler.entries) tensors_.push_back(std::move(e.info));
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }

  void check_entries(std::vector<detail::SafetensorsEntry>& entries) {
    const std::uint64_t capacity = bytes_.size() - data_offset_;  // bytes of the data section
    for (detail::SafetensorsEntry& e : entries) {
      SafetensorsTensorInfo& info = e.info;
      const std::uint32_t bits = safetensors_dtype_traits(info.dtype).bits;
      const auto tensor = detail::quoted(info.name);
      if (e.elements > std::numeric_limits<std::uint64_t>::max() / bits) {
        fail(e.shape_at, "tensor ", tensor, ": shape ", detail::ShapeText{info.shape}, " of ",
             to_string(info.dtype), " has a bit count that overflows 64 bits");
      }
      if (e.elements * bits % 8 != 0) {
        fail(e.shape_at, "tensor ", tensor, ": shape ", detail::ShapeText{info.shape}, " of ",
             to_string(info.dtype), " is ", e.elements * bits,
             " bits, not a whole number of bytes");
      }
      const std::uint64_t size = e.elements * bits / 8;
      if (info.begin > info.end) {
        fail(e.offsets_at, "tensor ", tensor, ": data_offsets [", info.begin, ", ", info.end,
             "] begin > end");
      }
      if (info.end - info.begin != size) {
        fail(e.offsets_at, "tensor ", tensor, ": data_offsets [", info.begin, ", ", info.end,
             "] span ", info.end - info.begin, " bytes, but shape ", detail::ShapeText{info.shape},
             " of ", to_string(info.dtype), " needs ", size);
      }
      if (info.end > capacity) {
        fail(e.offsets_at, "tensor ", tensor, ": data_offsets [", info.begin, ", ", info.end,
             "] run past the end of the data section (", capacity, " bytes from byte offset ",
             data_offset_, "; the file is ", bytes_.size(), " bytes)");
      }
      info.file_offset = data_offset_ + info.begin;
    }
    // The tensors must tile [0, capacity) exactly, as the reference reader requires.
    std::vector<std::size_t> order(entries.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      const auto& x = entries[a].info;
      const auto& y = entries[b].info;
      return std::pair(x.begin, x.end) < std::pair(y.begin, y.end);
    });
    std::uint64_t covered = 0;  // the data section is tiled up to here
    const SafetensorsTensorInfo* previous = nullptr;
    for (const std::size_t k : order) {
      const SafetensorsTensorInfo& info = entries[k].info;
      if (info.begin < covered) {
        fail(info.file_offset, "tensor ", detail::quoted(info.name), " data [", info.file_offset,
             ", ", data_offset_ + info.end, ") overlaps tensor ", detail::quoted(previous->name),
             " data [", previous->file_offset, ", ", data_offset_ + previous->end, ")");
      }
      if (info.begin > covered && previous == nullptr) {
        fail(data_offset_, "bytes [", data_offset_, ", ", info.file_offset,
             ") of the data section belong to no tensor (before tensor ", detail::quoted(info.name),
             ")");
      }
      if (info.begin > covered) {
        fail(data_offset_ + covered, "bytes [", data_offset_ + covered, ", ", info.file_offset,
             ") of the data section belong to no tensor (between tensor ",
             detail::quoted(previous->name), " and tensor ", detail::quoted(info.name), ")");
      }
      covered = info.end;
      previous = &info;  // the tensor that ends at `covered`
    }
    if (covered != capacity) {
      fail(data_offset_ + covered, capacity - covered,
           " bytes at the end of the data section belong to no tensor (the file is ", bytes_.size(),
           " bytes)");
    }
  }

  std::optional<MappedFile> file_;    // absent for from_bytes()
  std::span<const std::byte> bytes_;  // the whole file
  std::filesystem::path path_;
  std::uint64_t data_offset_ = 8;
  std::map<std::string, std::string, std::less<>> metadata_;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::map<std::string_view, std::size_t, std::less<>> index_;  // names point into tensors_
};

// ---- the writer ---------------------------------------------------------------------------------

class SafetensorsWriter {
 public:
  /// Adds a __metadata__ entry. Throws InvalidArgument for a duplicate key or invalid UTF-8.
  SafetensorsWriter& add_metadata(std::string key, std::string value) {
    constexpr const char* kWhere = "latentkv::SafetensorsWriter::add_metadata";
    require_utf8(key, kWhere, "metadata key");
    require_utf8(value, kWhere, "metadata value");
    if (!metadata_.emplace(std::move(key), std::move(value)).second) {
      detail::raise<InvalidArgument>(kWhere, "duplicate metadata key");
    }
    return *this;
  }

  /// Adds `values` (rows, cols) as a 2-D tensor [rows, cols] of `dtype`: F32, F16 or BF16 (rounded
  /// to nearest even).
  SafetensorsWriter& add(std::string name, MatrixCRef<float> values,
                         SafetensorsDtype dtype = SafetensorsDtype::kF32) {
    return add(std::move(name), values, {values.rows(), values.cols()}, dtype);
  }

  /// Adds `values`, read row by row, as a tensor of `shape` (e.g. [n] for a (1, n) vector or a
  /// 3-D tensor): the element counts must agree.
  SafetensorsWriter& add(std::string name, MatrixCRef<float> values,
                         std::vector<std::int64_t> shape, SafetensorsDtype dtype) {
    constexpr const char* kWhere = "latentkv::SafetensorsWriter::add";
    if (dtype != SafetensorsDtype::kF32 && dtype != SafetensorsDtype::kF16 &&
        dtype != SafetensorsDtype::kBF16) {
      detail::raise<InvalidArgument>(kWhere, "tensor ", detail::quoted(name), ": dtype ",
                                     to_string(dtype),
                                     ", expected F32, F16 or BF16 (use add_raw for other dtypes)");
    }
    const std::uint64_t elements = checked_elements(name, shape, dtype, kWhere);
    if (elements != static_cast<std::uint64_t>(values.size())) {
      detail::raise<InvalidArgument>(
          kWhere, "tensor ", detail::quoted(name), ": shape ", detail::ShapeText{shape}, " has ",
          elements, " elements, but the values are ", values.rows(), " x ", values.cols());
    }
    std::vector<std::byte> data(static_cast<std::size_t>(elements) *
                                (safetensors_dtype_traits(dtype).bits / 8));
    std::byte* out = data.data();
    for (Index i = 0; i < values.rows(); ++i) {
      for (Index j = 0; j < values.cols(); ++j) {
        const float v = values(i, j);
        if (dtype == SafetensorsDtype::kF32) {
          std::memcpy(out, &v, 4);
          out += 4;
        } else {
          const std::uint16_t bits =
              dtype == SafetensorsDtype::kF16 ? float_to_fp16_bits(v) : float_to_bf16_bits(v);
          std::memcpy(out, &bits, 2);
          out += 2;
        }
      }
    }
    return insert(std::move(name), dtype, std::move(shape), std::move(data), kWhere);
  }

  /// Adds a tensor of any dtype from its little-endian bytes (copied); their count must match
  /// shape × dtype.
  SafetensorsWriter& add_raw(std::string name, SafetensorsDtype dtype,
                             std::vector<std::int64_t> shape, std::span<const std::byte> bytes) {
    constexpr const char* kWhere = "latentkv::SafetensorsWriter::add_raw";
    const std::uint64_t elements = checked_elements(name, shape, dtype, kWhere);
    const std::uint64_t bits = safetensors_dtype_traits(dtype).bits;
    if (elements * bits % 8 != 0 || elements * bits / 8 != bytes.size()) {
      detail::raise<InvalidArgument>(kWhere, "tensor ", detail::quoted(name), ": shape ",
                                     detail::ShapeText{shape}, " of ", to_string(dtype), " is ",
                                     elements * bits, " bits, but ", bytes.size(),
                                     " bytes were given");
    }
    return insert(std::move(name), dtype, std::move(shape),
                  std::vector<std::byte>(bytes.begin(), bytes.end()), kWhere);
  }

  [[nodiscard]] std::size_t tensor_count() const noexcept { return tensors_.size(); }

  /// The whole file, in memory.
  [[nodiscard]] std::vector<std::byte> serialize() const {
    const std::string header = header_text();
    std::array<std::byte, 8> length{};
    std::vector<std::byte> out;
    out.reserve(8 + header.size() + data_bytes());
    append_pieces(header, length, [&](std::span<const std::byte> piece) {
      const std::size_t at = out.size();  // resize + memcpy: GCC 12 misreads vector::insert here
      out.resize(at + piece.size());
      if (!piece.empty()) std::memcpy(out.data() + at, piece.data(), piece.size());
    });
    return out;
  }

  /// Writes the file to `path` atomically: "<path>.tmp.<pid>" in the same directory, fsync,
  /// rename. Throws Error naming the path and the failing call; the destination is then untouched.
  void write(const std::filesystem::path& path) const {
    const std::string header = header_text();
    std::array<std::byte, 8> length{};
    std::vector<std::span<const std::byte>> pieces;
    append_pieces(header, length,
                  [&](std::span<const std::byte> piece) { pieces.push_back(piece); });
    detail::write_file_atomically(path, pieces, "latentkv::SafetensorsWriter::write");
  }

 private:
  struct Tensor {
    std::string name;
    SafetensorsDtype dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> data;
  };

  static void require_utf8(const std::string& text, const char* where, const char* what) {
    try {
      (void)nlohmann::json(text).dump();
    } catch (const nlohmann::json::type_error&) {
      detail::raise<InvalidArgument>(where, what, " ", detail::quoted(text), " is not valid UTF-8");
    }
  }

  static std::uint64_t checked_elements(const std::string& name,
                                        const std::vector<std::int64_t>& shape,
                                        SafetensorsDtype dtype, const char* where) {
    constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    const std::uint64_t bits = safetensors_dtype_traits(dtype).bits;
    std::uint64_t bound = 1;
    std::uint64_t elements = 1;
    for (const std::int64_t d : shape) {
      if (d < 0) {
        detail::raise<InvalidArgument>(where, "tensor ", detail::quoted(name), ": shape ",
                                       detail::ShapeText{shape}, " has a negative dimension");
      }
      const auto dim = static_cast<std::uint64_t>(d);
      if (dim != 0 && bound > kMax / bits / dim) {
        detail::raise<InvalidArgument>(where, "tensor ", detail::quoted(name), ": shape ",
                                       detail::ShapeText{shape}, " is too large");
      }
      bound *= std::max<std::uint64_t>(dim, 1);
      elements *= dim;
    }
    if (shape.size() > detail::SafetensorsHeaderHandler::kMaxDims) {
      detail::raise<InvalidArgument>(where, "tensor ", detail::quoted(name), ": ", shape.size(),
                                     " dimensions, expected at most ",
                                     detail::SafetensorsHeaderHandler::kMaxDims);
    }
    return elements;
  }

  SafetensorsWriter& insert(std::string name, SafetensorsDtype dtype,
                            std::vector<std::int64_t> shape, std::vector<std::byte> data,
                            const char* where) {
    require_utf8(name, where, "tensor name");
    if (name == "__metadata__") {
      detail::raise<InvalidArgument>(where, "'__metadata__' is reserved, not a tensor name");
    }
    if (names_.contains(name)) {
      detail::raise<InvalidArgument>(where, "duplicate tensor name ", detail::quoted(name));
    }
    names_.insert(name);
    tensors_.push_back({std::move(name), dtype, std::move(shape), std::move(data)});
    return *this;
  }

  [[nodiscard]] std::size_t data_bytes() const noexcept {
    std::size_t total = 0;
    for (const Tensor& t : tensors_) total += t.data.size();
    return total;
  }

  /// Data order: element size, largest first (stable), so each tensor is aligned to its element
  /// size inside the 8-byte-aligned data section without gaps (the format allows none).
  [[nodiscard]] std::vector<std::size_t> layout_order() const {
    std::vector<std::size_t> order(tensors_.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return safetensors_dtype_traits(tensors_[a].dtype).bits >
             safetensors_dtype_traits(tensors_[b].dtype).bits;
    });
    return order;
  }

  /// Header JSON (metadata first, then tensors in insertion order), space-padded to a multiple of
  /// 8 bytes.
  [[nodiscard]] std::string header_text() const {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> offsets(tensors_.size());
    std::uint64_t next = 0;
    for (const std::size_t k : layout_order()) {
      offsets[k] = {next, next + tensors_[k].data.size()};
      next += tensors_[k].data.size();
    }
    // Assembled entry by entry: nlohmann's ordered_json finds keys by linear search.
    std::string text = "{";
    if (!metadata_.empty()) {
      nlohmann::json metadata = nlohmann::json::object();
      for (const auto& [key, value] : metadata_) metadata[key] = value;
      text += "\"__metadata__\":" + metadata.dump();
    }
    for (std::size_t k = 0; k < tensors_.size(); ++k) {
      const Tensor& t = tensors_[k];
      nlohmann::ordered_json entry = nlohmann::ordered_json::object();
      entry["dtype"] = std::string(to_string(t.dtype));
      entry["shape"] = t.shape;
      entry["data_offsets"] = nlohmann::ordered_json::array({offsets[k].first, offsets[k].second});
      if (text.size() > 1) text += ',';
      text += nlohmann::json(t.name).dump() + ":" + entry.dump();
    }
    text += '}';
    text.append((8 - text.size() % 8) % 8, ' ');
    return text;
  }

  /// Calls sink(piece) for: the 8-byte length (encoded into `length`), the header, each tensor's
  /// data in layout order. The pieces point into `length`, `header` and tensors_.
  template <class Sink>
  void append_pieces(const std::string& header, std::array<std::byte, 8>& length,
                     Sink&& sink) const {
    const std::uint64_t n = header.size();  // little-endian host (gguf_cursor.hpp asserts)
    std::memcpy(length.data(), &n, sizeof n);
    sink(std::span<const std::byte>(length));
    sink(std::as_bytes(std::span<const char>(header.data(), header.size())));
    for (const std::size_t k : layout_order()) sink(std::span<const std::byte>(tensors_[k].data));
  }

  std::map<std::string, std::string, std::less<>> metadata_;
  std::vector<Tensor> tensors_;
  std::set<std::string, std::less<>> names_;  // of tensors_, for the duplicate check
};

}  // namespace latentkv
