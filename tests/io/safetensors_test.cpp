// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// SafetensorsReader on hand-written files (header text + data bytes, independent of the writer),
// on a file written by Hugging Face's safetensors package (tests/data/safetensors/), and on
// malformed files: every corruption must end in a FormatError naming the file, the tensor when
// there is one, and the byte offset of the bad token. SafetensorsWriter: bit-exact round trips,
// layout (padding, alignment), argument checks, atomic replacement of the destination, and the
// committed file that the fixture script reads back with Python's safetensors.
#include "latentkv/io/safetensors.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <bit>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "../data/safetensors/python_fixtures.inc"
#include "../support/files.hpp"
#include "../support/gguf_builder.hpp"

namespace latentkv {
namespace {

using testing::at;
using testing::entries_of;
using testing::format_error;
using testing::ramp;
using testing::read_file;
using testing::TempDir;

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::TempFile;

const fs::path kDataDir = fs::path(LATENTKV_SOURCE_DIR) / "tests/data/safetensors";

// ---- helpers ------------------------------------------------------------------------------------

/// A file: u64 length of `header` (or `length` when given) · header · data.
std::vector<std::byte> file_bytes(std::string_view header, std::span<const std::byte> data = {},
                                  std::optional<std::uint64_t> length = std::nullopt) {
  std::vector<std::byte> out(8);
  const std::uint64_t n = length.value_or(header.size());
  std::memcpy(out.data(), &n, 8);
  const auto* h = reinterpret_cast<const std::byte*>(header.data());
  out.insert(out.end(), h, h + header.size());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

/// One header entry: "name":{"dtype":..,"shape":[..],"data_offsets":[b,e]}.
std::string entry(std::string_view name, std::string_view dtype, std::string_view shape,
                  std::uint64_t begin, std::uint64_t end) {
  return "\"" + std::string(name) + "\":{\"dtype\":\"" + std::string(dtype) +
         "\",\"shape\":" + std::string(shape) + ",\"data_offsets\":[" + std::to_string(begin) +
         "," + std::to_string(end) + "]}";
}

std::vector<std::byte> zeros(std::size_t n) { return std::vector<std::byte>(n); }

/// Opens `bytes` from a temporary file; must fail with a FormatError naming the file and an
/// offset. The in-memory parse must fail with the same message (modulo the file name).
std::string open_error(const std::vector<std::byte>& bytes) {
  const TempFile file(bytes, "latentkv_st");
  std::string message = format_error([&] { (void)SafetensorsReader::open(file.path()); });
  EXPECT_THAT(message,
              AllOf(HasSubstr("latentkv::SafetensorsReader::open: " + file.path().string() + ": "),
                    HasSubstr("byte offset")));
  std::string in_memory =
      format_error([&] { (void)SafetensorsReader::from_bytes(bytes, "mem.safetensors"); });
  const std::size_t at = message.find(file.path().string());
  if (at != std::string::npos) {
    std::string expected = message;
    expected.replace(at, file.path().string().size(), "mem.safetensors");
    EXPECT_EQ(in_memory, expected);
  }
  return message;
}

std::string header_error(std::string_view header, std::span<const std::byte> data = {}) {
  return open_error(file_bytes(header, data));
}

/// File offset of the first occurrence of `token` in `header` (after the 8-byte length).
std::size_t offset_of(std::string_view header, std::string_view token, std::size_t from = 0) {
  const std::size_t i = header.find(token, from);
  EXPECT_NE(i, std::string_view::npos) << token;
  return 8 + i;
}

std::vector<std::byte> concat_bytes(std::initializer_list<std::vector<std::byte>> parts) {
  std::vector<std::byte> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

/// A valid file with tensors of three float dtypes and metadata; the data section tiles exactly.
struct SmallFile {
  std::string header;
  std::vector<std::byte> data;
  std::vector<float> a = ramp(6, -1.0f, 0.5f);   // F32 (2, 3): bytes [0, 24)
  std::vector<float> b = ramp(4, 2.0f, -0.25f);  // F16 (4):    bytes [24, 32)
  std::vector<float> c = ramp(6, 0.0f, 1.5f);    // BF16 (3, 2): bytes [32, 44)

  SmallFile() {
    header = "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"}," +
             entry("a", "F32", "[2,3]", 0, 24) + "," + entry("b", "F16", "[4]", 24, 32) + "," +
             entry("c", "BF16", "[3,2]", 32, 44) + "}";
    header.append((8 - header.size() % 8) % 8, ' ');  // data 8-byte aligned, as writers do
    data = concat_bytes({testing::f32_bytes(a), testing::f16_bytes(b), testing::bf16_bytes(c)});
  }
  [[nodiscard]] std::vector<std::byte> bytes() const { return file_bytes(header, data); }
};

// ---- dtypes -------------------------------------------------------------------------------------

TEST(SafetensorsDtype, TableIsInEnumOrderAndNamesRoundTrip) {
  for (std::size_t i = 0; i < detail::kSafetensorsDtypes.size(); ++i) {
    const auto& traits = detail::kSafetensorsDtypes[i];
    EXPECT_EQ(static_cast<std::size_t>(traits.dtype), i) << traits.name;
    const SafetensorsDtypeTraits* found = find_safetensors_dtype(traits.name);
    ASSERT_NE(found, nullptr) << traits.name;
    EXPECT_EQ(found->dtype, traits.dtype);
    EXPECT_EQ(to_string(traits.dtype), traits.name);
  }
  EXPECT_EQ(safetensors_dtype_traits(SafetensorsDtype::kBF16).bits, 16u);
  EXPECT_EQ(safetensors_dtype_traits(SafetensorsDtype::kF4).bits, 4u);
  EXPECT_EQ(safetensors_dtype_traits(SafetensorsDtype::kC64).bits, 64u);
  EXPECT_EQ(find_safetensors_dtype("f32"), nullptr);  // case-sensitive, as the reference
  EXPECT_EQ(find_safetensors_dtype("FP32"), nullptr);
}

// ---- well-formed files --------------------------------------------------------------------------

TEST(SafetensorsReader, ReadsF32F16AndBf16AsFloat) {
  const SmallFile f;
  const TempFile file(f.bytes(), "latentkv_st");
  const SafetensorsReader r = SafetensorsReader::open(file.path());
  EXPECT_EQ(r.path(), file.path());
  EXPECT_EQ(r.header_size(), f.header.size());
  EXPECT_EQ(r.data_offset(), 8 + f.header.size());
  EXPECT_EQ(r.file_size(), f.bytes().size());
  ASSERT_EQ(r.tensors().size(), 3u);
  EXPECT_EQ(r.tensors()[0].name, "a");  // header order
  EXPECT_EQ(r.tensors()[2].name, "c");

  const SafetensorsTensorInfo& a = r.tensor("a");
  EXPECT_EQ(a.dtype, SafetensorsDtype::kF32);
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(a.begin, 0u);
  EXPECT_EQ(a.end, 24u);
  EXPECT_EQ(a.size_bytes(), 24u);
  EXPECT_EQ(a.file_offset, r.data_offset());
  EXPECT_EQ(a.header_offset, offset_of(f.header, "\"a\""));
  EXPECT_EQ(a.rows(), 2);
  EXPECT_EQ(a.cols(), 3);
  EXPECT_EQ(a.num_elements(), 6);

  const RowMatrix<float> ma = r.read_float("a");
  ASSERT_EQ(ma.rows(), 2);
  ASSERT_EQ(ma.cols(), 3);
  for (Index k = 0; k < 6; ++k) EXPECT_EQ(ma(k / 3, k % 3), f.a[static_cast<std::size_t>(k)]) << k;
  const RowMatrix<float> mb = r.read_float("b");
  ASSERT_EQ(mb.rows(), 1);
  ASSERT_EQ(mb.cols(), 4);
  for (Index k = 0; k < 4; ++k) EXPECT_EQ(mb(0, k), f.b[static_cast<std::size_t>(k)]) << k;
  const RowMatrix<float> mc = r.read_float(r.tensor("c"));
  ASSERT_EQ(mc.rows(), 3);
  ASSERT_EQ(mc.cols(), 2);
  for (Index k = 0; k < 6; ++k) EXPECT_EQ(mc(k / 2, k % 2), f.c[static_cast<std::size_t>(k)]) << k;

  EXPECT_EQ(r.metadata().size(), 2u);
  ASSERT_NE(r.find_metadata("format"), nullptr);
  EXPECT_EQ(*r.find_metadata("format"), "pt");
  EXPECT_EQ(r.find_metadata("missing"), nullptr);
}

TEST(SafetensorsReader, RawViewsAndMapF32PointIntoTheMapping) {
  const SmallFile f;
  const TempFile file(f.bytes(), "latentkv_st");
  const SafetensorsReader r = SafetensorsReader::open(file.path());
  const auto raw = r.raw("b");
  ASSERT_EQ(raw.size(), 8u);
  EXPECT_TRUE(std::equal(raw.begin(), raw.end(), f.data.begin() + 24));
  EXPECT_EQ(r.raw(r.tensor("b")).data(), raw.data()) << "raw() must be a view, not a copy";
  EXPECT_EQ(raw.data(), r.raw("a").data() + 24);

  const auto view = r.map_f32("a");
  EXPECT_EQ(reinterpret_cast<const std::byte*>(view.data()), r.raw("a").data());
  EXPECT_EQ(view.rows(), 2);
  EXPECT_EQ(view.cols(), 3);
  EXPECT_EQ(view(1, 2), f.a[5]);
  EXPECT_THAT(
      format_error([&] { (void)r.map_f32("b"); }),
      AllOf(HasSubstr("tensor 'b'"), HasSubstr("has dtype F16, expected F32"),
            HasSubstr("(data at byte offset " + std::to_string(r.tensor("b").file_offset))));
}

TEST(SafetensorsReader, MapF32RefusesMisalignedDataThatReadFloatStillReads) {
  // Pad the header so that the data starts at a file offset ≡ 1 (mod 4): misaligned in memory.
  std::string h = "{" + entry("f", "F32", "[2]", 0, 8) + "}";
  while ((8 + h.size()) % 4 != 1) h.push_back(' ');
  const TempFile file(file_bytes(h, testing::f32_bytes({1.0f, -2.0f})), "latentkv_st");
  const SafetensorsReader r = SafetensorsReader::open(file.path());
  ASSERT_NE(reinterpret_cast<std::uintptr_t>(r.raw("f").data()) % 4, 0u);
  EXPECT_THAT(format_error([&] { (void)r.map_f32("f"); }), HasSubstr("4-byte aligned"));
  const RowMatrix<float> m = r.read_float("f");
  EXPECT_EQ(m(0, 0), 1.0f);
  EXPECT_EQ(m(0, 1), -2.0f);
}

TEST(SafetensorsReader, FlattensLeadingDimensionsIntoRows) {
  const std::vector<float> v = ramp(24, 0.0f, 1.0f);
  const std::string h =
      "{" + entry("t", "F32", "[2,3,4]", 0, 96) + "," + entry("s", "F32", "[]", 96, 100) + "," +
      entry("z", "F16", "[0,4]", 100, 100) + "," + entry("w", "F16", "[4,0]", 100, 100) + "}";
  const TempFile file(
      file_bytes(h, concat_bytes({testing::f32_bytes(v), testing::f32_bytes({2.5f})})),
      "latentkv_st");
  const SafetensorsReader r = SafetensorsReader::open(file.path());
  const RowMatrix<float> t = r.read_float("t");
  ASSERT_EQ(t.rows(), 6);
  ASSERT_EQ(t.cols(), 4);
  EXPECT_EQ(t(5, 3), 23.0f);
  EXPECT_EQ(t(2, 1), 9.0f);
  const SafetensorsTensorInfo& s = r.tensor("s");
  EXPECT_TRUE(s.shape.empty());
  EXPECT_EQ(s.num_elements(), 1);
  EXPECT_EQ(r.read_float(s), RowMatrix<float>::Constant(1, 1, 2.5f));
  EXPECT_EQ(r.read_float("z").rows(), 0);
  EXPECT_EQ(r.read_float("z").cols(), 4);
  EXPECT_EQ(r.read_float("w").rows(), 4);
  EXPECT_EQ(r.read_float("w").cols(), 0);
  EXPECT_EQ(r.tensor("z").num_elements(), 0);
}

TEST(SafetensorsReader, ReadsNoRowsOfAnEmptyTensorWithAHugeLastDimension) {
  const std::string h = "{" + entry("wide", "F32", "[0,4611686018427387904]", 0, 0) + "}";
  const TempFile file(file_bytes(h), "latentkv_st");
  const SafetensorsReader r = SafetensorsReader::open(file.path());
  const RowMatrix<float> m = r.read_float("wide");
  EXPECT_EQ(m.rows(), 0);
  EXPECT_EQ(m.cols(), std::int64_t{1} << 62);
}

TEST(SafetensorsReader, ReadsARowRangeLikeTheWholeTensor) {
  const TempFile file(SmallFile().bytes(), "latentkv_st");
  const SafetensorsReader r = SafetensorsReader::open(file.path());
  const RowMatrix<float> all = r.read_float("c");
  EXPECT_EQ(r.read_float_rows("c", 1, 2), all.bottomRows(2));
  EXPECT_EQ(r.read_float_rows("c", 3, 0).rows(), 0);
  EXPECT_THROW((void)r.read_float_rows("c", 2, 2), InvalidArgument);
  EXPECT_THROW((void)r.read_float_rows("c", -1, 1), InvalidArgument);
}

TEST(SafetensorsReader, ListsEveryDtypeAndReadsOnlyFloatOnesAsFloat) {
  std::string h = "{";
  std::uint64_t next = 0;
  for (const auto& traits : detail::kSafetensorsDtypes) {
    // 8 elements: a whole number of bytes for the 4- and 6-bit formats too.
    const std::uint64_t size = 8 * traits.bits / 8;
    if (h.size() > 1) h += ",";
    h += entry(std::string("t_") + std::string(traits.name), traits.name, "[2,4]", next,
               next + size);
    next += size;
  }
  h += "}";
  const TempFile file(file_bytes(h, zeros(next)), "latentkv_st");
  const SafetensorsReader r = SafetensorsReader::open(file.path());
  ASSERT_EQ(r.tensors().size(), detail::kSafetensorsDtypes.size());
  for (const auto& traits : detail::kSafetensorsDtypes) {
    const std::string name = "t_" + std::string(traits.name);
    const SafetensorsTensorInfo& t = r.tensor(name);
    EXPECT_EQ(t.dtype, traits.dtype) << name;
    EXPECT_EQ(t.size_bytes(), traits.bits) << name;
    EXPECT_EQ(r.raw(t).size(), traits.bits) << name;
    const bool is_float = traits.dtype == SafetensorsDtype::kF32 ||
                          traits.dtype == SafetensorsDtype::kF16 ||
                          traits.dtype == SafetensorsDtype::kBF16;
    if (is_float) {
      EXPECT_EQ(r.read_float(t), RowMatrix<float>::Zero(2, 4)) << name;
    } else {
      EXPECT_THAT(format_error([&] { (void)r.read_float(t); }),
                  AllOf(HasSubstr(file.path().string()), HasSubstr("tensor '" + name + "'"),
                        HasSubstr("has dtype " + std::string(traits.name)),
                        HasSubstr("cannot be read as float"),
                        HasSubstr("(data at byte offset " + std::to_string(t.file_offset))))
          << name;
    }
  }
}

TEST(SafetensorsReader, AcceptsWhitespaceNullMetadataAndIgnoresUnknownFields) {
  const std::string h =
      " \n{ \"__metadata__\" : null ,\t\"x\" : { \"note\" : [ { \"deep\" : [ [ 1 ] , null ] } , "
      "\"s\" ] , \"dtype\" : \"U8\" , \"more\" : { } , \"shape\" : [ 2 ] , \"data_offsets\" : [ 0 "
      ", 2 ] , \"last\" : true } }   ";
  const TempFile file(file_bytes(h, zeros(2)), "latentkv_st");
  const SafetensorsReader r = SafetensorsReader::open(file.path());
  EXPECT_TRUE(r.metadata().empty());
  ASSERT_EQ(r.tensors().size(), 1u);
  EXPECT_EQ(r.tensor("x").dtype, SafetensorsDtype::kU8);
  EXPECT_EQ(r.tensor("x").size_bytes(), 2u);
  EXPECT_EQ(r.tensor("x").header_offset, offset_of(h, "\"x\""));
}

TEST(SafetensorsReader, OpensAnEmptyHeaderAndUnicodeNames) {
  const TempFile empty(file_bytes("{}"), "latentkv_st");
  EXPECT_TRUE(SafetensorsReader::open(empty.path()).tensors().empty());
  // Escapes decode: the name is "é\"\n" (UTF-8), found by its decoded form.
  const std::string h = "{" + entry("\\u00e9\\\"\\n", "I8", "[1]", 0, 1) + "}";
  const TempFile file(file_bytes(h, zeros(1)), "latentkv_st");
  const SafetensorsReader r = SafetensorsReader::open(file.path());
  EXPECT_NE(r.find_tensor("\xc3\xa9\"\n"), nullptr);
}

TEST(SafetensorsReader, ReportsMissingTensorsByName) {
  const TempFile file(SmallFile().bytes(), "latentkv_st");
  const SafetensorsReader r = SafetensorsReader::open(file.path());
  EXPECT_EQ(r.find_tensor("nope"), nullptr);
  EXPECT_THAT(format_error([&] { (void)r.tensor("nope"); }),
              AllOf(HasSubstr(file.path().string()), HasSubstr("no tensor named 'nope'"),
                    HasSubstr("3 tensors")));
}

TEST(SafetensorsReader, RejectsTensorInfosFromAnotherReader) {
  const TempFile one(SmallFile().bytes(), "latentkv_st");
  const SafetensorsReader a = SafetensorsReader::open(one.path());
  const SafetensorsReader b = SafetensorsReader::open(one.path());
  EXPECT_THROW((void)a.raw(b.tensor("a")), InvalidArgument);
  EXPECT_THROW((void)a.read_float(b.tensor("a")), InvalidArgument);
  const SafetensorsTensorInfo copy = a.tensor("a");
  EXPECT_THROW((void)a.raw(copy), InvalidArgument);
}

TEST(SafetensorsReader, ViewsStayValidAfterTheReaderIsMoved) {
  const SmallFile f;
  const TempFile file(f.bytes(), "latentkv_st");
  SafetensorsReader first = SafetensorsReader::open(file.path());
  const std::byte* data = first.raw("c").data();
  const SafetensorsTensorInfo* info = &first.tensor("c");
  const SafetensorsReader moved = std::move(first);
  EXPECT_EQ(moved.raw("c").data(), data);
  EXPECT_EQ(&moved.tensor("c"), info);
  EXPECT_EQ(moved.find_tensor("b")->name, "b");
  EXPECT_EQ(moved.read_float("c")(2, 1), f.c[5]);
  EXPECT_EQ(*moved.find_metadata("k"), "v");
}

TEST(SafetensorsReader, FromBytesReadsAnInMemoryFileUnderTheGivenName) {
  const std::vector<std::byte> bytes = SmallFile().bytes();
  const SafetensorsReader r = SafetensorsReader::from_bytes(bytes, "weights/in-memory");
  EXPECT_EQ(r.path(), "weights/in-memory");
  EXPECT_EQ(r.raw("a").data(), bytes.data() + r.data_offset()) << "borrowed, not copied";
  EXPECT_THAT(format_error([&] { (void)r.tensor("x"); }), HasSubstr("weights/in-memory"));
  EXPECT_THAT(format_error([&] { (void)SafetensorsReader::from_bytes({}); }),
              HasSubstr("<memory>: the file is 0 bytes"));
}

TEST(SafetensorsReader, MissingFileIsAnErrorNamingTheFile) {
  try {
    (void)SafetensorsReader::open("/nonexistent/latentkv/model.safetensors");
    FAIL() << "expected an Error";
  } catch (const FormatError&) {
    FAIL() << "a missing file is not a format error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/latentkv/model.safetensors"));
  }
}

// Written by Hugging Face's safetensors (tests/data/safetensors/make_fixtures.py); the expected
// values are what safetensors itself reads back.
TEST(SafetensorsReader, MatchesPythonSafetensorsOnItsOwnFile) {
  const SafetensorsReader r = SafetensorsReader::open(kDataDir / "python_dtypes.safetensors");
  EXPECT_EQ(r.header_size() % 8, 0u) << "the reference writer pads the header to 8 bytes";
  EXPECT_EQ(r.metadata().size(), 3u);
  EXPECT_EQ(*r.find_metadata("format"), "np");
  EXPECT_EQ(*r.find_metadata("note"), "h\xc3\xa9llo \xe2\x98\x83");
  EXPECT_EQ(*r.find_metadata("empty"), "");
  EXPECT_EQ(r.tensors().size(), 10u);
  for (const auto& t : fixtures::python_float_tensors()) {
    SCOPED_TRACE(t.name);
    const SafetensorsTensorInfo& info = r.tensor(t.name);
    EXPECT_EQ(to_string(info.dtype), t.dtype);
    EXPECT_EQ(info.shape, t.shape);
    const RowMatrix<float> m = r.read_float(info);
    ASSERT_EQ(static_cast<std::size_t>(m.size()), t.values.size());
    for (Index k = 0; k < m.size(); ++k) {
      const float got = m(k / std::max<Index>(m.cols(), 1), k % std::max<Index>(m.cols(), 1));
      const float want = t.values[static_cast<std::size_t>(k)];
      EXPECT_EQ(std::bit_cast<std::uint32_t>(got), std::bit_cast<std::uint32_t>(want))
          << k << ": " << got << " vs " << want;  // bitwise: -0 and inf included
    }
    if (info.dtype == SafetensorsDtype::kF32 &&
        reinterpret_cast<std::uintptr_t>(r.raw(info).data()) % 4 == 0) {
      EXPECT_EQ(r.map_f32(t.name), m);
    }
  }
  const auto i32 = r.raw("i32.vector");
  ASSERT_EQ(i32.size(), sizeof(fixtures::kPythonI32));
  EXPECT_EQ(std::memcmp(i32.data(), fixtures::kPythonI32, i32.size()), 0);
  const auto f64 = r.raw("f64.vector");
  ASSERT_EQ(f64.size(), sizeof(fixtures::kPythonF64));
  EXPECT_EQ(std::memcmp(f64.data(), fixtures::kPythonF64, f64.size()), 0);
  const auto u8 = r.raw("u8.bytes");
  ASSERT_EQ(u8.size(), sizeof(fixtures::kPythonU8));
  EXPECT_EQ(std::memcmp(u8.data(), fixtures::kPythonU8, u8.size()), 0);
  EXPECT_THAT(format_error([&] { (void)r.read_float("f64.vector"); }), HasSubstr("F64"));
}

// ---- malformed files ----------------------------------------------------------------------------

TEST(SafetensorsReaderMalformed, RejectsATruncatedFileAtEveryLength) {
  const std::vector<std::byte> full = SmallFile().bytes();
  for (std::size_t n = 0; n < full.size(); ++n) {
    const std::vector<std::byte> cut(full.begin(), full.begin() + static_cast<long>(n));
    ASSERT_THAT(open_error(cut), HasSubstr("byte offset")) << "length " << n;
  }
  EXPECT_THAT(open_error({full.begin(), full.begin() + 5}),
              AllOf(HasSubstr("the file is 5 bytes, too short for the 8-byte header length"),
                    HasSubstr(at(0))));
  const SmallFile f;
  const std::vector<std::byte> in_data(full.begin(), full.end() - 3);
  EXPECT_THAT(open_error(in_data),
              AllOf(HasSubstr("tensor 'c': data_offsets [32, 44] run past the end of the data "
                              "section (41 bytes"),
                    HasSubstr(at(offset_of(f.header, "[32,44]")))));
}

TEST(SafetensorsReaderMalformed, RejectsAHeaderLengthPastTheEnd) {
  const SmallFile f;
  const std::vector<std::byte> data = f.data;
  const std::size_t size = 8 + f.header.size() + data.size();
  for (const std::uint64_t n :
       {std::uint64_t{size - 7}, std::uint64_t{1} << 40, std::numeric_limits<std::uint64_t>::max(),
        std::numeric_limits<std::uint64_t>::max() - 7}) {
    EXPECT_THAT(
        open_error(file_bytes(f.header, data, n)),
        AllOf(HasSubstr("header length " + std::to_string(n) + " runs past the end of the file (" +
                        std::to_string(size - 8) + " bytes follow the length field"),
              HasSubstr(at(0))))
        << n;
  }
}

TEST(SafetensorsReaderMalformed, RejectsAHeaderLengthAboveTheLimit) {
  // A sparse file larger than the limit: the length is refused before anything is parsed.
  const std::uint64_t n = SafetensorsReader::kMaxHeaderBytes + 1;
  const TempFile file(file_bytes("{}", {}, n), "latentkv_st");
  fs::resize_file(file.path(), 8 + n);
  EXPECT_THAT(format_error([&] { (void)SafetensorsReader::open(file.path()); }),
              AllOf(HasSubstr(file.path().string()), HasSubstr("exceeds the limit of 100000000"),
                    HasSubstr(at(0))));
}

TEST(SafetensorsReaderMalformed, RejectsAHeaderThatIsNotValidJson) {
  struct Case {
    std::string header;
    std::size_t offset;  // of the offending byte in the file
  };
  // Offsets are where the offending token starts (or the end of the header at an early end).
  const std::vector<Case> cases = {
      {"", 8},                                           // empty
      {"{", 9},                                          // unterminated
      {"{\"a\":{\"dtype\":\"F32\"", 27},                 // unterminated entry
      {"{\"a\":}", 13},                                  // missing value
      {"{\"a\" 1}", 13},                                 // missing ':'
      {"{/* c */}", 9},                                  // comments are not JSON
      {"{} x", 11},                                      // trailing content
      {"{\"\xff\":1}", 9},                               // invalid UTF-8 in a string
      {"{\"a\":{\"dtype\":\"F32\" \"shape\":[]}}", 28},  // missing ','
      {"{\"a\":1e999}", 13},                             // number overflow
      {"\x01\x02\x03", 8},                               // binary junk
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.header);
    EXPECT_THAT(header_error(c.header),
                AllOf(HasSubstr("header is not valid JSON"), HasSubstr(at(c.offset))));
  }
  // nlohmann ends its input at a NUL byte, so "{}\0..." would pass as "{}": NUL is checked first.
  const std::string nul("{\"a\":\"x\"}\0\0\0\0", 13);
  EXPECT_THAT(header_error(nul), AllOf(HasSubstr("the header contains a NUL byte, which JSON "
                                                 "never does (padding is spaces)"),
                                       HasSubstr(at(17))));
  EXPECT_THAT(header_error("\xef\xbb\xbf{}"),
              AllOf(HasSubstr("byte-order mark"), HasSubstr(at(8))));
}

TEST(SafetensorsReaderMalformed, RejectsAHeaderThatIsNotAnObject) {
  for (const std::string header : {"[]", "\"x\"", "12", "null", "true", "  [1, 2]"}) {
    EXPECT_THAT(header_error(header),
                AllOf(HasSubstr("the header is a JSON"), HasSubstr("expected an object"),
                      HasSubstr(at(8 + header.find_first_not_of(' ')))))
        << header;
  }
}

TEST(SafetensorsReaderMalformed, RejectsDuplicateTensorNames) {
  const std::string h =
      "{" + entry("w", "U8", "[1]", 0, 1) + ",\n " + entry("w", "U8", "[1]", 1, 2) + "}";
  EXPECT_THAT(header_error(h, zeros(2)),
              AllOf(HasSubstr("duplicate tensor name 'w'"),
                    HasSubstr("first at byte offset " + std::to_string(offset_of(h, "\"w\""))),
                    HasSubstr(at(offset_of(h, "\"w\"", 2)))));
}

TEST(SafetensorsReaderMalformed, RejectsOtherDuplicateKeys) {
  const std::string meta = "{\"__metadata__\":{\"k\":\"1\"},\"__metadata__\":{}}";
  EXPECT_THAT(header_error(meta), AllOf(HasSubstr("duplicate key '__metadata__'"),
                                        HasSubstr(at(offset_of(meta, "\"__metadata__\"", 5)))));
  const std::string key = "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}";
  EXPECT_THAT(header_error(key), AllOf(HasSubstr("duplicate __metadata__ key 'k'"),
                                       HasSubstr(at(offset_of(key, "\"k\"", 20)))));
  const std::string field =
      "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"shape\":[1],\"data_offsets\":[0,1]}}";
  EXPECT_THAT(header_error(field, zeros(1)),
              AllOf(HasSubstr("tensor 't': duplicate field 'shape'"),
                    HasSubstr(at(offset_of(field, "\"shape\"", 25)))));
}

TEST(SafetensorsReaderMalformed, RejectsNonStringMetadata) {
  for (const char* value : {"1", "-1", "1.5", "true", "null", "{}", "[\"a\"]"}) {
    const std::string h = std::string("{\"__metadata__\":{\"ok\":\"x\",\"bad\":") + value + "}}";
    EXPECT_THAT(header_error(h),
                AllOf(HasSubstr("__metadata__ value of key 'bad' is a JSON"),
                      HasSubstr("expected a string"), HasSubstr(at(offset_of(h, value, 30)))))
        << value;
  }
  for (const char* value : {"[]", "\"x\"", "3"}) {
    const std::string h = std::string("{\"__metadata__\":") + value + "}";
    EXPECT_THAT(header_error(h), AllOf(HasSubstr("__metadata__ is a JSON"),
                                       HasSubstr("expected an object of strings"),
                                       HasSubstr(at(offset_of(h, value, 15)))))
        << value;
  }
}

TEST(SafetensorsReaderMalformed, RejectsMistypedTensorEntries) {
  struct Case {
    std::string header;
    std::string message;
    std::string token;  // the offending token (its first occurrence after the name)
  };
  const std::vector<Case> cases = {
      {"{\"t\":[1]}", "tensor 't': the entry is a JSON array", "["},
      {"{\"t\":\"F32\"}", "tensor 't': the entry is a JSON string", "\"F32\""},
      {"{\"t\":{\"dtype\":32}}", "tensor 't': dtype is a JSON number", "32"},
      {"{\"t\":{\"dtype\":[\"F32\"]}}", "tensor 't': dtype is a JSON array", "["},
      {"{\"t\":{\"shape\":4}}", "tensor 't': shape is a JSON number", "4"},
      {"{\"t\":{\"shape\":{}}}", "tensor 't': shape is a JSON object", "{}"},
      {"{\"t\":{\"shape\":[2,\"3\"]}}", "tensor 't': shape[1] is a JSON string", "\"3\""},
      {"{\"t\":{\"shape\":[[2]]}}", "tensor 't': shape[0] is a JSON array", "[2]"},
      {"{\"t\":{\"shape\":[null]}}", "tensor 't': shape[0] is a JSON null", "null"},
      {"{\"t\":{\"shape\":[2.0]}}", "tensor 't': shape[0] = '2.0' is not an integer", "2.0"},
      {"{\"t\":{\"shape\":[1e3]}}", "tensor 't': shape[0] = '1e3' is not an integer", "1e3"},
      {"{\"t\":{\"shape\":[1,-4]}}", "tensor 't': shape[1] = -4 is negative", "-4"},
      {"{\"t\":{\"shape\":[99999999999999999999]}}", "is not an integer in 0..2^64 - 1",
       "99999999999999999999"},
      {"{\"t\":{\"data_offsets\":[0]}}", "tensor 't': data_offsets has 1 elements", "["},
      {"{\"t\":{\"data_offsets\":[]}}", "tensor 't': data_offsets has 0 elements", "["},
      {"{\"t\":{\"data_offsets\":[0,1,2]}}", "data_offsets has more than 2 elements", "2]"},
      {"{\"t\":{\"data_offsets\":[-1,1]}}", "tensor 't': data_offsets[0] = -1 is negative", "-1"},
      {"{\"t\":{\"data_offsets\":[0,1.5]}}", "tensor 't': data_offsets[1] = '1.5' is not", "1.5"},
      {"{\"t\":{\"data_offsets\":\"0-4\"}}", "tensor 't': data_offsets is a JSON string",
       "\"0-4\""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.header);
    EXPECT_THAT(header_error(c.header),
                AllOf(HasSubstr(c.message), HasSubstr(at(offset_of(c.header, c.token, 5)))));
  }
}

TEST(SafetensorsReaderMalformed, RejectsMissingFields) {
  for (const char* missing : {"dtype", "shape", "data_offsets"}) {
    std::string h = "{\"t\":{";
    bool first = true;
    for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
             {"dtype", "\"U8\""}, {"shape", "[1]"}, {"data_offsets", "[0,1]"}}) {
      if (key == missing) continue;
      h += (first ? "\"" : ",\"") + key + "\":" + value;
      first = false;
    }
    h += "}}";
    EXPECT_THAT(header_error(h, zeros(1)),
                AllOf(HasSubstr("tensor 't': the entry has no " + std::string(missing) + " field"),
                      HasSubstr(at(offset_of(h, "\"t\"")))))
        << missing;
  }
}

TEST(SafetensorsReaderMalformed, RejectsUnknownDtypes) {
  for (const std::string dtype : {"f32", "FP32", "Q4_0", "", "F32 "}) {
    std::string h = "{";  // built step by step: GCC 12 warns (-Wrestrict) on "{" + string
    h += entry("t", dtype, "[1]", 0, 4);
    h += "}";
    std::string token = "\"";
    token += dtype;
    token += "\"";
    EXPECT_THAT(header_error(h, zeros(4)),
                AllOf(HasSubstr("tensor 't': unknown dtype '" + dtype + "'"),
                      HasSubstr("expected one of BOOL"), HasSubstr(at(offset_of(h, token)))))
        << dtype;
  }
}

TEST(SafetensorsReaderMalformed, RejectsDimensionProductsThatOverflow) {
  // 2^32 · 2^31 = 2^63 > int64 max.
  const std::string h1 = "{" + entry("big", "U8", "[4294967296,2147483648]", 0, 0) + "}";
  EXPECT_THAT(header_error(h1),
              AllOf(HasSubstr("tensor 'big': shape[1] = 2147483648"),
                    HasSubstr("overflows 64 bits"), HasSubstr(at(offset_of(h1, "2147483648")))));
  // A zero dimension must not hide the overflow of the others (rows() would overflow).
  const std::string h2 = "{" + entry("hidden", "U8", "[0,4294967296,4294967296]", 0, 0) + "}";
  EXPECT_THAT(header_error(h2),
              AllOf(HasSubstr("tensor 'hidden': shape[2]"), HasSubstr("overflows 64 bits"),
                    HasSubstr(at(offset_of(h2, ",4294967296]") + 1))));
  const std::string h3 = "{" + entry("huge", "U8", "[9223372036854775808]", 0, 0) + "}";
  EXPECT_THAT(header_error(h3), HasSubstr("shape[0] = 9223372036854775808, expected at most"));
  // The element count fits, the bit count does not: 2^60 F64 elements are 2^66 bits.
  const std::string h4 = "{" + entry("bits", "F64", "[1152921504606846976]", 0, 0) + "}";
  EXPECT_THAT(header_error(h4),
              AllOf(HasSubstr("tensor 'bits'"), HasSubstr("bit count that overflows 64 bits"),
                    HasSubstr(at(offset_of(h4, "[1152921504606846976]")))));
  std::string many = "{\"t\":{\"shape\":[";
  for (int i = 0; i < 65; ++i) many += i == 0 ? "1" : ",1";
  many += "]}}";
  EXPECT_THAT(header_error(many), HasSubstr("shape has more than 64 dimensions"));
}

TEST(SafetensorsReaderMalformed, RejectsSubByteTensorsThatEndInsideAByte) {
  const std::string h = "{" + entry("f4", "F4", "[3]", 0, 2) + "}";
  EXPECT_THAT(header_error(h, zeros(2)),
              AllOf(HasSubstr("tensor 'f4': shape [3] of F4 is 12 bits, not a whole number"),
                    HasSubstr(at(offset_of(h, "[3]")))));
}

TEST(SafetensorsReaderMalformed, RejectsDataOffsetsThatDisagreeWithTheShape) {
  const std::string reversed = "{" + entry("t", "F32", "[1]", 8, 4) + "}";
  EXPECT_THAT(header_error(reversed, zeros(8)),
              AllOf(HasSubstr("tensor 't': data_offsets [8, 4] begin > end"),
                    HasSubstr(at(offset_of(reversed, "[8,4]")))));
  const std::string wrong = "{" + entry("t", "F32", "[2,3]", 0, 20) + "}";
  EXPECT_THAT(header_error(wrong, zeros(20)),
              AllOf(HasSubstr("tensor 't': data_offsets [0, 20] span 20 bytes, but shape [2, 3] "
                              "of F32 needs 24"),
                    HasSubstr(at(offset_of(wrong, "[0,20]")))));
}

TEST(SafetensorsReaderMalformed, RejectsDataPastTheEndWithoutWrappingAround) {
  const std::string h = "{" + entry("t", "U8", "[4]", 0, 4) + "}";
  EXPECT_THAT(header_error(h, zeros(3)),
              AllOf(HasSubstr("tensor 't': data_offsets [0, 4] run past the end of the data "
                              "section (3 bytes from byte offset " +
                              std::to_string(8 + h.size())),
                    HasSubstr(at(offset_of(h, "[0,4]")))));
  // Offsets near 2^64: the absolute offsets 8 + N + begin would wrap around.
  const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  for (const auto& [begin, end, shape] :
       {std::tuple{max - 1, max, "[1]"}, std::tuple{max, max, "[0]"}}) {
    const std::string wrap = "{" + entry("t", "U8", shape, begin, end) + "}";
    EXPECT_THAT(header_error(wrap, zeros(4)),
                AllOf(HasSubstr("tensor 't': data_offsets [" + std::to_string(begin)),
                      HasSubstr("run past the end of the data section")));
  }
}

TEST(SafetensorsReaderMalformed, RejectsOverlappingData) {
  const std::string h =
      "{" + entry("a", "U8", "[8]", 0, 8) + "," + entry("b", "U8", "[4]", 6, 10) + "}";
  const std::size_t data = 8 + h.size();
  EXPECT_THAT(header_error(h, zeros(10)),
              AllOf(HasSubstr("tensor 'b' data [" + std::to_string(data + 6) + ", " +
                              std::to_string(data + 10) + ") overlaps tensor 'a' data [" +
                              std::to_string(data) + ", " + std::to_string(data + 8) + ")"),
                    HasSubstr(at(data + 6))));
  const std::string same =
      "{" + entry("a", "U8", "[4]", 0, 4) + "," + entry("b", "U8", "[4]", 0, 4) + "}";
  EXPECT_THAT(header_error(same, zeros(4)),
              AllOf(HasSubstr("overlaps"), HasSubstr("'a'"), HasSubstr("'b'")));
}

TEST(SafetensorsReaderMalformed, RejectsGapsAndTrailingBytesLikeTheReference) {
  const std::string gap =
      "{" + entry("a", "U8", "[2]", 0, 2) + "," + entry("b", "U8", "[2]", 4, 6) + "}";
  const std::size_t data = 8 + gap.size();
  EXPECT_THAT(
      header_error(gap, zeros(6)),
      AllOf(HasSubstr("bytes [" + std::to_string(data + 2) + ", " + std::to_string(data + 4) +
                      ") of the data section belong to no tensor (between tensor 'a' and "
                      "tensor 'b')"),
            HasSubstr(at(data + 2))));
  const std::string front = "{" + entry("a", "U8", "[2]", 1, 3) + "}";
  EXPECT_THAT(header_error(front, zeros(3)), HasSubstr("belong to no tensor (before tensor 'a')"));
  const std::string tail = "{" + entry("a", "U8", "[2]", 0, 2) + "}";
  EXPECT_THAT(header_error(tail, zeros(5)),
              AllOf(HasSubstr("3 bytes at the end of the data section belong to no tensor"),
                    HasSubstr(at(8 + tail.size() + 2))));
  EXPECT_THAT(header_error("{}", zeros(1)), HasSubstr("1 bytes at the end of the data section"));
}

TEST(SafetensorsReaderMalformed, AcceptsZeroSizedTensorsBetweenOthers) {
  const std::string h = "{" + entry("a", "U8", "[2]", 0, 2) + "," + entry("z", "F32", "[0]", 2, 2) +
                        "," + entry("b", "U8", "[2]", 2, 4) + "," + entry("e", "U8", "[0]", 4, 4) +
                        "}";
  const TempFile file(file_bytes(h, zeros(4)), "latentkv_st");
  const SafetensorsReader r = SafetensorsReader::open(file.path());
  EXPECT_EQ(r.tensors().size(), 4u);
  EXPECT_TRUE(r.raw("z").empty());
}

// ---- the writer ---------------------------------------------------------------------------------

RowMatrix<float> random_matrix(Index rows, Index cols, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  RowMatrix<float> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

TEST(SafetensorsWriter, RoundTripsF32F16AndBf16BitExactly) {
  RowMatrix<float> m = random_matrix(7, 9, 1);
  m(0, 0) = std::numeric_limits<float>::infinity();
  m(0, 1) = -0.0f;
  m(0, 2) = 1e-30f;                             // F16 underflow, BF16 keeps it
  m(0, 3) = 70000.0f;                           // F16 overflow -> inf
  m(0, 4) = std::bit_cast<float>(0x7fc01234u);  // a NaN with a payload
  SafetensorsWriter w;
  w.add("f32", m).add("f16", m, SafetensorsDtype::kF16).add("bf16", m, SafetensorsDtype::kBF16);
  const std::vector<std::byte> bytes = w.serialize();
  const SafetensorsReader r = SafetensorsReader::from_bytes(bytes);
  for (const char* name : {"f32", "f16", "bf16"}) {
    SCOPED_TRACE(name);
    const SafetensorsTensorInfo& t = r.tensor(name);
    EXPECT_EQ(t.shape, (std::vector<std::int64_t>{7, 9}));
    const RowMatrix<float> got = r.read_float(t);
    const auto raw = r.raw(t);
    for (Index i = 0; i < m.rows(); ++i) {
      for (Index j = 0; j < m.cols(); ++j) {
        const float x = m(i, j);
        const std::size_t k = static_cast<std::size_t>(i * m.cols() + j);
        std::uint32_t want_bits = 0;
        if (t.dtype == SafetensorsDtype::kF32) {
          want_bits = std::bit_cast<std::uint32_t>(x);
          std::uint32_t stored;
          std::memcpy(&stored, raw.data() + 4 * k, 4);
          EXPECT_EQ(stored, want_bits);
        } else {
          const std::uint16_t half =
              t.dtype == SafetensorsDtype::kF16 ? float_to_fp16_bits(x) : float_to_bf16_bits(x);
          std::uint16_t stored;
          std::memcpy(&stored, raw.data() + 2 * k, 2);
          EXPECT_EQ(stored, half) << i << "," << j;
          want_bits = std::bit_cast<std::uint32_t>(t.dtype == SafetensorsDtype::kF16
                                                       ? fp16_bits_to_float(half)
                                                       : bf16_bits_to_float(half));
        }
        EXPECT_EQ(std::bit_cast<std::uint32_t>(got(i, j)), want_bits) << i << "," << j;
      }
    }
  }
  EXPECT_TRUE(std::isinf(r.read_float("f16")(0, 3)));
  EXPECT_EQ(r.read_float("f16")(0, 2), 0.0f);
  EXPECT_NE(r.read_float("bf16")(0, 2), 0.0f);
}

TEST(SafetensorsWriter, PadsTheHeaderAndAlignsEveryTensorToItsElementSize) {
  SafetensorsWriter w;
  // Insertion order puts an odd-sized F16 tensor first; the layout must still align F32 data.
  w.add("odd16", RowMatrix<float>::Ones(1, 3), SafetensorsDtype::kF16);
  w.add_raw("byte", SafetensorsDtype::kU8, {1}, std::vector<std::byte>(1, std::byte{9}));
  w.add("f32", RowMatrix<float>::Ones(2, 3));
  w.add_raw("i64", SafetensorsDtype::kI64, {1}, zeros(8));
  w.add("bf16", RowMatrix<float>::Ones(1, 1), SafetensorsDtype::kBF16);
  for (int extra = 0; extra < 8; ++extra) {  // header lengths of every residue mod 8
    SafetensorsWriter v = w;
    v.add_metadata(std::string(static_cast<std::size_t>(extra + 1), 'k'), "v");
    const std::vector<std::byte> bytes = v.serialize();
    const SafetensorsReader r = SafetensorsReader::from_bytes(bytes);
    EXPECT_EQ(r.header_size() % 8, 0u) << extra;
    EXPECT_EQ(r.data_offset() % 8, 0u);
    for (const SafetensorsTensorInfo& t : r.tensors()) {
      const std::uint32_t bytes_per_element = safetensors_dtype_traits(t.dtype).bits / 8;
      EXPECT_EQ(t.begin % bytes_per_element, 0u) << t.name;
    }
    EXPECT_EQ(r.tensors()[0].name, "odd16") << "the header keeps insertion order";
    EXPECT_EQ(r.tensor("i64").begin, 0u) << "the largest elements come first in the data";
    const std::string_view header(reinterpret_cast<const char*>(bytes.data()) + 8, r.header_size());
    EXPECT_EQ(header.find_first_not_of(' ', header.rfind('}') + 1), std::string_view::npos)
        << "padding is spaces";
  }
}

TEST(SafetensorsWriter, WritesShapesMetadataAndRawTensors) {
  SafetensorsWriter w;
  w.add_metadata("format", "pt").add_metadata("unicode", "h\xc3\xa9llo");
  const RowMatrix<float> row = RowMatrix<float>::Constant(1, 6, 0.5f);
  w.add("vector", row, {6}, SafetensorsDtype::kF32);
  w.add("cube", RowMatrix<float>::Constant(3, 4, -1.0f), {2, 3, 2}, SafetensorsDtype::kBF16);
  w.add("scalar", RowMatrix<float>::Constant(1, 1, 4.0f), {}, SafetensorsDtype::kF16);
  w.add("empty", RowMatrix<float>(0, 5), SafetensorsDtype::kF32);
  const std::vector<std::int32_t> ints = {7, -8, 9};
  w.add_raw("ints", SafetensorsDtype::kI32, {3}, std::as_bytes(std::span(ints)));
  w.add_raw("nibbles", SafetensorsDtype::kF4, {4}, std::vector<std::byte>(2, std::byte{0x21}));
  EXPECT_EQ(w.tensor_count(), 6u);
  const std::vector<std::byte> bytes = w.serialize();
  const SafetensorsReader r = SafetensorsReader::from_bytes(bytes);
  EXPECT_EQ(*r.find_metadata("format"), "pt");
  EXPECT_EQ(*r.find_metadata("unicode"), "h\xc3\xa9llo");
  EXPECT_EQ(r.tensor("vector").shape, (std::vector<std::int64_t>{6}));
  EXPECT_EQ(r.read_float("vector"), row);
  EXPECT_EQ(r.tensor("cube").shape, (std::vector<std::int64_t>{2, 3, 2}));
  EXPECT_EQ(r.read_float("cube"), RowMatrix<float>::Constant(6, 2, -1.0f));
  EXPECT_TRUE(r.tensor("scalar").shape.empty());
  EXPECT_EQ(r.read_float("scalar")(0, 0), 4.0f);
  EXPECT_EQ(r.tensor("empty").shape, (std::vector<std::int64_t>{0, 5}));
  const auto raw = r.raw("ints");
  ASSERT_EQ(raw.size(), 12u);
  EXPECT_EQ(std::memcmp(raw.data(), ints.data(), 12), 0);
  EXPECT_EQ(r.raw("nibbles").size(), 2u);
  EXPECT_EQ(r.raw("nibbles")[1], std::byte{0x21});
}

TEST(SafetensorsWriter, AnEmptyWriterWritesAValidEmptyFile) {
  const std::vector<std::byte> bytes = SafetensorsWriter().serialize();
  EXPECT_EQ(bytes.size(), 16u);  // length + "{}" padded to 8
  EXPECT_TRUE(SafetensorsReader::from_bytes(bytes).tensors().empty());
}

TEST(SafetensorsWriter, RejectsBadArguments) {
  const RowMatrix<float> m = RowMatrix<float>::Ones(2, 2);
  SafetensorsWriter w;
  w.add("x", m).add_metadata("k", "v");
  EXPECT_THROW(w.add("x", m), InvalidArgument);
  EXPECT_THROW(w.add("__metadata__", m), InvalidArgument);
  EXPECT_THROW(w.add("bad\xff", m), InvalidArgument);
  EXPECT_THROW(w.add_metadata("k", "w"), InvalidArgument);
  EXPECT_THROW(w.add_metadata("k2", "\xc3"), InvalidArgument);
  EXPECT_THROW(w.add("i8", m, SafetensorsDtype::kI8), InvalidArgument);
  EXPECT_THROW(w.add("shape", m, {5}, SafetensorsDtype::kF32), InvalidArgument);
  EXPECT_THROW(w.add("neg", m, {-2, -2}, SafetensorsDtype::kF32), InvalidArgument);
  EXPECT_THROW(w.add_raw("raw", SafetensorsDtype::kF32, {2}, zeros(7)), InvalidArgument);
  EXPECT_THROW(w.add_raw("f4", SafetensorsDtype::kF4, {3}, zeros(2)), InvalidArgument);
  EXPECT_THROW(w.add_raw("big", SafetensorsDtype::kU8, {std::int64_t{1} << 62, 4}, zeros(0)),
               InvalidArgument);
  EXPECT_EQ(w.tensor_count(), 1u) << "a rejected tensor is not added";
  EXPECT_THAT([&] { w.add("x", m); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("duplicate tensor name 'x'")));
}

TEST(SafetensorsWriter, WritesTheFileAndLeavesNoTemporaryBehind) {
  const TempDir dir{"latentkv_st_dir"};
  const fs::path out = dir.path() / "model.safetensors";
  SafetensorsWriter w;
  w.add("w", random_matrix(4, 5, 2), SafetensorsDtype::kBF16).add_metadata("format", "pt");
  w.write(out);
  EXPECT_EQ(entries_of(dir.path()), (std::vector<fs::path>{"model.safetensors"}));
  EXPECT_EQ(read_file(out), w.serialize());
  const SafetensorsReader r = SafetensorsReader::open(out);
  EXPECT_EQ(r.tensor("w").dtype, SafetensorsDtype::kBF16);

  // Overwriting replaces the file (a reader of the old file keeps its mapping).
  SafetensorsWriter w2;
  w2.add("other", RowMatrix<float>::Ones(1, 1));
  w2.write(out);
  EXPECT_EQ(read_file(out), w2.serialize());
  EXPECT_EQ(r.tensor("w").shape, (std::vector<std::int64_t>{4, 5}));
  EXPECT_EQ(r.read_float("w").rows(), 4) << "the old mapping survives the rename";
  EXPECT_EQ(entries_of(dir.path()), (std::vector<fs::path>{"model.safetensors"}));
  EXPECT_EQ(detail::temporary_path_for(out).filename(),
            "model.safetensors.tmp." + std::to_string(::getpid()));
}

TEST(SafetensorsWriter, FailsWithoutTouchingTheDestination) {
  const TempDir dir{"latentkv_st_dir"};
  SafetensorsWriter w;
  w.add("w", RowMatrix<float>::Ones(2, 2));
  const fs::path missing = dir.path() / "no_such_dir" / "model.safetensors";
  EXPECT_THAT([&] { w.write(missing); },
              ::testing::ThrowsMessage<Error>(
                  AllOf(HasSubstr("latentkv::SafetensorsWriter::write"), HasSubstr("open failed"),
                        HasSubstr("No such file or directory"), HasSubstr("no_such_dir"))));
  EXPECT_FALSE(fs::exists(missing));
  EXPECT_THROW(w.write(dir.path()), InvalidArgument);  // a directory
  EXPECT_THROW(w.write(dir.path() / ""), InvalidArgument);
  EXPECT_TRUE(entries_of(dir.path()).empty());
}

TEST(SafetensorsWriter, AFailedWriteLeavesTheOldFileAndNoTemporary) {
  const TempDir dir{"latentkv_st_dir"};
  const fs::path out = dir.path() / "model.safetensors";
  SafetensorsWriter small;
  small.add("old", RowMatrix<float>::Ones(1, 1));
  small.write(out);
  const std::vector<std::byte> before = read_file(out);

  // A file-size limit makes write() fail half-way (EFBIG instead of SIGXFSZ, which is ignored).
  SafetensorsWriter big;
  big.add("big", random_matrix(256, 256, 3));  // 256 KiB
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  const auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit limited = saved;
  limited.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  std::string message;
  try {
    big.write(out);
  } catch (const Error& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, previous_handler);
  EXPECT_THAT(message, AllOf(HasSubstr("write failed"), HasSubstr("File too large"),
                             HasSubstr(".tmp." + std::to_string(::getpid()))));
  EXPECT_EQ(read_file(out), before) << "the destination must keep the old file";
  EXPECT_EQ(entries_of(dir.path()), (std::vector<fs::path>{"model.safetensors"}))
      << "the temporary file must be removed";
}

// The file tests/data/safetensors/make_fixtures.py reads back with Python's safetensors: its
// content is defined here and in check_latentkv_written() there. LATENTKV_UPDATE_FIXTURES=1
// rewrites it.
TEST(SafetensorsWriter, MatchesTheCommittedCrossCheckFile) {
  SafetensorsWriter w;
  w.add_metadata("format", "pt")
      .add_metadata("latentkv", "writer cross-check")
      .add_metadata("unicode", "h\xc3\xa9llo \xe2\x98\x83");
  RowMatrix<float> a(3, 4);
  for (Index k = 0; k < 12; ++k) a.data()[k] = (static_cast<float>(k) - 5.0f) * 0.375f;
  const std::vector<float> rounding = {0.1f,  1.0f / 3.0f, 65519.0f, 65520.0f, 1e-8f,
                                       -2.5f, 0x1.8p-24f,  1e20f,    -0.0f,    3.0f};
  const Eigen::Map<const RowMatrix<float>> b(rounding.data(), 2, 5);
  RowMatrix<float> c(1, 15);
  for (Index k = 0; k < 5; ++k) c(0, k) = static_cast<float>(k) * 0.25f - 1.0f;
  for (Index k = 0; k < 10; ++k) c(0, 5 + k) = rounding[static_cast<std::size_t>(k)];
  const std::vector<std::int32_t> ints = {1, -2, 2147483647};
  w.add("a.f32", a)
      .add("b.f16", b, SafetensorsDtype::kF16)
      .add("c.bf16", c, {15}, SafetensorsDtype::kBF16)
      .add("d.scalar", RowMatrix<float>::Constant(1, 1, 2.5f), {}, SafetensorsDtype::kF32)
      .add_raw("e.i32", SafetensorsDtype::kI32, {3}, std::as_bytes(std::span(ints)))
      .add("f.empty", RowMatrix<float>(0, 3), SafetensorsDtype::kF16);

  const fs::path committed = kDataDir / "latentkv_written.safetensors";
  if (std::getenv("LATENTKV_UPDATE_FIXTURES") != nullptr) {
    w.write(committed);
    GTEST_SKIP() << "rewrote " << committed
                 << "; now run tests/data/safetensors/make_fixtures.py to check it";
  }
  ASSERT_TRUE(fs::exists(committed));
  EXPECT_EQ(read_file(committed), w.serialize())
      << "the writer's output changed: check it with Python (LATENTKV_UPDATE_FIXTURES=1, then "
         "make_fixtures.py)";
  // And our reader reads it back exactly.
  const SafetensorsReader r = SafetensorsReader::open(committed);
  EXPECT_EQ(r.read_float("a.f32"), a);
  EXPECT_EQ(r.read_float("c.bf16")(0, 4), 0.0f);
  EXPECT_EQ(r.read_float("b.f16")(0, 2), 65504.0f);      // 65519 rounds down
  EXPECT_TRUE(std::isinf(r.read_float("b.f16")(0, 3)));  // 65520 rounds to inf
}

}  // namespace
}  // namespace latentkv
