// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// core/latent_decode.hpp on the CPU: the split planner, the cache-row and CTA decompositions, the
// split merge, validation messages, and the whole GPU decomposition run on the host
// (latent_decode_host) against the CPU kernel (route 1) and a float64 reference (route 2), for
// fp32/fp16/bf16 storage, contiguous and paged layouts, and one to many splits.
#include "latentkv/core/latent_decode.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "../support/latent_decode_case.hpp"
#include "latentkv/attention/latent_attention.hpp"
#include "latentkv/core/online_softmax.hpp"

namespace latentkv {
namespace {

using test::DecodeCase;
using test::DecodeProblem;
using ::testing::HasSubstr;

TEST(LatentElement, Bf16RoundTripsAndRounds) {
  EXPECT_EQ(latent_to_float(Bf16{0x3f80}), 1.0f);
  EXPECT_EQ(latent_from_float<Bf16>(1.0f).bits, 0x3f80);
  EXPECT_EQ(latent_from_float<Bf16>(1.00390625f).bits, 0x3f80);  // tie → even
  EXPECT_EQ(latent_from_float<Bf16>(1.01171875f).bits, 0x3f82);  // tie → even (up)
  for (std::uint32_t bits = 0; bits < 0x10000u; bits += 7) {
    const Bf16 b{static_cast<std::uint16_t>(bits)};
    const float f = latent_to_float(b);
    if (std::isnan(f)) continue;
    EXPECT_EQ(latent_from_float<Bf16>(f).bits, b.bits);
  }
}

TEST(CausalRule, CountsVisibleKeysOfABlock) {
  EXPECT_EQ(causal_visible_keys(10, 0, 32), 11);
  EXPECT_EQ(causal_visible_keys(10, 11, 32), 0);
  EXPECT_EQ(causal_visible_keys(100, 64, 32), 32);
  EXPECT_EQ(causal_visible_keys(64, 64, 32), 1);
}

TEST(OnlineSoftmax, BlockwiseEqualsDirectAndSplitsMerge) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> scores(100);
  std::vector<float> values(100);
  for (std::size_t i = 0; i < scores.size(); ++i) {
    scores[i] = normal(rng);
    values[i] = normal(rng);
  }
  double m = -1e30;
  for (float s : scores) m = std::max(m, static_cast<double>(s));
  double num = 0.0;
  double den = 0.0;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    num += std::exp(scores[i] - m) * values[i];
    den += std::exp(scores[i] - m);
  }
  const double direct = num / den;
  // Splits of 30 keys, each an online softmax over blocks of 7, merged; one split is empty.
  constexpr std::int64_t kSplits = 5;
  std::vector<float> acc(kSplits, 0.0f);
  std::vector<float> max(kSplits);
  std::vector<float> sum(kSplits);
  for (std::int64_t q = 0; q < kSplits; ++q) {
    OnlineSoftmaxState state;
    for (std::int64_t k0 = q * 30; k0 < std::min<std::int64_t>(100, q * 30 + 30); k0 += 7) {
      const std::int64_t k1 = std::min<std::int64_t>({100, q * 30 + 30, k0 + 7});
      float block_max = scores[static_cast<std::size_t>(k0)];
      for (std::int64_t k = k0; k < k1; ++k) {
        block_max = std::max(block_max, scores[static_cast<std::size_t>(k)]);
      }
      const float c = online_softmax_rescale(state, block_max);
      acc[static_cast<std::size_t>(q)] *= c;
      for (std::int64_t k = k0; k < k1; ++k) {
        const float e = std::exp(scores[static_cast<std::size_t>(k)] - state.max);
        state.sum += e;
        acc[static_cast<std::size_t>(q)] += e * values[static_cast<std::size_t>(k)];
      }
    }
    max[static_cast<std::size_t>(q)] = state.max;
    sum[static_cast<std::size_t>(q)] = state.sum;
  }
  EXPECT_EQ(sum[4], 0.0f);  // keys 120.. do not exist
  const float merged = merge_split_channel(acc.data(), 1, max.data(), sum.data(), kSplits);
  EXPECT_NEAR(merged, direct, 1e-5 * (1.0 + std::abs(direct)));
  const float one = merge_split_channel(acc.data(), 1, max.data(), sum.data(), 1);
  EXPECT_NEAR(one, acc[0] / sum[0], 1e-6);
  const float none = merge_split_channel(acc.data() + 4, 1, max.data() + 4, sum.data() + 4, 1);
  EXPECT_TRUE(std::isnan(none));
}

TEST(SplitPlanner, FillsTheDeviceAndCoversTheLongestSequence) {
  // One long sequence, 3 units: 132 SMs want 44 splits of 750 keys, rounded up to 768 keys: 43.
  LatentDecodeSplitPlan plan = plan_latent_decode_splits(132, 1, 3, 33000);
  EXPECT_EQ(plan.num_splits, 43);
  EXPECT_EQ(plan.tokens_per_split, 768);
  EXPECT_EQ(plan.tokens_per_split % kLatentDecodeTile, 0);
  EXPECT_GE(plan.num_splits * plan.tokens_per_split, 33000);
  EXPECT_LT((plan.num_splits - 1) * plan.tokens_per_split, 33000);  // no split wholly empty
  // Enough CTAs already: one split.
  plan = plan_latent_decode_splits(132, 1, 64 * 8, 4096);
  EXPECT_EQ(plan.num_splits, 1);
  EXPECT_EQ(plan.tokens_per_split, 4096);
  // Short sequences are not cut below min_tokens_per_split.
  plan = plan_latent_decode_splits(132, 1, 1, 300);
  EXPECT_EQ(plan.num_splits, 2);
  EXPECT_EQ(plan.tokens_per_split, 160);
  plan = plan_latent_decode_splits(132, 1, 1, 1);
  EXPECT_EQ(plan.num_splits, 1);
  EXPECT_EQ(plan.tokens_per_split, kLatentDecodeTile);
  // max_splits bounds it.
  plan = plan_latent_decode_splits(1000, 4, 1, 1 << 20, 256, 64);
  EXPECT_EQ(plan.num_splits, 64);
  EXPECT_THROW((void)plan_latent_decode_splits(0, 1, 1, 10), InvalidArgument);
  EXPECT_THROW((void)plan_latent_decode_splits(1, 1, 1, 0), InvalidArgument);
}

TEST(SplitPlanner, WorkspaceSize) {
  EXPECT_EQ(latent_decode_workspace_bytes(2, 9, 32, 1), 0);
  EXPECT_EQ(latent_decode_workspace_bytes(2, 9, 32, 4), 2 * 9 * 4 * 34 * 4);
  EXPECT_EQ(latent_decode_workspace_bytes(2, 9, 32, 4, 3), 3 * 2 * 9 * 4 * 34 * 4);
}

TEST(LatentDecodeRows, ContiguousAndPaged) {
  LatentDecodeParams<float> p;
  p.seq_stride = 100;
  EXPECT_EQ(latent_decode_row(p, 0, 5), 5);
  EXPECT_EQ(latent_decode_row(p, 2, 7), 207);
  const std::vector<std::int32_t> table = {3, 0, 2, 1, 4, 5};  // 2 sequences × 3 pages of 16
  p.block_table = table.data();
  p.ld_block_table = 3;
  p.page_size = 16;
  EXPECT_EQ(latent_decode_row(p, 0, 0), 48);
  EXPECT_EQ(latent_decode_row(p, 0, 17), 1);
  EXPECT_EQ(latent_decode_row(p, 1, 33), 5 * 16 + 1);
}

TEST(LatentDecodeUnits, SplitsCoverEveryKeyOnceAndHeadsOnce) {
  const std::vector<std::int32_t> lens = {1, 17, 300};
  LatentDecodeParams<float> p;
  p.seq_lens = lens.data();
  p.batch = 3;
  p.num_groups = 2;
  p.heads_per_group = 2;
  p.group_size = 3;
  p.num_splits = 4;
  p.tokens_per_split = 96;
  for (const bool route1 : {true, false}) {
    for (std::int64_t b = 0; b < 3; ++b) {
      std::vector<int> seen(static_cast<std::size_t>(lens[static_cast<std::size_t>(b)]), 0);
      std::vector<int> heads(12, 0);
      const std::int64_t units = route1 ? latent_decode_units<LatentRoute::kRebuildKeys>(p)
                                        : latent_decode_units<LatentRoute::kProjected>(p);
      EXPECT_EQ(units, route1 ? 4 : 2);
      for (std::int64_t unit = 0; unit < units; ++unit) {
        for (std::int64_t q = 0; q < p.num_splits; ++q) {
          const LatentDecodeUnit u =
              route1 ? latent_decode_unit<LatentRoute::kRebuildKeys>(p, q, unit, b)
                     : latent_decode_unit<LatentRoute::kProjected>(p, q, unit, b);
          ASSERT_LE(u.key_begin, u.key_end);
          if (unit == 0) {
            for (std::int64_t k = u.key_begin; k < u.key_end; ++k)
              ++seen[static_cast<std::size_t>(k)];
          }
          if (q == 0) {
            for (std::int64_t i = u.first_head; i < u.first_head + u.heads; ++i) {
              ++heads[static_cast<std::size_t>(i)];
            }
            EXPECT_EQ(u.first_head / 6, u.group);
          }
        }
      }
      EXPECT_THAT(seen, ::testing::Each(1));
      EXPECT_THAT(heads, ::testing::Each(1));
    }
  }
  // Prefill: Q = 5 in blocks of 2 → tokens (0, 2), (2, 2), (4, 1); keys cut causally.
  p.query_tokens = 5;
  p.query_block = 2;
  EXPECT_EQ(latent_decode_query_blocks(p), 3);
  const LatentDecodeUnit last = latent_decode_unit<LatentRoute::kProjected>(p, 0, 0, 2, 2);
  EXPECT_EQ(last.first_token, 4);
  EXPECT_EQ(last.tokens, 1);
  const LatentDecodeUnit first = latent_decode_unit<LatentRoute::kProjected>(p, 3, 0, 2, 0);
  EXPECT_EQ(first.key_begin, 288);
  EXPECT_EQ(first.key_end, 297);  // the block's last query (position 296) sees keys 0..296
}

// ---- the GPU decomposition on the host against the references -------------------------------

template <class S>
class LatentDecodeHost : public ::testing::Test {};
using Storages = ::testing::Types<float, std::uint16_t, Bf16>;
TYPED_TEST_SUITE(LatentDecodeHost, Storages);

TYPED_TEST(LatentDecodeHost, Route1MatchesTheCpuKernel) {
  using S = TypeParam;
  for (const bool paged : {false, true}) {
    for (const std::int64_t splits : {1, 3, 11}) {
      DecodeCase c;
      c.lens = {1, 17, 300, 77};
      c.paged = paged;
      c.splits = splits;
      DecodeProblem<S> problem(c, LatentRoute::kRebuildKeys);
      latent_decode_host<LatentRoute::kRebuildKeys>(problem.params(), problem.host_data());
      const std::vector<float> ref = problem.reference_route1();
      EXPECT_LE(test::max_abs_diff(problem.out, ref), 2e-5f * (1.0f + test::max_abs(ref)))
          << "paged " << paged << ", splits " << splits;
    }
  }
}

TYPED_TEST(LatentDecodeHost, Route2MatchesFloat64Reference) {
  using S = TypeParam;
  for (const bool paged : {false, true}) {
    for (const std::int64_t splits : {1, 4}) {
      DecodeCase c;
      c.lens = {1, 17, 300};
      c.paged = paged;
      c.splits = splits;
      c.rank_k = 20;  // any rank
      c.rank_v = 13;
      c.heads_per_group = 2;
      c.num_groups = 1;
      DecodeProblem<S> problem(c, LatentRoute::kProjected);
      latent_decode_host<LatentRoute::kProjected>(problem.params(), problem.host_data());
      const std::vector<float> ref = problem.reference_route2();
      EXPECT_LE(test::max_abs_diff(problem.out, ref), 2e-5f * (1.0f + test::max_abs(ref)))
          << "paged " << paged << ", splits " << splits;
    }
  }
}

TYPED_TEST(LatentDecodeHost, ChunkedCausalPrefillMatchesTheReferences) {
  using S = TypeParam;
  for (const bool paged : {false, true}) {
    for (const std::int64_t splits : {1, 4}) {
      DecodeCase c;
      c.lens = {5, 17, 300};
      c.paged = paged;
      c.splits = splits;
      c.query_tokens = 5;
      c.query_block = 2;  // blocks of 2, 2, 1 tokens
      c.rank_k = 32;
      DecodeProblem<S> route1(c, LatentRoute::kRebuildKeys);
      latent_decode_host<LatentRoute::kRebuildKeys>(route1.params(), route1.host_data());
      const std::vector<float> ref1 = route1.reference_route1();
      EXPECT_LE(test::max_abs_diff(route1.out, ref1), 2e-5f * (1.0f + test::max_abs(ref1)))
          << "route 1, paged " << paged << ", splits " << splits;
      c.rank_v = 13;
      DecodeProblem<S> route2(c, LatentRoute::kProjected);
      latent_decode_host<LatentRoute::kProjected>(route2.params(), route2.host_data());
      const std::vector<float> ref2 = route2.reference_route2();
      EXPECT_LE(test::max_abs_diff(route2.out, ref2), 2e-5f * (1.0f + test::max_abs(ref2)))
          << "route 2, paged " << paged << ", splits " << splits;
    }
  }
}

/// Runs each CTA step's threads last to first: a step that read another thread's writes of the
/// same step (a race on the GPU) would change the result.
struct ReversedSteps {
  int threads = kLatentDecodeThreads;
  template <class F>
  void operator()(const F& f) const {
    for (int t = threads - 1; t >= 0; --t) f(t, threads);
  }
};

TYPED_TEST(LatentDecodeHost, ThreadCountAndOrderDoNotChangeABit) {
  using S = TypeParam;
  for (const LatentRoute route : {LatentRoute::kRebuildKeys, LatentRoute::kProjected}) {
    DecodeCase c;
    c.lens = {3, 70, 130};
    c.paged = true;
    c.splits = 2;
    c.query_tokens = 3;
    c.query_block = 2;
    c.rank_k = 32;
    c.rank_v = 13;
    std::vector<std::vector<float>> results;
    for (int variant = 0; variant < 4; ++variant) {
      DecodeProblem<S> problem(c, route);
      const auto run = [&](const auto& steps) {
        if (route == LatentRoute::kRebuildKeys) {
          latent_decode_host<LatentRoute::kRebuildKeys>(problem.params(), problem.host_data(),
                                                        steps);
        } else {
          latent_decode_host<LatentRoute::kProjected>(problem.params(), problem.host_data(), steps);
        }
      };
      if (variant == 0) run(CtaSteps{});
      if (variant == 1) run(ReversedSteps{});
      if (variant == 2) run(CtaSteps{32});
      if (variant == 3) run(ReversedSteps{37});
      results.push_back(problem.out);
    }
    for (std::size_t v = 1; v < results.size(); ++v) {
      ASSERT_EQ(results[v].size(), results[0].size());
      for (std::size_t i = 0; i < results[0].size(); ++i) {
        ASSERT_EQ(detail::float_as_bits(results[v][i]), detail::float_as_bits(results[0][i]))
            << "variant " << v << ", element " << i;
      }
    }
  }
}

TEST(LatentDecodeHostLong, Route1At4095Tokens) {
  DecodeCase c;
  c.lens = {4095};
  c.splits = 16;
  c.paged = true;
  DecodeProblem<std::uint16_t> problem(c, LatentRoute::kRebuildKeys);
  latent_decode_host<LatentRoute::kRebuildKeys>(problem.params(), problem.host_data());
  const std::vector<float> ref = problem.reference_route1();
  EXPECT_LE(test::max_abs_diff(problem.out, ref), 2e-5f * (1.0f + test::max_abs(ref)));
}

// ---- validation: each bad field is named -------------------------------------------------------

template <LatentRoute R>
std::string message_of(const LatentDecodeParams<std::uint16_t>& p, const LatentDecodeHostData& h,
                       std::int64_t smem = 1 << 20) {
  try {
    check_latent_decode_params<R>(p, h, smem, "where");
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "accepted";
}

TEST(LatentDecodeValidation, NamesTheBadField) {
  DecodeCase c;
  c.lens = {5, 40};
  c.paged = true;
  c.splits = 2;
  DecodeProblem<std::uint16_t> problem(c, LatentRoute::kRebuildKeys);
  constexpr LatentRoute kR1 = LatentRoute::kRebuildKeys;
  const LatentDecodeParams<std::uint16_t> good = problem.params();
  const LatentDecodeHostData host = problem.host_data();
  EXPECT_EQ(message_of<kR1>(good, host), "accepted");
  const auto bad = [&](auto change) {
    LatentDecodeParams<std::uint16_t> p = good;
    change(p);
    return message_of<kR1>(p, host);
  };
  EXPECT_THAT(bad([](auto& p) { p.latent_k = nullptr; }), HasSubstr("latent_k is null"));
  EXPECT_THAT(bad([](auto& p) { p.queries = nullptr; }), HasSubstr("queries is null"));
  EXPECT_THAT(bad([](auto& p) {
                p.latent_v = reinterpret_cast<const std::uint16_t*>(
                    reinterpret_cast<const char*>(p.latent_v) + 1);
              }),
              HasSubstr("latent_v = "));
  EXPECT_THAT(
      bad([](auto& p) { p.out = reinterpret_cast<float*>(reinterpret_cast<char*>(p.out) + 2); }),
      HasSubstr("not aligned to 4 bytes"));
  EXPECT_THAT(bad([](auto& p) { p.rank_k = 0; }), HasSubstr("rank_k = 0"));
  EXPECT_THAT(bad([](auto& p) { p.rope_dim = 7; }), HasSubstr("rope_dim = 7"));
  EXPECT_THAT(bad([](auto& p) { p.ld_latent_k = 3; }), HasSubstr("ld_latent_k = 3"));
  EXPECT_THAT(bad([](auto& p) { p.tokens_per_split = 33; }), HasSubstr("tokens_per_split = 33"));
  EXPECT_THAT(bad([](auto& p) { p.workspace_bytes = 8; }), HasSubstr("workspace_bytes = 8"));
  EXPECT_THAT(bad([](auto& p) { p.rope_rows = 39; }), HasSubstr("past the RoPE table"));
  EXPECT_THAT(bad([](auto& p) { p.num_pages = 2; }), HasSubstr("block_table["));
  EXPECT_THAT(bad([](auto& p) { p.scale = std::numeric_limits<float>::infinity(); }),
              HasSubstr("scale"));
  EXPECT_THAT(message_of<kR1>(good, host, 1000), HasSubstr("bytes of shared memory"));
  // Lengths past the cache.
  std::vector<std::int32_t> lens = {5, 10000};
  EXPECT_THAT(message_of<kR1>(good, {lens, host.block_table}), HasSubstr("seq_lens[1] = 10000"));
  lens = {0, 4};
  EXPECT_THAT(message_of<kR1>(good, {lens, host.block_table}), HasSubstr("seq_lens[0] = 0"));
  // A block table entry outside the pool.
  std::vector<std::int32_t> table(host.block_table.begin(), host.block_table.end());
  table[static_cast<std::size_t>(good.ld_block_table)] = -1;
  EXPECT_THAT(message_of<kR1>(good, {host.seq_lens, table}), HasSubstr("block_table[1][0] = -1"));
  // Prefill: a query block outside 1..Q, a sequence shorter than its queries.
  EXPECT_THAT(bad([](auto& p) { p.query_block = 2; }), HasSubstr("query_block = 2"));
  EXPECT_THAT(bad([](auto& p) {
                p.query_tokens = 6;
                p.query_block = 3;
                p.ld_queries *= 6;
                p.ld_out *= 6;
                p.workspace_bytes *= 6;
              }),
              HasSubstr("seq_lens[0] = 5, expected 6.."));
  // A split plan that misses keys.
  EXPECT_THAT(bad([](auto& p) { p.num_splits = 1; }), HasSubstr("past num_splits"));
}

}  // namespace
}  // namespace latentkv
