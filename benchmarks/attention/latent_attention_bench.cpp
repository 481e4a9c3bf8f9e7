// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Decode attention on SmolLM2-135M shapes (n_q 9, n_kv 3, h 64): one query token against 4K and
// 32K cached tokens (and a 1024-token prefill), dense causal_attention (fp32 post-RoPE K, V)
// against the route-1 latent kernel (attention/latent_attention.hpp) with fp32 and fp16 latents:
//   joint    r_k = r_v = 96 (budget 0.5): one latent for the 3 KV heads
//   per-head r_k = r_v = 32 per KV head (budget 0.5): three latents of 32
// Counters:
//   cache_bytes  bytes of KV cache the call reads (dense: length·2·n_kv·h·4; latent: length·
//                (Σ r_k + Σ r_v)·sizeof(storage))
//   GB/s         cache_bytes per second (the decode roofline: time ≥ bytes / bandwidth)
// Latent decode is compute-bound on a CPU (r·s·h MACs per cached token to rebuild keys, DESIGN
// §7), so it reads fewer bytes but takes longer than dense. Single-threaded (no OpenMP here).
// Run: build/benchmarks/latent_attention_bench [--benchmark_min_time=0.2]
#include <benchmark/benchmark.h>

#include <concepts>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <tuple>
#include <vector>

#include "latentkv/attention/causal_attention.hpp"
#include "latentkv/attention/latent_attention.hpp"
#include "latentkv/core/rope.hpp"

namespace latentkv {
namespace {

constexpr Index kHeads = 9;
constexpr Index kKvHeads = 3;
constexpr Index kHeadDim = 64;

RowMatrix<float> gaussian(Index rows, Index cols, double stddev, std::mt19937_64& engine) {
  std::normal_distribution<float> normal(0.0f, static_cast<float>(stddev));
  RowMatrix<float> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = normal(engine);
  return m;
}

/// Random dense and latent caches of `length` tokens (built once per shape).
struct Data {
  RowMatrix<float> keys, values;        // (length, n_kv·h)
  RowMatrix<float> latent_k, latent_v;  // (length, Σ r)
  RowMatrix<std::uint16_t> latent_k16, latent_v16;
  std::vector<RowMatrix<float>> up_k;  // (r, s·h) per group
  std::vector<Index> rank_v;
  RowMatrix<float> rope;  // (length, h)
};

const Data& data(Index length, Index heads_per_group, Index rank) {
  static std::map<std::tuple<Index, Index, Index>, std::unique_ptr<Data>> cache;
  auto& slot = cache[{length, heads_per_group, rank}];
  if (slot) return *slot;
  std::mt19937_64 engine(static_cast<std::uint64_t>(length * 31 + rank));
  auto d = std::make_unique<Data>();
  const Index groups = kKvHeads / heads_per_group;
  d->keys = gaussian(length, kKvHeads * kHeadDim, 1.0, engine);
  d->values = gaussian(length, kKvHeads * kHeadDim, 1.0, engine);
  d->latent_k = gaussian(length, groups * rank, 1.0, engine);
  d->latent_v = gaussian(length, groups * rank, 1.0, engine);
  const auto narrow = [](const RowMatrix<float>& m) {
    return RowMatrix<std::uint16_t>(m.unaryExpr([](float v) { return float_to_fp16_bits(v); }));
  };
  d->latent_k16 = narrow(d->latent_k);
  d->latent_v16 = narrow(d->latent_v);
  for (Index j = 0; j < groups; ++j) {
    d->up_k.push_back(gaussian(rank, heads_per_group * kHeadDim, 0.1, engine));
    d->rank_v.push_back(rank);
  }
  d->rope = rope_table(length, kHeadDim, 1e5f);
  slot = std::move(d);
  return *slot;
}

void set_counters(benchmark::State& state, double bytes) {
  state.counters["cache_bytes"] = bytes;
  state.counters["GB/s"] = benchmark::Counter(
      bytes * static_cast<double>(state.iterations()) * 1e-9, benchmark::Counter::kIsRate);
}

// Arguments: cached tokens, query tokens.
void BM_CausalAttention_Dense(benchmark::State& state) {
  const Index length = state.range(0);
  const Index tokens = state.range(1);
  const Data& d = data(length, kKvHeads, 96);
  std::mt19937_64 engine(1);
  const RowMatrix<float> q = gaussian(tokens, kHeads * kHeadDim, 1.0, engine);
  const float scale = 0.125f;
  for (auto _ : state) {
    RowMatrix<float> out =
        causal_attention(q, d.keys, d.values, kHeads, kKvHeads, length - tokens, scale);
    benchmark::DoNotOptimize(out.data());
  }
  set_counters(state, static_cast<double>(length * 2 * kKvHeads * kHeadDim * 4));
}

// Arguments: cached tokens, query tokens, heads per group, rank per group.
template <class S>
void BM_LatentAttention(benchmark::State& state) {
  const Index length = state.range(0);
  const Index tokens = state.range(1);
  const Index s = state.range(2);
  const Index rank = state.range(3);
  const Data& d = data(length, s, rank);
  std::mt19937_64 engine(1);
  const RowMatrix<float> q = gaussian(tokens, kHeads * kHeadDim, 1.0, engine);
  std::vector<MatrixCRef<float>> up;
  for (const auto& b : d.up_k) up.emplace_back(b);
  const auto& ck = [&]() -> const RowMatrix<S>& {
    if constexpr (std::same_as<S, float>) {
      return d.latent_k;
    } else {
      return d.latent_k16;
    }
  }();
  const auto& cv = [&]() -> const RowMatrix<S>& {
    if constexpr (std::same_as<S, float>) {
      return d.latent_v;
    } else {
      return d.latent_v16;
    }
  }();
  const LatentAttentionShape shape{kHeads, kKvHeads, s, kHeadDim, kHeadDim};
  for (auto _ : state) {
    RowMatrix<float> out = latent_attention<S>(q, ck, std::span<const MatrixCRef<float>>(up), cv,
                                               std::span<const Index>(d.rank_v), d.rope, shape,
                                               length - tokens, 0.125f);
    benchmark::DoNotOptimize(out.data());
  }
  const Index width = static_cast<Index>(d.rank_v.size()) * rank * 2;
  set_counters(state, static_cast<double>(length * width * static_cast<Index>(sizeof(S))));
}

void dense_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"cached", "queries"});
  for (const Index length : {4096, 32768}) b->Args({length, 1});
  b->Args({1024, 1024});
  b->Unit(benchmark::kMillisecond);
}

void latent_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"cached", "queries", "s", "rank"});
  for (const Index length : {4096, 32768}) {
    b->Args({length, 1, 3, 96});  // joint, budget 0.5
    b->Args({length, 1, 1, 32});  // per-head, budget 0.5
  }
  b->Args({1024, 1024, 3, 96});
  b->Args({1024, 1024, 1, 32});
  b->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_CausalAttention_Dense)->Apply(dense_args);
BENCHMARK(BM_LatentAttention<float>)->Name("BM_LatentAttention_Fp32")->Apply(latent_args);
BENCHMARK(BM_LatentAttention<std::uint16_t>)->Name("BM_LatentAttention_Fp16")->Apply(latent_args);

}  // namespace
}  // namespace latentkv

BENCHMARK_MAIN();
