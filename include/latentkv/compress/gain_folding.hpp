// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Data-free factorization with the attention RMSNorm gain folded in (issue 9, "better factors").
// The cache sees x_t = u_t ⊙ g (model/llama_model.hpp): u_t = h_t / rms(h_t) the normalized
// residual, g: (d) the layer's attention_norm gain. So x·W = u·(diag(g)·W), and plain SVD of W
// weighs every input channel alike although x's channels are scaled by g. The exact
// reparametrization factorizes M = diag(g)·W instead:
//   M = diag(g)·W ≈ A'·B (rank r, Eckart–Young on M)   →   A = diag(g)⁻¹·A': (d, r),  B: (r, n)
//   so the cached latent is c = x·A = u·A' and x·A·B = u·A'·B ≈ u·M = x·W
// At full rank A·B = W exactly (up to rounding); at rank r the error ‖diag(g)·(W − A·B)‖_F² equals
// the tail Σ_{i>r} σ_i(diag(g)·W)². This is whitening (whitened_factorizer.hpp) with the data-free
// Gram matrix G = diag(g²) = L·Lᵀ, L = diag(|g|) (a sign flip of rows is orthogonal, so |g| and g
// give the same spectrum): gain_folded_whitening() builds exactly that, so the Compressor, the
// schedules and the checkpoint format need nothing new. Channels with g_i = 0 never reach the
// cache; WhitenedFactorizer's diagonal shift (applied_shift) keeps them finite.
#pragma once

#include <utility>
#include <vector>

#include "latentkv/compress/compressor.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/model/llama_weights.hpp"

namespace latentkv {

/// diag(g_l²) for every layer: (L) matrices (d, d), g_l = weights.layers[l].attention_norm.
/// Throws InvalidArgument for a gain of the wrong size or with non-finite entries.
[[nodiscard]] inline std::vector<RowMatrix<double>> rmsnorm_gain_grams(
    const LlamaWeights& weights) {
  constexpr const char* kWhere = "latentkv::rmsnorm_gain_grams";
  const Index d = weights.config.d_model;
  std::vector<RowMatrix<double>> grams;
  for (std::size_t l = 0; l < weights.layers.size(); ++l) {
    const Vector<float>& g = weights.layers[l].attention_norm;
    if (g.size() != d) {
      detail::raise<InvalidArgument>(kWhere, "layer ", l, ": attention_norm has ", g.size(),
                                     " entries, expected d_model = ", d);
    }
    detail::require_finite(g, kWhere, "attention_norm of layer " + std::to_string(l));
    RowMatrix<double> gram = RowMatrix<double>::Zero(d, d);
    gram.diagonal() = g.cast<double>().array().square().matrix();
    grams.push_back(std::move(gram));
  }
  return grams;
}

/// The per-layer factorizer of the notation block: plain SVD (Inner) of diag(g_l)·W, mapped back by
/// diag(g_l)⁻¹. A LayerFactorizerPolicy for Compressor (and one of AnyFactorizer's alternatives).
template <Factorizer Inner = GramEigenFactorizer<float>>
[[nodiscard]] CalibratedWhitening<Inner> gain_folded_whitening(const LlamaWeights& weights,
                                                               Inner inner = Inner{}) {
  return CalibratedWhitening<Inner>(rmsnorm_gain_grams(weights), std::move(inner));
}

}  // namespace latentkv
