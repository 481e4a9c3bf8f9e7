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
// Quantized latents (quant/latent_codec.hpp, per-token uniform grid, group 64, fp16 scale and
// zero; the kernel decodes each 128-token block on the fly, no dequantized copy): per-head
// r = 32 at int8 and int4, and full rank r = 64 at int4 (0.281 of the fp16 cache's bytes, as
// llama.cpp's q4_0):
//   cache_bytes  length · Σ latent_bytes_per_token(r, codec, length) (codes, scales, zeros)
//   vs_dense_fp16  cache_bytes / (length·2·n_kv·h·2), the byte budget of the row
// Latent decode is compute-bound on a CPU (r·s·h MACs per cached token to rebuild keys, DESIGN
// §7), so it reads fewer bytes but takes longer than dense. Single-threaded (no OpenMP here).
// Route 2 (params.route = kProjected, project/, cache/projected_kv_cache.hpp; issue 11's speed
// target): projected queries score the cached latents directly, no key is rebuilt. One decode
// token against 32K cached tokens on two layer shapes, joint latents (s = n_kv: one latent per
// layer, every query head scores it) or per-head ones (s = 1), r_k = r_v = budget·s·h per group,
// budgets 0.5 and 0.25, fp32 and fp16 latents, next to the dense kernel on the same shape
// (BM_CausalAttention_DenseShape). Joint latents cost n_q MACs per cached number against dense's
// n_q / n_kv, so on a CPU they are compute-bound where dense and per-head latents are not:
//   model 0  SmolLM2-135M   n_q 9,  n_kv 3, h 64   (joint r = 96, 48; per head 32, 16)
//   model 1  LLaMA-3-8B     n_q 32, n_kv 8, h 128  (joint r = 512, 256; per head 64, 32)
//   vs_dense  cache_bytes / the dense fp32 cache's bytes on the shape (the byte ratio the time
//             ratio is held to: route-2 time / dense time ≤ 1.1 × vs_dense)
// Run: build/benchmarks/latent_attention_bench [--benchmark_min_time=0.2]
#include <benchmark/benchmark.h>

#include <cmath>
#include <concepts>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <tuple>
#include <vector>

#include "build_context.hpp"
#include "latentkv/attention/causal_attention.hpp"
#include "latentkv/attention/latent_attention.hpp"
#include "latentkv/core/rope.hpp"
#include "latentkv/quant/latent_codec.hpp"

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

struct LayerShape {
  Index heads, kv_heads, head_dim;
};
constexpr LayerShape kShapes[] = {{9, 3, 64}, {32, 8, 128}};  // SmolLM2-135M, LLaMA-3-8B

/// Random dense K, V (length, n_kv·h) and joint route-2 latents (length, r) of a shape.
struct ProjectedData {
  RowMatrix<float> keys, values;
  RowMatrix<float> latent_k, latent_v;
  RowMatrix<std::uint16_t> latent_k16, latent_v16;
};

const ProjectedData& projected_data(Index length, Index model, Index rank) {
  static std::map<std::tuple<Index, Index, Index>, std::unique_ptr<ProjectedData>> cache;
  auto& slot = cache[{length, model, rank}];
  if (slot) return *slot;
  const LayerShape& shape = kShapes[model];
  std::mt19937_64 engine(static_cast<std::uint64_t>(length * 7 + model * 3 + rank));
  auto d = std::make_unique<ProjectedData>();
  if (rank == 0) {
    d->keys = gaussian(length, shape.kv_heads * shape.head_dim, 1.0, engine);
    d->values = gaussian(length, shape.kv_heads * shape.head_dim, 1.0, engine);
  } else {
    d->latent_k = gaussian(length, rank, 1.0, engine);
    d->latent_v = gaussian(length, rank, 1.0, engine);
    const auto narrow = [](const RowMatrix<float>& m) {
      return RowMatrix<std::uint16_t>(m.unaryExpr([](float v) { return float_to_fp16_bits(v); }));
    };
    d->latent_k16 = narrow(d->latent_k);
    d->latent_v16 = narrow(d->latent_v);
  }
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

// Arguments: cached tokens, query tokens, rank per KV head (per-head groups), bits.
void BM_QuantizedLatentAttention(benchmark::State& state) {
  const Index length = state.range(0);
  const Index tokens = state.range(1);
  const Index rank = state.range(2);
  LatentCodec codec;
  codec.bits = static_cast<int>(state.range(3));
  const Data& d = data(length, 1, rank);
  std::vector<QuantizedLatents> k;
  std::vector<QuantizedLatents> v;
  for (Index j = 0; j < kKvHeads; ++j) {
    k.emplace_back(rank, codec);
    v.emplace_back(rank, codec);
    k.back().append(d.latent_k.middleCols(j * rank, rank));
    v.back().append(d.latent_v.middleCols(j * rank, rank));
  }
  std::mt19937_64 engine(1);
  const RowMatrix<float> q = gaussian(tokens, kHeads * kHeadDim, 1.0, engine);
  const Index g = kHeads / kKvHeads;
  RowMatrix<float> out(tokens, g * kKvHeads * rank);
  std::vector<QuantizedLatentView> views(2 * kKvHeads);
  std::vector<LatentAttentionParams<QuantizedLatentView>> params(kKvHeads);
  for (Index j = 0; j < kKvHeads; ++j) {
    const auto u = static_cast<std::size_t>(j);
    views[2 * u] = k[u].view();
    views[2 * u + 1] = v[u].view();
    LatentAttentionParams<QuantizedLatentView>& p = params[u];
    p.queries = q.data() + j * g * kHeadDim;
    p.ld_queries = q.cols();
    p.latent_k = &views[2 * u];
    p.ld_latent_k = rank;
    p.up_k = d.up_k[u].data();
    p.ld_up_k = kHeadDim;
    p.latent_v = &views[2 * u + 1];
    p.ld_latent_v = rank;
    p.rope = d.rope.data();
    p.ld_rope = d.rope.cols();
    p.out = out.data() + j * g * rank;
    p.ld_out = out.cols();
    p.tokens = tokens;
    p.length = length;
    p.first_position = length - tokens;
    p.heads_per_group = 1;
    p.group_size = g;
    p.head_dim = kHeadDim;
    p.rope_dim = kHeadDim;
    p.rank_k = rank;
    p.rank_v = rank;
    p.scale = 0.125f;
  }
  for (auto _ : state) {
    run_latent_attention(std::span<const LatentAttentionParams<QuantizedLatentView>>(params));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double bytes = static_cast<double>(length) * 2.0 * static_cast<double>(kKvHeads) *
                       latent_bytes_per_token(rank, codec, length);
  set_counters(state, bytes);
  state.counters["vs_dense_fp16"] =
      bytes / static_cast<double>(length * 2 * kKvHeads * kHeadDim * 2);
}

// Arguments: cached tokens, model (kShapes). Dense fp32 K, V on the shape.
void BM_CausalAttention_DenseShape(benchmark::State& state) {
  const Index length = state.range(0);
  const LayerShape& shape = kShapes[state.range(1)];
  const ProjectedData& d = projected_data(length, state.range(1), 0);
  std::mt19937_64 engine(1);
  const RowMatrix<float> q = gaussian(1, shape.heads * shape.head_dim, 1.0, engine);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(shape.head_dim)));
  for (auto _ : state) {
    RowMatrix<float> out =
        causal_attention(q, d.keys, d.values, shape.heads, shape.kv_heads, length - 1, scale);
    benchmark::DoNotOptimize(out.data());
  }
  set_counters(state, static_cast<double>(length * 2 * shape.kv_heads * shape.head_dim * 4));
}

// Arguments: cached tokens, model (kShapes), budget in percent, joint (1: s = n_kv, one latent
// per layer; 0: s = 1, one per KV head). Route 2 with r_k = r_v = budget·s·h per group, one
// decode token; queries already projected (q̃: n_q·r_k). Every group in one call.
template <class S>
void BM_ProjectedAttention(benchmark::State& state) {
  const Index length = state.range(0);
  const LayerShape& shape = kShapes[state.range(1)];
  const Index s = state.range(3) != 0 ? shape.kv_heads : 1;
  const Index groups = shape.kv_heads / s;
  const Index rank = s * shape.head_dim * state.range(2) / 100;  // per group
  const Index width = groups * rank;
  const ProjectedData& d = projected_data(length, state.range(1), width);
  std::mt19937_64 engine(1);
  const RowMatrix<float> q = gaussian(1, shape.heads * rank, 1.0, engine);
  RowMatrix<float> out(1, shape.heads * rank);
  std::vector<LatentAttentionParams<S>> params(static_cast<std::size_t>(groups));
  const Index sg = shape.heads / groups;  // query heads per group
  for (Index j = 0; j < groups; ++j) {
    LatentAttentionParams<S>& p = params[static_cast<std::size_t>(j)];
    p.route = LatentRoute::kProjected;
    p.queries = q.data() + j * sg * rank;
    p.ld_queries = q.cols();
    if constexpr (std::same_as<S, float>) {
      p.latent_k = d.latent_k.data() + j * rank;
      p.latent_v = d.latent_v.data() + j * rank;
    } else {
      p.latent_k = d.latent_k16.data() + j * rank;
      p.latent_v = d.latent_v16.data() + j * rank;
    }
    p.ld_latent_k = width;
    p.ld_latent_v = width;
    p.out = out.data() + j * sg * rank;
    p.ld_out = out.cols();
    p.tokens = 1;
    p.length = length;
    p.first_position = length - 1;
    p.heads_per_group = s;
    p.group_size = shape.heads / shape.kv_heads;
    p.head_dim = shape.head_dim;
    p.rank_k = rank;
    p.rank_v = rank;
    p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(shape.head_dim)));
  }
  for (auto _ : state) {
    run_latent_attention(std::span<const LatentAttentionParams<S>>(params));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double bytes = static_cast<double>(length * 2 * width * static_cast<Index>(sizeof(S)));
  set_counters(state, bytes);
  state.counters["vs_dense"] =
      bytes / static_cast<double>(length * 2 * shape.kv_heads * shape.head_dim * 4);
}

void dense_shape_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"cached", "model"});
  for (const Index model : {0, 1}) b->Args({32768, model});
  b->Unit(benchmark::kMillisecond);
}

void projected_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"cached", "model", "budget%", "joint"});
  for (const Index model : {0, 1}) {
    for (const Index joint : {1, 0}) {
      for (const Index budget : {50, 25}) b->Args({32768, model, budget, joint});
    }
  }
  b->Unit(benchmark::kMillisecond);
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

void quantized_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"cached", "queries", "rank", "bits"});
  for (const Index length : {4096, 32768}) {
    b->Args({length, 1, 32, 8});  // per-head, half rank, int8
    b->Args({length, 1, 32, 4});  // per-head, half rank, int4
    b->Args({length, 1, 64, 4});  // full rank, int4
  }
  b->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_CausalAttention_Dense)->Apply(dense_args);
BENCHMARK(BM_LatentAttention<float>)->Name("BM_LatentAttention_Fp32")->Apply(latent_args);
BENCHMARK(BM_LatentAttention<std::uint16_t>)->Name("BM_LatentAttention_Fp16")->Apply(latent_args);
BENCHMARK(BM_QuantizedLatentAttention)->Apply(quantized_args);
BENCHMARK(BM_CausalAttention_DenseShape)->Apply(dense_shape_args);
BENCHMARK(BM_ProjectedAttention<float>)->Name("BM_ProjectedAttention_Fp32")->Apply(projected_args);
BENCHMARK(BM_ProjectedAttention<std::uint16_t>)
    ->Name("BM_ProjectedAttention_Fp16")
    ->Apply(projected_args);

}  // namespace
}  // namespace latentkv

int main(int argc, char** argv) { return latentkv::bench::run_benchmarks(argc, argv); }
