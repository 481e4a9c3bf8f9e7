// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Read-only memory map of a whole file (POSIX mmap), owned RAII-style; move-only.
//   bytes(): (size) bytes, valid until the MappedFile is destroyed or moved from. The mapping
//   address does not change when the MappedFile is moved: views survive a move of their owner.
// An empty file maps to an empty span (mmap rejects length 0). Failures throw latentkv::Error
// naming the file and the failing call with strerror(errno). Like every mmap, a file truncated by
// another process while mapped raises SIGBUS on access to the lost pages: map files that are not
// being rewritten.
#pragma once

#if !defined(__unix__) && !defined(__APPLE__)
#error "latentkv/io/mapped_file.hpp needs POSIX mmap"
#endif

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <utility>

#include "latentkv/core/error.hpp"

namespace latentkv {

class MappedFile {
 public:
  /// Maps `path` read-only. Throws Error when the file cannot be opened, is not a regular file, or
  /// cannot be mapped.
  [[nodiscard]] static MappedFile open(const std::filesystem::path& path) {
    constexpr const char* kWhere = "latentkv::MappedFile::open";
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(kWhere, path, "open");
    struct stat info {};
    if (::fstat(fd, &info) != 0) {
      const int saved = errno;
      ::close(fd);
      errno = saved;
      fail(kWhere, path, "fstat");
    }
    if (!S_ISREG(info.st_mode)) {
      ::close(fd);
      detail::raise<Error>(kWhere, path.string(), ": not a regular file");
    }
    const auto size = static_cast<std::size_t>(info.st_size);
    void* address = nullptr;
    if (size > 0) {
      address = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (address == MAP_FAILED) {
        const int saved = errno;
        ::close(fd);
        errno = saved;
        fail(kWhere, path, "mmap");
      }
    }
    ::close(fd);  // the mapping keeps its own reference to the file
    return MappedFile(path, static_cast<const std::byte*>(address), size);
  }

  MappedFile(MappedFile&& other) noexcept
      : path_(std::move(other.path_)),
        data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)) {}

  MappedFile& operator=(MappedFile&& other) noexcept {
    if (this != &other) {
      unmap();
      path_ = std::move(other.path_);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  ~MappedFile() { unmap(); }

  /// The whole file: (size()) bytes.
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  [[nodiscard]] const std::byte* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  MappedFile(std::filesystem::path path, const std::byte* data, std::size_t size) noexcept
      : path_(std::move(path)), data_(data), size_(size) {}

  [[noreturn]] static void fail(const char* where, const std::filesystem::path& path,
                                const char* call) {
    const int code = errno;
    detail::raise<Error>(where, path.string(), ": ", call, " failed: ", std::strerror(code));
  }

  void unmap() noexcept {
    if (data_ != nullptr) {
      ::munmap(const_cast<std::byte*>(data_), size_);
      data_ = nullptr;
      size_ = 0;
    }
  }

  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace latentkv
