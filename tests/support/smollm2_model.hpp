// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The real SmolLM2 checkpoint as a LlamaModel and a tokenizer, loaded once per test binary, plus
// the reference fixtures (tests/data/reference/*.json, tools/reference/README.md) and WikiText-2
// (not public API). Needs latentkv::text (ICU) and nlohmann_json.
//   WikiText-2: $LATENTKV_WIKITEXT, else LATENTKV_SHARED_DATA_DIR/wikitext-2-raw-test.txt
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

#include "latentkv/model/llama_model.hpp"
#include "latentkv/text/tokenizer.hpp"
#include "smollm2.hpp"

namespace latentkv::testing {

inline nlohmann::json read_reference_json(const std::string& name) {
  const std::filesystem::path path =
      std::filesystem::path(LATENTKV_SOURCE_DIR) / "tests/data/reference" / name;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  return nlohmann::json::parse(in);
}

inline std::filesystem::path wikitext_path() {
  if (const char* env = std::getenv("LATENTKV_WIKITEXT"); env != nullptr && *env != '\0') {
    return env;
  }
  return std::filesystem::path(LATENTKV_SHARED_DATA_DIR) / "wikitext-2-raw-test.txt";
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// SmolLm2Test plus the model and tokenizer, built once for the whole binary.
class SmolLm2ModelTest : public SmolLm2Test {
 protected:
  void SetUp() override {
    SmolLm2Test::SetUp();
    if (IsSkipped()) return;
    if (!model_) model_.emplace(LlamaModel::from_gguf(reader()));
    if (!tokenizer_) tokenizer_.emplace(BpeTokenizer::from_gguf(reader()));
  }

  static const LlamaModel& model() { return *model_; }
  static const BpeTokenizer& tokenizer() { return *tokenizer_; }

 private:
  static inline std::optional<LlamaModel> model_;
  static inline std::optional<BpeTokenizer> tokenizer_;
};

}  // namespace latentkv::testing
