// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Refinement of the route-2 bases (MatryoshkaKV's orthogonal projections, DESIGN §3 route 2):
// starting from PCA (pca_calibration.hpp), every layer's truncated bases P_k,j, P_v,j (s·h, r)
// are moved on the Stiefel manifold (PᵀP = I stays exact) to lower a layer-local objective, the
// relative error of the layer's attention output on calibration activations:
//   per chunk c (n_c tokens at positions 0..n_c−1, X_c the layer's RMS-normed input, (n_c, d)):
//     Q = RoPE(X·W_q), K = RoPE(X·W_k), V = X·W_v;  K̃_j, Ṽ_j: group j's columns minus μ_k,j, μ_v,j
//     query head i of group j, KV head e of the group (rows e·h.. of a basis: P_e):
//       q̃_i = Q_i·P_k,e (n_c, r_k)    C_k = K̃_j·P_k (n_c, r_k)     C_v = Ṽ_j·P_v (n_c, r_v)
//       A_i = causal softmax(scale · q̃_i·C_kᵀ)                        (n_c, n_c)
//       o_i = A_i·C_v·P_v,eᵀ + μ_v,e                                  (n_c, h)
//     Y_c = Σ_i o_i·W_o[rows of head i]                                (n_c, d)
//   L(P) = Σ_c ‖Y_c − Y*_c‖² / Σ_c ‖Y*_c‖², Y* the same with P = I (the dense attention output:
//   the key mean drops out of the softmax, the value mean is added back)
// This is exactly what ProjectedKvCache computes (cache/projected_kv_cache.hpp), in Scalar.
// The gradient ∂L/∂P is written out by hand (backpropagation through the softmax) and checked
// against finite differences (tests/project/cayley_refinement_test.cpp). The step is Wen & Yin's
// Cayley transform (Math. Program. 142, 2013): with G = ∂L/∂P and the skew W = G·Pᵀ − P·Gᵀ,
//   P(τ) = (I + τ/2·W)⁻¹·(I − τ/2·W)·P = P − τ·U·(I + τ/2·VᵀU)⁻¹·VᵀP,  U = [G, P], V = [P, −G]
// (the (2r, 2r) form: no (s·h)² solve), dL/dτ(0) = −½‖W‖², with a backtracking (Armijo) line
// search over all bases of the layer at once. L depends on each basis only through its span, so
// after refining, each basis is rotated within its span to order its columns by the variance they
// carry on the calibration activations (the rank-r' prefix, r' < r, is again the best r'-subspace
// of that span), and the first r variances are replaced by those (descending); the later ones stay
// PCA's, capped at the r-th so the spectrum stays descending.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <exception>
#include <span>
#include <utility>
#include <vector>

#include "latentkv/compress/value_recalibration.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/core/rope.hpp"
#include "latentkv/linalg/decompositions.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/linalg/parallel.hpp"
#include "latentkv/model/llama_weights.hpp"
#include "latentkv/model/model_config.hpp"
#include "latentkv/project/projected_model.hpp"

namespace latentkv {

/// The layer-local objective L(P) of the notation block for one layer, in Scalar (float for the
/// optimizer, double for checking gradients).
template <std::floating_point Scalar>
class ProjectionObjective {
 public:
  using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  /// config: the model's; w: the layer's attention weights; chunks: the layer's inputs X_c
  /// (n_c, d_model), each at positions 0..n_c−1; layer: the layer's PCA bases (their means are
  /// used; heads_per_group from `heads_per_group`). Throws InvalidArgument on shapes that do not
  /// fit or no chunk.
  ProjectionObjective(const ModelConfig& config, const AttentionWeights& w,
                      std::span<const RowMatrix<float>> chunks, const ProjectedLayer& layer,
                      Index heads_per_group)
      : heads_(config.num_heads),
        kv_heads_(config.num_kv_heads),
        h_(config.head_dim),
        s_(heads_per_group),
        g_(config.group_size()),
        scale_(static_cast<Scalar>(1.0 / std::sqrt(static_cast<double>(config.head_dim)))) {
    constexpr const char* kWhere = "latentkv::ProjectionObjective";
    if (s_ < 1 || kv_heads_ % s_ != 0 || static_cast<Index>(layer.k.size()) != kv_heads_ / s_ ||
        layer.v.size() != layer.k.size()) {
      detail::raise<InvalidArgument>(kWhere, "heads_per_group = ", s_, " with ", layer.k.size(),
                                     " key groups, expected a divisor of n_kv = ", kv_heads_,
                                     " and n_kv / s groups");
    }
    if (chunks.empty()) detail::raise<InvalidArgument>(kWhere, "no calibration chunk");
    const Index width = s_ * h_;
    wo_ = w.wo.cast<Scalar>();
    bias_ = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>::Zero(config.d_model);
    for (Index i = 0; i < heads_; ++i) {
      const auto& vb = layer.v[static_cast<std::size_t>(i / (s_ * g_))];
      if (vb.mean.size() != width ||
          layer.k[static_cast<std::size_t>(i / (s_ * g_))].mean.size() != width) {
        detail::raise<InvalidArgument>(kWhere, "a mean of ", vb.mean.size(),
                                       " entries, expected s·h = ", width);
      }
      const Index e = (i % (s_ * g_)) / g_;
      bias_.noalias() +=
          vb.mean.segment(e * h_, h_).transpose().cast<Scalar>() * wo_.middleRows(i * h_, h_);
    }
    for (const RowMatrix<float>& x : chunks) {
      if (x.cols() != config.d_model || x.rows() < 1) {
        detail::raise<InvalidArgument>(kWhere, "a chunk (", x.rows(), ", ", x.cols(),
                                       "), expected (>= 1, d_model = ", config.d_model, ")");
      }
      const Index n = x.rows();
      RowMatrix<float> q = x * w.wq;
      RowMatrix<float> k = x * w.wk;
      const RowMatrix<float> v = x * w.wv;
      rope_rotate_rows(q.data(), n, q.cols(), static_cast<int>(heads_), static_cast<int>(h_),
                       static_cast<int>(config.rope_dim), config.rope_base, 0);
      rope_rotate_rows(k.data(), n, k.cols(), static_cast<int>(kv_heads_), static_cast<int>(h_),
                       static_cast<int>(config.rope_dim), config.rope_base, 0);
      Chunk c;
      c.q = q.cast<Scalar>();
      c.k = k.cast<Scalar>();
      c.v = v.cast<Scalar>();
      for (std::size_t j = 0; j < layer.k.size(); ++j) {
        const auto cols = static_cast<Index>(j) * width;
        c.k.middleCols(cols, width).rowwise() -= layer.k[j].mean.transpose().cast<Scalar>();
        c.v.middleCols(cols, width).rowwise() -= layer.v[j].mean.transpose().cast<Scalar>();
      }
      chunks_.push_back(std::move(c));
    }
    // The target: P = I (full rank) reproduces the dense attention output.
    std::vector<Mat> eye(layer.k.size(), Mat::Identity(width, width));
    denominator_ = 0;
    for (Chunk& c : chunks_) {
      c.target = forward(c, eye, eye, nullptr);
      denominator_ += c.target.squaredNorm();
    }
  }

  [[nodiscard]] Index num_groups() const noexcept { return kv_heads_ / s_; }
  [[nodiscard]] Index width() const noexcept { return s_ * h_; }

  /// L(P): pk[j] (s·h, r_k,j), pv[j] (s·h, r_v,j); any matrices (orthonormality not needed).
  [[nodiscard]] Scalar value(std::span<const Mat> pk, std::span<const Mat> pv) const {
    check(pk, pv);
    Scalar loss = 0;
    for (const Chunk& c : chunks_) loss += (forward(c, pk, pv, nullptr) - c.target).squaredNorm();
    return loss / denominator_;
  }

  /// L(P) and its gradient: gk[j] = ∂L/∂pk[j], gv[j] = ∂L/∂pv[j] (resized).
  Scalar value_and_gradient(std::span<const Mat> pk, std::span<const Mat> pv, std::vector<Mat>& gk,
                            std::vector<Mat>& gv) const {
    check(pk, pv);
    const auto groups = static_cast<std::size_t>(num_groups());
    gk.resize(groups);
    gv.resize(groups);
    for (std::size_t j = 0; j < groups; ++j) {
      gk[j].setZero(pk[j].rows(), pk[j].cols());
      gv[j].setZero(pv[j].rows(), pv[j].cols());
    }
    const Index width = s_ * h_;
    Scalar loss = 0;
    Saved saved;
    for (const Chunk& c : chunks_) {
      const Mat residual = forward(c, pk, pv, &saved) - c.target;
      loss += residual.squaredNorm();
      const Mat dy = (Scalar(2) / denominator_) * residual;  // (n, d)
      const Index n = residual.rows();
      std::vector<Mat> dck(groups);
      std::vector<Mat> dcv(groups);
      for (std::size_t j = 0; j < groups; ++j) {
        dck[j].setZero(n, pk[j].cols());
        dcv[j].setZero(n, pv[j].cols());
      }
      Mat dscores;
      for (Index i = 0; i < heads_; ++i) {
        const auto j = static_cast<std::size_t>(i / (s_ * g_));
        const Index e = (i % (s_ * g_)) / g_;
        const auto iu = static_cast<std::size_t>(i);
        const Mat& a = saved.probs[iu];                                // (n, n)
        const Mat dout = dy * wo_.middleRows(i * h_, h_).transpose();  // (n, h)
        // o = A·U with U = C_v·P_v,eᵀ (n, h).
        const Mat du = a.transpose() * dout;
        dcv[j].noalias() += du * pv[j].middleRows(e * h_, h_);
        gv[j].middleRows(e * h_, h_).noalias() += du.transpose() * saved.cv[j];
        dscores.noalias() = dout * saved.u[iu].transpose();  // ∂L/∂A
        // Softmax backward, row by row: dS = A ⊙ (dA − Σ_u A·dA), times the score scale.
        for (Index t = 0; t < n; ++t) {
          const Scalar dot = a.row(t).head(t + 1).dot(dscores.row(t).head(t + 1));
          dscores.row(t).head(t + 1) =
              scale_ * a.row(t).head(t + 1).cwiseProduct(
                           (dscores.row(t).head(t + 1).array() - dot).matrix());
          dscores.row(t).tail(n - t - 1).setZero();
        }
        // S = q̃·C_kᵀ with q̃ = Q_i·P_k,e.
        const Mat dq = dscores * saved.ck[j];  // (n, r_k)
        dck[j].noalias() += dscores.transpose() * saved.q[iu];
        gk[j].middleRows(e * h_, h_).noalias() += c.q.middleCols(i * h_, h_).transpose() * dq;
      }
      for (std::size_t j = 0; j < groups; ++j) {
        const auto cols = static_cast<Index>(j) * width;
        gk[j].noalias() += c.k.middleCols(cols, width).transpose() * dck[j];
        gv[j].noalias() += c.v.middleCols(cols, width).transpose() * dcv[j];
      }
    }
    return loss / denominator_;
  }

  /// The covariance of group j's latents on the calibration chunks, keys (true) or values
  /// (false): (r, r) Pᵀ·C·P with C the centred keys' (values') covariance, p (s·h, r).
  [[nodiscard]] Mat projected_covariance(bool keys, std::size_t j, const Mat& p) const {
    const Index cols = static_cast<Index>(j) * s_ * h_;
    Mat cov = Mat::Zero(p.cols(), p.cols());
    Index tokens = 0;
    for (const Chunk& c : chunks_) {
      const Mat latent = (keys ? c.k : c.v).middleCols(cols, s_ * h_) * p;
      cov.noalias() += latent.transpose() * latent;
      tokens += latent.rows();
    }
    return cov / static_cast<Scalar>(tokens);
  }

 private:
  struct Chunk {
    Mat q;       // (n, n_q·h) post-RoPE queries
    Mat k;       // (n, n_kv·h) post-RoPE keys minus their group's mean
    Mat v;       // (n, n_kv·h) values minus their group's mean
    Mat target;  // (n, d) Y*
  };
  struct Saved {
    std::vector<Mat> ck, cv;       // (G) (n, r)
    std::vector<Mat> q, u, probs;  // (n_q) q̃ (n, r_k), U (n, h), A (n, n)
  };

  void check(std::span<const Mat> pk, std::span<const Mat> pv) const {
    if (static_cast<Index>(pk.size()) != num_groups() || pv.size() != pk.size()) {
      detail::raise<InvalidArgument>("latentkv::ProjectionObjective", pk.size(), " key and ",
                                     pv.size(), " value bases, expected ", num_groups());
    }
    for (std::size_t j = 0; j < pk.size(); ++j) {
      if (pk[j].rows() != width() || pv[j].rows() != width() || pk[j].cols() < 1 ||
          pv[j].cols() < 1) {
        detail::raise<InvalidArgument>("latentkv::ProjectionObjective", "group ", j, ": bases (",
                                       pk[j].rows(), ", ", pk[j].cols(), ") and (", pv[j].rows(),
                                       ", ", pv[j].cols(), "), expected (", width(), ", r >= 1)");
      }
    }
  }

  /// Y_c (n, d); keeps what the gradient needs in `saved` when given.
  Mat forward(const Chunk& c, std::span<const Mat> pk, std::span<const Mat> pv,
              Saved* saved) const {
    const Index n = c.q.rows();
    const Index width = s_ * h_;
    const auto groups = pk.size();
    std::vector<Mat> ck(groups);
    std::vector<Mat> cv(groups);
    for (std::size_t j = 0; j < groups; ++j) {
      const auto cols = static_cast<Index>(j) * width;
      ck[j].noalias() = c.k.middleCols(cols, width) * pk[j];
      cv[j].noalias() = c.v.middleCols(cols, width) * pv[j];
    }
    Mat y = bias_.replicate(n, 1);
    Mat qt;
    Mat a;
    Mat u;
    if (saved) {
      saved->q.resize(static_cast<std::size_t>(heads_));
      saved->u.resize(static_cast<std::size_t>(heads_));
      saved->probs.resize(static_cast<std::size_t>(heads_));
    }
    for (Index i = 0; i < heads_; ++i) {
      const auto j = static_cast<std::size_t>(i / (s_ * g_));
      const Index e = (i % (s_ * g_)) / g_;
      qt.noalias() = c.q.middleCols(i * h_, h_) * pk[j].middleRows(e * h_, h_);
      a.noalias() = scale_ * qt * ck[j].transpose();
      for (Index t = 0; t < n; ++t) {
        auto row = a.row(t).head(t + 1);
        const Scalar max = row.maxCoeff();
        row = (row.array() - max).exp().matrix();
        row /= row.sum();
        a.row(t).tail(n - t - 1).setZero();
      }
      u.noalias() = cv[j] * pv[j].middleRows(e * h_, h_).transpose();
      y.noalias() += (a * u) * wo_.middleRows(i * h_, h_);
      if (saved) {
        const auto iu = static_cast<std::size_t>(i);
        saved->q[iu] = qt;
        saved->u[iu] = u;
        saved->probs[iu] = a;
      }
    }
    if (saved) {
      saved->ck = std::move(ck);
      saved->cv = std::move(cv);
    }
    return y;
  }

  Index heads_, kv_heads_, h_, s_, g_;
  Scalar scale_;
  Mat wo_;                                         // (n_q·h, d)
  Eigen::Matrix<Scalar, 1, Eigen::Dynamic> bias_;  // (d) Σ_i μ_v,e(i)·W_o,i
  std::vector<Chunk> chunks_;
  Scalar denominator_ = 1;
};

/// Wen & Yin's Cayley curve on the Stiefel manifold: P(τ) for p (w, r) with PᵀP = I and the
/// Euclidean gradient g (w, r), through the (2r, 2r) form of the notation block. P(τ)ᵀP(τ) = I.
template <class Mat>
[[nodiscard]] Mat cayley_step(const Mat& p, const Mat& g, typename Mat::Scalar tau) {
  using Scalar = typename Mat::Scalar;
  const Index r = p.cols();
  Mat u(p.rows(), 2 * r);
  u << g, p;
  Mat v(p.rows(), 2 * r);
  v << p, -g;
  Mat m = Mat::Identity(2 * r, 2 * r);
  m.noalias() += (tau / Scalar(2)) * (v.transpose() * u);
  const Mat vp = v.transpose() * p;  // (2r, r)
  return p - tau * (u * m.partialPivLu().solve(vp));
}

/// How the bases are refined.
struct CayleyRefinementOptions {
  int steps = 40;             ///< accepted steps per layer at most (0: no refinement)
  double tolerance = 1e-5;    ///< stop when a step lowers L by less than this, relatively
  double armijo = 1e-4;       ///< sufficient decrease: L(τ) ≤ L(0) − armijo·τ·½‖W‖²
  double first_angle = 0.05;  ///< the first trial step rotates by about this (τ·‖W‖_F)
};

/// What refining one layer did.
struct LayerRefinement {
  double initial = 0;  ///< L at PCA
  double final = 0;    ///< L after refinement
  int steps = 0;       ///< accepted steps
};

/// Refines every basis of `layer` (its current ranks) in place on the layer's calibration chunks
/// (see the notation block) and returns L before and after. Throws like ProjectionObjective.
template <std::floating_point Scalar = float>
LayerRefinement refine_layer(const ModelConfig& config, const AttentionWeights& w,
                             std::span<const RowMatrix<float>> chunks, ProjectedLayer& layer,
                             Index heads_per_group, const CayleyRefinementOptions& options = {}) {
  using Mat = typename ProjectionObjective<Scalar>::Mat;
  const ProjectionObjective<Scalar> objective(config, w, chunks, layer, heads_per_group);
  const std::size_t groups = layer.k.size();
  std::vector<Mat> p;  // keys of every group, then values
  for (const ProjectedBasis& b : layer.k) p.push_back(b.basis.cast<Scalar>());
  for (const ProjectedBasis& b : layer.v) p.push_back(b.basis.cast<Scalar>());
  const auto split = [&](const std::vector<Mat>& all) {
    return std::pair{std::span<const Mat>(all.data(), groups),
                     std::span<const Mat>(all.data() + groups, groups)};
  };
  const auto gradient = [&](const std::vector<Mat>& at, std::vector<Mat>& g) {
    std::vector<Mat> gk;
    std::vector<Mat> gv;
    const auto [pk, pv] = split(at);
    const Scalar loss = objective.value_and_gradient(pk, pv, gk, gv);
    g = std::move(gk);
    g.insert(g.end(), gv.begin(), gv.end());
    return loss;
  };
  std::vector<Mat> g;
  Scalar loss = gradient(p, g);
  LayerRefinement report;
  report.initial = static_cast<double>(loss);
  double tau = -1;
  for (int step = 0; step < options.steps; ++step) {
    // slope = ½‖W‖² = −dL/dτ(0), W = G·Pᵀ − P·Gᵀ; with PᵀP = I, ½‖W‖² = ‖G‖² − tr((PᵀG)²).
    double slope = 0;
    for (std::size_t b = 0; b < p.size(); ++b) {
      const Mat ptg = p[b].transpose() * g[b];  // (r, r)
      slope += static_cast<double>(g[b].squaredNorm() - (ptg * ptg).trace());
    }
    if (!(slope > 0)) break;
    if (tau < 0) tau = options.first_angle / std::sqrt(2.0 * slope);
    std::vector<Mat> trial(p.size());
    Scalar trial_loss = loss;
    bool accepted = false;
    for (int halving = 0; halving < 30; ++halving) {
      for (std::size_t b = 0; b < p.size(); ++b) {
        trial[b] = cayley_step(p[b], g[b], static_cast<Scalar>(tau));
      }
      const auto [pk, pv] = split(trial);
      trial_loss = objective.value(pk, pv);
      if (static_cast<double>(trial_loss) <=
          static_cast<double>(loss) - options.armijo * tau * slope) {
        accepted = true;
        break;
      }
      tau /= 2;
    }
    if (!accepted) break;
    const double decrease = static_cast<double>(loss - trial_loss);
    p = std::move(trial);
    loss = gradient(p, g);
    ++report.steps;
    tau *= 2;
    if (decrease < options.tolerance * static_cast<double>(report.initial)) break;
  }
  report.final = static_cast<double>(loss);

  // Order each basis's columns by the variance they carry (a rotation within the span: L is
  // unchanged) and record those variances.
  for (std::size_t b = 0; b < p.size(); ++b) {
    const bool keys = b < groups;
    ProjectedBasis& basis = keys ? layer.k[b] : layer.v[b - groups];
    const Eigen::MatrixXd cov =
        objective.projected_covariance(keys, keys ? b : b - groups, p[b]).template cast<double>();
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(cov);
    if (eig.info() != Eigen::Success) {
      detail::raise<NumericalError>("latentkv::refine_layer",
                                    "the eigendecomposition of a projected covariance failed");
    }
    const Index r = p[b].cols();
    Eigen::MatrixXd order(r, r);
    for (Index i = 0; i < r; ++i) order.col(i) = eig.eigenvectors().col(r - 1 - i);
    basis.basis = (p[b].template cast<double>() * order).template cast<float>();
    for (Index i = 0; i < r; ++i) {
      basis.variance(i) = std::max(0.0, eig.eigenvalues()(r - 1 - i));
    }
    for (Index i = r; i < basis.variance.size(); ++i) {
      basis.variance(i) = std::min(basis.variance(i), basis.variance(r - 1));
    }
  }
  return report;
}

/// Refines every layer of `projections` (its current ranks, truncated already) on the attention
/// inputs of calibration text (collect_attention_inputs: every layer's chunks). Layers run in
/// parallel (OpenMP when enabled). Returns one report per layer. Throws InvalidArgument when the
/// projections or inputs do not fit the weights.
inline std::vector<LayerRefinement> refine_projections(
    ProjectedModel& projections, const LlamaWeights& weights, const AttentionInputs& inputs,
    const CayleyRefinementOptions& options = {}) {
  constexpr const char* kWhere = "latentkv::refine_projections";
  projections.validate(weights.config);
  if (inputs.num_layers() != projections.num_layers()) {
    detail::raise<InvalidArgument>(kWhere, "inputs of ", inputs.num_layers(),
                                   " layers, the projections have ", projections.num_layers());
  }
  if (options.steps < 0 || !(options.tolerance >= 0) || !(options.armijo > 0) ||
      !(options.first_angle > 0)) {
    detail::raise<InvalidArgument>(
        kWhere, "steps = ", options.steps, ", tolerance = ", options.tolerance,
        ", armijo = ", options.armijo, ", first_angle = ", options.first_angle,
        ": expected steps >= 0, tolerance >= 0, the others > 0");
  }
  const Index layers = projections.num_layers();
  std::vector<LayerRefinement> reports(static_cast<std::size_t>(layers));
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(layers));
  LATENTKV_OMP(parallel for schedule(dynamic, 1))
  for (Index l = 0; l < layers; ++l) {
    const auto lu = static_cast<std::size_t>(l);
    try {
      reports[lu] =
          refine_layer<float>(weights.config, weights.layers[lu].attention, inputs.chunks[lu],
                              projections.layers[lu], projections.heads_per_group, options);
    } catch (...) {
      errors[lu] = std::current_exception();
    }
  }
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return reports;
}

}  // namespace latentkv
