// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The real checkpoint for tests labelled `model` (not public API): SmolLM2-135M-Instruct, Q4_1
// GGUF, found at $LATENTKV_MODEL, else $LATENTKV_CACHE_DIR/SmolLM2-135M-Instruct.Q4_1.gguf, else
// ~/.cache/latentkv/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-model.sh puts it there). Tests
// derived from SmolLm2Test skip with a message saying so when the file is absent.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <optional>

#include "latentkv/io/gguf_reader.hpp"

namespace latentkv::testing {

inline std::filesystem::path smollm2_path() {
  if (const char* model = std::getenv("LATENTKV_MODEL"); model != nullptr && *model != '\0') {
    return model;
  }
  std::filesystem::path cache;
  if (const char* dir = std::getenv("LATENTKV_CACHE_DIR"); dir != nullptr && *dir != '\0') {
    cache = dir;
  } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    cache = std::filesystem::path(home) / ".cache" / "latentkv";
  }
  return cache / "SmolLM2-135M-Instruct.Q4_1.gguf";
}

/// Opens the model once per test binary; each test skips when it is absent.
class SmolLm2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::filesystem::path path = smollm2_path();
    if (!std::filesystem::is_regular_file(path)) {
      GTEST_SKIP() << "the SmolLM2 model is not at " << path
                   << ": run scripts/fetch-model.sh, or set LATENTKV_MODEL to the .gguf file";
    }
    if (!reader_) reader_.emplace(GgufReader::open(path));
  }

  static const GgufReader& reader() { return *reader_; }

 private:
  static inline std::optional<GgufReader> reader_;
};

}  // namespace latentkv::testing
