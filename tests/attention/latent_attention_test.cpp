// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// attention/latent_attention.hpp against causal_attention on seeded random data: the reference
// rebuilds every key K = C^k·B_k, rotates it (rope_rotate_rows) and attends densely with the value
// latents C^v as values, group by group. fp32 and fp16 storage (the reference sees the same
// fp16-rounded latents), joint / per-head / grouped, ranks 1..192 and per-group ranks, prefill,
// continued prefill, decode at position 1000, lengths that are not multiples of the blocks,
// chunked calls equal one call, the fp16 widening, and rejected shapes. Route 2 (kProjected):
// multi-query attention on the latents against a double reference, decode with split key ranges,
// prefill, fp16 storage, and its own parameter checks.
#include "latentkv/attention/latent_attention.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../support/expect_invalid.hpp"
#include "../support/tiny_llama.hpp"
#include "latentkv/attention/causal_attention.hpp"
#include "latentkv/core/half.hpp"
#include "latentkv/core/rope.hpp"

namespace latentkv {
namespace {

struct LatentCase {
  const char* name;
  Index num_heads, num_kv_heads, heads_per_group, head_dim, rope_dim;
  Index rank_k, rank_v, rank_step;  // group j: rank + j·rank_step
  Index tokens, first_position, extra_keys;
};

std::ostream& operator<<(std::ostream& os, const LatentCase& c) { return os << c.name; }

/// Seeded inputs of one case, latents already rounded to the storage type.
template <class S>
struct Inputs {
  RowMatrix<float> queries;            // (tokens, n_q·h), rotated
  RowMatrix<S> latent_k, latent_v;     // (length, Σ r_k), (length, Σ r_v)
  std::vector<RowMatrix<float>> up_k;  // (r_k,j, s·h)
  std::vector<Index> rank_k, rank_v;
  RowMatrix<float> rope;  // (length, rope_dim)
  Index length = 0;
  float scale = 0.0f;
};

template <class S>
RowMatrix<S> to_storage(const RowMatrix<float>& m) {
  return m.unaryExpr([](float v) { return latent_from_float<S>(v); });
}

template <class S>
RowMatrix<float> to_float(const RowMatrix<S>& m) {
  return m.unaryExpr([](S v) { return latent_to_float<S>(v); });
}

template <class S>
Inputs<S> make_inputs(const LatentCase& c, std::uint64_t seed = 7) {
  std::mt19937_64 engine(seed);
  Inputs<S> in;
  const Index groups = c.num_kv_heads / c.heads_per_group;
  in.length = c.first_position + c.tokens + c.extra_keys;
  Index width_k = 0, width_v = 0;
  for (Index j = 0; j < groups; ++j) {
    in.rank_k.push_back(c.rank_k + j * c.rank_step);
    in.rank_v.push_back(c.rank_v + j * c.rank_step);
    width_k += in.rank_k.back();
    width_v += in.rank_v.back();
  }
  in.queries = testing::random_matrix(c.tokens, c.num_heads * c.head_dim, 1.0, engine);
  rope_rotate_rows(in.queries.data(), c.tokens, in.queries.cols(), static_cast<int>(c.num_heads),
                   static_cast<int>(c.head_dim), static_cast<int>(c.rope_dim), 10000.0f,
                   c.first_position);
  in.latent_k = to_storage<S>(testing::random_matrix(in.length, width_k, 1.0, engine));
  in.latent_v = to_storage<S>(testing::random_matrix(in.length, width_v, 1.0, engine));
  for (Index j = 0; j < groups; ++j) {
    const double stddev =
        2.0 / std::sqrt(static_cast<double>(in.rank_k[static_cast<std::size_t>(j)]));
    in.up_k.push_back(testing::random_matrix(in.rank_k[static_cast<std::size_t>(j)],
                                             c.heads_per_group * c.head_dim, stddev, engine));
  }
  in.rope = rope_table(in.length, c.rope_dim, 10000.0f);
  in.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  return in;
}

LatentAttentionShape shape_of(const LatentCase& c) {
  return {c.num_heads, c.num_kv_heads, c.heads_per_group, c.head_dim, c.rope_dim};
}

template <class S>
RowMatrix<float> run(const LatentCase& c, const Inputs<S>& in) {
  std::vector<MatrixCRef<float>> up;
  for (const auto& b : in.up_k) up.emplace_back(b);
  return latent_attention<S>(in.queries, in.latent_k, std::span<const MatrixCRef<float>>(up),
                             in.latent_v, std::span<const Index>(in.rank_v), in.rope, shape_of(c),
                             c.first_position, in.scale);
}

/// The dense reference, group by group: (tokens, Σ_j s·g·r_v,j).
template <class S>
RowMatrix<float> reference(const LatentCase& c, const Inputs<S>& in) {
  const Index s = c.heads_per_group;
  const Index g = c.num_heads / c.num_kv_heads;
  const Index h = c.head_dim;
  const Index groups = c.num_kv_heads / s;
  const RowMatrix<float> ck = to_float(in.latent_k);
  const RowMatrix<float> cv = to_float(in.latent_v);
  Index width_v = 0;
  for (const Index r : in.rank_v) width_v += r;
  RowMatrix<float> out(c.tokens, s * g * width_v);
  Index col_k = 0, col_v = 0;
  for (Index j = 0; j < groups; ++j) {
    const Index rk = in.rank_k[static_cast<std::size_t>(j)];
    const Index rv = in.rank_v[static_cast<std::size_t>(j)];
    RowMatrix<float> keys = ck.middleCols(col_k, rk) * in.up_k[static_cast<std::size_t>(j)];
    rope_rotate_rows(keys.data(), in.length, keys.cols(), static_cast<int>(s), static_cast<int>(h),
                     static_cast<int>(c.rope_dim), 10000.0f, 0);
    RowMatrix<float> values(in.length, s * rv);
    for (Index e = 0; e < s; ++e) values.middleCols(e * rv, rv) = cv.middleCols(col_v, rv);
    out.middleCols(s * g * col_v, s * g * rv) =
        causal_attention(in.queries.middleCols(j * s * g * h, s * g * h), keys, values, s * g, s,
                         c.first_position, in.scale);
    col_k += rk;
    col_v += rv;
  }
  return out;
}

double relative_max_error(const RowMatrix<float>& got, const RowMatrix<float>& want) {
  const double scale = std::max(1.0, static_cast<double>(want.cwiseAbs().maxCoeff()));
  return static_cast<double>((got - want).cwiseAbs().maxCoeff()) / scale;
}

class LatentAttentionCases : public ::testing::TestWithParam<LatentCase> {};

TEST_P(LatentAttentionCases, Fp32MatchesDenseAttentionOnRebuiltKeys) {
  const LatentCase c = GetParam();
  const Inputs<float> in = make_inputs<float>(c);
  const RowMatrix<float> got = run(c, in);
  const RowMatrix<float> want = reference(c, in);
  ASSERT_EQ(got.rows(), want.rows());
  ASSERT_EQ(got.cols(), want.cols());
  EXPECT_LT(relative_max_error(got, want), 2e-5);
}

TEST_P(LatentAttentionCases, Fp16MatchesDenseAttentionOnTheSameRoundedLatents) {
  const LatentCase c = GetParam();
  const Inputs<std::uint16_t> in = make_inputs<std::uint16_t>(c);
  const RowMatrix<float> got = run(c, in);
  const RowMatrix<float> want = reference(c, in);
  ASSERT_EQ(got.rows(), want.rows());
  ASSERT_EQ(got.cols(), want.cols());
  EXPECT_LT(relative_max_error(got, want), 2e-5);
  // And fp16 storage really rounds: against the unrounded fp32 latents it differs.
  const Inputs<float> exact = make_inputs<float>(c);
  EXPECT_GT(relative_max_error(got, reference(c, exact)), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, LatentAttentionCases,
    ::testing::Values(
        // SmolLM2 shapes: n_q 9, n_kv 3, h 64.
        LatentCase{"JointFullRankPrefill", 9, 3, 3, 64, 64, 192, 192, 0, 130, 0, 0},
        LatentCase{"JointRank96Decode", 9, 3, 3, 64, 64, 96, 96, 0, 1, 1000, 0},
        LatentCase{"JointRank7Continued", 9, 3, 3, 64, 64, 7, 7, 0, 77, 50, 3},
        LatentCase{"PerHeadRank1Prefill", 9, 3, 1, 64, 64, 1, 1, 0, 65, 0, 0},
        LatentCase{"PerHeadRank64Decode", 9, 3, 1, 64, 64, 64, 64, 0, 1, 1000, 5},
        LatentCase{"PerHeadRank32Prefill", 9, 3, 1, 64, 64, 32, 32, 0, 200, 0, 0},
        // Grouped (s = 2 of 4 KV heads), per-group ranks, partial RoPE, MHA.
        LatentCase{"GroupedRank7", 8, 4, 2, 16, 16, 7, 7, 0, 70, 33, 0},
        LatentCase{"GroupedPerGroupRanks", 8, 4, 2, 16, 16, 5, 9, 6, 129, 0, 0},
        LatentCase{"PartialRope", 4, 2, 2, 16, 8, 12, 10, 0, 66, 10, 0},
        LatentCase{"MultiHeadOneToken", 2, 2, 1, 8, 8, 3, 4, 1, 1, 0, 0},
        LatentCase{"LongerDecodeRank192", 9, 3, 3, 64, 64, 192, 64, 0, 3, 4000, 0}),
    [](const ::testing::TestParamInfo<LatentCase>& info) { return std::string(info.param.name); });

TEST(LatentAttention, ChunkedCallsEqualOneCall) {
  const LatentCase c{"Chunked", 9, 3, 3, 64, 64, 48, 40, 0, 150, 0, 0};
  const Inputs<float> in = make_inputs<float>(c);
  const RowMatrix<float> once = run(c, in);
  for (const Index chunk : {1, 37, 64}) {
    for (Index start = 0; start < c.tokens; start += chunk) {
      const Index rows = std::min(chunk, c.tokens - start);
      LatentCase piece = c;
      piece.tokens = rows;
      piece.first_position = start;
      Inputs<float> part = in;
      part.queries = in.queries.middleRows(start, rows);
      part.latent_k = in.latent_k.topRows(start + rows);  // only what the cache holds so far
      part.latent_v = in.latent_v.topRows(start + rows);
      const RowMatrix<float> got = run(piece, part);
      ASSERT_LT(relative_max_error(got, once.middleRows(start, rows)), 1e-5)
          << "chunk " << chunk << " start " << start;
    }
  }
}

TEST(LatentAttention, ZeroTokensGiveAnEmptyOutput) {
  const LatentCase c{"Empty", 4, 2, 2, 8, 8, 4, 4, 0, 0, 5, 0};
  const Inputs<float> in = make_inputs<float>(c);
  const RowMatrix<float> out = run(c, in);
  EXPECT_EQ(out.rows(), 0);
  EXPECT_EQ(out.cols(), 2 * 2 * 4);
}

TEST(LatentAttention, DependsOnEveryVisibleKeyAndNoLaterOne) {
  const LatentCase c{"Causal", 4, 2, 2, 8, 8, 6, 5, 0, 70, 0, 10};
  const Inputs<float> in = make_inputs<float>(c);
  const RowMatrix<float> base = run(c, in);
  Inputs<float> later = in;  // change only keys the queries must not see
  later.latent_k.bottomRows(c.extra_keys).setConstant(50.0f);
  later.latent_v.bottomRows(c.extra_keys).setConstant(50.0f);
  EXPECT_EQ(run(c, later), base);
  Inputs<float> first = in;  // key 0 is visible to every query
  first.latent_v.row(0).array() += 1.0f;
  const RowMatrix<float> moved = run(c, first);
  for (Index t = 0; t < c.tokens; ++t) EXPECT_NE(moved.row(t), base.row(t)) << t;
}

TEST(LatentAttention, Fp16WideningIsExactForEveryBitPattern) {
  for (std::uint32_t bits = 0; bits <= 0xffffu; ++bits) {
    const auto h = static_cast<std::uint16_t>(bits);
    const float want = fp16_bits_to_float(h);
    const float got = fp16_bits_to_float_fast(h);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << bits;
      ASSERT_EQ(detail::float_as_bits(got), detail::float_as_bits(want)) << bits;
    } else {
      ASSERT_EQ(detail::float_as_bits(got), detail::float_as_bits(want)) << bits;
    }
  }
}

TEST(LatentAttention, RopeTableHoldsTheRotationOfRopeRotateRows) {
  const RowMatrix<float> table = rope_table(40, 8, 10000.0f, 990);
  for (Index t = 0; t < 40; ++t) {
    for (int i = 0; i < 4; ++i) {
      const RopeCosSin cs = rope_cos_sin(990 + t, rope_inverse_frequency(i, 8, 10000.0f));
      EXPECT_EQ(table(t, i), cs.cos);
      EXPECT_EQ(table(t, 4 + i), cs.sin);
    }
  }
  EXPECT_THROW((void)rope_table(3, 7, 1e4f), InvalidArgument);
}

using testing::expect_invalid;

TEST(LatentAttention, RejectsBadShapes) {
  const LatentCase c{"Bad", 9, 3, 3, 64, 64, 8, 6, 0, 10, 4, 0};
  const Inputs<float> good = make_inputs<float>(c);
  ASSERT_NO_THROW((void)run(c, good));
  {
    Inputs<float> in = good;
    in.queries = good.queries.leftCols(9 * 64 - 1);
    expect_invalid([&] { (void)run(c, in); }, "queries have 575 columns, expected 576");
  }
  {
    Inputs<float> in = good;
    in.latent_k = good.latent_k.leftCols(7);
    expect_invalid([&] { (void)run(c, in); }, "latent_k has 7 columns, expected 8");
  }
  {
    Inputs<float> in = good;
    in.latent_v = good.latent_v.topRows(good.length - 1);
    expect_invalid([&] { (void)run(c, in); }, "latent_v has 13 rows but latent_k 14");
  }
  {
    Inputs<float> in = good;
    in.latent_k = good.latent_k.topRows(13);
    in.latent_v = good.latent_v.topRows(13);
    expect_invalid([&] { (void)run(c, in); }, "needs >= 14 cached tokens, got 13");
  }
  {
    Inputs<float> in = good;
    in.rope = good.rope.topRows(5);
    expect_invalid([&] { (void)run(c, in); }, "rope table is (5, 64), expected (>= 14, 64)");
  }
  {
    Inputs<float> in = good;
    in.up_k[0] = good.up_k[0].leftCols(100);
    expect_invalid([&] { (void)run(c, in); }, "up_k[0] is (8, 100), expected (rank_k >= 1, 192)");
  }
  {
    Inputs<float> in = good;
    in.rank_v = {0};
    expect_invalid([&] { (void)run(c, in); }, "rank_v[0] = 0");
  }
  {
    LatentCase bad = c;
    bad.heads_per_group = 2;  // does not divide n_kv = 3
    expect_invalid([&] { (void)run(bad, good); }, "heads_per_group = 2");
  }
  {
    LatentCase bad = c;
    bad.rope_dim = 63;
    expect_invalid([&] { (void)run(bad, good); }, "rope_dim = 63");
  }
  {
    LatentCase bad = c;
    bad.first_position = -1;
    expect_invalid([&] { (void)run(bad, good); }, "first_position = -1");
  }
  {
    Inputs<float> in = good;
    in.scale = std::numeric_limits<float>::infinity();
    expect_invalid([&] { (void)run(c, in); }, "scale = inf");
  }
  {
    Inputs<float> in = good;  // two value ranks for one group
    in.rank_v = {6, 6};
    expect_invalid([&] { (void)run(c, in); }, "expected one per group (1 groups of 3 KV heads)");
  }
}

/// Params of a one-group case (s = n_kv) over `in`, writing into `out`.
LatentAttentionParams<float> one_group_params(const LatentCase& c, const Inputs<float>& in,
                                              RowMatrix<float>& out) {
  LatentAttentionParams<float> p;
  out.resize(c.tokens, c.num_heads * c.rank_v);
  p.queries = in.queries.data();
  p.latent_k = in.latent_k.data();
  p.up_k = in.up_k[0].data();
  p.latent_v = in.latent_v.data();
  p.rope = in.rope.data();
  p.out = out.data();
  p.ld_queries = in.queries.cols();
  p.ld_latent_k = in.latent_k.cols();
  p.ld_up_k = in.up_k[0].cols();
  p.ld_latent_v = in.latent_v.cols();
  p.ld_rope = in.rope.cols();
  p.ld_out = out.cols();
  p.tokens = c.tokens;
  p.length = in.length;
  p.first_position = c.first_position;
  p.heads_per_group = c.heads_per_group;
  p.group_size = c.num_heads / c.num_kv_heads;
  p.head_dim = c.head_dim;
  p.rope_dim = c.rope_dim;
  p.rank_k = c.rank_k;
  p.rank_v = c.rank_v;
  p.scale = in.scale;
  return p;
}

TEST(LatentAttention, SplitKeyRangesMergeToTheSameResult) {
  for (const LatentCase& c : {LatentCase{"Decode", 9, 3, 3, 64, 64, 40, 24, 0, 1, 1000, 0},
                              LatentCase{"Prefill", 9, 3, 3, 64, 64, 40, 24, 0, 130, 300, 2}}) {
    const Inputs<float> in = make_inputs<float>(c);
    const RowMatrix<float> want = reference(c, in);
    for (const Index splits : {1, 2, 3, 7, 40}) {  // 40: more ranges than key blocks
      RowMatrix<float> out;
      const LatentAttentionParams<float> p = one_group_params(c, in, out);
      run_latent_attention(std::span<const LatentAttentionParams<float>>(&p, 1), splits);
      EXPECT_LT(relative_max_error(out, want), 2e-5) << c.name << " splits " << splits;
    }
  }
  const LatentCase c{"Decode", 9, 3, 3, 64, 64, 40, 24, 0, 1, 10, 0};
  const Inputs<float> in = make_inputs<float>(c);
  RowMatrix<float> out;
  const LatentAttentionParams<float> p = one_group_params(c, in, out);
  expect_invalid(
      [&] { run_latent_attention(std::span<const LatentAttentionParams<float>>(&p, 1), -1); },
      "key_splits = -1");
}

TEST(LatentAttention, RunRejectsBadParams) {
  const LatentCase c{"Params", 4, 2, 2, 8, 8, 4, 4, 0, 3, 0, 0};
  Inputs<float> in = make_inputs<float>(c);
  RowMatrix<float> out(3, 2 * 2 * 4);
  LatentAttentionParams<float> p;
  p.queries = in.queries.data();
  p.latent_k = in.latent_k.data();
  p.up_k = in.up_k[0].data();
  p.latent_v = in.latent_v.data();
  p.rope = in.rope.data();
  p.out = out.data();
  p.ld_queries = 32;
  p.ld_latent_k = 4;
  p.ld_up_k = 16;
  p.ld_latent_v = 4;
  p.ld_rope = 8;
  p.ld_out = 16;
  p.tokens = 3;
  p.length = 3;
  p.heads_per_group = 2;
  p.group_size = 2;
  p.head_dim = 8;
  p.rope_dim = 8;
  p.rank_k = 4;
  p.rank_v = 4;
  p.scale = in.scale;
  const auto call = [&](const LatentAttentionParams<float>& q) {
    run_latent_attention(std::span<const LatentAttentionParams<float>>(&q, 1));
  };
  ASSERT_NO_THROW(call(p));
  EXPECT_LT(relative_max_error(out, reference(c, in)), 2e-5);
  LatentAttentionParams<float> bad = p;
  bad.latent_v = nullptr;
  expect_invalid([&] { call(bad); }, "group 0: latent_v is null");
  bad = p;
  bad.ld_out = 15;
  expect_invalid([&] { call(bad); }, "group 0: ld of out = 15, expected >= 16");
  bad = p;
  bad.length = 2;
  expect_invalid([&] { call(bad); }, "got length = 2");
}

/// Route 2 reference in double: O_{t,m} = Σ_{u ≤ p0+t} softmax_u(scale·q̃_{t,m}·c^k_u)·c^v_u.
RowMatrix<float> projected_reference(const RowMatrix<float>& queries, const RowMatrix<float>& ck,
                                     const RowMatrix<float>& cv, Index heads, Index first_position,
                                     float scale) {
  const Index rk = ck.cols();
  const Index rv = cv.cols();
  RowMatrix<float> out(queries.rows(), heads * rv);
  for (Index t = 0; t < queries.rows(); ++t) {
    const Index visible = first_position + t + 1;
    for (Index m = 0; m < heads; ++m) {
      Eigen::VectorXd scores(visible);
      for (Index u = 0; u < visible; ++u) {
        scores(u) = static_cast<double>(scale) *
                    queries.row(t).segment(m * rk, rk).cast<double>().dot(ck.row(u).cast<double>());
      }
      const Eigen::VectorXd p = (scores.array() - scores.maxCoeff()).exp().matrix();
      const Eigen::RowVectorXd o = p.transpose() * cv.topRows(visible).cast<double>() / p.sum();
      out.row(t).segment(m * rv, rv) = o.cast<float>();
    }
  }
  return out;
}

template <class S>
LatentAttentionParams<S> projected_params(const RowMatrix<float>& queries, const RowMatrix<S>& ck,
                                          const RowMatrix<S>& cv, Index s, Index g,
                                          Index first_position, float scale,
                                          RowMatrix<float>& out) {
  out.resize(queries.rows(), s * g * cv.cols());
  LatentAttentionParams<S> p;
  p.route = LatentRoute::kProjected;
  p.queries = queries.data();
  p.ld_queries = queries.cols();
  p.latent_k = ck.data();
  p.ld_latent_k = ck.cols();
  p.latent_v = cv.data();
  p.ld_latent_v = cv.cols();
  p.out = out.data();
  p.ld_out = out.cols();
  p.tokens = queries.rows();
  p.length = ck.rows();
  p.first_position = first_position;
  p.heads_per_group = s;
  p.group_size = g;
  p.rank_k = ck.cols();
  p.rank_v = cv.cols();
  p.scale = scale;
  return p;  // head_dim, rope_dim, up_k, rope: unused by route 2
}

TEST(LatentAttention, ProjectedRouteIsMultiQueryAttentionOnTheLatents) {
  struct Case {
    const char* name;
    Index s, g, rank_k, rank_v, tokens, first_position, extra_keys;
  };
  std::mt19937_64 engine(23);
  for (const Case& c :
       {Case{"joint decode", 3, 3, 20, 12, 1, 1000, 0},
        Case{"per-head decode", 1, 3, 7, 33, 1, 517, 0},
        Case{"joint prefill", 3, 3, 96, 96, 130, 300, 2}, Case{"rank 1", 1, 2, 1, 1, 5, 0, 0}}) {
    const Index heads = c.s * c.g;
    const Index length = c.first_position + c.tokens + c.extra_keys;
    const RowMatrix<float> queries =
        testing::random_matrix(c.tokens, heads * c.rank_k, 1.0, engine);
    const RowMatrix<float> ck = testing::random_matrix(length, c.rank_k, 1.0, engine);
    const RowMatrix<float> cv = testing::random_matrix(length, c.rank_v, 1.0, engine);
    const float scale = 0.4f;
    const RowMatrix<float> want =
        projected_reference(queries, ck, cv, heads, c.first_position, scale);
    for (const Index splits : {1, 2, 3, 7, 40}) {
      RowMatrix<float> out;
      const LatentAttentionParams<float> p =
          projected_params(queries, ck, cv, c.s, c.g, c.first_position, scale, out);
      run_latent_attention(std::span<const LatentAttentionParams<float>>(&p, 1), splits);
      EXPECT_LT(relative_max_error(out, want), 2e-5) << c.name << " splits " << splits;
    }
    // fp16 latents: the reference sees the same rounded latents.
    const RowMatrix<std::uint16_t> ck16 = to_storage<std::uint16_t>(ck);
    const RowMatrix<std::uint16_t> cv16 = to_storage<std::uint16_t>(cv);
    RowMatrix<float> out;
    const LatentAttentionParams<std::uint16_t> p =
        projected_params(queries, ck16, cv16, c.s, c.g, c.first_position, scale, out);
    run_latent_attention(std::span<const LatentAttentionParams<std::uint16_t>>(&p, 1));
    const RowMatrix<float> want16 = projected_reference(queries, to_float(ck16), to_float(cv16),
                                                        heads, c.first_position, scale);
    EXPECT_LT(relative_max_error(out, want16), 2e-5) << c.name << " fp16";
  }
}

TEST(LatentAttention, ProjectedRouteRejectsBadParams) {
  std::mt19937_64 engine(5);
  const RowMatrix<float> queries = testing::random_matrix(3, 4 * 6, 1.0, engine);
  const RowMatrix<float> ck = testing::random_matrix(3, 6, 1.0, engine);
  const RowMatrix<float> cv = testing::random_matrix(3, 5, 1.0, engine);
  RowMatrix<float> out;
  const LatentAttentionParams<float> p = projected_params(queries, ck, cv, 2, 2, 0, 0.5f, out);
  const auto call = [&](const LatentAttentionParams<float>& q) {
    run_latent_attention(std::span<const LatentAttentionParams<float>>(&q, 1));
  };
  ASSERT_NO_THROW(call(p));  // no B_k, RoPE table or head_dim needed
  EXPECT_LT(relative_max_error(out, projected_reference(queries, ck, cv, 4, 0, 0.5f)), 2e-5);
  LatentAttentionParams<float> bad = p;
  bad.ld_queries = 23;  // route 2 queries are s·g·r_k = 24 wide
  expect_invalid([&] { call(bad); }, "group 0: ld of queries = 23, expected >= 24");
  bad = p;
  bad.rank_k = 0;
  expect_invalid([&] { call(bad); }, "rank_k = 0");
  bad = p;
  bad.route = static_cast<LatentRoute>(3);
  expect_invalid([&] { call(bad); }, "route = 3, expected 1 (kRebuildKeys) or 2 (kProjected)");
  bad = p;
  bad.latent_k = nullptr;
  expect_invalid([&] { call(bad); }, "group 0: latent_k is null");
}

}  // namespace
}  // namespace latentkv
