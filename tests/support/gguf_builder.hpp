// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// A tiny GGUF writer for tests (not public API), independent of the reader: it lays out
//   "GGUF" · version · tensor_count · kv_count · metadata · tensor infos · pad · tensor data
// with each tensor's data at the next multiple of the alignment and the file ending right after the
// last tensor, and records where every field landed (GgufLayout) so a test can corrupt one field of
// an otherwise valid file and expect that exact byte offset in the error message.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "latentkv/core/half.hpp"

namespace latentkv::testing {

/// Little-endian byte appender.
class ByteBuffer {
 public:
  template <class T>
  void put(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const std::byte*>(&value);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
  }
  void put_string(std::string_view s) {
    put<std::uint64_t>(s.size());
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    bytes_.insert(bytes_.end(), p, p + s.size());
  }
  void put_bytes(std::span<const std::byte> b) { bytes_.insert(bytes_.end(), b.begin(), b.end()); }
  void pad_to(std::size_t alignment) {
    while (bytes_.size() % alignment != 0) bytes_.push_back(std::byte{0});
  }
  [[nodiscard]] std::size_t size() const { return bytes_.size(); }
  [[nodiscard]] std::vector<std::byte>& bytes() { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
};

/// Overwrites sizeof(T) bytes at `at` (for corrupting a built file).
template <class T>
void patch(std::vector<std::byte>& bytes, std::size_t at, T value) {
  static_assert(std::is_trivially_copyable_v<T>);
  std::memcpy(bytes.data() + at, &value, sizeof(T));
}

/// A metadata value ready to write: its GGUF type code and encoded payload.
struct MetaValue {
  std::uint32_t type = 0;
  std::vector<std::byte> payload;
};

// GGUF value type codes.
inline constexpr std::uint32_t kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6,
                               kBool = 7, kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12;

template <class T>
constexpr std::uint32_t value_code() {
  if constexpr (std::is_same_v<T, bool>) return kBool;
  if constexpr (std::is_same_v<T, std::uint8_t>) return kU8;
  if constexpr (std::is_same_v<T, std::int8_t>) return kI8;
  if constexpr (std::is_same_v<T, std::uint16_t>) return kU16;
  if constexpr (std::is_same_v<T, std::int16_t>) return kI16;
  if constexpr (std::is_same_v<T, std::uint32_t>) return kU32;
  if constexpr (std::is_same_v<T, std::int32_t>) return kI32;
  if constexpr (std::is_same_v<T, float>) return kF32;
  if constexpr (std::is_same_v<T, std::uint64_t>) return kU64;
  if constexpr (std::is_same_v<T, std::int64_t>) return kI64;
  if constexpr (std::is_same_v<T, double>) return kF64;
}

template <class T>
MetaValue meta(T value) {
  static_assert(std::is_arithmetic_v<T>);
  ByteBuffer b;
  if constexpr (std::is_same_v<T, bool>) {
    b.put<std::uint8_t>(value ? 1 : 0);
  } else {
    b.put(value);
  }
  return {value_code<T>(), std::move(b.bytes())};
}

inline MetaValue meta(std::string_view s) {
  ByteBuffer b;
  b.put_string(s);
  return {kString, std::move(b.bytes())};
}
inline MetaValue meta(const char* s) { return meta(std::string_view(s)); }
inline MetaValue meta(const std::string& s) { return meta(std::string_view(s)); }

/// An array of `element_type` whose elements are already encoded (arrays of arrays nest: an element
/// array is written as its payload, the outer array having declared the element type).
inline MetaValue meta_array(std::uint32_t element_type, const std::vector<MetaValue>& elements) {
  ByteBuffer b;
  b.put(element_type);
  b.put<std::uint64_t>(elements.size());
  for (const MetaValue& e : elements) {
    b.put_bytes(e.payload);
  }
  return {kArray, std::move(b.bytes())};
}

template <class T>
MetaValue meta_array(const std::vector<T>& values) {
  std::vector<MetaValue> elements;
  for (const T& v : values) elements.push_back(meta(v));
  if constexpr (std::is_convertible_v<T, std::string_view>) {
    return meta_array(kString, elements);
  } else {
    return meta_array(value_code<T>(), elements);
  }
}

/// Byte offsets of every field of a built file.
struct GgufLayout {
  std::size_t version = 4;
  std::size_t tensor_count = 8;
  std::size_t kv_count = 16;
  std::vector<std::size_t> kv;        // start of each entry (its key's length field)
  std::vector<std::size_t> kv_value;  // start of each value (after the type code)
  struct Tensor {
    std::size_t info, n_dims, dims, type, offset;  // tensor info fields
    std::size_t data;                              // absolute start of the data
  };
  std::vector<Tensor> tensors;
  std::size_t data_section = 0;
};

class GgufBuilder {
 public:
  explicit GgufBuilder(std::uint32_t version = 3) : version_(version) {}

  GgufBuilder& add(std::string key, MetaValue value) {
    kvs_.emplace_back(std::move(key), std::move(value));
    return *this;
  }

  /// Adds general.alignment and lays the data out with it.
  GgufBuilder& alignment(std::uint32_t a) {
    alignment_ = a;
    return add("general.alignment", meta<std::uint32_t>(a));
  }

  GgufBuilder& add_tensor(std::string name, std::vector<std::uint64_t> ne, std::uint32_t type,
                          std::vector<std::byte> data) {
    tensors_.push_back({std::move(name), std::move(ne), type, std::move(data)});
    return *this;
  }

  [[nodiscard]] std::vector<std::byte> build(GgufLayout* layout = nullptr) const {
    GgufLayout l;
    ByteBuffer b;
    b.put<std::uint32_t>(0x46554747);
    b.put(version_);
    b.put<std::uint64_t>(tensors_.size());
    b.put<std::uint64_t>(kvs_.size());
    for (const auto& [key, value] : kvs_) {
      l.kv.push_back(b.size());
      b.put_string(key);
      b.put(value.type);
      l.kv_value.push_back(b.size());
      b.put_bytes(value.payload);
    }
    std::vector<std::uint64_t> offsets;
    std::uint64_t next = 0;
    for (const Tensor& t : tensors_) {
      next = (next + alignment_ - 1) / alignment_ * alignment_;
      offsets.push_back(next);
      next += t.data.size();
    }
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const Tensor& t = tensors_[i];
      GgufLayout::Tensor f{};
      f.info = b.size();
      b.put_string(t.name);
      f.n_dims = b.size();
      b.put<std::uint32_t>(static_cast<std::uint32_t>(t.ne.size()));
      f.dims = b.size();
      for (const std::uint64_t d : t.ne) b.put(d);
      f.type = b.size();
      b.put(t.type);
      f.offset = b.size();
      b.put(offsets[i]);
      l.tensors.push_back(f);
    }
    if (!tensors_.empty()) b.pad_to(alignment_);
    l.data_section = b.size();
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      b.pad_to(alignment_);
      l.tensors[i].data = b.size();
      b.put_bytes(tensors_[i].data);
    }
    if (layout != nullptr) *layout = std::move(l);
    return std::move(b.bytes());
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<std::uint64_t> ne;
    std::uint32_t type;
    std::vector<std::byte> data;
  };
  std::uint32_t version_;
  std::uint32_t alignment_ = 32;
  std::vector<std::pair<std::string, MetaValue>> kvs_;
  std::vector<Tensor> tensors_;
};

// ---- tensor payload encoders
// -------------------------------------------------------------------------

inline std::vector<std::byte> f32_bytes(const std::vector<float>& values) {
  ByteBuffer b;
  for (const float v : values) b.put(v);
  return std::move(b.bytes());
}

inline std::vector<std::byte> f16_bytes(const std::vector<float>& values) {
  ByteBuffer b;
  for (const float v : values) b.put(float_to_fp16_bits(v));
  return std::move(b.bytes());
}

inline std::vector<std::byte> bf16_bytes(const std::vector<float>& values) {
  ByteBuffer b;
  for (const float v : values) b.put(float_to_bf16_bits(v));
  return std::move(b.bytes());
}

/// One Q4_0 block: d and 32 quants in 0..15 (element j in byte j % 16, low nibble for j < 16).
inline void put_q4_0_block(ByteBuffer& b, float d, const std::uint8_t (&q)[32]) {
  b.put(float_to_fp16_bits(d));
  for (int j = 0; j < 16; ++j)
    b.put<std::uint8_t>(static_cast<std::uint8_t>(q[j] | (q[j + 16] << 4)));
}

inline void put_q4_1_block(ByteBuffer& b, float d, float m, const std::uint8_t (&q)[32]) {
  b.put(float_to_fp16_bits(d));
  b.put(float_to_fp16_bits(m));
  for (int j = 0; j < 16; ++j)
    b.put<std::uint8_t>(static_cast<std::uint8_t>(q[j] | (q[j + 16] << 4)));
}

inline void put_q8_0_block(ByteBuffer& b, float d, const std::int8_t (&q)[32]) {
  b.put(float_to_fp16_bits(d));
  for (int j = 0; j < 32; ++j) b.put(q[j]);
}

// ---- files
// -----------------------------------------------------------------------------------------

/// A file under the test temp directory, removed on destruction.
class TempFile {
 public:
  explicit TempFile(std::span<const std::byte> bytes, std::string_view stem = "latentkv") {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string test = info != nullptr ? std::string(info->name()) : std::string("global");
    for (char& c : test) {
      if (std::isalnum(static_cast<unsigned char>(c)) == 0)
        c = '_';  // parameterized names have '/'
    }
    const std::string name = std::string(stem) + "_" + std::to_string(::getpid()) + "_" + test +
                             "_" + std::to_string(counter++) + ".gguf";
    path_ = std::filesystem::path(::testing::TempDir()) / name;
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    if (!out) ADD_FAILURE() << "cannot write " << path_;
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace latentkv::testing
