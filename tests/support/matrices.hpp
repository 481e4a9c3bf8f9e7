// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Seeded test matrices with a prescribed spectrum, shared by tests and benchmarks (not public API).
//   with_spectrum(m, n, σ, seed) = Q₁·diag(σ)·Q₂ᵀ, Q₁: (m, k), Q₂: (n, k) Haar-random orthonormal.
#pragma once

#include <Eigen/QR>
#include <cmath>
#include <cstdint>
#include <random>

#include "latentkv/linalg/matrix.hpp"

namespace latentkv::testing {

template <class T>
[[nodiscard]] ColMatrix<T> gaussian(Index rows, Index cols, std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  ColMatrix<T> g(rows, cols);
  for (Index j = 0; j < cols; ++j) {
    for (Index i = 0; i < rows; ++i) g(i, j) = static_cast<T>(normal(engine));
  }
  return g;
}

/// (rows, k) with orthonormal columns, Haar-distributed.
[[nodiscard]] inline ColMatrix<double> random_orthonormal(Index rows, Index k, std::uint64_t seed) {
  const Eigen::HouseholderQR<ColMatrix<double>> qr(gaussian<double>(rows, k, seed));
  return qr.householderQ() * ColMatrix<double>::Identity(rows, k);
}

/// (rows, cols) with singular values sigma (size <= min(rows, cols), the rest zero).
template <class T>
[[nodiscard]] RowMatrix<T> with_spectrum(Index rows, Index cols, const Vector<double>& sigma,
                                         std::uint64_t seed) {
  const Index k = sigma.size();
  const ColMatrix<double> u = random_orthonormal(rows, k, seed);
  const ColMatrix<double> v = random_orthonormal(cols, k, seed ^ 0x9e3779b97f4a7c15ULL);
  return (u * sigma.asDiagonal() * v.transpose()).cast<T>();
}

/// σ_i = decay^i, i = 0..k-1 (geometric).
[[nodiscard]] inline Vector<double> geometric_spectrum(Index k, double decay) {
  Vector<double> s(k);
  for (Index i = 0; i < k; ++i) s(i) = std::pow(decay, static_cast<double>(i));
  return s;
}

/// σ_i = (i + 1)^(-alpha) (power law: the slow decay seen in real K/V projections).
[[nodiscard]] inline Vector<double> power_law_spectrum(Index k, double alpha) {
  Vector<double> s(k);
  for (Index i = 0; i < k; ++i) s(i) = std::pow(static_cast<double>(i + 1), -alpha);
  return s;
}

}  // namespace latentkv::testing
