// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// libFuzzer target: from_hf_config_json on arbitrary text (the strict JSON document parser with
// duplicate-key detection and byte offsets, then the config.json key checks). Contract under test:
// a ModelConfig that passes validate(), or FormatError; any other exception is a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "latentkv/io/hf_model_dir.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const latentkv::ModelConfig c = latentkv::from_hf_config_json(text, "fuzz/config.json");
    c.validate();  // must not throw: from_hf_config_json validated it
  } catch (const latentkv::FormatError&) {
    // malformed input: the expected outcome
  }
  return 0;
}
