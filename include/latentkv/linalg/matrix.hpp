// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Eigen vocabulary shared by every host-side area. Checkpoints are row-major ([out, in] on disk;
// the math orientation y = x·W is its transpose, see DESIGN §1), so the default matrix is row-major
// and non-template boundaries take MatrixCRef<T> = Eigen::Ref<const RowMatrix<T>>: any row-major
// matrix, block or Eigen::Map over mmapped data binds to it without a copy (inner stride 1, any
// outer stride).
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <string_view>

#include "latentkv/core/error.hpp"

namespace latentkv {

using Index = Eigen::Index;

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ColMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

/// Read-only view of a row-major matrix (rows, cols) with row stride >= cols.
template <class T>
using MatrixCRef = Eigen::Ref<const RowMatrix<T>>;
/// Mutable view of a row-major matrix.
template <class T>
using MatrixRef = Eigen::Ref<RowMatrix<T>>;
/// Read-only view of a contiguous vector (n).
template <class T>
using VectorCRef = Eigen::Ref<const Vector<T>>;

namespace detail {

/// Throws InvalidArgument naming `where` and `what` when `m` is empty.
template <class Derived>
void require_nonempty(const Eigen::MatrixBase<Derived>& m, const char* where,
                      std::string_view what) {
  if (m.rows() == 0 || m.cols() == 0) {
    raise<InvalidArgument>(where, what, " is empty (", m.rows(), " x ", m.cols(),
                           "), expected at least 1 x 1");
  }
}

/// Throws InvalidArgument naming the first non-finite entry (row, col, value) of `m`.
template <class Derived>
void require_finite(const Eigen::MatrixBase<Derived>& m, const char* where, std::string_view what) {
  if (m.allFinite()) return;  // vectorized fast path; locate the culprit only on failure
  for (Index i = 0; i < m.rows(); ++i) {
    for (Index j = 0; j < m.cols(); ++j) {
      const auto v = m(i, j);
      if (!std::isfinite(v)) {
        raise<InvalidArgument>(where, what, " has a non-finite entry ", v, " at (", i, ", ", j,
                               "), expected finite values");
      }
    }
  }
}

}  // namespace detail
}  // namespace latentkv
