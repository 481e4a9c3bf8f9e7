// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The reference model on the real SmolLM2-135M-Instruct Q4_1 checkpoint (label `model`) against
// two implementations nobody here wrote (tests/data/reference/logits.json; tolerances from
// tools/reference/README.md, "Recommended tolerances"):
//   transformers fp32 (the same dequantized weights): |Δ| ≤ 2e-3 on the top-5 logits, row max,
//     mean, std, logsumexp and next-token log-prob at positions 0, 1, 7, 15, 29; top-5 ids equal
//     up to swaps of logits closer than 2e-3;
//   llama.cpp (Q8 activations, so loose): top-1 equal where its top-1/top-2 margin > 0.5, top-5
//     log-probs within 1 nat, the prompt's mean NLL within 0.05 nats.
// Also: the prompt's token ids equal the fixture's, and chunked / token-by-token runs equal one
// pass.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "../support/smollm2_model.hpp"
#include "latentkv/model/dense_kv_cache.hpp"
#include "latentkv/model/llama_model.hpp"

namespace latentkv {
namespace {

using SmolLm2Logits = testing::SmolLm2ModelTest;

constexpr double kTransformersTolerance = 2e-3;  // README item 2

struct RowStats {
  double mean, std, max, logsumexp;
};

RowStats stats(const RowMatrix<float>& logits, Index row) {
  const Eigen::VectorXd z = logits.row(row).cast<double>().transpose();
  const double mean = z.mean();
  const double max = z.maxCoeff();
  return {mean, std::sqrt((z.array() - mean).square().mean()), max,
          max + std::log((z.array() - max).exp().sum())};
}

std::vector<std::int32_t> prompt_ids(const nlohmann::json& fixture) {
  return fixture["prompt_ids"].get<std::vector<std::int32_t>>();
}

RowMatrix<float> prompt_logits(const LlamaModel& model, const std::vector<std::int32_t>& ids) {
  DenseKvCache cache(model.weights());
  return model.forward(ids, cache);
}

double prompt_mean_nll(const RowMatrix<float>& logits, const std::vector<std::int32_t>& ids) {
  double total = 0.0;
  for (std::size_t t = 0; t + 1 < ids.size(); ++t) {
    total +=
        stats(logits, static_cast<Index>(t)).logsumexp - logits(static_cast<Index>(t), ids[t + 1]);
  }
  return total / static_cast<double>(ids.size() - 1);
}

TEST_F(SmolLm2Logits, PromptTokenizesToTheFixtureIds) {
  const nlohmann::json fixture = testing::read_reference_json("logits.json");
  EXPECT_EQ(tokenizer().encode(fixture["prompt"].get<std::string>()), prompt_ids(fixture));
}

TEST_F(SmolLm2Logits, MatchTransformersFp32) {
  const nlohmann::json fixture = testing::read_reference_json("logits.json");
  const std::vector<std::int32_t> ids = prompt_ids(fixture);
  const RowMatrix<float> logits = prompt_logits(model(), ids);
  ASSERT_EQ(logits.rows(), 30);
  ASSERT_EQ(logits.cols(), 49152);
  const nlohmann::json& ref = fixture["implementations"]["transformers"];
  double worst = 0.0;
  const auto near = [&](double ours, double theirs, const std::string& what) {
    worst = std::max(worst, std::abs(ours - theirs));
    EXPECT_NEAR(ours, theirs, kTransformersTolerance) << what;
  };
  for (const auto& [key, expected] : ref["positions"].items()) {
    const Index p = std::stoi(key);
    const std::string at = "position " + key;
    const RowStats s = stats(logits, p);
    near(s.max, expected["max"].get<double>(), at + " max");
    near(s.mean, expected["mean"].get<double>(), at + " mean");
    near(s.std, expected["std"].get<double>(), at + " std");
    near(s.logsumexp, expected["logsumexp"].get<double>(), at + " logsumexp");
    if (!expected["next_token"].is_null()) {
      const double logprob = logits(p, expected["next_token"].get<Index>()) - s.logsumexp;
      near(logprob, expected["next_token_logprob"].get<double>(), at + " next-token log-prob");
    }
    // Top 5: each recorded logit within tolerance, and our k-th id is theirs or a near-tie of it.
    std::vector<Index> order(static_cast<std::size_t>(logits.cols()));
    std::iota(order.begin(), order.end(), Index{0});
    std::partial_sort(order.begin(), order.begin() + 5, order.end(),
                      [&](Index a, Index b) { return logits(p, a) > logits(p, b); });
    const nlohmann::json& top = expected["top"];
    ASSERT_EQ(top.size(), 5u);
    for (std::size_t k = 0; k < 5; ++k) {
      const Index id = top[k][0].get<Index>();
      const double value = top[k][1].get<double>();
      near(logits(p, id), value,
           at + " top-" + std::to_string(k + 1) + " id " + std::to_string(id));
      if (order[k] != id) {
        EXPECT_NEAR(logits(p, order[k]), value, kTransformersTolerance)
            << at << " rank " << k + 1 << ": ours " << order[k] << ", transformers " << id;
      }
    }
  }
  const double nll = prompt_mean_nll(logits, ids);
  near(nll, ref["prompt_mean_nll"].get<double>(), "prompt mean NLL");
  std::printf(
      "[ measured ] vs transformers fp32: max |Δ| over checked values %.3g; prompt mean "
      "NLL %.7f (transformers %.7f, Δ %.2g)\n",
      worst, nll, ref["prompt_mean_nll"].get<double>(), nll - ref["prompt_mean_nll"].get<double>());
  RecordProperty("max_abs_diff_vs_transformers", std::to_string(worst));
}

TEST_F(SmolLm2Logits, AgreeWithLlamaCppWithinItsQuantizationNoise) {
  const nlohmann::json fixture = testing::read_reference_json("logits.json");
  const std::vector<std::int32_t> ids = prompt_ids(fixture);
  const RowMatrix<float> logits = prompt_logits(model(), ids);
  const nlohmann::json& ref = fixture["implementations"]["llama.cpp"];
  double worst_logprob = 0.0;
  for (const auto& [key, expected] : ref["positions"].items()) {
    const Index p = std::stoi(key);
    const RowStats s = stats(logits, p);
    const nlohmann::json& top = expected["top"];
    const double their_lse = expected["logsumexp"].get<double>();
    if (top[0][1].get<double>() - top[1][1].get<double>() > 0.5) {
      Index best = 0;
      logits.row(p).maxCoeff(&best);
      EXPECT_EQ(best, top[0][0].get<Index>()) << "position " << key;
    }
    for (const nlohmann::json& entry : top) {
      const Index id = entry[0].get<Index>();
      const double ours = logits(p, id) - s.logsumexp;
      const double theirs = entry[1].get<double>() - their_lse;
      worst_logprob = std::max(worst_logprob, std::abs(ours - theirs));
      EXPECT_NEAR(ours, theirs, 1.0) << "position " << key << " id " << id;
    }
  }
  const double nll = prompt_mean_nll(logits, ids);
  EXPECT_NEAR(nll, ref["prompt_mean_nll"].get<double>(), 0.05);
  std::printf(
      "[ measured ] vs llama.cpp: max |Δ log-prob| on its top-5 %.3g; prompt mean NLL "
      "Δ %.3g\n",
      worst_logprob, nll - ref["prompt_mean_nll"].get<double>());
}

TEST_F(SmolLm2Logits, ChunkedAndTokenByTokenRunsEqualOnePass) {
  const std::vector<std::int32_t> ids = prompt_ids(testing::read_reference_json("logits.json"));
  const RowMatrix<float> once = prompt_logits(model(), ids);
  for (const Index chunk : {1, 7}) {
    DenseKvCache cache(model().weights());
    RowMatrix<float> logits(once.rows(), once.cols());
    const std::span<const std::int32_t> all(ids);
    for (Index start = 0; start < once.rows(); start += chunk) {
      const Index n = std::min<Index>(chunk, once.rows() - start);
      logits.middleRows(start, n) = model().forward(
          all.subspan(static_cast<std::size_t>(start), static_cast<std::size_t>(n)), cache);
    }
    const float diff = (logits - once).cwiseAbs().maxCoeff();
    std::printf("[ measured ] chunks of %ld vs one pass: max |Δlogit| %.3g\n",
                static_cast<long>(chunk), static_cast<double>(diff));
    // Only summation order differs: far below the transformers tolerance.
    EXPECT_LT(diff, kTransformersTolerance / 4) << "chunk " << chunk;
  }
}

}  // namespace
}  // namespace latentkv
