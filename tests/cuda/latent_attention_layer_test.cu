// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// cuda/latent_attention_layer.cuh on a GPU: one decode step (cuBLAS projections, rotate + append,
// the latent decode, the W̃_o product) against the same step composed on the CPU (float64 products,
// the CPU latent kernel on the latents the GPU appended). Tolerance: 5e-4·(1 + max|ref|) (fp32
// GEMMs of depth d and H·r_v on both sides). Skips without a device.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "../support/latent_decode_case.hpp"
#include "latentkv/cuda/device_buffer.hpp"
#include "latentkv/cuda/error.hpp"
#include "latentkv/cuda/latent_attention_layer.cuh"

namespace latentkv {
namespace {

using cuda::DeviceBuffer;

template <class T>
DeviceBuffer<T> upload(const std::vector<T>& host) {
  return DeviceBuffer<T>(std::span<const T>(host.data(), host.size()));
}

/// y (m, n) = a (m, k)·b (k, n) in float64, row-major.
std::vector<float> product(const std::vector<float>& a, const std::vector<float>& b, std::int64_t m,
                           std::int64_t k, std::int64_t n) {
  std::vector<float> y(static_cast<std::size_t>(m * n));
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double sum = 0.0;
      for (std::int64_t l = 0; l < k; ++l) {
        sum += static_cast<double>(a[static_cast<std::size_t>(i * k + l)]) *
               b[static_cast<std::size_t>(l * n + j)];
      }
      y[static_cast<std::size_t>(i * n + j)] = static_cast<float>(sum);
    }
  }
  return y;
}

template <class S>
class LatentAttentionLayerCuda : public ::testing::Test {};
using Storages = ::testing::Types<std::uint16_t, Bf16>;
TYPED_TEST_SUITE(LatentAttentionLayerCuda, Storages);

TYPED_TEST(LatentAttentionLayerCuda, DecodeStepMatchesTheCpuComposition) {
  if (!cuda::device_available()) GTEST_SKIP() << "no CUDA device";
  using S = TypeParam;
  test::DecodeCase c;
  c.lens = {1, 17, 300};
  c.paged = true;
  c.rank_k = 32;
  c.splits = 3;
  test::DecodeProblem<S> problem(c, LatentRoute::kRebuildKeys);
  const std::int64_t d = 96;
  const std::int64_t batch = problem.batch;
  const std::int64_t heads = problem.heads;
  const std::int64_t wk = problem.width_k;
  const std::int64_t wv = problem.width_v;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto random = [&](std::int64_t n, float scale) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = normal(rng) * scale;
    return v;
  };
  const float inv = 1.0f / std::sqrt(static_cast<float>(d));
  const std::vector<float> x = random(batch * d, 1.0f);
  const std::vector<float> wq = random(d * heads * c.head_dim, inv);
  const std::vector<float> down_k = random(d * wk, inv);
  const std::vector<float> down_v = random(d * wv, inv);
  const std::vector<float> wo = random(heads * c.rank_v * d, 0.1f);

  DeviceBuffer<float> x_d = upload(x), wq_d = upload(wq), down_k_d = upload(down_k),
                      down_v_d = upload(down_v), wo_d = upload(wo), up_d = upload(problem.up_k),
                      rope_d = upload(problem.rope), out_d(static_cast<std::size_t>(batch * d));
  DeviceBuffer<S> latent_k = upload(problem.latent_k), latent_v = upload(problem.latent_v);
  DeviceBuffer<std::int32_t> lens = upload(problem.seq_lens), table = upload(problem.block_table);
  cuda::LatentLayerWeights w;
  w.wq = wq_d.data();
  w.down_k = down_k_d.data();
  w.down_v = down_v_d.data();
  w.up_k = up_d.data();
  w.out = wo_d.data();
  w.rope = rope_d.data();
  w.rope_rows = problem.max_len;
  w.d_model = d;
  cuda::LatentAttentionLayer<S> layer(w);
  LatentDecodeParams<S> cache = problem.params();
  cache.latent_k = latent_k.data();
  cache.latent_v = latent_v.data();
  cache.seq_lens = lens.data();
  cache.block_table = table.data();
  DeviceBuffer<float> scratch(static_cast<std::size_t>(layer.workspace_bytes(cache) / 4));
  layer.decode(x_d.data(), cache, problem.host_data(), scratch.data(),
               static_cast<std::int64_t>(scratch.size() * 4), out_d.data());
  LATENTKV_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> out(static_cast<std::size_t>(batch * d));
  out_d.copy_to(std::span<float>(out));

  // The CPU composition, on the latents the GPU appended.
  std::vector<S> cache_k(problem.latent_k.size());
  std::vector<S> cache_v(problem.latent_v.size());
  latent_k.copy_to(std::span<S>(cache_k));
  latent_v.copy_to(std::span<S>(cache_v));
  const std::vector<float> q = product(x, wq, batch, d, heads * c.head_dim);
  const std::vector<float> lk = product(x, down_k, batch, d, wk);
  const LatentDecodeParams<S> host_params = problem.params();
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t last = c.lens[static_cast<std::size_t>(b)] - 1;
    const std::int64_t row = latent_decode_row(host_params, b, last);
    for (std::int64_t a = 0; a < wk; ++a) {
      const S stored = cache_k[static_cast<std::size_t>(row * problem.ld_latent_k + a)];
      EXPECT_NEAR(latent_to_float(stored), lk[static_cast<std::size_t>(b * wk + a)],
                  1e-2f * (1.0f + std::abs(lk[static_cast<std::size_t>(b * wk + a)])));
      problem.latent_k_of[static_cast<std::size_t>(b)][static_cast<std::size_t>(last * wk + a)] =
          stored;
    }
    for (std::int64_t a = 0; a < wv; ++a) {
      problem.latent_v_of[static_cast<std::size_t>(b)][static_cast<std::size_t>(last * wv + a)] =
          cache_v[static_cast<std::size_t>(row * problem.ld_latent_v + a)];
    }
    for (std::int64_t i = 0; i < heads; ++i) {
      float* head = problem.queries.data() + (b * heads + i) * c.head_dim;
      std::copy_n(q.begin() + (b * heads + i) * c.head_dim, c.head_dim, head);
      for (std::int64_t k = 0; k < c.rope_dim / 2; ++k) {
        rope_rotate_pair_from_table(head[k], head[k + c.rope_dim / 2],
                                    problem.rope.data() + last * c.rope_dim, k, c.rope_dim / 2);
      }
    }
  }
  const std::vector<float> o = problem.reference_route1();
  const std::vector<float> ref = product(o, wo, batch, heads * c.rank_v, d);
  EXPECT_LE(test::max_abs_diff(out, ref), 5e-4f * (1.0f + test::max_abs(ref)));
}

TEST(LatentAttentionLayerCudaInput, RejectsNullWeights) {
  cuda::LatentLayerWeights w;
  EXPECT_THAT(
      [&] { cuda::LatentAttentionLayer<std::uint16_t> layer(w); },
      ::testing::ThrowsMessage<InvalidArgument>(::testing::HasSubstr("weights.wq is null")));
}

}  // namespace
}  // namespace latentkv
