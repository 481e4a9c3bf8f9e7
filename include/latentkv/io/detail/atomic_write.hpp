// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Not API. Writes a file so that its destination never holds a partial file (POSIX):
//   1. write every piece to "<path>.tmp.<pid>" in the destination's directory (same file system),
//   2. fsync it and close it (both checked: a full disk may only show up there),
//   3. rename() it over the destination (atomic: readers see the old file or the new one),
//   4. fsync the directory so the rename itself survives a crash (best effort: some file systems
//      cannot fsync a directory; the file is complete and in place either way).
// On any failure before the rename the temporary file is removed and Error names the path, the
// failing call and strerror(errno). Two writers of the same destination in one process race on the
// temporary name: write a destination from one thread at a time.
#pragma once

#if !defined(__unix__) && !defined(__APPLE__)
#error "latentkv/io/detail/atomic_write.hpp needs POSIX"
#endif

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>

#include "latentkv/core/error.hpp"

namespace latentkv::detail {

/// "<path>.tmp.<pid>": the temporary file write_file_atomically() uses for `path`.
[[nodiscard]] inline std::filesystem::path temporary_path_for(const std::filesystem::path& path) {
  std::filesystem::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  return tmp;
}

/// Writes the concatenation of `pieces` to `path` atomically (see the notation block).
inline void write_file_atomically(const std::filesystem::path& path,
                                  std::span<const std::span<const std::byte>> pieces,
                                  const char* where) {
  if (!path.has_filename()) {
    raise<InvalidArgument>(where, "path ", path.string(), " does not name a file");
  }
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    raise<InvalidArgument>(where, "path ", path.string(), " is a directory");
  }
  const std::filesystem::path tmp = temporary_path_for(path);
  const auto fail = [&](const char* call, const std::filesystem::path& subject) {
    const int code = errno;
    raise<Error>(where, subject.string(), ": ", call, " failed: ", std::strerror(code));
  };

  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) fail("open", tmp);
  // Removes the temporary file (and closes it) unless the rename went through.
  struct Cleanup {
    const std::filesystem::path& tmp;
    int& fd;
    bool armed = true;
    ~Cleanup() {
      if (!armed) return;
      const int saved = errno;
      if (fd >= 0) ::close(fd);
      ::unlink(tmp.c_str());
      errno = saved;
    }
  } cleanup{tmp, fd};

  for (const std::span<const std::byte> piece : pieces) {
    const std::byte* p = piece.data();
    std::size_t left = piece.size();
    while (left > 0) {
      const ::ssize_t n = ::write(fd, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("write", tmp);
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }
  if (::fsync(fd) != 0) fail("fsync", tmp);
  const int closing = fd;
  fd = -1;
  if (::close(closing) != 0) fail("close", tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename", path);
  cleanup.armed = false;

  const std::filesystem::path parent =
      path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  const int dir = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    (void)::fsync(dir);  // best effort, see the notation block
    ::close(dir);
  }
}

}  // namespace latentkv::detail
