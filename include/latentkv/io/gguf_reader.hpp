// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// GGUF (versions 2 and 3, little-endian) reader over a read-only memory map (ggml docs/gguf.md):
//   file     = header · metadata[kv_count] · tensor_info[tensor_count] · padding · data section
//   header   = "GGUF" · u32 version · u64 tensor_count · u64 kv_count
//   metadata = string key · u32 value type · value          string = u64 length · bytes (no NUL)
//   array    = u32 element type · u64 count · values (arrays may nest)
//   tensor   = string name · u32 n_dims (≤ 4) · u64 ne[n_dims] · u32 ggml type · u64 offset
//   data     = starts at the first multiple of general.alignment (u32, default 32) after the infos;
//              each tensor's offset is relative to it and a multiple of the alignment.
// Shapes: ne[0] is the innermost (contiguous) dimension. A tensor with ne = [in, out] is the
// row-major matrix (out, in) = (rows, cols); in general rows = ne[1]·ne[2]·ne[3] and cols = ne[0].
//
// open() validates the whole file up front — every length, count, type, dimension, offset,
// alignment and data region against the file size, duplicates, overlaps — so that no later access
// can read out of bounds. Every FormatError names the file, the tensor (when there is
// one) and the byte offset. Strings, metadata views and raw tensor data point into the mapping
// (zero-copy) and stay valid as long as the GgufReader lives, including after it is moved. A
// GgufReader is immutable after open(): its const member functions may be called concurrently.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/io/detail/ggml_dequantize.hpp"
#include "latentkv/io/detail/gguf_cursor.hpp"
#include "latentkv/io/mapped_file.hpp"
#include "latentkv/linalg/matrix.hpp"

namespace latentkv {

// ---- metadata value types -----------------------------------------------------------------------

/// GGUF metadata value types; the enumerator values are the on-disk codes.
enum class GgufValueType : std::uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

[[nodiscard]] constexpr std::string_view to_string(GgufValueType type) noexcept {
  constexpr std::array<std::string_view, 13> kNames = {
      "uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
      "bool",  "string", "array",  "uint64", "int64",  "float64"};
  const auto code = static_cast<std::uint32_t>(type);
  return code < kNames.size() ? kNames[code] : std::string_view("unknown");
}

class GgufValue;

/// An array value: every element has `element_type` (arrays of arrays nest).
struct GgufArray {
  GgufValueType element_type = GgufValueType::kUint8;
  std::vector<GgufValue> elements;

  // Defined after GgufValue: the element type must be complete to measure the vector.
  [[nodiscard]] std::size_t size() const noexcept;
  [[nodiscard]] bool empty() const noexcept;
};

/// One metadata value. The variant's alternative index equals the GgufValueType code, so type() is
/// the index. Strings are views into the mapped file.
class GgufValue {
 public:
  using Storage = std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t,
                               std::uint32_t, std::int32_t, float, bool, std::string_view,
                               GgufArray, std::uint64_t, std::int64_t, double>;

  explicit GgufValue(Storage storage) : storage_(std::move(storage)) {}

  [[nodiscard]] GgufValueType type() const noexcept {
    return static_cast<GgufValueType>(storage_.index());
  }

  /// The value if it holds exactly T (one of Storage's alternatives), else nullptr.
  template <class T>
  [[nodiscard]] const T* get_if() const noexcept {
    return std::get_if<T>(&storage_);
  }

  [[nodiscard]] const GgufArray* array() const noexcept { return get_if<GgufArray>(); }

  /// Any integer type (not bool) as int64 when it fits; nullopt otherwise.
  [[nodiscard]] std::optional<std::int64_t> as_int64() const noexcept {
    return std::visit(
        [](const auto& v) -> std::optional<std::int64_t> {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_integral_v<V> && !std::is_same_v<V, bool>) {
            if (std::in_range<std::int64_t>(v)) return static_cast<std::int64_t>(v);
          }
          return std::nullopt;
        },
        storage_);
  }

  [[nodiscard]] const Storage& storage() const noexcept { return storage_; }

 private:
  Storage storage_;
};

inline std::size_t GgufArray::size() const noexcept { return elements.size(); }
inline bool GgufArray::empty() const noexcept { return elements.empty(); }

namespace detail {

template <class T, class Variant>
struct VariantIndex;

template <class T, class... Alternatives>
struct VariantIndex<T, std::variant<Alternatives...>> {
  static constexpr std::size_t find() noexcept {
    constexpr std::array<bool, sizeof...(Alternatives)> kMatches = {
        std::is_same_v<T, Alternatives>...};
    for (std::size_t i = 0; i < kMatches.size(); ++i) {
      if (kMatches[i]) return i;
    }
    return kMatches.size();
  }
  static constexpr std::size_t value = find();
  static_assert(value < sizeof...(Alternatives), "T is not a GGUF metadata value type");
};

}  // namespace detail

/// The GgufValueType code of a C++ value type (std::string_view for strings, GgufArray for arrays).
template <class T>
inline constexpr GgufValueType kGgufValueTypeOf =
    static_cast<GgufValueType>(detail::VariantIndex<T, GgufValue::Storage>::value);

/// One metadata entry, in file order.
struct GgufKeyValue {
  std::string_view key;
  GgufValue value;
  std::uint64_t file_offset = 0;  // where the entry (its key string) starts
};

// ---- tensor types -------------------------------------------------------------------------------

/// ggml tensor types; the enumerator values are the on-disk codes (ggml.h). Spelled as in ggml
/// (after the k) so they can be grepped across both code bases.
enum class GgmlType : std::uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
  kNVFP4 = 40,
  kQ1_0 = 41,
};

/// Storage of one ggml type: block_size elements take block_bytes bytes.
struct GgmlTypeTraits {
  GgmlType type;
  std::string_view name;
  std::uint32_t block_size;
  std::uint32_t block_bytes;
  bool dequantizable;  // GgufReader::dequantize supports it
};

namespace detail {

// From ggml (ggml.c type_traits) / gguf-py GGML_QUANT_SIZES; QK_K = 256.
inline constexpr std::array<GgmlTypeTraits, 34> kGgmlTypes = {{
    {GgmlType::kF32, "F32", 1, 4, true},
    {GgmlType::kF16, "F16", 1, 2, true},
    {GgmlType::kQ4_0, "Q4_0", 32, 18, true},
    {GgmlType::kQ4_1, "Q4_1", 32, 20, true},
    {GgmlType::kQ5_0, "Q5_0", 32, 22, true},
    {GgmlType::kQ5_1, "Q5_1", 32, 24, true},
    {GgmlType::kQ8_0, "Q8_0", 32, 34, true},
    {GgmlType::kQ8_1, "Q8_1", 32, 40, false},
    {GgmlType::kQ2_K, "Q2_K", 256, 84, false},
    {GgmlType::kQ3_K, "Q3_K", 256, 110, false},
    {GgmlType::kQ4_K, "Q4_K", 256, 144, false},
    {GgmlType::kQ5_K, "Q5_K", 256, 176, false},
    {GgmlType::kQ6_K, "Q6_K", 256, 210, false},
    {GgmlType::kQ8_K, "Q8_K", 256, 292, false},
    {GgmlType::kIQ2_XXS, "IQ2_XXS", 256, 66, false},
    {GgmlType::kIQ2_XS, "IQ2_XS", 256, 74, false},
    {GgmlType::kIQ3_XXS, "IQ3_XXS", 256, 98, false},
    {GgmlType::kIQ1_S, "IQ1_S", 256, 50, false},
    {GgmlType::kIQ4_NL, "IQ4_NL", 32, 18, false},
    {GgmlType::kIQ3_S, "IQ3_S", 256, 110, false},
    {GgmlType::kIQ2_S, "IQ2_S", 256, 82, false},
    {GgmlType::kIQ4_XS, "IQ4_XS", 256, 136, false},
    {GgmlType::kI8, "I8", 1, 1, false},
    {GgmlType::kI16, "I16", 1, 2, false},
    {GgmlType::kI32, "I32", 1, 4, false},
    {GgmlType::kI64, "I64", 1, 8, false},
    {GgmlType::kF64, "F64", 1, 8, false},
    {GgmlType::kIQ1_M, "IQ1_M", 256, 56, false},
    {GgmlType::kBF16, "BF16", 1, 2, true},
    {GgmlType::kTQ1_0, "TQ1_0", 256, 54, false},
    {GgmlType::kTQ2_0, "TQ2_0", 256, 66, false},
    {GgmlType::kMXFP4, "MXFP4", 32, 17, false},
    {GgmlType::kNVFP4, "NVFP4", 64, 36, false},
    {GgmlType::kQ1_0, "Q1_0", 128, 18, false},
}};

}  // namespace detail

/// Traits of an on-disk type code, or nullptr when the code is not a known ggml type.
[[nodiscard]] constexpr const GgmlTypeTraits* find_ggml_type(std::uint32_t code) noexcept {
  for (const auto& traits : detail::kGgmlTypes) {
    if (static_cast<std::uint32_t>(traits.type) == code) return &traits;
  }
  return nullptr;
}

[[nodiscard]] constexpr const GgmlTypeTraits& ggml_type_traits(GgmlType type) noexcept {
  return *find_ggml_type(static_cast<std::uint32_t>(type));  // every enumerator is in the table
}

[[nodiscard]] constexpr std::string_view to_string(GgmlType type) noexcept {
  return ggml_type_traits(type).name;
}

/// One entry of the tensor table (validated: the data lies inside the file).
struct GgufTensorInfo {
  std::string_view name;                       // view into the mapped file
  std::uint32_t n_dims = 0;                    // 0..4
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};  // ne[0] innermost; dims past n_dims are 1
  GgmlType type = GgmlType::kF32;
  std::uint64_t offset = 0;       // relative to the data section, a multiple of the alignment
  std::uint64_t size_bytes = 0;   // ne[0]·…·ne[3] / block_size · block_bytes
  std::uint64_t file_offset = 0;  // absolute: data section start + offset
  std::uint64_t info_offset = 0;  // where this tensor info starts in the file

  /// ne[0 .. n_dims): innermost first.
  [[nodiscard]] std::span<const std::int64_t> dims() const noexcept { return {ne.data(), n_dims}; }
  [[nodiscard]] std::int64_t num_elements() const noexcept { return ne[0] * ne[1] * ne[2] * ne[3]; }
  /// Row-major matrix view of the tensor: (rows, cols) = (ne[1]·ne[2]·ne[3], ne[0]).
  [[nodiscard]] Index rows() const noexcept { return ne[1] * ne[2] * ne[3]; }
  [[nodiscard]] Index cols() const noexcept { return ne[0]; }
};

// ---- the reader ---------------------------------------------------------------------------------

class GgufReader {
 public:
  static constexpr std::uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
  static constexpr std::uint32_t kDefaultAlignment = 32;
  static constexpr std::uint32_t kMaxDims = 4;
  static constexpr int kMaxArrayDepth = 16;  // nested arrays deeper than this are rejected

  /// Maps and validates `path`. Throws Error when the file cannot be mapped, FormatError when it is
  /// not a valid GGUF v2/v3 file.
  [[nodiscard]] static GgufReader open(const std::filesystem::path& path) {
    MappedFile file = MappedFile::open(path);
    const std::span<const std::byte> bytes = file.bytes();
    GgufReader reader(std::move(file), bytes, path);
    reader.parse();
    return reader;
  }

  /// Validates an in-memory file (e.g. for fuzzing); `name` stands for the file in messages. The
  /// reader borrows `bytes`: they must outlive it and every view it returns.
  [[nodiscard]] static GgufReader from_bytes(std::span<const std::byte> bytes,
                                             std::filesystem::path name = "<memory>") {
    GgufReader reader(std::nullopt, bytes, std::move(name));
    reader.parse();
    return reader;
  }

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] std::uint32_t version() const noexcept { return version_; }
  [[nodiscard]] std::uint32_t alignment() const noexcept { return alignment_; }
  /// Absolute file offset of the data section.
  [[nodiscard]] std::uint64_t data_offset() const noexcept { return data_offset_; }
  [[nodiscard]] std::uint64_t file_size() const noexcept { return bytes_.size(); }

  // -- metadata -----------------------------------------------------------------------------------

  /// Every metadata entry, in file order.
  [[nodiscard]] std::span<const GgufKeyValue> metadata() const noexcept { return metadata_; }

  [[nodiscard]] const GgufValue* find(std::string_view key) const noexcept {
    const auto it = metadata_index_.find(key);
    return it == metadata_index_.end() ? nullptr : &metadata_[it->second].value;
  }

  [[nodiscard]] bool contains(std::string_view key) const noexcept { return find(key) != nullptr; }

  /// The value of `key`, which must hold exactly T (a Storage scalar, std::string_view or
  /// std::string). Throws FormatError naming the file and key when it is missing or has another
  /// type.
  template <class T>
  [[nodiscard]] T get(std::string_view key) const {
    const GgufValue& value = require(key, "get");
    return typed<T>(value, key, "get");
  }

  /// Like get(), but `fallback` when the key is missing (a present key of another type still
  /// throws).
  template <class T>
  [[nodiscard]] T get_or(std::string_view key, T fallback) const {
    const GgufValue* value = find(key);
    return value == nullptr ? fallback : typed<T>(*value, key, "get_or");
  }

  /// An integer-valued key of any integer type, converted to T when it fits (FormatError
  /// otherwise).
  template <class T>
  [[nodiscard]] T get_integer(std::string_view key) const {
    static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>, "T must be an integer type");
    constexpr const char* kWhere = "latentkv::GgufReader::get_integer";
    const GgufValue& value = require(key, "get_integer");
    const auto converted = std::visit(
        [](const auto& v) -> std::optional<T> {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_integral_v<V> && !std::is_same_v<V, bool>) {
            if (std::in_range<T>(v)) return static_cast<T>(v);
          }
          return std::nullopt;
        },
        value.storage());
    if (!converted) {
      detail::raise<FormatError>(kWhere, path().string(), ": metadata key ", detail::quoted(key),
                                 " has type ", to_string(value.type()), " and value ",
                                 describe(value), ", expected an integer that fits ",
                                 type_name<T>());
    }
    return *converted;
  }

  /// The array value of `key`. Throws FormatError when missing or not an array.
  [[nodiscard]] const GgufArray& get_array(std::string_view key) const {
    const GgufValue& value = require(key, "get_array");
    if (const GgufArray* array = value.array()) return *array;
    detail::raise<FormatError>("latentkv::GgufReader::get_array", path().string(),
                               ": metadata key ", detail::quoted(key), " has type ",
                               to_string(value.type()), ", expected array");
  }

  /// The elements of array `key` as T (its element type must be exactly T, or string for
  /// std::string_view / std::string).
  template <class T>
  [[nodiscard]] std::vector<T> get_array_of(std::string_view key) const {
    const GgufArray& array = get_array(key);
    using Stored = std::conditional_t<std::is_same_v<T, std::string>, std::string_view, T>;
    if (array.element_type != kGgufValueTypeOf<Stored>) {
      detail::raise<FormatError>("latentkv::GgufReader::get_array_of", path().string(),
                                 ": metadata key ", detail::quoted(key), " is an array of ",
                                 to_string(array.element_type), ", expected an array of ",
                                 to_string(kGgufValueTypeOf<Stored>));
    }
    std::vector<T> out;
    out.reserve(array.size());
    for (const GgufValue& element : array.elements) out.emplace_back(*element.get_if<Stored>());
    return out;
  }

  // -- tensors ------------------------------------------------------------------------------------

  /// Every tensor info, in file order.
  [[nodiscard]] std::span<const GgufTensorInfo> tensors() const noexcept { return tensors_; }

  [[nodiscard]] const GgufTensorInfo* find_tensor(std::string_view name) const noexcept {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }

  /// The tensor called `name`; throws FormatError naming the file and tensor when there is none.
  [[nodiscard]] const GgufTensorInfo& tensor(std::string_view name) const {
    if (const GgufTensorInfo* info = find_tensor(name)) return *info;
    detail::raise<FormatError>("latentkv::GgufReader::tensor", path().string(),
                               ": no tensor named ", detail::quoted(name), " (the file has ",
                               tensors_.size(), " tensors)");
  }

  /// The tensor's bytes inside the mapping: (size_bytes). `info` must come from this reader.
  [[nodiscard]] std::span<const std::byte> raw(const GgufTensorInfo& info) const {
    require_own(info, "latentkv::GgufReader::raw");
    return bytes_.subspan(info.file_offset, info.size_bytes);
  }

  /// Zero-copy (rows, cols) row-major view of an F32 tensor.
  [[nodiscard]] Eigen::Map<const RowMatrix<float>> map_f32(std::string_view name) const {
    constexpr const char* kWhere = "latentkv::GgufReader::map_f32";
    const GgufTensorInfo& info = tensor(name);
    if (info.type != GgmlType::kF32) {
      fail_tensor(kWhere, info, "has type ", to_string(info.type), ", expected F32");
    }
    const std::byte* data = raw(info).data();
    if (reinterpret_cast<std::uintptr_t>(data) % alignof(float) != 0) {
      fail_tensor(kWhere, info, "data is not ", alignof(float),
                  "-byte aligned (general.alignment = ", alignment_, "); use dequantize()");
    }
    return Eigen::Map<const RowMatrix<float>>(reinterpret_cast<const float*>(data), info.rows(),
                                              info.cols());
  }

  /// The whole tensor as float: (rows, cols) = (ne[1]·ne[2]·ne[3], ne[0]). F32, F16, BF16, Q4_0,
  /// Q4_1, Q5_0, Q5_1 and Q8_0 are supported; another type throws FormatError naming the tensor and
  /// type.
  [[nodiscard]] RowMatrix<float> dequantize(std::string_view name) const {
    return dequantize(tensor(name));
  }

  [[nodiscard]] RowMatrix<float> dequantize(const GgufTensorInfo& info) const {
    return dequantize_rows(info, 0, info.rows());
  }

  /// Rows [first_row, first_row + row_count) of the tensor as float: (row_count, cols) — e.g. a few
  /// token embeddings without dequantizing the whole table.
  [[nodiscard]] RowMatrix<float> dequantize_rows(std::string_view name, Index first_row,
                                                 Index row_count) const {
    return dequantize_rows(tensor(name), first_row, row_count);
  }

  [[nodiscard]] RowMatrix<float> dequantize_rows(const GgufTensorInfo& info, Index first_row,
                                                 Index row_count) const {
    constexpr const char* kWhere = "latentkv::GgufReader::dequantize_rows";
    require_own(info, kWhere);
    if (first_row < 0 || row_count < 0 || first_row > info.rows() - row_count) {
      detail::raise<InvalidArgument>(kWhere, "rows [", first_row, ", ", first_row, " + ", row_count,
                                     ") of tensor ", detail::quoted(info.name),
                                     ", expected within [0, ", info.rows(), ")");
    }
    const RowKernel kernel = row_kernel(info.type);
    if (kernel == nullptr) {
      fail_tensor(
          kWhere, info, "has type ", to_string(info.type),
          ", which cannot be dequantized (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, "
          "Q8_0)");
    }
    RowMatrix<float> out(row_count, info.cols());
    if (out.size() == 0) return out;  // a zero dim: there may be many empty rows, nothing to read
    // Only now is a row's byte count bounded (by the tensor's, which fits in the file): with no
    // rows to read, cols may be near 2^63 (found by tests/fuzz/gguf_reader_fuzzer).
    const GgmlTypeTraits& traits = ggml_type_traits(info.type);
    const auto row_bytes =
        static_cast<std::size_t>(info.cols()) / traits.block_size * traits.block_bytes;
    const std::byte* src = raw(info).data() + static_cast<std::size_t>(first_row) * row_bytes;
    for (Index r = 0; r < row_count; ++r) {
      kernel(src + static_cast<std::size_t>(r) * row_bytes, out.row(r).data(), info.cols());
    }
    return out;
  }

 private:
  using RowKernel = void (*)(const std::byte*, float*, std::int64_t) noexcept;

  GgufReader(std::optional<MappedFile> file, std::span<const std::byte> bytes,
             std::filesystem::path path)
      : file_(std::move(file)), bytes_(bytes), path_(std::move(path)) {}

  [[nodiscard]] static RowKernel row_kernel(GgmlType type) noexcept {
    switch (type) {
      case GgmlType::kF32:
        return &detail::dequantize_row_f32;
      case GgmlType::kF16:
        return &detail::dequantize_row_f16;
      case GgmlType::kBF16:
        return &detail::dequantize_row_bf16;
      case GgmlType::kQ4_0:
        return &detail::dequantize_row_q4_0;
      case GgmlType::kQ4_1:
        return &detail::dequantize_row_q4_1;
      case GgmlType::kQ5_0:
        return &detail::dequantize_row_q5_0;
      case GgmlType::kQ5_1:
        return &detail::dequantize_row_q5_1;
      case GgmlType::kQ8_0:
        return &detail::dequantize_row_q8_0;
      default:
        return nullptr;
    }
  }

  template <class T>
  static constexpr std::string_view type_name() noexcept {
    if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::string_view>) {
      return "string";
    } else if constexpr (std::is_same_v<T, GgufArray>) {
      return "array";
    } else {
      return to_string(kGgufValueTypeOf<T>);
    }
  }

  /// A short rendering of a scalar value for messages.
  static std::string describe(const GgufValue& value) {
    return std::visit(
        [](const auto& v) -> std::string {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, GgufArray>) {
            return detail::concat("[", v.size(), " elements]");
          } else if constexpr (std::is_same_v<V, std::string_view>) {
            return detail::concat("\"", v.substr(0, 64), v.size() > 64 ? "...\"" : "\"");
          } else if constexpr (std::is_same_v<V, bool>) {
            return v ? "true" : "false";
          } else if constexpr (sizeof(V) == 1) {
            return detail::concat(static_cast<int>(v));
          } else {
            return detail::concat(v);
          }
        },
        value.storage());
  }

  const GgufValue& require(std::string_view key, const char* function) const {
    if (const GgufValue* value = find(key)) return *value;
    detail::raise<FormatError>(detail::concat("latentkv::GgufReader::", function).c_str(),
                               path().string(), ": missing metadata key ", detail::quoted(key));
  }

  template <class T>
  [[nodiscard]] T typed(const GgufValue& value, std::string_view key, const char* function) const {
    using Stored = std::conditional_t<std::is_same_v<T, std::string>, std::string_view, T>;
    if (const Stored* v = value.get_if<Stored>()) return T(*v);
    detail::raise<FormatError>(detail::concat("latentkv::GgufReader::", function).c_str(),
                               path().string(), ": metadata key ", detail::quoted(key),
                               " has type ", to_string(value.type()), ", expected ",
                               type_name<T>());
  }

  void require_own(const GgufTensorInfo& info, const char* where) const {
    const std::less<const GgufTensorInfo*> before;
    if (tensors_.empty() || before(&info, tensors_.data()) ||
        !before(&info, tensors_.data() + tensors_.size())) {
      detail::raise<InvalidArgument>(where, "tensor info ", detail::quoted(info.name),
                                     " does not belong to ", path().string());
    }
  }

  template <class... Parts>
  [[noreturn]] void fail_tensor(const char* where, const GgufTensorInfo& info,
                                const Parts&... parts) const {
    detail::raise<FormatError>(where, path().string(), ": tensor ", detail::quoted(info.name), " ",
                               parts..., " (data at byte offset ", info.file_offset, ")");
  }

  // -- parsing ------------------------------------------------------------------------------------

  void parse() {
    detail::GgufCursor cursor(bytes_, path_, "latentkv::GgufReader::open");
    parse_header(cursor);
    parse_metadata(cursor);
    parse_alignment(cursor);
    parse_tensor_infos(cursor);
    // The data section starts at the next multiple of the alignment (≤ 2^31: no overflow).
    data_offset_ = (cursor.position() + alignment_ - 1) / alignment_ * alignment_;
    check_tensor_data(cursor);
  }

  void parse_header(detail::GgufCursor& cursor) {
    const auto magic = cursor.read<std::uint32_t>({"magic"});
    if (magic != kMagic) {
      const auto byte = [&](int i) { return static_cast<unsigned>((magic >> (8 * i)) & 0xffu); };
      cursor.fail(0, "bad magic: bytes ", std::hex, byte(0), ' ', byte(1), ' ', byte(2), ' ',
                  byte(3), std::dec, ", expected 47 47 55 46 (\"GGUF\")");
    }
    version_ = cursor.read<std::uint32_t>({"version"});
    if (version_ != 2 && version_ != 3) {
      const std::uint32_t swapped = byteswap(version_);
      if (swapped == 2 || swapped == 3) {
        cursor.fail(4, "big-endian GGUF (version ", swapped,
                    " byte-swapped) is not supported, expected a little-endian file");
      }
      cursor.fail(4, "unsupported GGUF version ", version_, ", expected 2 or 3");
    }
    const std::uint64_t tensor_count_at = cursor.position();
    tensor_count_ = cursor.read<std::uint64_t>({"tensor count"});
    const std::uint64_t kv_count_at = cursor.position();
    kv_count_ = cursor.read<std::uint64_t>({"metadata count"});
    // Bound the counts by the bytes left so bogus values cannot trigger huge allocations.
    constexpr std::uint64_t kMinKvBytes = 8 + 4 + 1;          // empty key, type, 1-byte value
    constexpr std::uint64_t kMinTensorBytes = 8 + 4 + 4 + 8;  // empty name, n_dims 0, type, offset
    if (kv_count_ > cursor.remaining() / kMinKvBytes) {
      cursor.fail(kv_count_at, "metadata count ", kv_count_, " cannot fit in the ",
                  cursor.remaining(), " bytes left in the file (", cursor.size(), " bytes)");
    }
    if (tensor_count_ > cursor.remaining() / kMinTensorBytes) {
      cursor.fail(tensor_count_at, "tensor count ", tensor_count_, " cannot fit in the ",
                  cursor.remaining(), " bytes left in the file (", cursor.size(), " bytes)");
    }
  }

  void parse_metadata(detail::GgufCursor& cursor) {
    metadata_.reserve(static_cast<std::size_t>(kv_count_));
    for (std::uint64_t i = 0; i < kv_count_; ++i) {
      const std::uint64_t at = cursor.position();
      const std::string_view key = cursor.read_string({"metadata key"});
      const auto type_at = cursor.position();
      const auto type = cursor.read<std::uint32_t>({"value type", {}, key});
      GgufValue value = read_value(cursor, type, type_at, key, 0);
      const auto [it, inserted] = metadata_index_.emplace(key, metadata_.size());
      if (!inserted) {
        cursor.fail(at, "duplicate metadata key ", detail::quoted(key), " (first at byte offset ",
                    metadata_[it->second].file_offset, ")");
      }
      metadata_.push_back({key, std::move(value), at});
    }
  }

  GgufValue read_value(detail::GgufCursor& cursor, std::uint32_t type, std::uint64_t type_at,
                       std::string_view key, int depth) {
    const detail::GgufField field{"value", {}, key};
    switch (static_cast<GgufValueType>(type)) {
      case GgufValueType::kUint8:
        return GgufValue(cursor.read<std::uint8_t>(field));
      case GgufValueType::kInt8:
        return GgufValue(cursor.read<std::int8_t>(field));
      case GgufValueType::kUint16:
        return GgufValue(cursor.read<std::uint16_t>(field));
      case GgufValueType::kInt16:
        return GgufValue(cursor.read<std::int16_t>(field));
      case GgufValueType::kUint32:
        return GgufValue(cursor.read<std::uint32_t>(field));
      case GgufValueType::kInt32:
        return GgufValue(cursor.read<std::int32_t>(field));
      case GgufValueType::kFloat32:
        return GgufValue(cursor.read<float>(field));
      case GgufValueType::kUint64:
        return GgufValue(cursor.read<std::uint64_t>(field));
      case GgufValueType::kInt64:
        return GgufValue(cursor.read<std::int64_t>(field));
      case GgufValueType::kFloat64:
        return GgufValue(cursor.read<double>(field));
      case GgufValueType::kBool: {
        const std::uint64_t at = cursor.position();
        const auto byte = cursor.read<std::uint8_t>(field);
        if (byte > 1) {
          cursor.fail(at, "bool value of metadata key ", detail::quoted(key), " is ",
                      static_cast<int>(byte), ", expected 0 or 1");
        }
        return GgufValue(byte == 1);
      }
      case GgufValueType::kString:
        return GgufValue(cursor.read_string({"string value", {}, key}));
      case GgufValueType::kArray:
        return GgufValue(read_array(cursor, key, depth));
    }
    cursor.fail(type_at, "metadata key ", detail::quoted(key), " has unknown value type ", type,
                ", expected 0..12");
  }

  GgufArray read_array(detail::GgufCursor& cursor, std::string_view key, int depth) {
    const std::uint64_t at = cursor.position();
    if (depth >= kMaxArrayDepth) {
      cursor.fail(at, "metadata key ", detail::quoted(key), " nests arrays deeper than ",
                  kMaxArrayDepth, " levels");
    }
    const auto element_type = cursor.read<std::uint32_t>({"array element type", {}, key});
    const std::uint64_t count_at = cursor.position();
    const auto count = cursor.read<std::uint64_t>({"array length", {}, key});
    std::uint64_t min_bytes = 0;  // the smallest possible encoding of one element
    switch (static_cast<GgufValueType>(element_type)) {
      case GgufValueType::kUint8:
      case GgufValueType::kInt8:
      case GgufValueType::kBool:
        min_bytes = 1;
        break;
      case GgufValueType::kUint16:
      case GgufValueType::kInt16:
        min_bytes = 2;
        break;
      case GgufValueType::kUint32:
      case GgufValueType::kInt32:
      case GgufValueType::kFloat32:
        min_bytes = 4;
        break;
      case GgufValueType::kUint64:
      case GgufValueType::kInt64:
      case GgufValueType::kFloat64:
      case GgufValueType::kString:  // the u64 length
        min_bytes = 8;
        break;
      case GgufValueType::kArray:  // element type + length
        min_bytes = 12;
        break;
      default:
        cursor.fail(at, "array of metadata key ", detail::quoted(key), " has unknown element type ",
                    element_type, ", expected 0..12");
    }
    if (count > cursor.remaining() / min_bytes) {
      cursor.fail(count_at, "array length ", count, " of metadata key ", detail::quoted(key), " (",
                  to_string(static_cast<GgufValueType>(element_type)),
                  " elements) runs past the end of the file: ", cursor.remaining(),
                  " bytes remain (file is ", cursor.size(), " bytes)");
    }
    GgufArray array;
    array.element_type = static_cast<GgufValueType>(element_type);
    array.elements.reserve(static_cast<std::size_t>(count));
    for (std::uint64_t i = 0; i < count; ++i) {
      array.elements.push_back(read_value(cursor, element_type, at, key, depth + 1));
    }
    return array;
  }

  void parse_alignment(detail::GgufCursor& cursor) {
    const auto it = metadata_index_.find("general.alignment");
    if (it == metadata_index_.end()) return;
    const GgufKeyValue& entry = metadata_[it->second];
    const auto* value = entry.value.get_if<std::uint32_t>();
    if (value == nullptr) {
      cursor.fail(entry.file_offset, "general.alignment has type ", to_string(entry.value.type()),
                  ", expected uint32");
    }
    if (*value == 0 || (*value & (*value - 1)) != 0 || *value > (1u << 30)) {
      cursor.fail(entry.file_offset, "general.alignment = ", *value,
                  ", expected a power of two in 1..2^30");
    }
    alignment_ = *value;
  }

  void parse_tensor_infos(detail::GgufCursor& cursor) {
    tensors_.reserve(static_cast<std::size_t>(tensor_count_));
    for (std::uint64_t i = 0; i < tensor_count_; ++i) {
      GgufTensorInfo info;
      info.info_offset = cursor.position();
      info.name = cursor.read_string({"tensor name"});
      const detail::GgufField n_dims_field{"n_dims", info.name};
      const std::uint64_t n_dims_at = cursor.position();
      info.n_dims = cursor.read<std::uint32_t>(n_dims_field);
      if (info.n_dims > kMaxDims) {
        cursor.fail(n_dims_at, "tensor ", detail::quoted(info.name), " has n_dims = ", info.n_dims,
                    ", expected at most ", kMaxDims);
      }
      // Both the element count and the product of the non-zero dims (which bounds rows()) must fit
      // in int64: a zero dim must not hide an overflow of the others.
      std::uint64_t elements = 1;
      std::uint64_t bound = 1;
      for (std::uint32_t d = 0; d < info.n_dims; ++d) {
        const std::uint64_t dim_at = cursor.position();
        const auto dim = cursor.read<std::uint64_t>({"dimension", info.name});
        constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
        if (dim > kMax) {
          cursor.fail(dim_at, "tensor ", detail::quoted(info.name), " has ne[", d, "] = ", dim,
                      ", expected at most 2^63 - 1");
        }
        if (dim != 0 && bound > kMax / dim) {
          cursor.fail(dim_at, "tensor ", detail::quoted(info.name), " has ne[", d, "] = ", dim,
                      ": the element count overflows 64 bits");
        }
        bound *= std::max<std::uint64_t>(dim, 1);
        elements *= dim;
        info.ne[d] = static_cast<std::int64_t>(dim);
      }
      const std::uint64_t type_at = cursor.position();
      const auto type = cursor.read<std::uint32_t>({"ggml type", info.name});
      const GgmlTypeTraits* traits = find_ggml_type(type);
      if (traits == nullptr) {
        cursor.fail(type_at, "tensor ", detail::quoted(info.name), " has unknown ggml type ", type);
      }
      info.type = traits->type;
      if (info.ne[0] % traits->block_size != 0) {
        cursor.fail(type_at, "tensor ", detail::quoted(info.name), " has ne[0] = ", info.ne[0],
                    ", not a multiple of the ", traits->name, " block size ", traits->block_size);
      }
      // elements / block_size · block_bytes ≤ 2^63 · 292 / 256 could exceed 2^64: check.
      const std::uint64_t blocks = elements / traits->block_size;
      if (blocks > std::numeric_limits<std::uint64_t>::max() / traits->block_bytes) {
        cursor.fail(type_at, "tensor ", detail::quoted(info.name),
                    " has a byte size that overflows 64 bits");
      }
      info.size_bytes = blocks * traits->block_bytes;
      const std::uint64_t offset_at = cursor.position();
      info.offset = cursor.read<std::uint64_t>({"data offset", info.name});
      const auto [it, inserted] = tensor_index_.emplace(info.name, tensors_.size());
      if (!inserted) {
        cursor.fail(info.info_offset, "duplicate tensor name ", detail::quoted(info.name),
                    " (first at byte offset ", tensors_[it->second].info_offset, ")");
      }
      if (info.offset % alignment_ != 0) {
        cursor.fail(offset_at, "tensor ", detail::quoted(info.name), " has data offset ",
                    info.offset, ", not a multiple of the alignment ", alignment_);
      }
      tensors_.push_back(info);
    }
  }

  void check_tensor_data(detail::GgufCursor& cursor) {
    if (tensors_.empty()) return;
    const std::uint64_t size = bytes_.size();
    if (data_offset_ > size) {
      cursor.fail(cursor.position(), "the data section would start at byte offset ", data_offset_,
                  ", past the end of the file (", size, " bytes)");
    }
    const std::uint64_t capacity = size - data_offset_;
    for (GgufTensorInfo& info : tensors_) {
      if (info.offset > capacity || info.size_bytes > capacity - info.offset) {
        // Reported at the tensor info: the data's own offset may not even be representable.
        cursor.fail(info.info_offset, "tensor ", detail::quoted(info.name), " data [", info.offset,
                    ", ", info.offset, " + ", info.size_bytes,
                    ") relative to the data section at byte offset ", data_offset_,
                    " runs past the end of the file (", size, " bytes)");
      }
      info.file_offset = data_offset_ + info.offset;
    }
    std::vector<std::size_t> order(tensors_.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return tensors_[a].offset < tensors_[b].offset;
    });
    for (std::size_t k = 1; k < order.size(); ++k) {
      const GgufTensorInfo& prev = tensors_[order[k - 1]];
      const GgufTensorInfo& next = tensors_[order[k]];
      if (prev.offset + prev.size_bytes > next.offset) {
        cursor.fail(next.file_offset, "tensor ", detail::quoted(next.name), " data [",
                    next.file_offset, ", ", next.file_offset + next.size_bytes,
                    ") overlaps tensor ", detail::quoted(prev.name), " data [", prev.file_offset,
                    ", ", prev.file_offset + prev.size_bytes, ")");
      }
    }
  }

  static constexpr std::uint32_t byteswap(std::uint32_t v) noexcept {
    return ((v & 0xffu) << 24) | ((v & 0xff00u) << 8) | ((v >> 8) & 0xff00u) | (v >> 24);
  }

  std::optional<MappedFile> file_;    // absent for from_bytes()
  std::span<const std::byte> bytes_;  // the whole file
  std::filesystem::path path_;
  std::uint32_t version_ = 0;
  std::uint32_t alignment_ = kDefaultAlignment;
  std::uint64_t tensor_count_ = 0;
  std::uint64_t kv_count_ = 0;
  std::uint64_t data_offset_ = 0;
  std::vector<GgufKeyValue> metadata_;
  std::unordered_map<std::string_view, std::size_t> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string_view, std::size_t> tensor_index_;
};

}  // namespace latentkv
