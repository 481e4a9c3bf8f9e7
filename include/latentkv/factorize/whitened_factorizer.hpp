// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Activation-aware ("whitened") factorization (SVD-LLM, Palu's default; DESIGN §4).
// Minimizes ‖X·W − X·A·B‖_F over calibration inputs X: (tokens, d) instead of ‖W − A·B‖_F.
//   G = XᵀX: (d, d) = L·Lᵀ (Cholesky, L lower)     ‖X·M‖²_F = tr(Mᵀ·G·M) = ‖Lᵀ·M‖²_F
//   Lᵀ·W = U·Σ·Vᵀ (any Factorizer F, rank r)  →  A = L⁻ᵀ·(U_r·Σ_r^a): (d, r),  B = Σ_r^(1-a)·V_rᵀ
// so the whitened problem is exactly the plain rank-r problem on Lᵀ·W, and F's optimality carries
// over to the activation-weighted error.
//
// Regularization (when XᵀX is not positive definite, e.g. fewer calibration tokens than d or
// dead input channels): with s = shift_ratio · trace(G)/d, the factorizer uses G + δ·I with δ the
// first of 0, s, 10·s, …, 10⁵·s (max_shift_steps = 6 tries) for which the Cholesky succeeds
// and every pivot L_ii² >= s. applied_shift() reports δ. A zero Gram matrix is rejected.
#pragma once

#include <cmath>
#include <utility>

#include "latentkv/factorize/exact_svd_factorizer.hpp"
#include "latentkv/factorize/factorizer.hpp"
#include "latentkv/linalg/decompositions.hpp"

namespace latentkv {

/// Accumulates G = XᵀX: (d, d) in double over batches of calibration rows X: (tokens, d).
class GramAccumulator {
 public:
  explicit GramAccumulator(Index dim) : gram_(ColMatrix<double>::Zero(dim, dim)) {
    if (dim < 1)
      detail::raise<InvalidArgument>("latentkv::GramAccumulator", "dim = ", dim, ", expected >= 1");
  }

  /// x: (tokens, d). Adds xᵀx.
  template <class Derived>
  void add(const Eigen::MatrixBase<Derived>& x) {
    constexpr const char* kWhere = "latentkv::GramAccumulator::add";
    if (x.cols() != gram_.rows()) {
      detail::raise<InvalidArgument>(kWhere, "x has ", x.cols(), " columns, expected ",
                                     gram_.rows(), " (d)");
    }
    detail::require_finite(x, kWhere, "x");
    gram_.selfadjointView<Eigen::Lower>().rankUpdate(x.transpose().template cast<double>());
    tokens_ += x.rows();
  }

  /// XᵀX: (d, d), symmetric.
  [[nodiscard]] RowMatrix<double> gram() const { return gram_.selfadjointView<Eigen::Lower>(); }
  [[nodiscard]] Index tokens() const noexcept { return tokens_; }
  [[nodiscard]] Index dim() const noexcept { return gram_.rows(); }

 private:
  ColMatrix<double> gram_;  // lower triangle valid
  Index tokens_ = 0;
};

template <Factorizer F = BdcsvdFactorizer<float>>
class WhitenedFactorizer {
 public:
  using Scalar = typename F::Scalar;
  using Inner = F;
  struct Options {
    double shift_ratio = 1e-6;  ///< s = shift_ratio · trace(G)/d: first shift and pivot floor
    int max_shift_steps = 6;    ///< shifts tried: s, 10s, …, 10⁵·s (= 0.1·mean diagonal by
                                ///< default) before giving up (NumericalError)
  };

  /// gram: (d, d) symmetric positive semi-definite XᵀX of the inputs that W multiplies.
  explicit WhitenedFactorizer(const Eigen::Ref<const RowMatrix<double>>& gram, F inner = F{},
                              Options options = {})
      : inner_(std::move(inner)), options_(options) {
    constexpr const char* kWhere = "latentkv::WhitenedFactorizer";
    if (gram.rows() != gram.cols() || gram.rows() == 0) {
      detail::raise<InvalidArgument>(kWhere, "gram is ", gram.rows(), " x ", gram.cols(),
                                     ", expected a non-empty square (d, d) matrix");
    }
    detail::require_finite(gram, kWhere, "gram");
    const double scale = gram.cwiseAbs().maxCoeff();
    if (scale == 0.0) detail::raise<InvalidArgument>(kWhere, "gram is all zeros");
    const double asymmetry = (gram - gram.transpose()).cwiseAbs().maxCoeff();
    if (asymmetry > 1e-6 * scale) {
      detail::raise<InvalidArgument>(kWhere, "gram is not symmetric (max |G - Gᵀ| = ", asymmetry,
                                     ", max |G| = ", scale, ")");
    }
    if (!(options_.shift_ratio > 0.0) || options_.max_shift_steps < 1) {
      detail::raise<InvalidArgument>(kWhere, "shift_ratio = ", options_.shift_ratio,
                                     " and max_shift_steps = ", options_.max_shift_steps,
                                     ", expected > 0 and >= 1");
    }
    const Index d = gram.rows();
    for (Index i = 0; i < d; ++i) {
      if (gram(i, i) < 0.0) {
        detail::raise<InvalidArgument>(kWhere, "gram has a negative diagonal entry ", gram(i, i),
                                       " at (", i, ", ", i, "), expected XᵀX (diagonal >= 0)");
      }
    }
    const double s = options_.shift_ratio * gram.trace() / static_cast<double>(d);
    if (!(s > 0.0)) {
      detail::raise<InvalidArgument>(kWhere, "gram has a non-positive trace (", gram.trace(),
                                     "), expected XᵀX");
    }
    ColMatrix<double> g = gram;
    double shift = 0.0;
    for (int step = 0; step <= options_.max_shift_steps; ++step) {
      if (step > 0) {
        const double next = s * std::pow(10.0, step - 1);
        g.diagonal().array() += next - shift;
        shift = next;
      }
      Eigen::LLT<ColMatrix<double>> llt(g);
      if (llt.info() == Eigen::Success &&
          llt.matrixLLT().diagonal().array().square().minCoeff() >= s) {
        lower_ = llt.matrixL();
        shift_ = shift;
        return;
      }
    }
    detail::raise<NumericalError>(kWhere, "gram + δ·I is not positive definite up to δ = ", shift,
                                  " (d = ", d, ")");
  }

  /// w: (d, cols) with d = gram.rows(), 1 <= rank <= min(d, cols).
  /// Returns A: (d, rank), B: (rank, cols); retained_energy is measured in the whitened space.
  [[nodiscard]] LowRankFactors<Scalar> factorize(const MatrixCRef<Scalar>& w, Index rank) const {
    constexpr const char* kWhere = "latentkv::WhitenedFactorizer::factorize";
    detail::check_factorize_args(kWhere, w, rank);
    if (w.rows() != lower_.rows()) {
      detail::raise<InvalidArgument>(kWhere, "w has ", w.rows(), " rows, expected ", lower_.rows(),
                                     " (the size of the Gram matrix)");
    }
    const ColMatrix<double> wd = w.template cast<double>();
    const RowMatrix<Scalar> whitened = (lower_.transpose() * wd).template cast<Scalar>();
    LowRankFactors<Scalar> out = inner_.factorize(whitened, rank);
    // A = L⁻ᵀ·A': solve Lᵀ·A = A' (upper triangular).
    const ColMatrix<double> down = lower_.transpose().template triangularView<Eigen::Upper>().solve(
        out.down.template cast<double>());
    out.down = down.template cast<Scalar>();
    // The error in W's own space is not the whitened one: measure it.
    const double total = wd.squaredNorm();
    const double err = (wd - down * out.up.template cast<double>()).squaredNorm();
    out.source_norm = std::sqrt(total);
    out.relative_error = total > 0.0 ? std::sqrt(err / total) : 0.0;
    return out;
  }

  /// σ of the whitened matrix Lᵀ·W: (min(d, cols)), descending — the spectrum factorize()
  /// truncates, so a rank schedule planning on it trades the activation-weighted error.
  [[nodiscard]] Vector<double> singular_values(const MatrixCRef<Scalar>& w) const {
    constexpr const char* kWhere = "latentkv::WhitenedFactorizer::singular_values";
    detail::require_nonempty(w, kWhere, "w");
    detail::require_finite(w, kWhere, "w");
    if (w.rows() != lower_.rows()) {
      detail::raise<InvalidArgument>(kWhere, "w has ", w.rows(), " rows, expected ", lower_.rows(),
                                     " (the size of the Gram matrix)");
    }
    const ColMatrix<double> whitened = lower_.transpose() * w.template cast<double>();
    const Eigen::BDCSVD<ColMatrix<double>> svd(whitened);
    return svd.singularValues();
  }

  /// δ added to the Gram diagonal (0 when XᵀX was positive definite enough).
  [[nodiscard]] double applied_shift() const noexcept { return shift_; }
  /// L: (d, d) lower-triangular Cholesky factor of G + δ·I.
  [[nodiscard]] const ColMatrix<double>& cholesky_factor() const noexcept { return lower_; }
  [[nodiscard]] const F& inner() const noexcept { return inner_; }

 private:
  F inner_;
  Options options_;
  ColMatrix<double> lower_;
  double shift_ = 0.0;
};

}  // namespace latentkv
