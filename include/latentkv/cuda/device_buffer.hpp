// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// DeviceBuffer<T>: an owning, move-only array of `size` T in device memory (cudaMalloc/cudaFree).
// Host-only code; no nvcc needed.
#pragma once

#include <cstddef>
#include <span>
#include <utility>

#include "latentkv/cuda/error.hpp"

namespace latentkv::cuda {

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t size) : size_(size) {
    if (size_ > 0) {
      void* p = nullptr;
      LATENTKV_CUDA_CHECK(cudaMalloc(&p, size_ * sizeof(T)));
      data_ = static_cast<T*>(p);
    }
  }
  /// Allocates host.size() elements and copies host → device.
  explicit DeviceBuffer(std::span<const T> host) : DeviceBuffer(host.size()) { copy_from(host); }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { release(); }

  [[nodiscard]] T* data() noexcept { return data_; }
  [[nodiscard]] const T* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

  /// host.size() must equal size().
  void copy_from(std::span<const T> host) {
    if (host.size() != size_) {
      latentkv::detail::raise<InvalidArgument>("latentkv::cuda::DeviceBuffer::copy_from",
                                               "host span has ", host.size(),
                                               " elements, expected ", size_);
    }
    if (size_ > 0) {
      LATENTKV_CUDA_CHECK(
          cudaMemcpy(data_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice));
    }
  }
  /// host.size() must equal size().
  void copy_to(std::span<T> host) const {
    if (host.size() != size_) {
      latentkv::detail::raise<InvalidArgument>("latentkv::cuda::DeviceBuffer::copy_to",
                                               "host span has ", host.size(),
                                               " elements, expected ", size_);
    }
    if (size_ > 0) {
      LATENTKV_CUDA_CHECK(
          cudaMemcpy(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost));
    }
  }

 private:
  void release() noexcept {
    if (data_ != nullptr) (void)cudaFree(data_);
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace latentkv::cuda
