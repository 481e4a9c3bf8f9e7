// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// What the command-line tools share (not library API): usage errors, file checks, the default
// evaluation text, byte formatting, a progress bar on stderr, calibration tokens.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/io/detail/atomic_write.hpp"
#include "latentkv/linalg/matrix.hpp"

namespace latentkv::tools {

namespace fs = std::filesystem;

/// Throws InvalidArgument with the parts concatenated (main() prefixes the tool's name).
template <class... Parts>
[[noreturn]] void usage_error(const Parts&... parts) {
  throw InvalidArgument(detail::concat(parts...));
}

/// Throws InvalidArgument naming the option when `path` is not a regular file.
inline void require_file(const fs::path& path, const char* option) {
  if (!fs::is_regular_file(path)) {
    usage_error(option, ": no file at ", path, fs::exists(path) ? " (not a regular file)" : "");
  }
}

/// The evaluation text: $LATENTKV_WIKITEXT, else the build's default (DESIGN §10).
inline fs::path default_text() {
  if (const char* env = std::getenv("LATENTKV_WIKITEXT"); env != nullptr && *env != '\0') {
    return env;
  }
  return LATENTKV_DEFAULT_WIKITEXT;
}

inline std::string read_text(const fs::path& path, const char* option) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  if (!in && !in.eof()) usage_error(option, ": cannot read ", path);
  return out.str();
}

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// printf into a std::string.
template <class... Args>
[[nodiscard]] std::string format(const char* pattern, Args... args) {
  char buffer[256];
  std::snprintf(buffer, sizeof buffer, pattern, args...);
  return buffer;
}

/// "1.50 GiB", "720.0 MiB", "23040 B".
[[nodiscard]] inline std::string human_bytes(double bytes) {
  if (bytes >= 1024.0 * 1024.0 * 1024.0)
    return format("%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  if (bytes >= 1024.0 * 1024.0) return format("%.1f MiB", bytes / (1024.0 * 1024.0));
  if (bytes >= 1024.0) return format("%.1f KiB", bytes / 1024.0);
  return format("%.0f B", bytes);
}

/// True when `a` and `b` name the same file (or would: compared after canonicalization).
[[nodiscard]] inline bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) return fs::equivalent(a, b, ec);
  return fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
}

/// Writes `text` to `path` atomically (temporary file + rename, io/detail/atomic_write.hpp).
inline void write_text_atomically(const fs::path& path, const std::string& text,
                                  const char* where) {
  const std::span<const std::byte> bytes = std::as_bytes(std::span(text.data(), text.size()));
  const std::span<const std::byte> pieces[] = {bytes};
  detail::write_file_atomically(path, pieces, where);
}

/// A one-line progress bar on stderr: redrawn in place on a terminal, one line per finished
/// stage otherwise (logs stay readable). Silent when quiet.
class ProgressBar {
 public:
  explicit ProgressBar(bool quiet) : quiet_(quiet), tty_(::isatty(STDERR_FILENO) != 0) {}

  void update(std::string_view stage, Index done, Index total) {
    if (quiet_ || total <= 0) return;
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(kWidth * done / total);
    if (tty_) {
      std::fprintf(stderr, "\r  %-10.*s [%s%s] %ld/%ld layers, %.1f s",
                   static_cast<int>(stage.size()), stage.data(),
                   std::string(static_cast<std::size_t>(filled), '#').c_str(),
                   std::string(static_cast<std::size_t>(kWidth - filled), '.').c_str(),
                   static_cast<long>(done), static_cast<long>(total), seconds_since(start_));
      if (done == total) std::fputc('\n', stderr);
    } else if (done == total) {
      std::fprintf(stderr, "  %-10.*s [%s] %ld/%ld layers, %.1f s\n",
                   static_cast<int>(stage.size()), stage.data(), std::string(kWidth, '#').c_str(),
                   static_cast<long>(done), static_cast<long>(total), seconds_since(start_));
    }
    std::fflush(stderr);
  }

 private:
  bool quiet_;
  bool tty_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

/// Calibration ids: the last `count` tokens of `ids` (the evaluation protocol scores the first
/// chunks of the same text, so the tail stays disjoint from them unless every chunk is scored).
[[nodiscard]] inline std::vector<std::int32_t> tail_tokens(const std::vector<std::int32_t>& ids,
                                                           Index count, const char* option) {
  if (count < 2 || count > static_cast<Index>(ids.size())) {
    usage_error(option, " = ", count, ", expected 2..", ids.size(),
                " (the calibration text's tokens)");
  }
  return {ids.end() - count, ids.end()};
}

}  // namespace latentkv::tools
