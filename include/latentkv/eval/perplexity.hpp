// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Perplexity by the evaluation protocol of DESIGN §10, so every figure compares:
//   ids (N): the whole text tokenized as one string (no BOS, no special-token parsing)
//   chunks:  ids[k·ctx, (k+1)·ctx) for k = 0 .. ⌊N/ctx⌋ − 1 (non-overlapping; a short tail is
//            dropped); the first max_chunks of them when max_chunks > 0
//   per chunk, from an empty cache (cache.reset()): logits z_t (vocab) after token t, and
//            nll_t = −log softmax(z_t)[ids_{t+1}] = logsumexp(z_t) − z_t[ids_{t+1}], t = 0..ctx−2
//            (ctx − 1 predictions; log-softmax evaluated in double from the fp32 logits)
//   mean NLL = Σ nll / (chunks·(ctx − 1));  PPL = exp(mean NLL)
// The model's logits arrive in row blocks (LlamaModel::forward with a sink), so a chunk never
// holds its (ctx, vocab) logits at once. Compressed models run through their latent cache here
// exactly like the dense one (DESIGN §10: the number measures what an engine would run).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/linalg/parallel.hpp"
#include "latentkv/model/kv_cache.hpp"

namespace latentkv {

struct PerplexityOptions {
  Index ctx = 1024;      // tokens per chunk (>= 2)
  Index max_chunks = 0;  // evaluate the first max_chunks chunks; 0 = every complete chunk
  Index batch_size = 0;  // tokens per forward batch inside a chunk; 0 = the whole chunk at once
};

struct PerplexityResult {
  double ppl = 0.0;                     // exp(mean_nll)
  double mean_nll = 0.0;                // nats per predicted token
  std::vector<double> chunk_nll;        // (chunks) mean NLL of each chunk, in order
  Index ctx = 0;                        // tokens per chunk
  Index chunks = 0;                     // chunks evaluated
  Index available_chunks = 0;           // complete chunks in the text (⌊ids / ctx⌋)
  Index tokens = 0;                     // tokens run through the model: chunks·ctx
  Index predictions = 0;                // tokens scored: chunks·(ctx − 1)
  double seconds = 0.0;                 // wall time of the evaluation (forward passes + NLL)
  std::int64_t kv_bytes_per_token = 0;  // the cache's bytes_per_token()

  [[nodiscard]] double tokens_per_second() const noexcept {
    return seconds > 0.0 ? static_cast<double>(tokens) / seconds : 0.0;
  }
};

/// −log softmax(logits)[target], the log-sum-exp taken in double: logits (vocab), 0 ≤ target <
/// vocab (InvalidArgument otherwise).
template <class Derived>
[[nodiscard]] double token_nll(const Eigen::MatrixBase<Derived>& logits, Index target) {
  if (target < 0 || target >= logits.size()) {
    detail::raise<InvalidArgument>("latentkv::token_nll", "target = ", target, ", expected 0..",
                                   logits.size() - 1, " (the logits' size - 1)");
  }
  const double max = static_cast<double>(logits.maxCoeff());
  double sum = 0.0;
  for (Index j = 0; j < logits.size(); ++j) {
    sum += std::exp(static_cast<double>(logits(j)) - max);
  }
  return std::log(sum) + max - static_cast<double>(logits(target));
}

namespace detail {

/// Checks the options against ids.size() and returns the number of chunks to evaluate.
[[nodiscard]] inline Index perplexity_chunks(Index num_ids, const PerplexityOptions& options) {
  constexpr const char* kWhere = "latentkv::perplexity";
  if (options.ctx < 2) {
    raise<InvalidArgument>(kWhere, "ctx = ", options.ctx,
                           ", expected >= 2 (a chunk predicts ctx - 1 tokens)");
  }
  if (options.max_chunks < 0) {
    raise<InvalidArgument>(kWhere, "max_chunks = ", options.max_chunks,
                           ", expected >= 0 (0 = all chunks)");
  }
  if (options.batch_size < 0) {
    raise<InvalidArgument>(kWhere, "batch_size = ", options.batch_size,
                           ", expected >= 0 (0 = the whole chunk)");
  }
  const Index available = num_ids / options.ctx;
  if (available == 0) {
    raise<InvalidArgument>(kWhere, "the text has ", num_ids,
                           " tokens, fewer than one chunk of ctx = ", options.ctx);
  }
  if (options.max_chunks > available) {
    raise<InvalidArgument>(kWhere, "max_chunks = ", options.max_chunks, " but the text has only ",
                           available, " chunks of ctx = ", options.ctx, " (", num_ids, " tokens)");
  }
  return options.max_chunks == 0 ? available : options.max_chunks;
}

}  // namespace detail

/// Evaluates perplexity over `ids` per the notation block. `model` needs
/// model.forward(std::span<const std::int32_t>, Cache&, sink, Index batch_size) with a LogitsSink
/// (LlamaModel has it); `cache` is reset before every chunk and left holding the last chunk.
/// on_chunk(chunk index, chunk mean NLL, seconds so far) is called after each chunk (progress).
template <class Model, class Cache, class OnChunk>
[[nodiscard]] PerplexityResult perplexity(const Model& model, Cache& cache,
                                          std::span<const std::int32_t> ids,
                                          const PerplexityOptions& options, OnChunk&& on_chunk) {
  detail::check_kv_cache<Cache>();
  static_assert(std::invocable<OnChunk&, Index, double, double>,
                "latentkv::perplexity: on_chunk must be callable as on_chunk(Index chunk, double "
                "chunk_nll, double seconds)");
  PerplexityResult result;
  result.ctx = options.ctx;
  result.chunks = detail::perplexity_chunks(static_cast<Index>(ids.size()), options);
  result.available_chunks = static_cast<Index>(ids.size()) / options.ctx;
  result.tokens = result.chunks * options.ctx;
  result.predictions = result.chunks * (options.ctx - 1);
  result.kv_bytes_per_token = static_cast<std::int64_t>(cache.bytes_per_token());
  result.chunk_nll.reserve(static_cast<std::size_t>(result.chunks));

  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  double total = 0.0;
  for (Index k = 0; k < result.chunks; ++k) {
    const std::span<const std::int32_t> chunk = ids.subspan(
        static_cast<std::size_t>(k * options.ctx), static_cast<std::size_t>(options.ctx));
    cache.reset();
    double chunk_total = 0.0;
    Index delivered = 0;  // logit rows received so far, in order
    model.forward(
        chunk, cache,
        [&](Index first, const MatrixCRef<float>& logits) {
          if (first != delivered || logits.rows() == 0) {
            detail::raise<Error>("latentkv::perplexity", "chunk ", k, ": logits for rows from ",
                                 first, " (", logits.rows(), " rows) arrived, expected rows from ",
                                 delivered);
          }
          delivered += logits.rows();
          // Row r predicts chunk[first + r + 1]; the chunk's last row has no target.
          const Index rows = std::min(logits.rows(), options.ctx - 1 - first);
          for (Index r = 0; r < rows; ++r) {  // checked here: nothing may throw in the loop below
            const std::int32_t target = chunk[static_cast<std::size_t>(first + r + 1)];
            if (target < 0 || target >= logits.cols()) {
              detail::raise<InvalidArgument>(
                  "latentkv::perplexity", "ids[", k * options.ctx + first + r + 1, "] = ", target,
                  ", expected 0..", logits.cols() - 1, " (the logits' width - 1)");
            }
          }
          double block_total = 0.0;
          [[maybe_unused]] const bool parallel = rows * logits.cols() >= (Index{1} << 16);
          LATENTKV_OMP(parallel for reduction(+ : block_total) schedule(static) if (parallel))
          for (Index r = 0; r < rows; ++r) {
            const std::int32_t target = chunk[static_cast<std::size_t>(first + r + 1)];
            block_total += token_nll(logits.row(r), target);
          }
          chunk_total += block_total;
        },
        options.batch_size);
    if (delivered != options.ctx) {
      detail::raise<Error>("latentkv::perplexity", "chunk ", k, ": the model delivered ", delivered,
                           " rows of logits, expected ctx = ", options.ctx);
    }
    const double chunk_mean = chunk_total / static_cast<double>(options.ctx - 1);
    result.chunk_nll.push_back(chunk_mean);
    total += chunk_total;
    on_chunk(k, chunk_mean, elapsed());
  }
  result.seconds = elapsed();
  result.mean_nll = total / static_cast<double>(result.predictions);
  result.ppl = std::exp(result.mean_nll);
  return result;
}

template <class Model, class Cache>
[[nodiscard]] PerplexityResult perplexity(const Model& model, Cache& cache,
                                          std::span<const std::int32_t> ids,
                                          const PerplexityOptions& options = {}) {
  return perplexity(model, cache, ids, options, [](Index, double, double) {});
}

/// A tokenizer as perplexity_of_text needs it: encode(text) gives ids without BOS
/// (BpeTokenizer in text/tokenizer.hpp, which needs ICU, is one).
template <class T>
concept TextEncoder = requires(const T& tokenizer, std::string_view text) {
  { tokenizer.encode(text) } -> std::convertible_to<std::vector<std::int32_t>>;
};

/// DESIGN §10 from the text itself: tokenizes the whole `text` as one string (no BOS), then
/// perplexity(). The token count of the text is result.available_chunks·ctx plus a dropped tail.
template <class Model, class Cache, TextEncoder Tokenizer>
[[nodiscard]] PerplexityResult perplexity_of_text(const Model& model, Cache& cache,
                                                  const Tokenizer& tokenizer, std::string_view text,
                                                  const PerplexityOptions& options = {}) {
  const std::vector<std::int32_t> ids = tokenizer.encode(text);
  return perplexity(model, cache, ids, options);
}

}  // namespace latentkv
