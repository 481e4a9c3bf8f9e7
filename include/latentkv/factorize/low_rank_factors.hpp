// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// W ≈ A·B.  W: (rows, cols), in latentkv (d_model, n_kv·head_dim) for a K or V projection;
// A: (rows, r) down-projection (the cache stores the latent c = x·A, r numbers per token);
// B: (r, cols) up-projection.  With the SVD W = U·Σ·Vᵀ the factors are A = U_r·Σ_r^a, B =
// Σ_r^(1-a)·V_rᵀ, where the split a ∈ {1, 0, ½} is SigmaSplit.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>

#include "latentkv/linalg/matrix.hpp"

namespace latentkv {

/// How the singular values are divided between the two factors.
enum class SigmaSplit : std::uint8_t {
  kLeft,  ///< A = U_r·Σ_r, B = V_rᵀ (LoRC): rows of B orthonormal; latents carry the scale.
  kRight,  ///< A = U_r, B = Σ_r·V_rᵀ: columns of A orthonormal; latents are unit-scale projections.
  kSqrt,  ///< A = U_r·√Σ_r, B = √Σ_r·V_rᵀ: balanced magnitudes, best for low-precision storage.
};

[[nodiscard]] constexpr std::string_view to_string(SigmaSplit split) noexcept {
  switch (split) {
    case SigmaSplit::kLeft:
      return "left";
    case SigmaSplit::kRight:
      return "right";
    case SigmaSplit::kSqrt:
      return "sqrt";
  }
  return "?";
}

/// The result of every Factorizer: a rank-r factor pair and how good it is.
template <class T>
struct LowRankFactors {
  using Scalar = T;

  RowMatrix<T> down;          ///< A: (rows, rank)
  RowMatrix<T> up;            ///< B: (rank, cols)
  Vector<T> singular_values;  ///< (rank), descending: the leading σ of the decomposed matrix
  /// Σ_{i≤r} σ_i² / ‖M‖²_F of the decomposed matrix M (M = W for plain SVD; the whitened matrix
  /// Sᵀ·W for WhitenedFactorizer). 1 means nothing was lost.
  double retained_energy = 1.0;
  double relative_error = 0.0;  ///< ‖W − A·B‖_F / ‖W‖_F, always in the space of W itself
  double source_norm = 0.0;     ///< ‖W‖_F (lets grouped results combine errors exactly)
  SigmaSplit split = SigmaSplit::kLeft;

  [[nodiscard]] Index rank() const noexcept { return down.cols(); }
  [[nodiscard]] Index rows() const noexcept { return down.rows(); }
  [[nodiscard]] Index cols() const noexcept { return up.cols(); }
  /// A·B: (rows, cols).
  [[nodiscard]] RowMatrix<T> reconstruct() const { return down * up; }
  /// Numbers stored by the factor pair, r·(rows + cols), versus rows·cols for W.
  [[nodiscard]] Index parameter_count() const noexcept { return rank() * (rows() + cols()); }
};

namespace detail {

/// Checks the arguments every Factorizer::factorize shares: non-empty, finite, 1 <= rank <= min.
template <class T>
void check_factorize_args(const char* where, const MatrixCRef<T>& w, Index rank) {
  require_nonempty(w, where, "w");
  const Index max_rank = std::min(w.rows(), w.cols());
  if (rank < 1 || rank > max_rank) {
    raise<InvalidArgument>(where, "rank = ", rank, ", expected 1..", max_rank,
                           " (min(rows, cols) of a ", w.rows(), " x ", w.cols(), " matrix)");
  }
  require_finite(w, where, "w");
}

/// ‖m‖²_F accumulated in double.
template <class Derived>
[[nodiscard]] double squared_norm(const Eigen::MatrixBase<Derived>& m) {
  return m.template cast<double>().squaredNorm();
}

/// Builds A, B from the leading `rank` singular triplets: u (rows, ≥rank), sigma (≥rank),
/// v (cols, ≥rank), following `split`. Fills down, up, singular_values, split.
template <class T, class DU, class DS, class DV>
void assemble_factors(LowRankFactors<T>& out, const Eigen::MatrixBase<DU>& u,
                      const Eigen::MatrixBase<DS>& sigma, const Eigen::MatrixBase<DV>& v,
                      Index rank, SigmaSplit split) {
  const Vector<T> s = sigma.head(rank).template cast<T>();
  Vector<T> left, right;  // Σ^a, Σ^(1-a)
  switch (split) {
    case SigmaSplit::kLeft:
      left = s;
      right = Vector<T>::Ones(rank);
      break;
    case SigmaSplit::kRight:
      left = Vector<T>::Ones(rank);
      right = s;
      break;
    case SigmaSplit::kSqrt:
      left = s.cwiseSqrt();
      right = left;
      break;
  }
  out.down = u.leftCols(rank).template cast<T>() * left.asDiagonal();
  out.up = right.asDiagonal() * v.leftCols(rank).transpose().template cast<T>();
  out.singular_values = s;
  out.split = split;
}

/// Fills retained_energy and relative_error from ‖W‖²_F and the measured ‖W − A·B‖²_F of a
/// factorization that is an orthogonal projection of W (exact or randomized SVD). Callers measure
/// the tail directly (Σ_{i>r} σ_i², residuals) rather than as ‖W‖² − Σ_{i≤r} σ_i², which cancels.
template <class T>
void set_projection_quality(LowRankFactors<T>& out, double total_sq, double tail_sq) {
  out.source_norm = std::sqrt(total_sq);
  if (total_sq <= 0.0) {  // W = 0: the zero factorization is exact
    out.retained_energy = 1.0;
    out.relative_error = 0.0;
    return;
  }
  out.retained_energy = std::clamp(1.0 - tail_sq / total_sq, 0.0, 1.0);
  out.relative_error = std::sqrt(tail_sq / total_sq);
}

}  // namespace detail
}  // namespace latentkv
