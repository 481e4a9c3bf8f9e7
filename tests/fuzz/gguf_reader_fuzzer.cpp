// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// libFuzzer target: GgufReader::from_bytes on arbitrary bytes. Contract under test: the reader
// either throws FormatError or returns a reader whose every view lies inside the input (ASan
// checks each byte touched), whose typed metadata accessors answer or throw FormatError, and whose
// dequantization of the supported types succeeds (of the others throws FormatError). Any other
// exception escapes and is reported as a crash.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <variant>

#include "latentkv/io/gguf_reader.hpp"

namespace {

using latentkv::GgufReader;
using latentkv::GgufTensorInfo;
using latentkv::GgufValue;

void require(bool condition) {
  if (!condition) std::abort();  // a broken invariant is a finding, like a crash
}

volatile std::size_t sink = 0;

void touch(const GgufValue& value) {
  std::visit(
      [](const auto& v) {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, std::string_view>) {
          for (const char c : v) sink = sink + static_cast<unsigned char>(c);
        } else if constexpr (std::is_same_v<V, latentkv::GgufArray>) {
          for (const GgufValue& e : v.elements) {
            require(e.type() == v.element_type);
            touch(e);
          }
        } else {
          sink = sink + sizeof(v);
        }
      },
      value.storage());
}

template <class F>
void format_error_or_value(F&& f) {
  try {
    (void)f();
  } catch (const latentkv::FormatError&) {
  }
}

void exercise(const GgufReader& r, std::span<const std::byte> input) {
  for (const auto& kv : r.metadata()) {
    require(r.find(kv.key) == &kv.value);
    touch(kv.value);
    format_error_or_value([&] { return r.get_integer<std::int64_t>(kv.key); });
    format_error_or_value([&] { return r.get<std::string>(kv.key); });
    format_error_or_value([&] { return r.get_array_of<std::string>(kv.key); });
    format_error_or_value([&] { return r.get_array_of<std::int32_t>(kv.key); });
  }
  require(r.data_offset() % r.alignment() == 0);
  for (const GgufTensorInfo& t : r.tensors()) {
    require(r.find_tensor(t.name) == &t);
    require(t.file_offset <= input.size() && t.size_bytes <= input.size() - t.file_offset);
    for (const std::byte b : r.raw(t)) sink = sink + static_cast<unsigned>(b);
    const bool supported = latentkv::ggml_type_traits(t.type).dequantizable;
    const latentkv::Index rows = std::min<latentkv::Index>(t.rows(), 8);
    if (supported) {
      const latentkv::RowMatrix<float> m = r.dequantize_rows(t, t.rows() - rows, rows);
      require(m.rows() == rows && m.cols() == t.cols());
    } else {
      try {
        (void)r.dequantize_rows(t, 0, rows);
        std::abort();
      } catch (const latentkv::FormatError&) {
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  try {
    const GgufReader r = GgufReader::from_bytes(input, "fuzz.gguf");
    exercise(r, input);
  } catch (const latentkv::FormatError&) {
    // malformed input: the expected outcome
  }
  return 0;
}
