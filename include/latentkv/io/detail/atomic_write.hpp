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
//
// AtomicFile is step 1 to 4 as an object, for writers that produce a file piece by piece (in order
// with append(), or at known offsets with write_at()): commit() does steps 2–4, and destroying it
// uncommitted (an exception, an abandoned writer) removes the temporary file. write_file_atomically
// is the one-shot form.
#pragma once

#if !defined(__unix__) && !defined(__APPLE__)
#error "latentkv/io/detail/atomic_write.hpp needs POSIX"
#endif

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <utility>

#include "latentkv/core/error.hpp"

namespace latentkv::detail {

/// "<path>.tmp.<pid>": the temporary file write_file_atomically() uses for `path`.
[[nodiscard]] inline std::filesystem::path temporary_path_for(const std::filesystem::path& path) {
  std::filesystem::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  return tmp;
}

/// The temporary file of `path`, open for writing, that becomes `path` on commit().
class AtomicFile {
 public:
  /// Checks that `path` names a file (InvalidArgument) and creates (truncates) its temporary file
  /// (Error naming it). `where` prefixes every message and must outlive the object.
  AtomicFile(std::filesystem::path path, const char* where)
      : path_(std::move(path)), tmp_(temporary_path_for(path_)), where_(where) {
    if (!path_.has_filename()) {
      raise<InvalidArgument>(where_, "path ", path_.string(), " does not name a file");
    }
    std::error_code ec;
    if (std::filesystem::is_directory(path_, ec)) {
      raise<InvalidArgument>(where_, "path ", path_.string(), " is a directory");
    }
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd_ < 0) fail("open", tmp_);
  }

  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  /// Removes the temporary file (and closes it) unless commit() went through.
  ~AtomicFile() {
    if (committed_) return;
    const int saved = errno;
    if (fd_ >= 0) ::close(fd_);
    ::unlink(tmp_.c_str());
    errno = saved;
  }

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] const std::filesystem::path& temporary_path() const noexcept { return tmp_; }
  [[nodiscard]] bool committed() const noexcept { return committed_; }

  /// Writes `bytes` at the current position and advances it (write_at() does not move it).
  void append(std::span<const std::byte> bytes) {
    require_open("append");
    const std::byte* p = bytes.data();
    std::size_t left = bytes.size();
    while (left > 0) {
      const ::ssize_t n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("write", tmp_);
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }

  /// Writes `bytes` at byte `offset` of the file (pwrite: the position append() uses stays).
  void write_at(std::uint64_t offset, std::span<const std::byte> bytes) {
    require_open("write_at");
    const std::byte* p = bytes.data();
    std::size_t left = bytes.size();
    while (left > 0) {
      if (offset > static_cast<std::uint64_t>(std::numeric_limits<::off_t>::max())) {
        raise<Error>(where_, tmp_.string(), ": offset ", offset, " is beyond the largest off_t");
      }
      const ::ssize_t n = ::pwrite(fd_, p, left, static_cast<::off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("write", tmp_);
      }
      p += n;
      offset += static_cast<std::uint64_t>(n);
      left -= static_cast<std::size_t>(n);
    }
  }

  /// Steps 2–4: fsync, close, rename over path(), fsync the directory (best effort).
  void commit() {
    require_open("commit");
    if (::fsync(fd_) != 0) fail("fsync", tmp_);
    const int closing = fd_;
    fd_ = -1;
    if (::close(closing) != 0) fail("close", tmp_);
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("rename", path_);
    committed_ = true;

    const std::filesystem::path parent =
        path_.parent_path().empty() ? std::filesystem::path(".") : path_.parent_path();
    const int dir = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      (void)::fsync(dir);  // best effort, see the notation block
      ::close(dir);
    }
  }

 private:
  [[noreturn]] void fail(const char* call, const std::filesystem::path& subject) const {
    const int code = errno;
    raise<Error>(where_, subject.string(), ": ", call, " failed: ", std::strerror(code));
  }

  void require_open(const char* what) const {
    if (committed_ || fd_ < 0) {
      raise<InvalidArgument>(where_, tmp_.string(), ": ", what, " after the file was ",
                             committed_ ? "committed" : "closed by a failed commit");
    }
  }

  std::filesystem::path path_;
  std::filesystem::path tmp_;
  const char* where_;
  int fd_ = -1;
  bool committed_ = false;
};

/// Writes the concatenation of `pieces` to `path` atomically (see the notation block).
inline void write_file_atomically(const std::filesystem::path& path,
                                  std::span<const std::span<const std::byte>> pieces,
                                  const char* where) {
  AtomicFile file(path, where);
  for (const std::span<const std::byte> piece : pieces) file.append(piece);
  file.commit();
}

}  // namespace latentkv::detail
