// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Exact truncated SVD on the GPU through cuSOLVER's Jacobi SVD (gesvdj, economy mode).
//   W: (rows, cols) row-major on the host is, byte for byte, the column-major Wᵀ: (cols, rows);
//   gesvdj factors Wᵀ = U'·Σ·V'ᵀ, so W = V'·Σ·U'ᵀ: U_W = V', V_W = U' (no transpose copy).
//   A = U_r·Σ_r^a: (rows, r),  B = Σ_r^(1-a)·V_rᵀ: (r, cols)  (a from SigmaSplit), as the CPU
//   exact policies; a model of latentkv::Factorizer.
// gesvdj (not gesvd) because it accepts any m, n (gesvd needs m >= n) and is accurate to the
// requested tolerance (default: machine precision). Host code only: needs the CUDA Toolkit and
// latentkv::cuda, not nvcc. Throws CudaError on CUDA failures, NumericalError if Jacobi sweeps do
// not converge.
#pragma once

#include <climits>
#include <vector>

#include "latentkv/cuda/device_buffer.hpp"
#include "latentkv/cuda/error.hpp"
#include "latentkv/factorize/factorizer.hpp"

namespace latentkv::cuda {

namespace detail {

inline cusolverStatus_t gesvdj_buffer_size(cusolverDnHandle_t h, int m, int n, const float* a,
                                           int lda, const float* s, const float* u, int ldu,
                                           const float* v, int ldv, int* lwork,
                                           gesvdjInfo_t params) {
  return cusolverDnSgesvdj_bufferSize(h, CUSOLVER_EIG_MODE_VECTOR, 1, m, n, a, lda, s, u, ldu, v,
                                      ldv, lwork, params);
}
inline cusolverStatus_t gesvdj_buffer_size(cusolverDnHandle_t h, int m, int n, const double* a,
                                           int lda, const double* s, const double* u, int ldu,
                                           const double* v, int ldv, int* lwork,
                                           gesvdjInfo_t params) {
  return cusolverDnDgesvdj_bufferSize(h, CUSOLVER_EIG_MODE_VECTOR, 1, m, n, a, lda, s, u, ldu, v,
                                      ldv, lwork, params);
}
inline cusolverStatus_t gesvdj(cusolverDnHandle_t h, int m, int n, float* a, int lda, float* s,
                               float* u, int ldu, float* v, int ldv, float* work, int lwork,
                               int* info, gesvdjInfo_t params) {
  return cusolverDnSgesvdj(h, CUSOLVER_EIG_MODE_VECTOR, 1, m, n, a, lda, s, u, ldu, v, ldv, work,
                           lwork, info, params);
}
inline cusolverStatus_t gesvdj(cusolverDnHandle_t h, int m, int n, double* a, int lda, double* s,
                               double* u, int ldu, double* v, int ldv, double* work, int lwork,
                               int* info, gesvdjInfo_t params) {
  return cusolverDnDgesvdj(h, CUSOLVER_EIG_MODE_VECTOR, 1, m, n, a, lda, s, u, ldu, v, ldv, work,
                           lwork, info, params);
}

/// RAII cuSOLVER handle + gesvdj parameters.
class GesvdjSession {
 public:
  GesvdjSession(double tolerance, int max_sweeps) {
    LATENTKV_CUDA_CHECK(cusolverDnCreate(&handle_));
    try {
      LATENTKV_CUDA_CHECK(cusolverDnCreateGesvdjInfo(&params_));
      LATENTKV_CUDA_CHECK(cusolverDnXgesvdjSetTolerance(params_, tolerance));
      LATENTKV_CUDA_CHECK(cusolverDnXgesvdjSetMaxSweeps(params_, max_sweeps));
      LATENTKV_CUDA_CHECK(cusolverDnXgesvdjSetSortEig(params_, 1));
    } catch (...) {
      release();
      throw;
    }
  }
  GesvdjSession(const GesvdjSession&) = delete;
  GesvdjSession& operator=(const GesvdjSession&) = delete;
  ~GesvdjSession() { release(); }

  [[nodiscard]] cusolverDnHandle_t handle() const noexcept { return handle_; }
  [[nodiscard]] gesvdjInfo_t params() const noexcept { return params_; }

 private:
  void release() noexcept {
    if (params_ != nullptr) (void)cusolverDnDestroyGesvdjInfo(params_);
    if (handle_ != nullptr) (void)cusolverDnDestroy(handle_);
    params_ = nullptr;
    handle_ = nullptr;
  }
  cusolverDnHandle_t handle_ = nullptr;
  gesvdjInfo_t params_ = nullptr;
};

}  // namespace detail

/// Scalar: float or double.
template <class T>
class CusolverFactorizer {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "latentkv::cuda::CusolverFactorizer: Scalar must be float or double");

 public:
  using Scalar = T;
  struct Options {
    SigmaSplit split = SigmaSplit::kLeft;
    double tolerance = 0.0;  ///< gesvdj convergence tolerance; 0 = machine precision
    int max_sweeps = 100;    ///< Jacobi sweeps before giving up (NumericalError)
  };

  CusolverFactorizer() = default;
  explicit CusolverFactorizer(Options options) : options_(options) {}

  /// w: (rows, cols) on the host, 1 <= rank <= min(rows, cols). Runs on the current device.
  /// Returns A: (rows, rank), B: (rank, cols) on the host.
  [[nodiscard]] LowRankFactors<T> factorize(const MatrixCRef<T>& w, Index rank) const {
    constexpr const char* kWhere = "latentkv::cuda::CusolverFactorizer::factorize";
    latentkv::detail::check_factorize_args(kWhere, w, rank);
    if (w.rows() > INT_MAX / 2 || w.cols() > INT_MAX / 2 || w.size() > INT_MAX) {
      latentkv::detail::raise<InvalidArgument>(
          kWhere, "w is ", w.rows(), " x ", w.cols(),
          ", expected at most INT_MAX elements (cuSOLVER's 32-bit API)");
    }
    const RowMatrix<T> host = w;               // contiguous: row stride = cols
    const int m = static_cast<int>(w.cols());  // column-major Wᵀ: (cols, rows)
    const int n = static_cast<int>(w.rows());
    const int k = std::min(m, n);

    const detail::GesvdjSession session(options_.tolerance, options_.max_sweeps);
    DeviceBuffer<T> a(std::span<const T>(host.data(), static_cast<std::size_t>(host.size())));
    DeviceBuffer<T> s(static_cast<std::size_t>(k));
    DeviceBuffer<T> u(static_cast<std::size_t>(m) * static_cast<std::size_t>(k));
    DeviceBuffer<T> v(static_cast<std::size_t>(n) * static_cast<std::size_t>(k));
    DeviceBuffer<int> info(1);
    int lwork = 0;
    LATENTKV_CUDA_CHECK(detail::gesvdj_buffer_size(session.handle(), m, n, a.data(), m, s.data(),
                                                   u.data(), m, v.data(), n, &lwork,
                                                   session.params()));
    DeviceBuffer<T> work(static_cast<std::size_t>(lwork));
    LATENTKV_CUDA_CHECK(detail::gesvdj(session.handle(), m, n, a.data(), m, s.data(), u.data(), m,
                                       v.data(), n, work.data(), lwork, info.data(),
                                       session.params()));
    int status = 0;
    info.copy_to(std::span<int>(&status, 1));
    if (status < 0) {
      latentkv::detail::raise<NumericalError>(kWhere, "gesvdj rejected parameter ", -status);
    }
    if (status > 0) {
      latentkv::detail::raise<NumericalError>(kWhere, "gesvdj did not converge in ",
                                              options_.max_sweeps, " sweeps on a ", w.rows(), " x ",
                                              w.cols(), " matrix");
    }
    Vector<T> sigma(k);
    ColMatrix<T> u_w(n, k);  // V' of Wᵀ: (rows, k)
    ColMatrix<T> v_w(m, k);  // U' of Wᵀ: (cols, k)
    s.copy_to(std::span<T>(sigma.data(), static_cast<std::size_t>(k)));
    v.copy_to(std::span<T>(u_w.data(), static_cast<std::size_t>(u_w.size())));
    u.copy_to(std::span<T>(v_w.data(), static_cast<std::size_t>(v_w.size())));

    LowRankFactors<T> out;
    latentkv::detail::assemble_factors(out, u_w, sigma, v_w, rank, options_.split);
    const double kept = latentkv::detail::squared_norm(sigma.head(rank));
    const double tail = latentkv::detail::squared_norm(sigma.tail(k - rank));
    latentkv::detail::set_projection_quality(out, kept + tail, tail);
    return out;
  }

  [[nodiscard]] const Options& options() const noexcept { return options_; }

 private:
  Options options_{};
};

static_assert(Factorizer<CusolverFactorizer<float>>);

}  // namespace latentkv::cuda
