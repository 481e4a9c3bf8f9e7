// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The Factorizer concept: a policy that turns W: (rows, cols) and a rank r into LowRankFactors
// {A: (rows, r), B: (r, cols)} with W ≈ A·B.
//
// Models: JacobiSvdFactorizer, BdcsvdFactorizer (exact, Eigen), RandomizedSvdFactorizer
// (Halko–Martinsson–Tropp), WhitenedFactorizer<F> (activation-aware, wraps any of them),
// cuda::CusolverFactorizer (GPU). Policies are regular, cheap-to-copy value types.
#pragma once

#include <concepts>

#include "latentkv/factorize/low_rank_factors.hpp"

namespace latentkv {

/// F::factorize(W, r) returns the rank-r factors of W and throws InvalidArgument on bad input
/// (empty W, non-finite entries, r outside 1..min(rows, cols)).
template <class F>
concept Factorizer = requires(const F& f, const MatrixCRef<typename F::Scalar>& w, Index rank) {
  typename F::Scalar;
  { f.factorize(w, rank) } -> std::same_as<LowRankFactors<typename F::Scalar>>;
};

}  // namespace latentkv
