// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Exact truncated SVD through Eigen. W = U·Σ·Vᵀ (thin), keep the leading r triplets:
//   A = U_r·Σ_r^a: (rows, r),  B = Σ_r^(1-a)·V_rᵀ: (r, cols)  (a from SigmaSplit).
// Eckart–Young: ‖W − A·B‖²_F = Σ_{i>r} σ_i², the smallest error of any rank-r pair.
//
// JacobiSvdFactorizer: one-sided Jacobi (QR-preconditioned); most accurate, O(n³) with a large
//   constant: for small matrices.
// BdcsvdFactorizer: bidiagonal divide and conquer; the default for real weight shapes. Below
//   `jacobi_below` (min(rows, cols)) it uses Jacobi, as Eigen's own BDCSVD does for its leaves.
#pragma once

#include <algorithm>

#include "latentkv/factorize/factorizer.hpp"
#include "latentkv/linalg/decompositions.hpp"

namespace latentkv {

namespace detail {

/// Turns a thin SVD of W into LowRankFactors with exact quality figures.
template <class T, class Svd>
[[nodiscard]] LowRankFactors<T> factors_from_svd(const Svd& svd, const MatrixCRef<T>& w, Index rank,
                                                 SigmaSplit split, const char* where) {
  if (svd.info() != Eigen::Success) {
    raise<NumericalError>(where, "the SVD of a ", w.rows(), " x ", w.cols(),
                          " matrix did not converge");
  }
  LowRankFactors<T> out;
  assemble_factors(out, svd.matrixU(), svd.singularValues(), svd.matrixV(), rank, split);
  const auto& sigma = svd.singularValues();
  const double kept = detail::squared_norm(sigma.head(rank));
  const double tail = detail::squared_norm(sigma.tail(sigma.size() - rank));
  detail::set_projection_quality(out, kept + tail, tail);
  return out;
}

}  // namespace detail

/// Exact truncated SVD by one-sided Jacobi (Eigen::JacobiSVD). Scalar: float or double.
template <class T>
class JacobiSvdFactorizer {
 public:
  using Scalar = T;
  struct Options {
    SigmaSplit split = SigmaSplit::kLeft;
  };

  JacobiSvdFactorizer() = default;
  explicit JacobiSvdFactorizer(Options options) : options_(options) {}

  /// w: (rows, cols), 1 <= rank <= min(rows, cols). Returns A: (rows, rank), B: (rank, cols).
  [[nodiscard]] LowRankFactors<T> factorize(const MatrixCRef<T>& w, Index rank) const {
    constexpr const char* kWhere = "latentkv::JacobiSvdFactorizer::factorize";
    detail::check_factorize_args(kWhere, w, rank);
    const Eigen::JacobiSVD<ColMatrix<T>, Eigen::ColPivHouseholderQRPreconditioner> svd(
        w, Eigen::ComputeThinU | Eigen::ComputeThinV);
    return detail::factors_from_svd(svd, w, rank, options_.split, kWhere);
  }

  [[nodiscard]] const Options& options() const noexcept { return options_; }

 private:
  Options options_{};
};

/// Exact truncated SVD by bidiagonal divide and conquer (Eigen::BDCSVD). Scalar: float or double.
template <class T>
class BdcsvdFactorizer {
 public:
  using Scalar = T;
  struct Options {
    SigmaSplit split = SigmaSplit::kLeft;
    Index jacobi_below = 16;  ///< min(rows, cols) at or below which one-sided Jacobi is used
  };

  BdcsvdFactorizer() = default;
  explicit BdcsvdFactorizer(Options options) : options_(options) {}

  /// w: (rows, cols), 1 <= rank <= min(rows, cols). Returns A: (rows, rank), B: (rank, cols).
  [[nodiscard]] LowRankFactors<T> factorize(const MatrixCRef<T>& w, Index rank) const {
    constexpr const char* kWhere = "latentkv::BdcsvdFactorizer::factorize";
    detail::check_factorize_args(kWhere, w, rank);
    if (std::min(w.rows(), w.cols()) <= options_.jacobi_below) {
      return JacobiSvdFactorizer<T>({options_.split}).factorize(w, rank);
    }
    const Eigen::BDCSVD<ColMatrix<T>> svd(w, Eigen::ComputeThinU | Eigen::ComputeThinV);
    return detail::factors_from_svd(svd, w, rank, options_.split, kWhere);
  }

  [[nodiscard]] const Options& options() const noexcept { return options_; }

 private:
  Options options_{};
};

}  // namespace latentkv
