// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// eval/perplexity.hpp: the DESIGN §10 protocol on models with hand-checkable NLL (uniform logits,
// a "cyclic successor" model), chunking (non-overlapping, short tail dropped, each chunk from an
// empty cache), agreement with a direct computation on the tiny LLaMA, and errors.
#include "latentkv/eval/perplexity.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "../support/tiny_llama.hpp"
#include "latentkv/model/dense_kv_cache.hpp"
#include "latentkv/model/llama_model.hpp"

namespace latentkv {
namespace {

/// A KvCache that only counts tokens (the fake models below advance it themselves).
class CountingCache {
 public:
  RowMatrix<float> attend(Index, const MatrixCRef<float>& x, Index) { return x; }
  void reset() {
    length_ = 0;
    ++resets_;
  }
  [[nodiscard]] Index length(Index) const { return length_; }
  [[nodiscard]] Index num_layers() const { return 1; }
  [[nodiscard]] std::int64_t bytes_per_token() const { return 12; }
  void advance(Index n) { length_ += n; }
  [[nodiscard]] int resets() const { return resets_; }

 private:
  Index length_ = 0;
  int resets_ = 0;
};
static_assert(KvCache<CountingCache>);

/// Logits after token t: `boost` at (t + 1) % vocab, 0 elsewhere. Delivered in blocks of 3 rows.
/// Records each call's (cache length at entry, token count, batch size).
class CyclicModel {
 public:
  CyclicModel(Index vocab, float boost) : vocab_(vocab), boost_(boost) {}

  struct Call {
    Index start_length, tokens, batch_size;
  };

  template <class Sink>
  void forward(std::span<const std::int32_t> tokens, CountingCache& cache, Sink&& sink,
               Index batch_size) const {
    calls_.push_back({cache.length(0), static_cast<Index>(tokens.size()), batch_size});
    for (Index first = 0; first < static_cast<Index>(tokens.size()); first += 3) {
      const Index rows = std::min<Index>(3, static_cast<Index>(tokens.size()) - first);
      RowMatrix<float> logits = RowMatrix<float>::Zero(rows, vocab_);
      for (Index r = 0; r < rows; ++r) {
        logits(r, (tokens[static_cast<std::size_t>(first + r)] + 1) % vocab_) = boost_;
      }
      sink(first, MatrixCRef<float>(logits));
    }
    cache.advance(static_cast<Index>(tokens.size()));
  }

  [[nodiscard]] const std::vector<Call>& calls() const { return calls_; }

 private:
  Index vocab_;
  float boost_;
  mutable std::vector<Call> calls_;
};

TEST(Perplexity, UniformLogitsGiveTheVocabularySize) {
  const CyclicModel model(10, 0.0f);  // every logit 0
  CountingCache cache;
  const std::vector<std::int32_t> ids = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0};
  const PerplexityResult r = perplexity(model, cache, ids, {.ctx = 4});
  EXPECT_NEAR(r.mean_nll, std::log(10.0), 1e-12);
  EXPECT_NEAR(r.ppl, 10.0, 1e-10);
  EXPECT_EQ(r.ctx, 4);
  EXPECT_EQ(r.chunks, 2);  // 10 ids: two chunks of 4, the tail of 2 is dropped
  EXPECT_EQ(r.available_chunks, 2);
  EXPECT_EQ(r.tokens, 8);
  EXPECT_EQ(r.predictions, 6);
  EXPECT_EQ(r.kv_bytes_per_token, 12);
  EXPECT_GE(r.seconds, 0.0);
  ASSERT_EQ(r.chunk_nll.size(), 2u);
}

TEST(Perplexity, HandCheckedCyclicModel) {
  // vocab 10, boost ln 9: a row is 9 at the successor and 1 at the 9 others, sum 18.
  // Chunk 0 follows the cycle: NLL ln(18/9) = ln 2 per token. Chunk 1 never does: ln 18.
  // Mean (3 ln 2 + 3 ln 18) / 6 = ln 6, so PPL = 6.
  const CyclicModel model(10, static_cast<float>(std::log(9.0)));
  CountingCache cache;
  const std::vector<std::int32_t> ids = {0, 1, 2, 3, 5, 9, 2, 7, 4};
  const PerplexityResult r = perplexity(model, cache, ids, {.ctx = 4});
  ASSERT_EQ(r.chunk_nll.size(), 2u);
  EXPECT_NEAR(r.chunk_nll[0], std::log(2.0), 1e-6);
  EXPECT_NEAR(r.chunk_nll[1], std::log(18.0), 1e-6);
  EXPECT_NEAR(r.mean_nll, std::log(6.0), 1e-6);
  EXPECT_NEAR(r.ppl, 6.0, 1e-5);
}

TEST(Perplexity, EveryChunkStartsFromAnEmptyCache) {
  const CyclicModel model(10, 1.0f);
  CountingCache cache;
  cache.advance(5);  // leftovers from earlier use
  const std::vector<std::int32_t> ids(23, 3);
  std::vector<Index> progress;
  const PerplexityResult r =
      perplexity(model, cache, ids, {.ctx = 5, .max_chunks = 3, .batch_size = 2},
                 [&](Index chunk, double nll, double seconds) {
                   progress.push_back(chunk);
                   EXPECT_GT(nll, 0.0);
                   EXPECT_GE(seconds, 0.0);
                 });
  EXPECT_EQ(r.chunks, 3);
  EXPECT_EQ(r.available_chunks, 4);
  EXPECT_EQ(cache.resets(), 3);
  ASSERT_EQ(model.calls().size(), 3u);
  for (const CyclicModel::Call& call : model.calls()) {
    EXPECT_EQ(call.start_length, 0);
    EXPECT_EQ(call.tokens, 5);
    EXPECT_EQ(call.batch_size, 2);
  }
  EXPECT_EQ(progress, (std::vector<Index>{0, 1, 2}));
}

TEST(Perplexity, UsesNonOverlappingChunksFromTokenZero) {
  // Chunk k is ids[4k, 4k + 4): with the cyclic model a chunk's NLL shows whether its tokens
  // follow each other, so misplaced chunk boundaries would change the numbers.
  const CyclicModel model(10, static_cast<float>(std::log(9.0)));
  CountingCache cache;
  const std::vector<std::int32_t> ids = {0, 1, 2, 3, 7, 8, 9, 0, 1, 5, 6, 7, 2};
  const PerplexityResult r = perplexity(model, cache, ids, {.ctx = 4});
  ASSERT_EQ(r.chunk_nll.size(), 3u);
  EXPECT_NEAR(r.chunk_nll[0], std::log(2.0), 1e-6);                             // 3 hits
  EXPECT_NEAR(r.chunk_nll[1], std::log(2.0), 1e-6);                             // 3 hits
  EXPECT_NEAR(r.chunk_nll[2], (std::log(18.0) + 2 * std::log(2.0)) / 3, 1e-6);  // 1→5 misses
}

TEST(Perplexity, MatchesADirectComputationOnTheTinyLlama) {
  const LlamaModel model(testing::random_llama_weights(testing::tiny_llama_config(), 41));
  const std::vector<std::int32_t> ids = testing::random_tokens(100, 61, 42);
  DenseKvCache cache(model.weights());
  const PerplexityResult r = perplexity(model, cache, ids, {.ctx = 30});
  ASSERT_EQ(r.chunks, 3);
  double total = 0.0;
  for (Index k = 0; k < 3; ++k) {
    DenseKvCache fresh(model.weights());
    const std::span<const std::int32_t> chunk =
        std::span<const std::int32_t>(ids).subspan(static_cast<std::size_t>(30 * k), 30);
    const RowMatrix<float> logits = model.forward(chunk, fresh);
    double chunk_total = 0.0;
    for (Index t = 0; t < 29; ++t) {
      const Eigen::VectorXd z = logits.row(t).cast<double>().transpose();
      const double lse = z.maxCoeff() + std::log((z.array() - z.maxCoeff()).exp().sum());
      chunk_total += lse - z(chunk[static_cast<std::size_t>(t + 1)]);
    }
    EXPECT_NEAR(r.chunk_nll[static_cast<std::size_t>(k)], chunk_total / 29, 1e-9) << k;
    total += chunk_total;
  }
  EXPECT_NEAR(r.mean_nll, total / 87, 1e-9);
  EXPECT_NEAR(r.ppl, std::exp(total / 87), 1e-9 * r.ppl);
  EXPECT_GT(r.ppl, 5.0);  // a random model is far from perfect

  const PerplexityResult batched = perplexity(model, cache, ids, {.ctx = 30, .batch_size = 7});
  EXPECT_NEAR(batched.mean_nll, r.mean_nll, 1e-6);
}

struct CharTokenizer {
  [[nodiscard]] std::vector<std::int32_t> encode(std::string_view text) const {
    std::vector<std::int32_t> ids;
    for (const char c : text) ids.push_back(static_cast<std::int32_t>(c - '0'));
    return ids;
  }
};
static_assert(TextEncoder<CharTokenizer>);

TEST(Perplexity, OfTextTokenizesTheWholeString) {
  const CyclicModel model(10, static_cast<float>(std::log(9.0)));
  CountingCache cache;
  const PerplexityResult r =
      perplexity_of_text(model, cache, CharTokenizer{}, "012359272", {.ctx = 4});
  EXPECT_NEAR(r.ppl, 6.0, 1e-5);  // the ids of HandCheckedCyclicModel, plus a dropped tail
}

TEST(TokenNll, IsTheNegativeLogSoftmax) {
  Eigen::VectorXf z(3);
  z << 0.0f, static_cast<float>(std::log(3.0)), 0.0f;
  EXPECT_NEAR(token_nll(z, 1), std::log(5.0 / 3.0), 1e-7);
  EXPECT_NEAR(token_nll(z, 0), std::log(5.0), 1e-7);
  z << 1000.0f, 1000.0f, -1000.0f;  // no overflow
  EXPECT_NEAR(token_nll(z, 0), std::log(2.0), 1e-12);
  EXPECT_THROW((void)token_nll(z, 3), InvalidArgument);
  EXPECT_THROW((void)token_nll(z, -1), InvalidArgument);
}

std::string perplexity_error(std::span<const std::int32_t> ids, const PerplexityOptions& options) {
  const CyclicModel model(10, 1.0f);
  CountingCache cache;
  try {
    (void)perplexity(model, cache, ids, options);
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "no error";
}

TEST(Perplexity, RejectsBadInput) {
  const std::vector<std::int32_t> ids(10, 1);
  EXPECT_NE(perplexity_error(ids, {.ctx = 1}).find("ctx = 1, expected >= 2"), std::string::npos);
  EXPECT_NE(perplexity_error(ids, {.ctx = 11})
                .find("the text has 10 tokens, fewer than one chunk of ctx = 11"),
            std::string::npos);
  EXPECT_NE(perplexity_error({}, {.ctx = 2}).find("the text has 0 tokens"), std::string::npos);
  EXPECT_NE(perplexity_error(ids, {.ctx = 4, .max_chunks = 3})
                .find("max_chunks = 3 but the text has only 2 chunks of ctx = 4"),
            std::string::npos);
  EXPECT_NE(perplexity_error(ids, {.ctx = 4, .max_chunks = -1}).find("max_chunks = -1"),
            std::string::npos);
  EXPECT_NE(perplexity_error(ids, {.ctx = 4, .batch_size = -2}).find("batch_size = -2"),
            std::string::npos);
  const std::vector<std::int32_t> out_of_range = {1, 2, 30, 4};
  EXPECT_NE(perplexity_error(out_of_range, {.ctx = 4}).find("ids[2] = 30, expected 0..9"),
            std::string::npos);
  EXPECT_EQ(perplexity_error(ids, {.ctx = 10}), "no error");  // exactly one chunk
}

/// Delivers one row too few.
struct ShortModel {
  template <class Sink>
  void forward(std::span<const std::int32_t> tokens, CountingCache&, Sink&& sink, Index) const {
    const RowMatrix<float> logits =
        RowMatrix<float>::Zero(static_cast<Index>(tokens.size()) - 1, 4);
    sink(0, MatrixCRef<float>(logits));
  }
};

TEST(Perplexity, DetectsAModelThatSkipsRows) {
  CountingCache cache;
  const std::vector<std::int32_t> ids = {0, 1, 2, 3};
  EXPECT_THROW((void)perplexity(ShortModel{}, cache, ids, {.ctx = 4}), Error);
}

}  // namespace
}  // namespace latentkv
