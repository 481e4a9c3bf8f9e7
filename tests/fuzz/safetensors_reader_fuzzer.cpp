// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// libFuzzer target: SafetensorsReader::from_bytes on arbitrary bytes. Contract under test: the
// reader either throws FormatError or returns a reader whose every view lies inside the input
// (ASan checks each byte touched) and whose reads as float never fail in another way. For files it
// accepts, SafetensorsWriter must re-encode the same tensors and metadata into a file the reader
// accepts again, with the same names, dtypes, shapes and bytes (a writer / reader consistency
// property). Any other exception escapes and is reported as a crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "latentkv/io/safetensors.hpp"

namespace {

using latentkv::SafetensorsDtype;
using latentkv::SafetensorsReader;
using latentkv::SafetensorsTensorInfo;

void require(bool condition) {
  if (!condition) std::abort();  // a broken invariant is a finding, like a crash
}

bool is_float(SafetensorsDtype d) {
  return d == SafetensorsDtype::kF32 || d == SafetensorsDtype::kF16 || d == SafetensorsDtype::kBF16;
}

void exercise(const SafetensorsReader& r, std::span<const std::byte> input) {
  require(r.data_offset() == 8 + r.header_size() && r.data_offset() <= input.size());
  for (const auto& [key, value] : r.metadata()) require(r.find_metadata(key) == &value);
  volatile unsigned sink = 0;
  std::uint64_t covered = 0;
  for (const SafetensorsTensorInfo& t : r.tensors()) {
    require(r.find_tensor(t.name) == &t);
    require(t.file_offset == r.data_offset() + t.begin && t.end <= input.size() - r.data_offset());
    const std::span<const std::byte> raw = r.raw(t);
    require(raw.size() == t.size_bytes());
    for (const std::byte b : raw) sink = sink + static_cast<unsigned>(b);  // ASan checks bounds
    covered += raw.size();
    if (is_float(t.dtype)) {
      const latentkv::RowMatrix<float> m = r.read_float(t);
      require(m.rows() == t.rows() && m.cols() == t.cols() && m.size() == t.num_elements());
      if (m.rows() > 0) {
        const latentkv::Index last = m.rows() - 1;
        require(r.read_float_rows(t, last, 1).cols() == t.cols());
      }
    } else {
      try {
        (void)r.read_float(t);
        std::abort();  // only F32, F16 and BF16 convert
      } catch (const latentkv::FormatError&) {
      }
    }
  }
  require(covered == input.size() - r.data_offset());  // the tensors tile the data section
}

/// The writer re-encodes what the reader accepted; the reader must accept it again, unchanged.
void round_trip(const SafetensorsReader& r) {
  latentkv::SafetensorsWriter w;
  for (const auto& [key, value] : r.metadata()) w.add_metadata(key, value);
  for (const SafetensorsTensorInfo& t : r.tensors()) w.add_raw(t.name, t.dtype, t.shape, r.raw(t));
  const std::vector<std::byte> bytes = w.serialize();
  const SafetensorsReader again = SafetensorsReader::from_bytes(bytes, "round-trip");
  require(again.header_size() % 8 == 0);
  require(again.metadata() == r.metadata());
  require(again.tensors().size() == r.tensors().size());
  for (std::size_t i = 0; i < r.tensors().size(); ++i) {
    const SafetensorsTensorInfo& a = r.tensors()[i];
    const SafetensorsTensorInfo& b = again.tensors()[i];  // header order is insertion order
    require(a.name == b.name && a.dtype == b.dtype && a.shape == b.shape);
    const auto x = r.raw(a);
    const auto y = again.raw(b);
    require(x.size() == y.size() && (x.empty() || std::memcmp(x.data(), y.data(), x.size()) == 0));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  try {
    const SafetensorsReader r = SafetensorsReader::from_bytes(input, "fuzz.safetensors");
    exercise(r, input);
    round_trip(r);
  } catch (const latentkv::FormatError&) {
    // malformed input: the expected outcome
  }
  return 0;
}
