// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// How far a compressed model's next-token distributions are from the dense model's, on the chunks
// of the perplexity protocol (DESIGN §10; what llama.cpp users know from `llama-perplexity
// --kl-divergence`):
//   per chunk (ids[k·ctx, (k+1)·ctx), each model from an empty cache), per position t = 0..ctx−2:
//     p_t = softmax(z_t) of the reference (dense) model, q_t = softmax(z'_t) of the tested model
//     KL_t = Σ_j p_t,j·(log p_t,j − log q_t,j) = KL(p_t ‖ q_t) >= 0   (log-softmax in double)
//     top-1 agreement: argmax z_t == argmax z'_t (ties: the lowest index, as std::max_element)
//     nll_t, nll'_t: −log p_t[ids_{t+1}], −log q_t[ids_{t+1}] (so both PPLs come from one pass)
//   mean KL = Σ KL_t / predictions; percentiles of the KL_t by linear interpolation between order
//   statistics (p·(n−1), as llama.cpp and numpy's default); same_top1 = agreements / predictions.
// The two models run in lockstep over blocks of `block` tokens (each call continues its own
// cache), so at most one block of reference logits (block, vocab) is held at a time, never a
// chunk's or the text's. Only the per-token KL values are kept (8 bytes per prediction) for the
// percentiles.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/eval/perplexity.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/linalg/parallel.hpp"
#include "latentkv/model/kv_cache.hpp"

namespace latentkv {

/// KL(p ‖ q) and top-1 agreement of one position: reference and test logits (vocab) of the same
/// size (InvalidArgument otherwise). p = softmax(reference), q = softmax(test), in double.
struct TokenDivergence {
  double kl = 0.0;         ///< KL(p ‖ q) in nats, >= 0 up to rounding
  bool same_top1 = false;  ///< argmax reference == argmax test
};

template <class DerivedP, class DerivedQ>
[[nodiscard]] TokenDivergence token_divergence(const Eigen::MatrixBase<DerivedP>& reference,
                                               const Eigen::MatrixBase<DerivedQ>& test) {
  if (reference.size() != test.size() || reference.size() == 0) {
    detail::raise<InvalidArgument>("latentkv::token_divergence", "reference has ", reference.size(),
                                   " logits and test ", test.size(),
                                   ", expected the same non-zero size (vocab)");
  }
  const auto lse = [](const auto& z) {
    const double max = static_cast<double>(z.maxCoeff());
    double sum = 0.0;
    for (Index j = 0; j < z.size(); ++j) sum += std::exp(static_cast<double>(z(j)) - max);
    return max + std::log(sum);
  };
  const double lse_p = lse(reference);
  const double lse_q = lse(test);
  double kl = 0.0;
  Index top_p = 0;
  Index top_q = 0;
  for (Index j = 0; j < reference.size(); ++j) {
    const double log_p = static_cast<double>(reference(j)) - lse_p;
    const double log_q = static_cast<double>(test(j)) - lse_q;
    kl += std::exp(log_p) * (log_p - log_q);
    if (reference(j) > reference(top_p)) top_p = j;
    if (test(j) > test(top_q)) top_q = j;
  }
  return {kl, top_p == top_q};
}

/// The p-quantile (0 <= p <= 1) of `values` (non-empty) by linear interpolation between the sorted
/// values at p·(n − 1): p = 0 the minimum, 1 the maximum, 0.5 the median. InvalidArgument for an
/// empty input or p outside [0, 1]. Sorts a copy.
[[nodiscard]] inline double percentile(std::span<const double> values, double p) {
  constexpr const char* kWhere = "latentkv::percentile";
  if (values.empty()) detail::raise<InvalidArgument>(kWhere, "no values");
  if (!(p >= 0.0 && p <= 1.0)) {
    detail::raise<InvalidArgument>(kWhere, "p = ", p, ", expected in [0, 1]");
  }
  std::vector<double> sorted(values.begin(), values.end());
  std::sort(sorted.begin(), sorted.end());
  const double at = p * static_cast<double>(sorted.size() - 1);
  const auto below = static_cast<std::size_t>(std::floor(at));
  const std::size_t above = std::min(below + 1, sorted.size() - 1);
  const double frac = at - static_cast<double>(below);
  return (1.0 - frac) * sorted[below] + frac * sorted[above];
}

struct KlDivergenceOptions {
  Index ctx = 1024;      ///< tokens per chunk (>= 2)
  Index max_chunks = 0;  ///< the first max_chunks chunks; 0 = every complete chunk
  Index block = 256;     ///< tokens per lockstep block (>= 1): bounds the reference logits held
};

struct KlDivergenceResult {
  double mean_kl = 0.0;          ///< nats per prediction
  double kl_p99 = 0.0;           ///< 99th percentile of the per-token KL
  double kl_median = 0.0;        ///< 50th percentile
  double kl_max = 0.0;           ///< largest per-token KL
  double same_top1 = 0.0;        ///< fraction of predictions whose argmax agrees, in [0, 1]
  PerplexityResult reference;    ///< the reference model's perplexity on the same chunks
  PerplexityResult test;         ///< the tested model's perplexity on the same chunks
  std::vector<double> chunk_kl;  ///< (chunks) mean KL of each chunk
  std::vector<double> token_kl;  ///< (chunks·(ctx − 1)) every KL_t, in order
  Index ctx = 0;                 ///< tokens per chunk
  Index chunks = 0;              ///< chunks evaluated
  Index predictions = 0;         ///< chunks·(ctx − 1)
  double seconds = 0.0;          ///< wall time (both models' forward passes)
};

/// Runs the notation block: `model` (LlamaModel or anything with its sink form of forward()) with
/// `reference_cache` and with `cache`, both reset before every chunk. on_chunk(chunk index, chunk
/// mean KL, seconds so far) is called after each chunk. Throws InvalidArgument for bad options
/// (naming them) or out-of-vocabulary ids, Error when the model skips rows.
template <class Model, class ReferenceCache, class Cache, class OnChunk>
[[nodiscard]] KlDivergenceResult kl_divergence(const Model& model, ReferenceCache& reference_cache,
                                               Cache& cache, std::span<const std::int32_t> ids,
                                               const KlDivergenceOptions& options,
                                               OnChunk&& on_chunk) {
  constexpr const char* kWhere = "latentkv::kl_divergence";
  detail::check_kv_cache<ReferenceCache>();
  detail::check_kv_cache<Cache>();
  static_assert(std::invocable<OnChunk&, Index, double, double>,
                "latentkv::kl_divergence: on_chunk must be callable as on_chunk(Index chunk, "
                "double chunk_kl, double seconds)");
  if (options.block < 1) {
    detail::raise<InvalidArgument>(kWhere, "block = ", options.block, ", expected >= 1");
  }
  const PerplexityOptions popts{.ctx = options.ctx, .max_chunks = options.max_chunks};
  KlDivergenceResult result;
  result.ctx = options.ctx;
  result.chunks = detail::perplexity_chunks(static_cast<Index>(ids.size()), popts);
  result.predictions = result.chunks * (options.ctx - 1);
  for (PerplexityResult* r : {&result.reference, &result.test}) {
    r->ctx = options.ctx;
    r->chunks = result.chunks;
    r->available_chunks = static_cast<Index>(ids.size()) / options.ctx;
    r->tokens = result.chunks * options.ctx;
    r->predictions = result.predictions;
  }
  result.reference.kv_bytes_per_token =
      static_cast<std::int64_t>(reference_cache.bytes_per_token());
  result.test.kv_bytes_per_token = static_cast<std::int64_t>(cache.bytes_per_token());
  result.token_kl.reserve(static_cast<std::size_t>(result.predictions));

  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  double nll_ref = 0.0;
  double nll_test = 0.0;
  Index agree = 0;
  RowMatrix<float> held;  // (block rows, vocab): the reference logits of the current block
  for (Index k = 0; k < result.chunks; ++k) {
    const std::span<const std::int32_t> chunk = ids.subspan(
        static_cast<std::size_t>(k * options.ctx), static_cast<std::size_t>(options.ctx));
    reference_cache.reset();
    cache.reset();
    double chunk_ref = 0.0;
    double chunk_test = 0.0;
    double chunk_kl = 0.0;
    for (Index b0 = 0; b0 < options.ctx; b0 += options.block) {
      const Index count = std::min(options.block, options.ctx - b0);
      const std::span<const std::int32_t> tokens =
          chunk.subspan(static_cast<std::size_t>(b0), static_cast<std::size_t>(count));
      const Index scored = std::min(count, options.ctx - 1 - b0);  // the last row has no target
      Index delivered = 0;
      model.forward(tokens, reference_cache, [&](Index first, const MatrixCRef<float>& logits) {
        if (first != delivered) {
          detail::raise<Error>(kWhere, "chunk ", k, ": reference logits from row ", first,
                               ", expected ", delivered);
        }
        if (first == 0) held.resize(count, logits.cols());
        held.middleRows(first, logits.rows()) = logits;
        delivered += logits.rows();
      });
      if (delivered != count) {
        detail::raise<Error>(kWhere, "chunk ", k, ": the reference model delivered ", delivered,
                             " rows of logits, expected ", count);
      }
      delivered = 0;
      model.forward(tokens, cache, [&](Index first, const MatrixCRef<float>& logits) {
        if (first != delivered || logits.cols() != held.cols()) {
          detail::raise<Error>(kWhere, "chunk ", k, ": test logits (", logits.rows(), ", ",
                               logits.cols(), ") from row ", first, ", expected row ", delivered,
                               " and ", held.cols(), " columns");
        }
        delivered += logits.rows();
        const Index rows = std::max<Index>(0, std::min(logits.rows(), scored - first));
        for (Index r = 0; r < rows; ++r) {  // checked here: nothing may throw in the loop below
          const std::int32_t target = chunk[static_cast<std::size_t>(b0 + first + r + 1)];
          if (target < 0 || target >= logits.cols()) {
            detail::raise<InvalidArgument>(kWhere, "ids[", k * options.ctx + b0 + first + r + 1,
                                           "] = ", target, ", expected 0..", logits.cols() - 1,
                                           " (the logits' width - 1)");
          }
        }
        std::vector<double> kl(static_cast<std::size_t>(rows));
        std::vector<char> same(static_cast<std::size_t>(rows));
        double block_ref = 0.0;
        double block_test = 0.0;
        [[maybe_unused]] const bool parallel = rows * logits.cols() >= (Index{1} << 16);
        LATENTKV_OMP(parallel for reduction(+ : block_ref, block_test) schedule(static)
                         if (parallel))
        for (Index r = 0; r < rows; ++r) {
          const Index target = chunk[static_cast<std::size_t>(b0 + first + r + 1)];
          const TokenDivergence d = token_divergence(held.row(first + r), logits.row(r));
          kl[static_cast<std::size_t>(r)] = d.kl;
          same[static_cast<std::size_t>(r)] = d.same_top1 ? 1 : 0;
          block_ref += token_nll(held.row(first + r), target);
          block_test += token_nll(logits.row(r), target);
        }
        for (Index r = 0; r < rows; ++r) {
          result.token_kl.push_back(kl[static_cast<std::size_t>(r)]);
          chunk_kl += kl[static_cast<std::size_t>(r)];
          agree += same[static_cast<std::size_t>(r)];
        }
        chunk_ref += block_ref;
        chunk_test += block_test;
      });
      if (delivered != count) {
        detail::raise<Error>(kWhere, "chunk ", k, ": the tested model delivered ", delivered,
                             " rows of logits, expected ", count);
      }
    }
    const auto per = static_cast<double>(options.ctx - 1);
    result.reference.chunk_nll.push_back(chunk_ref / per);
    result.test.chunk_nll.push_back(chunk_test / per);
    result.chunk_kl.push_back(chunk_kl / per);
    nll_ref += chunk_ref;
    nll_test += chunk_test;
    on_chunk(k, chunk_kl / per, elapsed());
  }
  const auto n = static_cast<double>(result.predictions);
  result.seconds = elapsed();
  for (PerplexityResult* r : {&result.reference, &result.test}) r->seconds = result.seconds;
  result.reference.mean_nll = nll_ref / n;
  result.reference.ppl = std::exp(result.reference.mean_nll);
  result.test.mean_nll = nll_test / n;
  result.test.ppl = std::exp(result.test.mean_nll);
  double total = 0.0;
  for (const double v : result.token_kl) total += v;
  result.mean_kl = total / n;
  result.kl_p99 = percentile(result.token_kl, 0.99);
  result.kl_median = percentile(result.token_kl, 0.5);
  result.kl_max = *std::max_element(result.token_kl.begin(), result.token_kl.end());
  result.same_top1 = static_cast<double>(agree) / n;
  return result;
}

template <class Model, class ReferenceCache, class Cache>
[[nodiscard]] KlDivergenceResult kl_divergence(const Model& model, ReferenceCache& reference_cache,
                                               Cache& cache, std::span<const std::int32_t> ids,
                                               const KlDivergenceOptions& options = {}) {
  return kl_divergence(model, reference_cache, cache, ids, options, [](Index, double, double) {});
}

}  // namespace latentkv
