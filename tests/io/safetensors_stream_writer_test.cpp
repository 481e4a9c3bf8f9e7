// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// SafetensorsStreamWriter: files read back by SafetensorsReader (values, dtypes, alignment), the
// same bytes as SafetensorsWriter for the same tensors, the declaration-order protocol (every
// misuse is an InvalidArgument that writes nothing), and atomicity: the destination is untouched
// until commit(), and an abandoned or failed writer leaves no temporary file.
#include "latentkv/io/safetensors_stream_writer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "../support/files.hpp"

namespace latentkv {
namespace {

using testing::entries_of;
using testing::read_file;
using testing::TempDir;

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

RowMatrix<float> normal_matrix(Index rows, Index cols, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  RowMatrix<float> m(rows, cols);
  for (Index k = 0; k < m.size(); ++k) m.data()[k] = dist(gen);
  return m;
}

float through_f16(float x) { return fp16_bits_to_float(float_to_fp16_bits(x)); }
float through_bf16(float x) { return bf16_bits_to_float(float_to_bf16_bits(x)); }

/// Tensors of every supported dtype, declared with small element sizes first (the layout reorders
/// them; the writes follow the declaration).
struct Mixed {
  RowMatrix<float> f16 = normal_matrix(3, 5, 1);   // F16 [3, 5]: 30 bytes, not a multiple of 4
  RowMatrix<float> f32 = normal_matrix(2, 3, 2);   // F32 [2, 3]
  RowMatrix<float> bf16 = normal_matrix(4, 3, 3);  // BF16 [2, 2, 3]
  Vector<double> f64 = Vector<double>::LinSpaced(5, -1.0, 1.0 / 3.0);  // F64 [5]

  void declare(SafetensorsStreamWriter& w) const {
    w.add_metadata("format", "pt").add_metadata("note", "h\xc3\xa9llo");
    w.declare("f16", SafetensorsDtype::kF16, {3, 5})
        .declare("f32", SafetensorsDtype::kF32, {2, 3})
        .declare("empty", SafetensorsDtype::kF32, {0, 7})
        .declare("bf16", SafetensorsDtype::kBF16, {2, 2, 3})
        .declare("f64", SafetensorsDtype::kF64, {5});
  }
  void write(SafetensorsStreamWriter& w) const {
    w.write("f16", f16);
    w.write("f32", f32);
    w.write("empty", RowMatrix<float>(0, 7));
    w.write("bf16", bf16);
    w.write("f64", f64);
  }
};

TEST(SafetensorsStreamWriter, RoundTripsEveryDtypeThroughTheReader) {
  const TempDir dir{"latentkv_stw"};
  const fs::path out = dir.path() / "m.safetensors";
  const Mixed m;
  SafetensorsStreamWriter w;
  m.declare(w);
  w.begin(out);
  m.write(w);
  w.commit();
  EXPECT_TRUE(w.committed());

  const SafetensorsReader r = SafetensorsReader::open(out);
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.metadata().at("note"), "h\xc3\xa9llo");
  ASSERT_EQ(r.tensors().size(), 5u);
  EXPECT_EQ(r.tensors()[0].name, "f16") << "header entries in declaration order";
  EXPECT_EQ(r.tensor("f16").dtype, SafetensorsDtype::kF16);
  EXPECT_EQ(r.tensor("bf16").shape, (std::vector<std::int64_t>{2, 2, 3}));
  EXPECT_EQ(r.read_float("f32"), m.f32);
  EXPECT_EQ(r.read_float("f16"), m.f16.unaryExpr(&through_f16));
  EXPECT_EQ(r.read_float("bf16"), m.bf16.unaryExpr(&through_bf16));
  EXPECT_EQ(r.read_float("empty").rows(), 0);
  const auto raw = r.raw("f64");
  ASSERT_EQ(raw.size(), 40u);
  std::vector<double> f64(5);
  std::memcpy(f64.data(), raw.data(), raw.size());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(f64[static_cast<std::size_t>(i)], m.f64(i));

  // Every tensor aligned to its element size; F64 first, F16/BF16 last.
  EXPECT_EQ(r.data_offset() % 8, 0u);
  for (const SafetensorsTensorInfo& t : r.tensors()) {
    EXPECT_EQ(t.file_offset % (safetensors_dtype_traits(t.dtype).bits / 8), 0u) << t.name;
  }
  EXPECT_EQ(r.tensor("f64").begin, 0u);
}

TEST(SafetensorsStreamWriter, WritesTheSameBytesAsSafetensorsWriter) {
  const TempDir dir{"latentkv_stw"};
  const fs::path out = dir.path() / "m.safetensors";
  const Mixed m;
  SafetensorsStreamWriter w;
  m.declare(w);
  w.begin(out);
  m.write(w);
  w.commit();

  SafetensorsWriter reference;
  reference.add_metadata("format", "pt").add_metadata("note", "h\xc3\xa9llo");
  reference.add("f16", m.f16, SafetensorsDtype::kF16)
      .add("f32", m.f32)
      .add("empty", RowMatrix<float>(0, 7))
      .add("bf16", m.bf16, {2, 2, 3}, SafetensorsDtype::kBF16)
      .add_raw("f64", SafetensorsDtype::kF64, {5},
               std::as_bytes(std::span<const double>(m.f64.data(), 5)));
  EXPECT_EQ(read_file(out), reference.serialize());
}

TEST(SafetensorsStreamWriter, ConvertsExpressionsAndDoublesRowByRowAcrossChunks) {
  const TempDir dir{"latentkv_stw"};
  const fs::path out = dir.path() / "big.safetensors";
  const RowMatrix<float> a = normal_matrix(700, 600, 4);  // 1.6 MiB as F32: several chunks
  const RowMatrix<double> b = normal_matrix(3, 4, 5).cast<double>();
  SafetensorsStreamWriter w;
  w.declare("at", SafetensorsDtype::kF32, {600, 700})
      .declare("at16", SafetensorsDtype::kBF16, {600, 700})
      .declare("b32", SafetensorsDtype::kF32, {12})
      .declare("b64", SafetensorsDtype::kF64, {3, 4});
  w.begin(out);
  w.write("at", a.transpose());  // a strided expression, never copied
  w.write("at16", a.transpose());
  w.write("b32", b);
  w.write("b64", b);
  w.commit();
  const SafetensorsReader r = SafetensorsReader::open(out);
  EXPECT_EQ(r.read_float("at"), a.transpose());
  EXPECT_EQ(r.read_float("at16"), RowMatrix<float>(a.transpose()).unaryExpr(&through_bf16));
  EXPECT_EQ(r.read_float("b32"), b.cast<float>().reshaped<Eigen::RowMajor>(1, 12));
  std::vector<double> b64(12);
  std::memcpy(b64.data(), r.raw("b64").data(), 96);
  for (Index k = 0; k < 12; ++k) EXPECT_EQ(b64[static_cast<std::size_t>(k)], b(k / 4, k % 4));
}

TEST(SafetensorsStreamWriter, WriteRawTakesLittleEndianBytes) {
  const TempDir dir{"latentkv_stw"};
  const fs::path out = dir.path() / "raw.safetensors";
  const std::vector<std::uint16_t> bits = {0x3c00, 0xc000};  // F16 1.0, -2.0
  SafetensorsStreamWriter w;
  w.declare("h", SafetensorsDtype::kF16, {2});
  w.begin(out);
  EXPECT_THAT([&] { w.write_raw("h", std::as_bytes(std::span(bits)).first(3)); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("is 4 bytes, but 3 were given")));
  w.write_raw("h", std::as_bytes(std::span(bits)));
  w.commit();
  EXPECT_EQ(SafetensorsReader::open(out).read_float("h"),
            (RowMatrix<float>(1, 2) << 1.0f, -2.0f).finished());
}

TEST(SafetensorsStreamWriter, RejectsUndeclaredOutOfOrderRepeatedAndWrongSizeWrites) {
  const TempDir dir{"latentkv_stw"};
  const fs::path out = dir.path() / "m.safetensors";
  SafetensorsStreamWriter w;
  w.declare("a", SafetensorsDtype::kF32, {2, 2}).declare("b", SafetensorsDtype::kF16, {3});
  EXPECT_THAT([&] { w.write("a", RowMatrix<float>::Ones(2, 2)); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("begin() was not called")));
  w.begin(out);
  const std::string tmp = detail::temporary_path_for(out).string();
  EXPECT_EQ(w.temporary_path(), detail::temporary_path_for(out));
  EXPECT_TRUE(fs::exists(tmp));
  EXPECT_FALSE(fs::exists(out)) << "nothing at the destination before commit()";
  EXPECT_THAT([&] { w.write("c", RowMatrix<float>::Ones(2, 2)); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  AllOf(HasSubstr("latentkv::SafetensorsStreamWriter::write"), HasSubstr(tmp),
                        HasSubstr("tensor 'c' was not declared"))));
  EXPECT_THAT([&] { w.write("b", RowMatrix<float>::Ones(1, 3)); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  HasSubstr("tensor 'b' is out of order: expected 'a' (1 of 2) next")));
  EXPECT_THAT([&] { w.write("a", RowMatrix<float>::Ones(1, 3)); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  HasSubstr("tensor 'a': shape [2, 2] has 4 elements, but the values are 1 x 3")));
  EXPECT_EQ(w.written_count(), 0u) << "a rejected write writes nothing";
  w.write("a", RowMatrix<float>::Ones(4, 1));  // only the element count must agree
  EXPECT_THAT([&] { w.write("a", RowMatrix<float>::Ones(2, 2)); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("'a' was already written")));
  ASSERT_NE(w.next_name(), nullptr);
  EXPECT_EQ(*w.next_name(), "b");
  w.write("b", RowMatrix<float>::Constant(3, 1, 0.5f));
  EXPECT_EQ(w.next_name(), nullptr);
  w.commit();
  EXPECT_THAT([&] { w.commit(); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("already committed")));
  EXPECT_EQ(SafetensorsReader::open(out).read_float("b"), RowMatrix<float>::Constant(1, 3, 0.5f));
  EXPECT_EQ(entries_of(dir.path()), (std::vector<fs::path>{"m.safetensors"}));
}

TEST(SafetensorsStreamWriter, RefusesToCommitBeforeEveryTensorIsWritten) {
  const TempDir dir{"latentkv_stw"};
  const fs::path out = dir.path() / "m.safetensors";
  SafetensorsStreamWriter w;
  w.declare("a", SafetensorsDtype::kF32, {1}).declare("b", SafetensorsDtype::kF32, {1});
  w.begin(out);
  w.write("a", RowMatrix<float>::Ones(1, 1));
  EXPECT_THAT([&] { w.commit(); }, ::testing::ThrowsMessage<InvalidArgument>(
                                       HasSubstr("tensor 'b' (2 of 2) was not written")));
  EXPECT_FALSE(fs::exists(out));
  w.write("b", RowMatrix<float>::Ones(1, 1));  // still usable
  w.commit();
  EXPECT_EQ(SafetensorsReader::open(out).tensors().size(), 2u);
}

TEST(SafetensorsStreamWriter, RejectsBadDeclarations) {
  SafetensorsStreamWriter w;
  w.declare("a", SafetensorsDtype::kF32, {1}).add_metadata("k", "v");
  EXPECT_THAT([&] { w.declare("a", SafetensorsDtype::kF16, {2}); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("duplicate tensor name 'a'")));
  EXPECT_THAT([&] { w.add_metadata("k", "w"); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("duplicate metadata key 'k'")));
  EXPECT_THAT([&] { w.declare("i", SafetensorsDtype::kI32, {1}); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  HasSubstr("dtype I32, expected F32, F16, BF16 or F64")));
  EXPECT_THROW(w.declare("__metadata__", SafetensorsDtype::kF32, {1}), InvalidArgument);
  EXPECT_THROW(w.declare("neg", SafetensorsDtype::kF32, {2, -1}), InvalidArgument);
  EXPECT_THROW(w.declare("huge", SafetensorsDtype::kF64, {1LL << 40, 1LL << 30}), InvalidArgument);
  EXPECT_THROW(w.declare("\xff", SafetensorsDtype::kF32, {1}), InvalidArgument);
  EXPECT_EQ(w.tensor_count(), 1u);
  const TempDir dir{"latentkv_stw"};
  w.begin(dir.path() / "m.safetensors");
  EXPECT_THAT([&] { w.declare("late", SafetensorsDtype::kF32, {1}); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("fixed once begin()")));
  EXPECT_THROW(w.add_metadata("late", "x"), InvalidArgument);
  EXPECT_THROW(w.begin(dir.path() / "other.safetensors"), InvalidArgument);
  EXPECT_THROW(SafetensorsStreamWriter().begin(dir.path()), InvalidArgument);  // a directory
}

TEST(SafetensorsStreamWriter, AbandoningRemovesTheTemporaryFileAndKeepsTheDestination) {
  const TempDir dir{"latentkv_stw"};
  const fs::path out = dir.path() / "m.safetensors";
  SafetensorsWriter old;
  old.add("old", RowMatrix<float>::Ones(1, 1));
  old.write(out);
  const std::vector<std::byte> before = read_file(out);
  {
    SafetensorsStreamWriter w;
    w.declare("a", SafetensorsDtype::kF32, {2}).declare("b", SafetensorsDtype::kF32, {2});
    w.begin(out);
    w.write("a", RowMatrix<float>::Zero(1, 2));
    EXPECT_EQ(entries_of(dir.path()).size(), 2u) << "the temporary file exists while writing";
  }
  EXPECT_EQ(entries_of(dir.path()), (std::vector<fs::path>{"m.safetensors"}));
  EXPECT_EQ(read_file(out), before);

  // An exception half-way through a caller's loop: the same.
  const auto produce = [&] {
    SafetensorsStreamWriter w;
    w.declare("a", SafetensorsDtype::kF32, {2}).declare("b", SafetensorsDtype::kF32, {2});
    w.begin(out);
    w.write("a", RowMatrix<float>::Zero(1, 2));
    throw std::runtime_error("the producer failed");
  };
  EXPECT_THROW(produce(), std::runtime_error);
  EXPECT_EQ(entries_of(dir.path()), (std::vector<fs::path>{"m.safetensors"}));
  EXPECT_EQ(read_file(out), before);

  // A moved-from writer owns nothing; the moved-to one commits.
  SafetensorsStreamWriter w;
  w.declare("a", SafetensorsDtype::kF32, {1});
  w.begin(out);
  SafetensorsStreamWriter moved = std::move(w);
  moved.write("a", RowMatrix<float>::Ones(1, 1));
  moved.commit();
  EXPECT_EQ(SafetensorsReader::open(out).tensors()[0].name, "a");
  EXPECT_EQ(entries_of(dir.path()), (std::vector<fs::path>{"m.safetensors"}));
}

TEST(SafetensorsStreamWriter, BeginFailsWithoutTouchingAnything) {
  const TempDir dir{"latentkv_stw"};
  SafetensorsStreamWriter w;
  w.declare("a", SafetensorsDtype::kF32, {1});
  const fs::path missing = dir.path() / "no_such_dir" / "m.safetensors";
  EXPECT_THAT([&] { w.begin(missing); }, ::testing::ThrowsMessage<Error>(AllOf(
                                             HasSubstr("latentkv::SafetensorsStreamWriter::begin"),
                                             HasSubstr("open failed"), HasSubstr("no_such_dir"))));
  EXPECT_TRUE(entries_of(dir.path()).empty());
}

TEST(SafetensorsStreamWriter, AFailedWriteAbandonsTheFileAndLeavesTheDestination) {
  const TempDir dir{"latentkv_stw"};
  const fs::path out = dir.path() / "m.safetensors";
  SafetensorsWriter old;
  old.add("old", RowMatrix<float>::Ones(1, 1));
  old.write(out);
  const std::vector<std::byte> before = read_file(out);

  const RowMatrix<float> big = normal_matrix(256, 256, 6);  // 256 KiB
  std::string message;
  {
    SafetensorsStreamWriter w;
    w.declare("big", SafetensorsDtype::kF32, {256, 256});
    w.begin(out);
    // A file-size limit makes the write fail (EFBIG instead of SIGXFSZ, which is ignored).
    rlimit saved{};
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
    const auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit limited = saved;
    limited.rlim_cur = 64 * 1024;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
    try {
      w.write("big", big);
    } catch (const Error& e) {
      message = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, previous_handler);
    EXPECT_THAT([&] { w.commit(); },
                ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("an earlier write failed")));
  }
  EXPECT_THAT(message, AllOf(HasSubstr("write failed"), HasSubstr("File too large"),
                             HasSubstr(".tmp." + std::to_string(::getpid()))));
  EXPECT_EQ(read_file(out), before);
  EXPECT_EQ(entries_of(dir.path()), (std::vector<fs::path>{"m.safetensors"}));
}

}  // namespace
}  // namespace latentkv
