// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// CUDA / cuBLAS / cuSOLVER status → latentkv::CudaError{code, call, file:line}.
// Host-only (CUDA Toolkit headers, no nvcc needed). Device code never throws: kernels' launchers
// return cudaError_t and the public host call wraps them in LATENTKV_CUDA_CHECK.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <string>

#include "latentkv/core/error.hpp"

namespace latentkv::cuda {
namespace detail {

[[nodiscard]] inline bool succeeded(cudaError_t status) noexcept { return status == cudaSuccess; }
[[nodiscard]] inline bool succeeded(cublasStatus_t status) noexcept {
  return status == CUBLAS_STATUS_SUCCESS;
}
[[nodiscard]] inline bool succeeded(cusolverStatus_t status) noexcept {
  return status == CUSOLVER_STATUS_SUCCESS;
}

[[nodiscard]] inline std::string describe(cudaError_t status) {
  return std::string(cudaGetErrorName(status)) + " (" + cudaGetErrorString(status) + ")";
}
[[nodiscard]] inline std::string describe(cublasStatus_t status) {
  return cublasGetStatusName(status);
}
[[nodiscard]] inline std::string describe(cusolverStatus_t status) {
  switch (status) {
    case CUSOLVER_STATUS_NOT_INITIALIZED:
      return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED:
      return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE:
      return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH:
      return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_EXECUTION_FAILED:
      return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR:
      return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_NOT_SUPPORTED:
      return "CUSOLVER_STATUS_NOT_SUPPORTED";
    default:
      return "cusolverStatus_t " + std::to_string(static_cast<int>(status));
  }
}

template <class Status>
void check(Status status, const char* call, const char* file, int line) {
  if (succeeded(status)) return;
  const std::string where = std::string(file) + ":" + std::to_string(line);
  throw CudaError(
      static_cast<int>(status), call, where,
      "latentkv: " + std::string(call) + " failed with " + describe(status) + " at " + where);
}

}  // namespace detail

/// True when the CUDA runtime finds at least one usable device (false without a driver).
[[nodiscard]] inline bool device_available() noexcept {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver/device" error
    return false;
  }
  return count > 0;
}

}  // namespace latentkv::cuda

/// Evaluates a cudaError_t / cublasStatus_t / cusolverStatus_t expression; throws CudaError on
/// failure with the expression text and file:line.
#define LATENTKV_CUDA_CHECK(expr) ::latentkv::cuda::detail::check((expr), #expr, __FILE__, __LINE__)
