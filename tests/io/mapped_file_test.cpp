// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/io/mapped_file.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <vector>

#include "../support/gguf_builder.hpp"

namespace latentkv {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::TempFile;

std::vector<std::byte> pattern(std::size_t n) {
  std::vector<std::byte> bytes(n);
  for (std::size_t i = 0; i < n; ++i) bytes[i] = static_cast<std::byte>((i * 31 + 7) & 0xff);
  return bytes;
}

TEST(MappedFile, MapsTheWholeFileContents) {
  const std::vector<std::byte> bytes = pattern(10000);  // not a multiple of the page size
  const TempFile file(bytes);
  const MappedFile mapped = MappedFile::open(file.path());
  EXPECT_EQ(mapped.path(), file.path());
  ASSERT_EQ(mapped.size(), bytes.size());
  ASSERT_EQ(mapped.bytes().size(), bytes.size());
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), mapped.bytes().begin()));
}

TEST(MappedFile, MapsAnEmptyFileToAnEmptySpan) {
  const TempFile file(std::vector<std::byte>{});
  const MappedFile mapped = MappedFile::open(file.path());
  EXPECT_EQ(mapped.size(), 0u);
  EXPECT_TRUE(mapped.bytes().empty());
}

TEST(MappedFile, KeepsTheMappingAddressWhenMoved) {
  const TempFile file(pattern(64));
  MappedFile first = MappedFile::open(file.path());
  const std::byte* data = first.data();
  MappedFile second = std::move(first);
  EXPECT_EQ(second.data(), data);
  EXPECT_EQ(second.size(), 64u);
  EXPECT_EQ(first.size(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  EXPECT_EQ(first.data(), nullptr);

  const TempFile other(pattern(128));
  MappedFile third = MappedFile::open(other.path());
  third = std::move(second);  // unmaps the 128-byte file, takes over the 64-byte one
  EXPECT_EQ(third.data(), data);
  EXPECT_EQ(third.size(), 64u);
  EXPECT_EQ(third.bytes()[63], pattern(64)[63]);
}

TEST(MappedFile, StaysReadableAfterTheFileIsUnlinked) {
  const std::vector<std::byte> bytes = pattern(5000);
  auto file = std::make_unique<TempFile>(bytes);
  const MappedFile mapped = MappedFile::open(file->path());
  file.reset();  // removes the file; the mapping keeps the inode alive
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), mapped.bytes().begin()));
}

TEST(MappedFile, NamesAMissingFileAndTheReason) {
  const std::filesystem::path missing = "/nonexistent/latentkv/weights.gguf";
  try {
    (void)MappedFile::open(missing);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                AllOf(HasSubstr("latentkv::MappedFile::open"), HasSubstr(missing.string()),
                      HasSubstr("open failed"), HasSubstr("No such file or directory")));
  }
}

TEST(MappedFile, RejectsADirectory) {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir());
  try {
    (void)MappedFile::open(dir);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr(dir.string()), HasSubstr("not a regular file")));
  }
}

}  // namespace
}  // namespace latentkv
