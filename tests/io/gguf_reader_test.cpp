// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// GgufReader on synthetic files written by the in-test GgufBuilder (v2 and v3), on a file written
// by gguf-py (tests/data/gguf/gguf_py_quants.bin), and on malformed files: every corruption must
// end in a FormatError naming the file, the tensor when there is one, and the byte offset of the
// bad field.
#include "latentkv/io/gguf_reader.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../data/gguf/gguf_py_quants_expected.inc"
#include "../support/files.hpp"
#include "../support/gguf_builder.hpp"

namespace latentkv {
namespace {

using testing::at;
using testing::format_error;
using testing::ramp;

using ::testing::AllOf;
using testing::GgufBuilder;
using testing::GgufLayout;
using ::testing::HasSubstr;
using testing::meta;
using testing::meta_array;
using testing::patch;
using testing::TempFile;

constexpr std::uint32_t kTypeF32 = 0, kTypeF16 = 1, kTypeQ4_0 = 2, kTypeQ4_1 = 3, kTypeQ8_0 = 8,
                        kTypeQ6_K = 14, kTypeBF16 = 30;

/// Opens `bytes` (written to a temporary file), which must fail with a FormatError naming that
/// file; returns the message.
std::string gguf_open_error(const std::vector<std::byte>& bytes) {
  const TempFile file(bytes);
  std::string message = format_error([&] { (void)GgufReader::open(file.path()); });
  EXPECT_THAT(message, HasSubstr(file.path().string()));
  return message;
}

/// A small valid file: three metadata entries (one an array) and three tensors of different types.
GgufBuilder small_file() {
  GgufBuilder b(3);
  b.add("general.architecture", meta("llama"));
  b.add("test.array", meta_array<std::uint32_t>({1, 2, 3}));
  b.add("test.name", meta("x"));
  b.add_tensor("a", {32, 2}, kTypeF32, testing::f32_bytes(ramp(64, -4.0f, 0.125f)));
  testing::ByteBuffer q8;
  std::int8_t q[32];
  for (int j = 0; j < 32; ++j) q[j] = static_cast<std::int8_t>(j - 16);
  testing::put_q8_0_block(q8, 0.5f, q);
  b.add_tensor("b", {32}, kTypeQ8_0, q8.bytes());
  testing::ByteBuffer q41;
  std::uint8_t u[32];
  for (int j = 0; j < 32; ++j) u[j] = static_cast<std::uint8_t>((j * 5 + j / 16) % 16);
  testing::put_q4_1_block(q41, 0.25f, -1.0f, u);
  testing::put_q4_1_block(q41, 0.5f, 2.0f, u);
  b.add_tensor("c", {64, 1}, kTypeQ4_1, q41.bytes());
  return b;
}

// ---- well-formed files
// -------------------------------------------------------------------------------

class GgufReaderVersion : public ::testing::TestWithParam<std::uint32_t> {};

TEST_P(GgufReaderVersion, ReadsEveryMetadataValueType) {
  GgufBuilder b(GetParam());
  b.add("t.u8", meta<std::uint8_t>(200))
      .add("t.i8", meta<std::int8_t>(-100))
      .add("t.u16", meta<std::uint16_t>(60000))
      .add("t.i16", meta<std::int16_t>(-30000))
      .add("t.u32", meta<std::uint32_t>(4000000000u))
      .add("t.i32", meta<std::int32_t>(-2000000000))
      .add("t.f32", meta(1.5f))
      .add("t.true", meta(true))
      .add("t.false", meta(false))
      .add("t.string", meta("h\xc3\xa9llo"))
      .add("t.empty_string", meta(""))
      .add("t.u64", meta<std::uint64_t>((std::uint64_t{1} << 63) + 5))
      .add("t.i64", meta<std::int64_t>(-(std::int64_t{1} << 62)))
      .add("t.f64", meta(0.1))
      .add("t.u32s", meta_array<std::uint32_t>({1, 2, 3}))
      .add("t.strings", meta_array<std::string_view>({"a", "", "bc"}))
      .add("t.bools", meta_array<bool>({true, false}))
      .add("t.empty", meta_array(testing::kF32, {}))
      .add("t.nested", meta_array(testing::kArray, {meta_array<std::int16_t>({1, 2}),
                                                    meta_array<std::int16_t>({3})}));
  const TempFile file(b.build());
  const GgufReader r = GgufReader::open(file.path());

  EXPECT_EQ(r.version(), GetParam());
  ASSERT_EQ(r.metadata().size(), 19u);
  EXPECT_EQ(r.metadata()[0].key, "t.u8");
  EXPECT_EQ(r.metadata()[18].key, "t.nested");
  EXPECT_TRUE(r.tensors().empty());

  EXPECT_EQ(r.get<std::uint8_t>("t.u8"), 200);
  EXPECT_EQ(r.get<std::int8_t>("t.i8"), -100);
  EXPECT_EQ(r.get<std::uint16_t>("t.u16"), 60000);
  EXPECT_EQ(r.get<std::int16_t>("t.i16"), -30000);
  EXPECT_EQ(r.get<std::uint32_t>("t.u32"), 4000000000u);
  EXPECT_EQ(r.get<std::int32_t>("t.i32"), -2000000000);
  EXPECT_EQ(r.get<float>("t.f32"), 1.5f);
  EXPECT_TRUE(r.get<bool>("t.true"));
  EXPECT_FALSE(r.get<bool>("t.false"));
  EXPECT_EQ(r.get<std::string_view>("t.string"), "h\xc3\xa9llo");
  EXPECT_EQ(r.get<std::string>("t.empty_string"), "");
  EXPECT_EQ(r.get<std::uint64_t>("t.u64"), (std::uint64_t{1} << 63) + 5);
  EXPECT_EQ(r.get<std::int64_t>("t.i64"), -(std::int64_t{1} << 62));
  EXPECT_EQ(r.get<double>("t.f64"), 0.1);

  EXPECT_EQ(r.find("t.u16")->type(), GgufValueType::kUint16);
  EXPECT_EQ(r.find("t.nested")->type(), GgufValueType::kArray);
  EXPECT_EQ(r.find("missing"), nullptr);

  EXPECT_EQ(r.get_array_of<std::uint32_t>("t.u32s"), (std::vector<std::uint32_t>{1, 2, 3}));
  EXPECT_EQ(r.get_array_of<std::string>("t.strings"), (std::vector<std::string>{"a", "", "bc"}));
  EXPECT_EQ(r.get_array_of<bool>("t.bools"), (std::vector<bool>{true, false}));
  const GgufArray& empty = r.get_array("t.empty");
  EXPECT_EQ(empty.element_type, GgufValueType::kFloat32);
  EXPECT_TRUE(empty.empty());
  const GgufArray& nested = r.get_array("t.nested");
  ASSERT_EQ(nested.element_type, GgufValueType::kArray);
  ASSERT_EQ(nested.size(), 2u);
  ASSERT_NE(nested.elements[0].array(), nullptr);
  EXPECT_EQ(nested.elements[0].array()->element_type, GgufValueType::kInt16);
  EXPECT_EQ(*nested.elements[0].array()->elements[1].get_if<std::int16_t>(), 2);
  EXPECT_EQ(*nested.elements[1].array()->elements[0].get_if<std::int16_t>(), 3);
}

TEST_P(GgufReaderVersion, ReadsTensorInfosAndRawBytesInPlace) {
  GgufBuilder b = small_file();
  GgufLayout layout;
  const std::vector<std::byte> bytes = b.build(&layout);
  const TempFile file(bytes);
  const GgufReader r = GgufReader::open(file.path());

  EXPECT_EQ(r.alignment(), 32u);
  EXPECT_EQ(r.data_offset(), layout.data_section);
  EXPECT_EQ(r.data_offset() % 32, 0u);
  ASSERT_EQ(r.tensors().size(), 3u);
  const GgufTensorInfo& a = r.tensors()[0];
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.n_dims, 2u);
  EXPECT_THAT(a.dims(), ::testing::ElementsAre(32, 2));
  EXPECT_EQ(a.type, GgmlType::kF32);
  EXPECT_EQ(a.rows(), 2);
  EXPECT_EQ(a.cols(), 32);
  EXPECT_EQ(a.size_bytes, 256u);
  EXPECT_EQ(a.file_offset, layout.tensors[0].data);
  const GgufTensorInfo& c = *r.find_tensor("c");
  EXPECT_EQ(c.type, GgmlType::kQ4_1);
  EXPECT_EQ(c.size_bytes, 40u);
  EXPECT_EQ(c.offset % 32, 0u);
  EXPECT_EQ(c.file_offset, layout.tensors[2].data);
  EXPECT_EQ(r.find_tensor("missing"), nullptr);

  const auto raw = r.raw(c);
  ASSERT_EQ(raw.size(), 40u);
  EXPECT_TRUE(std::equal(raw.begin(), raw.end(), bytes.begin() + static_cast<long>(c.file_offset)));
  EXPECT_EQ(r.raw(c).data(), raw.data()) << "raw() must be a view into the mapping, not a copy";
}

INSTANTIATE_TEST_SUITE_P(V2AndV3, GgufReaderVersion, ::testing::Values(2u, 3u));

TEST(GgufReader, DequantizesF32F16AndBf16WithInnermostDimensionAsColumns) {
  const std::vector<float> values = ramp(96, -6.0f, 0.125f);  // exact in fp16 and bf16
  GgufBuilder b;
  b.add_tensor("f32", {32, 3}, kTypeF32, testing::f32_bytes(values));
  b.add_tensor("f16", {32, 3}, kTypeF16, testing::f16_bytes(values));
  b.add_tensor("bf16", {32, 3}, kTypeBF16, testing::bf16_bytes(values));
  const TempFile file(b.build());
  const GgufReader r = GgufReader::open(file.path());
  for (const char* name : {"f32", "f16", "bf16"}) {
    const RowMatrix<float> m = r.dequantize(name);
    ASSERT_EQ(m.rows(), 3) << name;
    ASSERT_EQ(m.cols(), 32) << name;
    for (Index i = 0; i < 3; ++i) {
      for (Index j = 0; j < 32; ++j) {
        EXPECT_EQ(m(i, j), values[static_cast<std::size_t>(i * 32 + j)])
            << name << " " << i << "," << j;
      }
    }
  }
  const auto view = r.map_f32("f32");
  EXPECT_EQ(view.rows(), 3);
  EXPECT_EQ(view.cols(), 32);
  EXPECT_EQ(view(2, 5), values[69]);
  EXPECT_EQ(reinterpret_cast<const std::byte*>(view.data()), r.raw(r.tensor("f32")).data());
}

TEST(GgufReader, DequantizesFp16SpecialValues) {
  const std::vector<float> values = {65504.0f, -0.0f, 0x1p-24f, -0x1.ff8p-15f,
                                     std::numeric_limits<float>::infinity()};
  std::vector<float> padded = values;
  padded.resize(5);
  GgufBuilder b;
  b.add_tensor("f16", {5}, kTypeF16, testing::f16_bytes(padded));
  const TempFile file(b.build());
  const RowMatrix<float> m = GgufReader::open(file.path()).dequantize("f16");
  ASSERT_EQ(m.rows(), 1);
  ASSERT_EQ(m.cols(), 5);
  for (Index j = 0; j < 5; ++j) EXPECT_EQ(m(0, j), values[static_cast<std::size_t>(j)]) << j;
  EXPECT_TRUE(std::signbit(m(0, 1)));
}

// Known block contents: block k of a (2, 64) tensor has scale d_k (and min m_k) and quants q_k[j];
// element j of a block is the low nibble of byte j for j < 16 and the high nibble of byte j - 16
// otherwise.
TEST(GgufReader, DequantizesQ4_0Q4_1AndQ8_0BlocksElementByElement) {
  testing::ByteBuffer q40, q41, q80;
  std::vector<float> want40, want41, want80;
  for (int k = 0; k < 4; ++k) {
    std::uint8_t u[32];
    std::int8_t s[32];
    for (int j = 0; j < 32; ++j) {
      u[j] = static_cast<std::uint8_t>((j * 7 + k + (j >= 16 ? 3 : 0)) % 16);  // j, j+16 differ
      s[j] = static_cast<std::int8_t>((j * 37 + k * 11) % 256 - 128);
    }
    const float d40 = 0.25f * static_cast<float>(k + 1);
    const float d41 = 0.5f * static_cast<float>(k + 1), m41 = -1.0f - static_cast<float>(k);
    const float d80 = 0.0625f * static_cast<float>(k + 1);
    testing::put_q4_0_block(q40, d40, u);
    testing::put_q4_1_block(q41, d41, m41, u);
    testing::put_q8_0_block(q80, d80, s);
    for (int j = 0; j < 32; ++j) {
      want40.push_back(d40 * static_cast<float>(u[j] - 8));
      want41.push_back(d41 * static_cast<float>(u[j]) + m41);
      want80.push_back(d80 * static_cast<float>(s[j]));
    }
  }
  GgufBuilder b;
  b.add_tensor("q4_0", {64, 2}, kTypeQ4_0, q40.bytes());
  b.add_tensor("q4_1", {64, 2}, kTypeQ4_1, q41.bytes());
  b.add_tensor("q8_0", {64, 2}, kTypeQ8_0, q80.bytes());
  const TempFile file(b.build());
  const GgufReader r = GgufReader::open(file.path());
  EXPECT_EQ(r.tensor("q4_1").size_bytes, 80u);
  for (const auto& [name, want] :
       {std::pair{"q4_0", &want40}, std::pair{"q4_1", &want41}, std::pair{"q8_0", &want80}}) {
    const RowMatrix<float> m = r.dequantize(name);
    ASSERT_EQ(m.rows(), 2) << name;
    ASSERT_EQ(m.cols(), 64) << name;
    for (Index i = 0; i < 2; ++i) {
      for (Index j = 0; j < 64; ++j) {
        EXPECT_EQ(m(i, j), (*want)[static_cast<std::size_t>(i * 64 + j)])
            << name << " " << i << "," << j;
      }
    }
  }
}

TEST(GgufReader, FlattensHigherDimensionsIntoRows) {
  GgufBuilder b;
  b.add_tensor("t", {32, 2, 3}, kTypeF32, testing::f32_bytes(ramp(192, 0.0f, 1.0f)));
  const TempFile file(b.build());
  const GgufReader r = GgufReader::open(file.path());
  const RowMatrix<float> m = r.dequantize("t");
  ASSERT_EQ(m.rows(), 6);
  ASSERT_EQ(m.cols(), 32);
  EXPECT_EQ(m(5, 31), 191.0f);
  EXPECT_EQ(m(3, 1), 97.0f);
}

TEST(GgufReader, DequantizesARowRangeLikeTheWholeTensor) {
  const TempFile file(small_file().build());
  const GgufReader r = GgufReader::open(file.path());
  const RowMatrix<float> all = r.dequantize("a");
  const RowMatrix<float> second = r.dequantize_rows("a", 1, 1);
  ASSERT_EQ(second.rows(), 1);
  EXPECT_EQ(second, all.bottomRows(1));
  EXPECT_EQ(r.dequantize_rows("a", 2, 0).rows(), 0);
  EXPECT_THROW((void)r.dequantize_rows("a", 1, 2), InvalidArgument);
  EXPECT_THROW((void)r.dequantize_rows("a", -1, 1), InvalidArgument);
}

TEST(GgufReader, HonoursGeneralAlignment) {
  GgufBuilder b = small_file();
  b.alignment(256);
  GgufLayout layout;
  const TempFile file(b.build(&layout));
  const GgufReader r = GgufReader::open(file.path());
  EXPECT_EQ(r.alignment(), 256u);
  EXPECT_EQ(r.data_offset() % 256, 0u);
  for (const GgufTensorInfo& t : r.tensors()) EXPECT_EQ(t.offset % 256, 0u) << t.name;
  EXPECT_EQ(r.tensor("b").file_offset, layout.tensors[1].data);
  EXPECT_EQ(r.dequantize("a")(1, 31), 3.875f);
}

TEST(GgufReader, MapF32RefusesMisalignedDataThatDequantizeStillReads) {
  GgufBuilder b;
  b.alignment(1);
  b.add_tensor("odd", {1}, 24 /* I8 */, {std::byte{7}});
  b.add_tensor("f", {2}, kTypeF32, testing::f32_bytes({1.0f, -2.0f}));
  const TempFile file(b.build());
  const GgufReader r = GgufReader::open(file.path());
  ASSERT_NE(reinterpret_cast<std::uintptr_t>(r.raw(r.tensor("f")).data()) % 4, 0u);
  EXPECT_THAT(format_error([&] { (void)r.map_f32("f"); }), HasSubstr("aligned"));
  const RowMatrix<float> m = r.dequantize("f");
  EXPECT_EQ(m(0, 0), 1.0f);
  EXPECT_EQ(m(0, 1), -2.0f);
}

TEST(GgufReader, ReportsUnsupportedDequantizationByTensorAndType) {
  GgufBuilder b;
  b.add_tensor("k_quant", {256}, kTypeQ6_K, std::vector<std::byte>(210));
  const TempFile file(b.build());
  const GgufReader r = GgufReader::open(file.path());
  EXPECT_EQ(r.tensor("k_quant").size_bytes, 210u);
  EXPECT_EQ(r.tensor("k_quant").type, GgmlType::kQ6_K);
  EXPECT_THAT(format_error([&] { (void)r.dequantize("k_quant"); }),
              AllOf(HasSubstr(file.path().string()), HasSubstr("'k_quant'"), HasSubstr("Q6_K")));
  EXPECT_THAT(format_error([&] { (void)r.map_f32("k_quant"); }), HasSubstr("expected F32"));
}

TEST(GgufReader, ReportsMissingAndMistypedKeysAndTensorsByName) {
  const TempFile file(small_file().build());
  const GgufReader r = GgufReader::open(file.path());
  EXPECT_THAT(format_error([&] { (void)r.get<std::uint32_t>("nope"); }),
              AllOf(HasSubstr(file.path().string()), HasSubstr("missing metadata key 'nope'")));
  EXPECT_THAT(format_error([&] { (void)r.get<std::uint32_t>("general.architecture"); }),
              AllOf(HasSubstr("'general.architecture'"), HasSubstr("has type string"),
                    HasSubstr("expected uint32")));
  EXPECT_THAT(format_error([&] { (void)r.get_array_of<std::int32_t>("test.array"); }),
              HasSubstr("array of uint32, expected an array of int32"));
  EXPECT_THAT(format_error([&] { (void)r.get_array("test.name"); }), HasSubstr("expected array"));
  EXPECT_THAT(format_error([&] { (void)r.tensor("nope"); }), HasSubstr("no tensor named 'nope'"));
  EXPECT_EQ(r.get_or<std::uint32_t>("nope", 7u), 7u);
  EXPECT_THROW((void)r.get_or<std::uint32_t>("test.name", 7u), FormatError);
}

TEST(GgufReader, ConvertsIntegerKeysOfAnyWidthWhenTheValueFits) {
  GgufBuilder b;
  b.add("u8", meta<std::uint8_t>(9))
      .add("i64", meta<std::int64_t>(-3))
      .add("big", meta<std::uint64_t>(1ull << 40));
  b.add("f", meta(1.0f));
  const TempFile file(b.build());
  const GgufReader r = GgufReader::open(file.path());
  EXPECT_EQ(r.get_integer<std::uint32_t>("u8"), 9u);
  EXPECT_EQ(r.get_integer<int>("i64"), -3);
  EXPECT_EQ(r.get_integer<std::int64_t>("big"), std::int64_t{1} << 40);
  EXPECT_THAT(format_error([&] { (void)r.get_integer<std::uint32_t>("i64"); }),
              AllOf(HasSubstr("'i64'"), HasSubstr("-3"), HasSubstr("uint32")));
  EXPECT_THAT(format_error([&] { (void)r.get_integer<std::uint32_t>("big"); }), HasSubstr("'big'"));
  EXPECT_THROW((void)r.get_integer<int>("f"), FormatError);
}

TEST(GgufReader, RejectsTensorInfosFromAnotherReader) {
  const TempFile one(small_file().build());
  const TempFile two(small_file().build());
  const GgufReader a = GgufReader::open(one.path());
  const GgufReader b = GgufReader::open(two.path());
  EXPECT_THROW((void)a.raw(b.tensor("a")), InvalidArgument);
  EXPECT_THROW((void)a.dequantize(b.tensor("a")), InvalidArgument);
}

TEST(GgufReader, ViewsStayValidAfterTheReaderIsMoved) {
  const TempFile file(small_file().build());
  GgufReader first = GgufReader::open(file.path());
  const std::string_view name = first.get<std::string_view>("general.architecture");
  const std::byte* data = first.raw(first.tensor("b")).data();
  const GgufReader moved = std::move(first);
  EXPECT_EQ(name, "llama");
  EXPECT_EQ(moved.raw(moved.tensor("b")).data(), data);
  EXPECT_EQ(moved.find_tensor("c")->name, "c");
  EXPECT_EQ(moved.get<std::string_view>("test.name"), "x");
  EXPECT_EQ(moved.dequantize("b")(0, 0), -8.0f);
}

TEST(GgufReader, AcceptsZeroSizedDimensionsWithoutReadingAnything) {
  GgufBuilder b;
  b.add_tensor("empty", {0, std::uint64_t{1} << 40}, kTypeQ4_1, {});
  b.add_tensor("after", {32}, kTypeF32, testing::f32_bytes(ramp(32, 0.0f, 1.0f)));
  const TempFile file(b.build());
  const GgufReader r = GgufReader::open(file.path());
  const GgufTensorInfo& empty = r.tensor("empty");
  EXPECT_EQ(empty.size_bytes, 0u);
  EXPECT_EQ(empty.num_elements(), 0);
  EXPECT_EQ(empty.rows(), std::int64_t{1} << 40);
  const RowMatrix<float> m = r.dequantize(empty);
  EXPECT_EQ(m.rows(), std::int64_t{1} << 40);
  EXPECT_EQ(m.cols(), 0);
  EXPECT_EQ(r.dequantize("after")(0, 31), 31.0f);
}

// Found by tests/fuzz/gguf_reader_fuzzer (UBSan): with no rows, cols·block_bytes overflowed int64.
TEST(GgufReader, ReadsNoRowsOfAnEmptyTensorWithAHugeInnermostDimension) {
  GgufBuilder b;
  b.add_tensor("wide", {std::uint64_t{1} << 62, 0}, kTypeF32, {});
  const TempFile file(b.build());
  const GgufReader r = GgufReader::open(file.path());
  const RowMatrix<float> m = r.dequantize("wide");
  EXPECT_EQ(m.rows(), 0);
  EXPECT_EQ(m.cols(), std::int64_t{1} << 62);
  EXPECT_EQ(r.dequantize_rows("wide", 0, 0).size(), 0);
}

TEST(GgufReaderMalformed, RejectsAZeroDimensionThatHidesAnOverflow) {
  GgufBuilder b;
  b.add_tensor("hidden", {0, std::uint64_t{1} << 40, std::uint64_t{1} << 40}, kTypeF32, {});
  GgufLayout layout;
  const std::vector<std::byte> bytes_b = b.build(&layout);
  EXPECT_THAT(gguf_open_error(bytes_b),
              AllOf(HasSubstr("tensor 'hidden' has ne[2]"), HasSubstr("overflows 64 bits"),
                    HasSubstr(at(layout.tensors[0].dims + 16))));
}

TEST(GgufReader, FromBytesReadsAnInMemoryFileUnderTheGivenName) {
  GgufLayout layout;
  const std::vector<std::byte> bytes = small_file().build(&layout);
  const GgufReader r = GgufReader::from_bytes(bytes, "weights/in-memory.gguf");
  EXPECT_EQ(r.path(), "weights/in-memory.gguf");
  EXPECT_EQ(r.file_size(), bytes.size());
  EXPECT_EQ(r.raw(r.tensor("c")).data(), bytes.data() + layout.tensors[2].data)
      << "borrowed, not copied";
  EXPECT_EQ(r.get<std::string_view>("test.name"), "x");
  EXPECT_EQ(r.dequantize("b")(0, 0), -8.0f);
  const std::vector<std::byte> cut(bytes.begin(), bytes.begin() + 10);
  EXPECT_THAT(format_error([&] { (void)GgufReader::from_bytes(cut); }),
              AllOf(HasSubstr("latentkv::GgufReader::open: <memory>: unexpected end of file"),
                    HasSubstr(at(8))));
}

TEST(GgufReader, OpensAFileWithoutTensors) {
  GgufBuilder b(2);
  b.add("general.name", meta("empty"));
  const TempFile file(b.build());
  const GgufReader r = GgufReader::open(file.path());
  EXPECT_TRUE(r.tensors().empty());
  EXPECT_EQ(r.get<std::string_view>("general.name"), "empty");
}

TEST(GgufReader, MissingFileIsAnErrorNamingTheFile) {
  try {
    (void)GgufReader::open("/nonexistent/latentkv/model.gguf");
    FAIL() << "expected an Error";
  } catch (const FormatError&) {
    FAIL() << "a missing file is not a format error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/latentkv/model.gguf"));
  }
}

// gguf-py (llama.cpp's Python package) wrote and quantized this file; its dequantize() gave the
// values.
TEST(GgufReader, MatchesGgufPyOnItsOwnFile) {
  const GgufReader r = GgufReader::open(std::filesystem::path(LATENTKV_SOURCE_DIR) /
                                        "tests/data/gguf/gguf_py_quants.bin");
  EXPECT_EQ(r.version(), 3u);
  EXPECT_EQ(r.alignment(), 64u);
  EXPECT_EQ(r.get<std::string_view>("general.architecture"), "fixture");
  EXPECT_EQ(r.get<std::uint8_t>("test.u8"), 200);
  EXPECT_EQ(r.get<std::int8_t>("test.i8"), -100);
  EXPECT_EQ(r.get<std::uint16_t>("test.u16"), 60000);
  EXPECT_EQ(r.get<std::int16_t>("test.i16"), -30000);
  EXPECT_EQ(r.get<std::uint32_t>("test.u32"), 4000000000u);
  EXPECT_EQ(r.get<std::int32_t>("test.i32"), -2000000000);
  EXPECT_EQ(r.get<float>("test.f32"), 1.5f);
  EXPECT_TRUE(r.get<bool>("test.bool"));
  EXPECT_EQ(r.get<std::string_view>("test.string"), "h\xc3\xa9llo, gguf");
  EXPECT_EQ(r.get<std::uint64_t>("test.u64"), (std::uint64_t{1} << 63) + 5);
  EXPECT_EQ(r.get<std::int64_t>("test.i64"), -(std::int64_t{1} << 62));
  EXPECT_EQ(r.get<double>("test.f64"), 0.1);
  EXPECT_EQ(r.get_array_of<std::string_view>("test.strings"),
            (std::vector<std::string_view>{"a", "", "bc"}));
  const GgufArray& nested = r.get_array("test.nested");
  ASSERT_EQ(nested.size(), 2u);
  ASSERT_NE(nested.elements[1].array(), nullptr);
  EXPECT_EQ(nested.elements[1].array()->size(), 1u);

  ASSERT_EQ(r.tensors().size(), std::size(fixtures::kGgufPyQuants));
  for (const auto& q : fixtures::kGgufPyQuants) {
    SCOPED_TRACE(q.name);
    const GgufTensorInfo& info = r.tensor(q.name);
    EXPECT_EQ(static_cast<unsigned>(info.type), q.type);
    EXPECT_EQ(info.offset % 64, 0u);
    const RowMatrix<float> m = r.dequantize(info);
    ASSERT_EQ(m.rows(), q.rows);
    ASSERT_EQ(m.cols(), q.cols);
    for (Index i = 0; i < m.rows(); ++i) {
      // A block's values may differ from numpy's by the rounding of d·q + m when the compiler fuses
      // it into one FMA; allow 2^-20 of the row's largest magnitude (a wrong element is off by ≥
      // d).
      const Eigen::Map<const Vector<float>> want(q.values + i * q.cols, q.cols);
      const float tolerance = 0x1p-20f * want.cwiseAbs().maxCoeff();
      for (Index j = 0; j < m.cols(); ++j) {
        EXPECT_NEAR(m(i, j), want(j), tolerance) << i << "," << j;
      }
    }
  }
}

// ---- malformed files
// ---------------------------------------------------------------------------------

TEST(GgufReaderMalformed, RejectsATruncatedFileAtEveryLength) {
  const std::vector<std::byte> full = small_file().build();
  for (std::size_t n = 0; n < full.size(); ++n) {
    const std::vector<std::byte> cut(full.begin(), full.begin() + static_cast<long>(n));
    const std::string message = gguf_open_error(cut);
    ASSERT_THAT(message, AllOf(HasSubstr("byte offset"))) << "length " << n;
  }
  const std::vector<std::byte> in_count(full.begin(), full.begin() + 12);
  EXPECT_THAT(gguf_open_error(in_count),
              AllOf(HasSubstr("unexpected end of file reading tensor count"), HasSubstr(at(8))));
  GgufLayout layout;
  (void)small_file().build(&layout);
  const std::vector<std::byte> in_data(
      full.begin(), full.begin() + static_cast<long>(layout.tensors[2].data) + 3);
  EXPECT_THAT(gguf_open_error(in_data),
              AllOf(HasSubstr("tensor 'c'"), HasSubstr("runs past the end of the file"),
                    HasSubstr(at(layout.tensors[2].info))));
}

TEST(GgufReaderMalformed, RejectsWrongMagic) {
  std::vector<std::byte> bytes = small_file().build();
  patch<std::uint32_t>(bytes, 0, 0x4c4d4747);  // "GGML"
  EXPECT_THAT(gguf_open_error(bytes),
              AllOf(HasSubstr("bad magic: bytes 47 47 4d 4c"), HasSubstr(at(0))));
}

TEST(GgufReaderMalformed, RejectsUnsupportedVersions) {
  for (const std::uint32_t version : {0u, 1u, 4u, 0x03000000u}) {
    std::vector<std::byte> bytes = small_file().build();
    patch<std::uint32_t>(bytes, 4, version);
    const std::string message = gguf_open_error(bytes);
    EXPECT_THAT(message, AllOf(HasSubstr("version"), HasSubstr(at(4)))) << version;
    if (version == 0x03000000u) {
      EXPECT_THAT(message, HasSubstr("big-endian"));
    }
    if (version == 1u) {
      EXPECT_THAT(message, HasSubstr("unsupported GGUF version 1, expected 2 or 3"));
    }
  }
}

TEST(GgufReaderMalformed, RejectsAStringLengthPastTheEnd) {
  GgufLayout layout;
  std::vector<std::byte> bytes = small_file().build(&layout);
  patch<std::uint64_t>(bytes, layout.kv[2], 1u << 20);  // the key "test.name"
  EXPECT_THAT(gguf_open_error(bytes),
              AllOf(HasSubstr("metadata key has length 1048576"), HasSubstr(at(layout.kv[2]))));
  bytes = small_file().build(&layout);
  patch<std::uint64_t>(bytes, layout.kv_value[0], ~std::uint64_t{0});  // the value "llama"
  EXPECT_THAT(gguf_open_error(bytes),
              AllOf(HasSubstr("string value of metadata key 'general.architecture'"),
                    HasSubstr(at(layout.kv_value[0]))));
  bytes = small_file().build(&layout);
  patch<std::uint64_t>(bytes, layout.tensors[1].info, 5000);  // the tensor name "b"
  EXPECT_THAT(gguf_open_error(bytes), AllOf(HasSubstr("tensor name has length 5000"),
                                            HasSubstr(at(layout.tensors[1].info))));
}

TEST(GgufReaderMalformed, RejectsAnArrayLengthPastTheEnd) {
  GgufLayout layout;
  std::vector<std::byte> bytes = small_file().build(&layout);
  const std::size_t length_at = layout.kv_value[1] + 4;  // after the element type
  patch<std::uint64_t>(bytes, length_at, std::uint64_t{1} << 61);
  EXPECT_THAT(gguf_open_error(bytes),
              AllOf(HasSubstr("array length 2305843009213693952 of metadata key 'test.array'"),
                    HasSubstr("runs past the end of the file"), HasSubstr(at(length_at))));
}

TEST(GgufReaderMalformed, RejectsTensorDataPastTheEnd) {
  GgufLayout layout;
  std::vector<std::byte> bytes = small_file().build(&layout);
  patch<std::uint64_t>(bytes, layout.tensors[1].offset, 32 * 1000);
  EXPECT_THAT(gguf_open_error(bytes), AllOf(HasSubstr("tensor 'b' data [32000, 32000 + 34)"),
                                            HasSubstr("runs past the end of the file (" +
                                                      std::to_string(bytes.size()) + " bytes)"),
                                            HasSubstr(at(layout.tensors[1].info))));
  patch<std::uint64_t>(bytes, layout.tensors[1].offset,
                       ~std::uint64_t{31});  // near 2^64: no wrap-around
  EXPECT_THAT(gguf_open_error(bytes),
              AllOf(HasSubstr("tensor 'b'"), HasSubstr("runs past the end")));
}

TEST(GgufReaderMalformed, RejectsOverlappingTensorData) {
  GgufLayout layout;
  std::vector<std::byte> bytes = small_file().build(&layout);
  // "a" is 256 bytes at offset 0; move "b" to offset 224, inside it.
  patch<std::uint64_t>(bytes, layout.tensors[1].offset, 224);
  const std::size_t b_at = layout.data_section + 224;
  EXPECT_THAT(gguf_open_error(bytes), AllOf(HasSubstr("tensor 'b'"),
                                            HasSubstr("overlaps tensor 'a'"), HasSubstr(at(b_at))));
  bytes = small_file().build(&layout);
  patch<std::uint64_t>(bytes, layout.tensors[2].offset, 0);  // "c" exactly on top of "a"
  EXPECT_THAT(gguf_open_error(bytes),
              AllOf(HasSubstr("overlaps"), HasSubstr("'a'"), HasSubstr("'c'")));
}

TEST(GgufReaderMalformed, RejectsATensorOffsetNotAMultipleOfTheAlignment) {
  GgufLayout layout;
  std::vector<std::byte> bytes = small_file().build(&layout);
  patch<std::uint64_t>(bytes, layout.tensors[2].offset, 260);
  EXPECT_THAT(gguf_open_error(bytes),
              AllOf(HasSubstr("tensor 'c' has data offset 260, not a multiple of the alignment 32"),
                    HasSubstr(at(layout.tensors[2].offset))));
}

TEST(GgufReaderMalformed, RejectsDimensionsWhoseProductOverflows64Bits) {
  GgufBuilder b;
  b.add_tensor("huge", {std::uint64_t{1} << 32, std::uint64_t{1} << 31}, kTypeF32, {});
  GgufLayout layout;
  const std::vector<std::byte> bytes = b.build(&layout);
  EXPECT_THAT(gguf_open_error(bytes),
              AllOf(HasSubstr("tensor 'huge' has ne[1] = 2147483648"),
                    HasSubstr("overflows 64 bits"), HasSubstr(at(layout.tensors[0].dims + 8))));
  GgufBuilder c;
  c.add_tensor("negative", {~std::uint64_t{0}}, kTypeF32, {});
  const std::vector<std::byte> bytes_c = c.build(&layout);
  EXPECT_THAT(gguf_open_error(bytes_c),
              AllOf(HasSubstr("'negative'"), HasSubstr("at most 2^63 - 1")));
  // Elements fit in 63 bits but the byte count does not: 2^62 F32 elements are 2^64 bytes.
  GgufBuilder d;
  d.add_tensor("bytes", {std::uint64_t{1} << 62}, kTypeF32, {});
  const std::vector<std::byte> bytes_d = d.build(&layout);
  EXPECT_THAT(gguf_open_error(bytes_d),
              AllOf(HasSubstr("'bytes'"), HasSubstr("byte size that overflows")));
}

TEST(GgufReaderMalformed, RejectsMoreThanFourDimensions) {
  GgufBuilder b;
  b.add_tensor("five", {32, 1, 1, 1, 1}, kTypeF32, std::vector<std::byte>(128));
  GgufLayout layout;
  const std::vector<std::byte> bytes_b = b.build(&layout);
  EXPECT_THAT(gguf_open_error(bytes_b),
              AllOf(HasSubstr("tensor 'five' has n_dims = 5, expected at most 4"),
                    HasSubstr(at(layout.tensors[0].n_dims))));
}

TEST(GgufReaderMalformed, RejectsUnknownGgmlTypes) {
  for (const std::uint32_t type : {4u, 31u, 1000u}) {  // 4 was Q4_2 (removed), 31 was Q4_0_4_4
    GgufLayout layout;
    std::vector<std::byte> bytes = small_file().build(&layout);
    patch<std::uint32_t>(bytes, layout.tensors[1].type, type);
    EXPECT_THAT(gguf_open_error(bytes),
                AllOf(HasSubstr("tensor 'b' has unknown ggml type " + std::to_string(type)),
                      HasSubstr(at(layout.tensors[1].type))));
  }
}

TEST(GgufReaderMalformed, RejectsDuplicateTensorNames) {
  GgufBuilder b;
  b.add_tensor("w", {32}, kTypeF32, std::vector<std::byte>(128));
  b.add_tensor("w", {32}, kTypeF32, std::vector<std::byte>(128));
  GgufLayout layout;
  const std::vector<std::byte> bytes_b = b.build(&layout);
  EXPECT_THAT(gguf_open_error(bytes_b),
              AllOf(HasSubstr("duplicate tensor name 'w'"),
                    HasSubstr("first at byte offset " + std::to_string(layout.tensors[0].info)),
                    HasSubstr(at(layout.tensors[1].info))));
}

TEST(GgufReaderMalformed, RejectsDuplicateMetadataKeys) {
  GgufBuilder b;
  b.add("k", meta<std::uint32_t>(1)).add("other", meta(2.0f)).add("k", meta("again"));
  GgufLayout layout;
  const std::vector<std::byte> bytes = b.build(&layout);
  EXPECT_THAT(gguf_open_error(bytes),
              AllOf(HasSubstr("duplicate metadata key 'k'"), HasSubstr(at(layout.kv[2]))));
}

TEST(GgufReaderMalformed, RejectsUnknownValueTypesAndNonBinaryBools) {
  GgufLayout layout;
  GgufBuilder b;
  b.add("flag", meta(true));
  std::vector<std::byte> bytes = b.build(&layout);
  patch<std::uint8_t>(bytes, layout.kv_value[0], 2);
  EXPECT_THAT(gguf_open_error(bytes), AllOf(HasSubstr("bool value of metadata key 'flag' is 2"),
                                            HasSubstr(at(layout.kv_value[0]))));
  bytes = b.build(&layout);
  patch<std::uint32_t>(bytes, layout.kv_value[0] - 4, 13);
  EXPECT_THAT(gguf_open_error(bytes), AllOf(HasSubstr("'flag' has unknown value type 13"),
                                            HasSubstr(at(layout.kv_value[0] - 4))));
  GgufBuilder c;
  c.add("list", meta_array<std::uint8_t>({1}));
  bytes = c.build(&layout);
  patch<std::uint32_t>(bytes, layout.kv_value[0], 77);
  EXPECT_THAT(gguf_open_error(bytes), AllOf(HasSubstr("'list' has unknown element type 77"),
                                            HasSubstr(at(layout.kv_value[0]))));
}

TEST(GgufReaderMalformed, RejectsArraysNestedTooDeeply) {
  testing::MetaValue value = meta_array<std::uint8_t>({1});
  for (int i = 0; i < GgufReader::kMaxArrayDepth; ++i) value = meta_array(testing::kArray, {value});
  GgufBuilder b;
  b.add("deep", value);
  EXPECT_THAT(gguf_open_error(b.build()),
              AllOf(HasSubstr("'deep' nests arrays deeper than 16"), HasSubstr("byte offset")));
  testing::MetaValue ok = meta_array<std::uint8_t>({1});
  for (int i = 0; i < GgufReader::kMaxArrayDepth - 1; ++i) ok = meta_array(testing::kArray, {ok});
  GgufBuilder c;
  c.add("deep", ok);
  const TempFile file(c.build());
  EXPECT_NO_THROW((void)GgufReader::open(file.path()));
}

TEST(GgufReaderMalformed, RejectsBadAlignmentValues) {
  for (const std::uint32_t alignment : {0u, 3u, 48u, 1u << 31}) {
    GgufBuilder b = small_file();
    b.alignment(32);  // laid out validly, then the value is corrupted
    GgufLayout layout;
    std::vector<std::byte> bytes = b.build(&layout);
    patch<std::uint32_t>(bytes, layout.kv_value.back(), alignment);
    EXPECT_THAT(gguf_open_error(bytes),
                AllOf(HasSubstr("general.alignment = " + std::to_string(alignment)),
                      HasSubstr(at(layout.kv.back()))));
  }
  GgufBuilder b;
  b.add("general.alignment", meta<std::uint64_t>(32));
  EXPECT_THAT(gguf_open_error(b.build()),
              HasSubstr("general.alignment has type uint64, expected uint32"));
}

TEST(GgufReaderMalformed, RejectsRowsThatAreNotWholeBlocks) {
  GgufBuilder b;
  b.add_tensor("ragged", {48}, kTypeQ8_0, std::vector<std::byte>(51));
  GgufLayout layout;
  const std::vector<std::byte> bytes = b.build(&layout);
  EXPECT_THAT(
      gguf_open_error(bytes),
      AllOf(HasSubstr("tensor 'ragged' has ne[0] = 48, not a multiple of the Q8_0 block size 32"),
            HasSubstr(at(layout.tensors[0].type))));
}

TEST(GgufReaderMalformed, RejectsCountsThatCannotFitInTheFile) {
  std::vector<std::byte> bytes = small_file().build();
  patch<std::uint64_t>(bytes, 8, std::uint64_t{1} << 40);
  EXPECT_THAT(gguf_open_error(bytes),
              AllOf(HasSubstr("tensor count 1099511627776 cannot fit"), HasSubstr(at(8))));
  bytes = small_file().build();
  patch<std::uint64_t>(bytes, 16, ~std::uint64_t{0});
  EXPECT_THAT(gguf_open_error(bytes), AllOf(HasSubstr("metadata count"), HasSubstr(at(16))));
}

// Random byte corruptions of a valid file: every outcome is either a valid reader whose tensors all
// dequantize (or report an unsupported type) or a FormatError; nothing else, and never a crash.
TEST(GgufReaderMalformed, SurvivesRandomCorruption) {
  const std::vector<std::byte> original = small_file().build();
  std::mt19937_64 rng(1234);
  int rejected = 0;
  for (int trial = 0; trial < 1500; ++trial) {
    std::vector<std::byte> bytes = original;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = rng() % bytes.size();
      bytes[at] = static_cast<std::byte>(rng() % 3 == 0 ? 0xff : rng() & 0xff);
    }
    const TempFile file(bytes);
    try {
      const GgufReader r = GgufReader::open(file.path());
      for (const GgufTensorInfo& t : r.tensors()) {
        try {
          const RowMatrix<float> m = r.dequantize(t);
          ASSERT_EQ(m.rows(), t.rows());
        } catch (const FormatError& e) {
          ASSERT_THAT(e.what(), HasSubstr("cannot be dequantized")) << "trial " << trial;
        }
      }
    } catch (const FormatError& e) {
      ++rejected;
      ASSERT_THAT(e.what(), AllOf(HasSubstr(file.path().string()), HasSubstr("byte offset")))
          << "trial " << trial;
    }
  }
  EXPECT_GT(rejected, 100) << "the corruptions should mostly be detected";
}

}  // namespace
}  // namespace latentkv
