// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// File helpers shared by the io tests: a temporary folder removed on destruction, a file's bytes,
// a folder's entries, and the message of an expected FormatError.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "latentkv/core/error.hpp"

namespace latentkv::testing {

/// A fresh folder under GoogleTest's temp dir, named `<prefix>_<pid>_<n>`; removed (with its
/// contents) by the destructor.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "latentkv_dir") {
    static int counter = 0;
    path_ =
        std::filesystem::path(::testing::TempDir()) /
        (std::string(prefix) + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  /// Writes `text` to the file `name` inside the folder (replacing it).
  void write(const std::string& name, std::string_view text) const {
    std::ofstream out(path_ / name, std::ios::binary | std::ios::trunc);
    out << text;
  }

 private:
  std::filesystem::path path_;
};

/// The bytes of a file (empty when it cannot be read).
inline std::vector<std::byte> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> chars((std::istreambuf_iterator<char>(in)), {});
  std::vector<std::byte> out(chars.size());
  if (!chars.empty()) std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

/// The names of a folder's entries, sorted.
inline std::vector<std::filesystem::path> entries_of(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename());
  }
  std::sort(names.begin(), names.end());
  return names;
}

/// The message of the FormatError `f()` throws; a test failure (and "") when it throws
/// something else or nothing.
template <class F>
std::string format_error(F&& f) {
  try {
    f();
  } catch (const FormatError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected FormatError, got another exception: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected FormatError, nothing was thrown";
  return {};
}

/// "(at byte offset N)", as the readers' messages end.
inline std::string at(std::size_t offset) {
  return "(at byte offset " + std::to_string(offset) + ")";
}

/// start, start + step, ... (n values).
inline std::vector<float> ramp(int n, float start, float step) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = start + step * static_cast<float>(i);
  return v;
}

}  // namespace latentkv::testing
