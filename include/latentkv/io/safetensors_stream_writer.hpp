// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// SafetensorsStreamWriter: a safetensors file (format: safetensors.hpp) written tensor by tensor,
// for outputs larger than memory. Peak memory: the header plus one conversion buffer (≤ 1 MiB
// or one row); the caller keeps only the tensor it is writing.
//   1. declare(name, dtype, shape) every tensor, add_metadata() every key (dtypes F32 F16 BF16 F64)
//   2. begin(path): the header is final now; it goes to "<path>.tmp.<pid>" (detail::AtomicFile)
//   3. write(name, values) each tensor, in declaration order (name, element count and order are
//      checked; float/double values are converted to the dtype row by row, F16/BF16 rounded to
//      nearest even), or write_raw(name, bytes) with its little-endian bytes
//   4. commit(): every tensor must have been written; fsync, rename over `path`
// Destroying the writer before commit() (an exception, an abandoned write) removes the temporary
// file: the destination is never touched before the rename.
//
// Layout. The data section is laid out exactly like SafetensorsWriter's (element size, largest
// first, stable in declaration order; header padded with spaces to a multiple of 8), so every
// tensor is aligned to its element size with no gap, whatever order the tensors are declared in,
// and both writers produce the same bytes for the same declarations. Because begin() fixes every
// tensor's offset, write() puts each tensor at its own offset (pwrite): the write order (the
// declaration order) need not be the offset order. A caller can thus stream layer by layer
// (sigma F64, then F16 factors, then the next layer's sigma) and still get an aligned file.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/core/half.hpp"
#include "latentkv/io/detail/atomic_write.hpp"
#include "latentkv/io/safetensors.hpp"
#include "latentkv/linalg/matrix.hpp"

namespace latentkv {

class SafetensorsStreamWriter {
 public:
  SafetensorsStreamWriter() = default;
  SafetensorsStreamWriter(const SafetensorsStreamWriter&) = delete;
  SafetensorsStreamWriter& operator=(const SafetensorsStreamWriter&) = delete;
  SafetensorsStreamWriter(SafetensorsStreamWriter&&) noexcept = default;
  SafetensorsStreamWriter& operator=(SafetensorsStreamWriter&&) noexcept = default;
  ~SafetensorsStreamWriter() = default;  // an uncommitted file_ removes its temporary file

  /// Adds a __metadata__ entry (before begin()). Throws InvalidArgument for a duplicate key or
  /// invalid UTF-8.
  SafetensorsStreamWriter& add_metadata(std::string key, std::string value) {
    constexpr const char* kWhere = "latentkv::SafetensorsStreamWriter::add_metadata";
    require_declaring(kWhere);
    require_utf8(key, kWhere, "metadata key");
    require_utf8(value, kWhere, "metadata value");
    if (metadata_.contains(key)) {
      detail::raise<InvalidArgument>(kWhere, "duplicate metadata key ", detail::quoted(key));
    }
    metadata_.emplace(std::move(key), std::move(value));
    return *this;
  }

  /// Declares the next tensor (before begin()): F32, F16, BF16 or F64, `shape` outermost first.
  /// Throws InvalidArgument for a duplicate or reserved name, another dtype or a bad shape.
  SafetensorsStreamWriter& declare(std::string name, SafetensorsDtype dtype,
                                   std::vector<std::int64_t> shape) {
    constexpr const char* kWhere = "latentkv::SafetensorsStreamWriter::declare";
    require_declaring(kWhere);
    require_utf8(name, kWhere, "tensor name");
    if (name == "__metadata__") {
      detail::raise<InvalidArgument>(kWhere, "'__metadata__' is reserved, not a tensor name");
    }
    if (dtype != SafetensorsDtype::kF32 && dtype != SafetensorsDtype::kF16 &&
        dtype != SafetensorsDtype::kBF16 && dtype != SafetensorsDtype::kF64) {
      detail::raise<InvalidArgument>(kWhere, "tensor ", detail::quoted(name), ": dtype ",
                                     to_string(dtype), ", expected F32, F16, BF16 or F64");
    }
    if (shape.size() > detail::SafetensorsHeaderHandler::kMaxDims) {
      detail::raise<InvalidArgument>(kWhere, "tensor ", detail::quoted(name), ": ", shape.size(),
                                     " dimensions, expected at most ",
                                     detail::SafetensorsHeaderHandler::kMaxDims);
    }
    const std::uint64_t size = element_size(dtype);
    constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    std::uint64_t bound = 1;  // product of the non-zero dims: bounds every sub-product
    std::uint64_t elements = 1;
    for (const std::int64_t d : shape) {
      if (d < 0) {
        detail::raise<InvalidArgument>(kWhere, "tensor ", detail::quoted(name), ": shape ",
                                       detail::ShapeText{shape}, " has a negative dimension");
      }
      const auto dim = static_cast<std::uint64_t>(d);
      if (dim != 0 && bound > kMax / size / dim) {
        detail::raise<InvalidArgument>(kWhere, "tensor ", detail::quoted(name), ": shape ",
                                       detail::ShapeText{shape}, " is too large");
      }
      bound *= std::max<std::uint64_t>(dim, 1);
      elements *= dim;
    }
    if (index_.contains(name)) {
      detail::raise<InvalidArgument>(kWhere, "duplicate tensor name ", detail::quoted(name));
    }
    index_.emplace(name, tensors_.size());
    tensors_.push_back({std::move(name), dtype, std::move(shape), elements, 0, false});
    return *this;
  }

  /// Fixes the header and writes it to "<path>.tmp.<pid>" (same directory). Throws InvalidArgument
  /// when called twice or `path` names no file, Error naming the file when it cannot be written.
  void begin(const std::filesystem::path& path) {
    constexpr const char* kWhere = "latentkv::SafetensorsStreamWriter::begin";
    require_declaring(kWhere);
    const std::string header = header_text();  // sets every tensor's offset
    data_offset_ = 8 + header.size();
    file_ = std::make_unique<detail::AtomicFile>(path, kWhere);
    const std::uint64_t n = header.size();  // little-endian host (gguf_cursor.hpp asserts)
    std::array<std::byte, 8> length{};
    std::memcpy(length.data(), &n, sizeof n);
    try {
      file_->append(length);
      file_->append(std::as_bytes(std::span<const char>(header.data(), header.size())));
    } catch (...) {
      file_.reset();  // removes the temporary file
      throw;
    }
    state_ = State::kWriting;
  }

  /// Writes the next declared tensor from `values` (an Eigen expression of float or double: its
  /// elements in row-major order must be the tensor's, in C order), converted to the dtype one row
  /// at a time. Throws InvalidArgument for an undeclared name, a tensor out of declaration order
  /// or already written, or a wrong element count (nothing is written then); Error when the file
  /// cannot be written (the writer is then failed: only destruction is left).
  template <class Derived>
  void write(std::string_view name, const Eigen::DenseBase<Derived>& values) {
    using Scalar = typename Derived::Scalar;
    static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                  "SafetensorsStreamWriter::write: values must be float or double (use "
                  "write_raw for bytes)");
    constexpr const char* kWhere = "latentkv::SafetensorsStreamWriter::write";
    Tensor& t = next_tensor(name, kWhere);
    if (static_cast<std::uint64_t>(values.size()) != t.elements) {
      detail::raise<InvalidArgument>(kWhere, "tensor ", detail::quoted(t.name), ": shape ",
                                     detail::ShapeText{t.shape}, " has ", t.elements,
                                     " elements, but the values are ", values.rows(), " x ",
                                     values.cols());
    }
    const std::size_t size = element_size(t.dtype);
    const auto cols = static_cast<std::size_t>(values.cols());
    // Whole rows per chunk, up to kChunkBytes (at least one row).
    const std::size_t rows_per_chunk =
        cols == 0 ? 1 : std::max<std::size_t>(1, kChunkBytes / (cols * size));
    std::vector<std::byte> buffer(
        std::min<std::size_t>(static_cast<std::size_t>(values.rows()) * cols,
                              rows_per_chunk * cols) *
        size);
    std::uint64_t at = data_offset_ + t.begin;
    guarded([&] {
      Index row = 0;
      while (row < values.rows()) {
        const Index rows = std::min<Index>(static_cast<Index>(rows_per_chunk), values.rows() - row);
        std::byte* out = buffer.data();
        for (Index i = row; i < row + rows; ++i) {
          for (Index j = 0; j < values.cols(); ++j) {
            out = encode(t.dtype, values.derived().coeff(i, j), out);
          }
        }
        const auto bytes = static_cast<std::size_t>(out - buffer.data());
        file_->write_at(at, std::span<const std::byte>(buffer.data(), bytes));
        at += bytes;
        row += rows;
      }
    });
    finish(t);
  }

  /// Writes the next declared tensor from its little-endian bytes (elements · element size).
  void write_raw(std::string_view name, std::span<const std::byte> bytes) {
    constexpr const char* kWhere = "latentkv::SafetensorsStreamWriter::write_raw";
    Tensor& t = next_tensor(name, kWhere);
    if (bytes.size() != t.elements * element_size(t.dtype)) {
      detail::raise<InvalidArgument>(kWhere, "tensor ", detail::quoted(t.name), ": shape ",
                                     detail::ShapeText{t.shape}, " of ", to_string(t.dtype), " is ",
                                     t.elements * element_size(t.dtype), " bytes, but ",
                                     bytes.size(), " were given");
    }
    guarded([&] { file_->write_at(data_offset_ + t.begin, bytes); });
    finish(t);
  }

  /// Checks that every tensor was written, then fsyncs the temporary file and renames it over the
  /// destination. Throws InvalidArgument naming the first unwritten tensor (the writer stays
  /// usable), Error naming the file when fsync / close / rename fail.
  void commit() {
    constexpr const char* kWhere = "latentkv::SafetensorsStreamWriter::commit";
    require_writing(kWhere);
    if (next_ < tensors_.size()) {
      detail::raise<InvalidArgument>(kWhere, file_->temporary_path().string(), ": tensor ",
                                     detail::quoted(tensors_[next_].name), " (", next_ + 1, " of ",
                                     tensors_.size(), ") was not written");
    }
    guarded([&] { file_->commit(); });
    state_ = State::kCommitted;
  }

  [[nodiscard]] std::size_t tensor_count() const noexcept { return tensors_.size(); }
  /// Tensors written so far.
  [[nodiscard]] std::size_t written_count() const noexcept { return next_; }
  /// The name write() expects next, or nullptr when every tensor was written.
  [[nodiscard]] const std::string* next_name() const noexcept {
    return next_ < tensors_.size() ? &tensors_[next_].name : nullptr;
  }
  [[nodiscard]] bool begun() const noexcept { return state_ != State::kDeclaring; }
  [[nodiscard]] bool committed() const noexcept { return state_ == State::kCommitted; }
  /// The file being written before commit() ("<path>.tmp.<pid>"); empty before begin().
  [[nodiscard]] std::filesystem::path temporary_path() const {
    return file_ ? file_->temporary_path() : std::filesystem::path();
  }
  /// The header length N (valid after begin()).
  [[nodiscard]] std::uint64_t header_size() const noexcept {
    return data_offset_ == 0 ? 0 : data_offset_ - 8;
  }

 private:
  static constexpr std::size_t kChunkBytes = std::size_t{1} << 20;

  enum class State { kDeclaring, kWriting, kFailed, kCommitted };

  struct Tensor {
    std::string name;
    SafetensorsDtype dtype;
    std::vector<std::int64_t> shape;
    std::uint64_t elements;
    std::uint64_t begin;  // data_offsets[0], set by header_text()
    bool written;
  };

  [[nodiscard]] static std::size_t element_size(SafetensorsDtype dtype) noexcept {
    return safetensors_dtype_traits(dtype).bits / 8;
  }

  template <class Scalar>
  static std::byte* encode(SafetensorsDtype dtype, Scalar value, std::byte* out) noexcept {
    switch (dtype) {
      case SafetensorsDtype::kF64: {
        const auto v = static_cast<double>(value);
        std::memcpy(out, &v, 8);
        return out + 8;
      }
      case SafetensorsDtype::kF32: {
        const auto v = static_cast<float>(value);
        std::memcpy(out, &v, 4);
        return out + 4;
      }
      default: {
        const auto v = static_cast<float>(value);
        const std::uint16_t bits =
            dtype == SafetensorsDtype::kF16 ? float_to_fp16_bits(v) : float_to_bf16_bits(v);
        std::memcpy(out, &bits, 2);
        return out + 2;
      }
    }
  }

  static void require_utf8(const std::string& text, const char* where, const char* what) {
    try {
      (void)nlohmann::json(text).dump();
    } catch (const nlohmann::json::type_error&) {
      detail::raise<InvalidArgument>(where, what, " ", detail::quoted(text), " is not valid UTF-8");
    }
  }

  void require_declaring(const char* where) const {
    if (state_ != State::kDeclaring) {
      detail::raise<InvalidArgument>(where, "the header is fixed once begin() was called");
    }
  }

  void require_writing(const char* where) const {
    switch (state_) {
      case State::kDeclaring:
        detail::raise<InvalidArgument>(where, "begin() was not called");
      case State::kFailed:
        detail::raise<InvalidArgument>(where, file_->temporary_path().string(),
                                       ": an earlier write failed; the file is abandoned");
      case State::kCommitted:
        detail::raise<InvalidArgument>(where, "the file was already committed");
      case State::kWriting:
        return;
    }
  }

  Tensor& next_tensor(std::string_view name, const char* where) {
    require_writing(where);
    const std::string at = file_->temporary_path().string();
    const auto it = index_.find(name);
    if (it == index_.end()) {
      detail::raise<InvalidArgument>(where, at, ": tensor ", detail::quoted(name),
                                     " was not declared");
    }
    Tensor& t = tensors_[it->second];
    if (t.written) {
      detail::raise<InvalidArgument>(where, at, ": tensor ", detail::quoted(name),
                                     " was already written");
    }
    if (it->second != next_) {
      detail::raise<InvalidArgument>(where, at, ": tensor ", detail::quoted(name),
                                     " is out of order: expected ",
                                     detail::quoted(tensors_[next_].name), " (", next_ + 1, " of ",
                                     tensors_.size(), ") next, in declaration order");
    }
    return t;
  }

  void finish(Tensor& t) {
    t.written = true;
    ++next_;
  }

  /// Runs an I/O step; an Error fails the writer (the temporary file stays until destruction).
  template <class F>
  void guarded(F&& step) {
    try {
      step();
    } catch (...) {
      state_ = State::kFailed;
      throw;
    }
  }

  /// The header (metadata, then tensors in declaration order), space-padded to a multiple of 8,
  /// as SafetensorsWriter writes it; sets each tensor's begin offset (layout order).
  [[nodiscard]] std::string header_text() {
    std::vector<std::size_t> order(tensors_.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return element_size(tensors_[a].dtype) > element_size(tensors_[b].dtype);
    });
    std::uint64_t next = 0;
    for (const std::size_t k : order) {
      tensors_[k].begin = next;
      next += tensors_[k].elements * element_size(tensors_[k].dtype);
    }
    std::string text = "{";
    if (!metadata_.empty()) {
      nlohmann::json metadata = nlohmann::json::object();
      for (const auto& [key, value] : metadata_) metadata[key] = value;
      text += "\"__metadata__\":" + metadata.dump();
    }
    for (const Tensor& t : tensors_) {
      nlohmann::ordered_json entry = nlohmann::ordered_json::object();
      entry["dtype"] = std::string(to_string(t.dtype));
      entry["shape"] = t.shape;
      entry["data_offsets"] =
          nlohmann::ordered_json::array({t.begin, t.begin + t.elements * element_size(t.dtype)});
      if (text.size() > 1) text += ',';
      text += nlohmann::json(t.name).dump() + ":" + entry.dump();
    }
    text += '}';
    text.append((8 - text.size() % 8) % 8, ' ');
    return text;
  }

  std::map<std::string, std::string, std::less<>> metadata_;
  std::vector<Tensor> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;  // name -> position in tensors_
  std::unique_ptr<detail::AtomicFile> file_;               // from begin()
  std::uint64_t data_offset_ = 0;                          // 8 + N once begun
  std::size_t next_ = 0;                                   // the tensor write() expects next
  State state_ = State::kDeclaring;
};

}  // namespace latentkv
