// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// cuda/latent_attention.cuh on a GPU against the CPU: every decode (route 1, route 2, dense) and
// the chunked causal prefill (both routes) with fp32/fp16/bf16 latents, contiguous and paged
// caches, lengths 1, 17, 4095 and 33000 in one batch, one split, several, and the device planner's
// choice. References: the CPU kernel (run_latent_attention, route 1), a float64 loop (route 2,
// dense), and the same decomposition run on the host (latent_decode_host). Tolerance, every storage
// type: the latents are rounded once when the problem is made and widened exactly on both sides, so
// CPU and GPU differ only in fp32 summation order, fused multiply-adds and expf: |gpu − ref| ≤
// 1e-4·(1 + max|ref|). Route 1 on tensor cores (fp16/bf16, rank_k = 32) multiplies B_k split into
// two 16-bit halves, so it stays within the same bound (bf16: ~2^-16 relative on the keys). Skips
// without a device.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../support/latent_decode_case.hpp"
#include "latentkv/cuda/device_buffer.hpp"
#include "latentkv/cuda/error.hpp"
#include "latentkv/cuda/latent_attention.cuh"

namespace latentkv {
namespace {

using cuda::DeviceBuffer;
using test::DecodeCase;
using test::DecodeProblem;

#define LATENTKV_REQUIRE_DEVICE()                                    \
  do {                                                               \
    if (!cuda::device_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

template <class T>
DeviceBuffer<T> upload(const std::vector<T>& host) {
  return DeviceBuffer<T>(std::span<const T>(host.data(), host.size()));
}

/// The problem's buffers on the device, and params pointing at them.
template <LatentElement S>
struct OnDevice {
  DeviceBuffer<S> latent_k, latent_v;
  DeviceBuffer<float> queries, up_k, rope, out, workspace;
  DeviceBuffer<std::int32_t> seq_lens, block_table;
  LatentDecodeParams<S> p;

  explicit OnDevice(DecodeProblem<S>& problem)
      : latent_k(upload(problem.latent_k)),
        latent_v(upload(problem.latent_v)),
        queries(upload(problem.queries)),
        up_k(upload(problem.up_k)),
        rope(upload(problem.rope)),
        out(upload(problem.out)),
        seq_lens(upload(problem.seq_lens)),
        block_table(upload(problem.block_table)),
        p(problem.params()) {
    p.latent_k = latent_k.data();
    p.latent_v = latent_v.data();
    p.queries = queries.data();
    p.up_k = up_k.data();
    p.rope = rope.data();
    p.out = out.data();
    p.seq_lens = seq_lens.data();
    p.block_table = problem.c.paged ? block_table.data() : nullptr;
    use_splits(p.num_splits, p.tokens_per_split);
  }

  void use_splits(std::int64_t splits, std::int64_t tokens_per_split) {
    p.num_splits = splits;
    p.tokens_per_split = tokens_per_split;
    const std::int64_t bytes = latent_decode_workspace_bytes(
        p.batch, latent_decode_num_heads(p), p.rank_v, p.num_splits, p.query_tokens);
    workspace = DeviceBuffer<float>(static_cast<std::size_t>(bytes / 4));
    p.workspace = workspace.data();
    p.workspace_bytes = bytes;
  }

  std::vector<float> result() const {
    std::vector<float> host(out.size());
    out.copy_to(std::span<float>(host));
    return host;
  }
};

template <class S>
class LatentDecodeCuda : public ::testing::Test {};
using Storages = ::testing::Types<float, std::uint16_t, Bf16>;
TYPED_TEST_SUITE(LatentDecodeCuda, Storages);

template <LatentRoute R, class S>
void expect_matches(DecodeProblem<S>& problem, const std::vector<float>& ref, bool planner,
                    const std::string& what) {
  OnDevice<S> device(problem);
  if (planner) {
    const LatentDecodeSplitPlan plan = cuda::plan_latent_decode<R>(device.p, problem.max_len);
    device.use_splits(plan.num_splits, plan.tokens_per_split);
  }
  cudaStream_t stream = nullptr;
  LATENTKV_CUDA_CHECK(cudaStreamCreate(&stream));
  cuda::latent_decode<R>(device.p, problem.host_data(), stream);
  LATENTKV_CUDA_CHECK(cudaStreamSynchronize(stream));
  LATENTKV_CUDA_CHECK(cudaStreamDestroy(stream));
  const std::vector<float> got = device.result();
  const float tolerance = 1e-4f * (1.0f + test::max_abs(ref));
  EXPECT_LE(test::max_abs_diff(got, ref), tolerance)
      << what << ", splits " << device.p.num_splits << (planner ? " (planner)" : "");
  // The same decomposition on the host agrees as closely.
  latent_decode_host<R>(problem.params(), problem.host_data());
  EXPECT_LE(test::max_abs_diff(got, problem.out), tolerance) << what << " vs latent_decode_host";
}

TYPED_TEST(LatentDecodeCuda, Route1MatchesTheCpuKernel) {
  LATENTKV_REQUIRE_DEVICE();
  using S = TypeParam;
  for (const bool paged : {false, true}) {
    for (const std::int64_t splits : {1, 7, 0}) {  // 0: the device planner
      for (const std::int64_t rank : {24, 32}) {   // CUDA cores; tensor cores (16-bit S)
        DecodeCase c;
        c.lens = {1, 17, 4095, 33000};
        c.paged = paged;
        c.splits = splits == 0 ? 1 : splits;
        c.rank_k = rank;
        DecodeProblem<S> problem(c, LatentRoute::kRebuildKeys);
        const std::vector<float> ref = problem.reference_route1();
        expect_matches<LatentRoute::kRebuildKeys>(
            problem, ref, splits == 0,
            std::string(paged ? "route 1 paged" : "route 1 contiguous") + ", rank_k " +
                std::to_string(rank));
      }
    }
  }
}

TYPED_TEST(LatentDecodeCuda, Route2MatchesFloat64) {
  LATENTKV_REQUIRE_DEVICE();
  using S = TypeParam;
  for (const bool paged : {false, true}) {
    for (const std::int64_t splits : {1, 5, 0}) {
      for (const std::int64_t rank : {20, 64}) {  // any rank, and a multiple of 16
        DecodeCase c;
        c.lens = {1, 17, 4095, 33000};
        c.paged = paged;
        c.splits = splits == 0 ? 1 : splits;
        c.rank_k = rank;
        c.rank_v = rank == 64 ? 64 : 13;
        DecodeProblem<S> problem(c, LatentRoute::kProjected);
        const std::vector<float> ref = problem.reference_route2();
        expect_matches<LatentRoute::kProjected>(problem, ref, splits == 0,
                                                paged ? "route 2 paged" : "route 2 contiguous");
      }
    }
  }
}

TYPED_TEST(LatentDecodeCuda, ChunkedCausalPrefillMatchesTheReferences) {
  LATENTKV_REQUIRE_DEVICE();
  using S = TypeParam;
  for (const bool paged : {false, true}) {
    for (const std::int64_t splits : {1, 6}) {
      DecodeCase c;
      c.lens = {40, 300, 4095};
      c.paged = paged;
      c.splits = splits;
      c.query_tokens = 37;
      c.query_block = 8;  // four blocks of 8 and one of 5
      c.rank_k = 32;
      DecodeProblem<S> route1(c, LatentRoute::kRebuildKeys);
      const std::vector<float> ref1 = route1.reference_route1();
      expect_matches<LatentRoute::kRebuildKeys>(route1, ref1, false, "route 1 prefill");
      c.rank_v = 13;
      DecodeProblem<S> route2(c, LatentRoute::kProjected);
      const std::vector<float> ref2 = route2.reference_route2();
      expect_matches<LatentRoute::kProjected>(route2, ref2, false, "route 2 prefill");
    }
  }
}

TYPED_TEST(LatentDecodeCuda, DenseDecodeMatchesFloat64) {
  LATENTKV_REQUIRE_DEVICE();
  using S = TypeParam;
  DecodeCase c;  // LLaMA-3-8B's attention: 32 query heads, 8 KV heads, h = 128
  c.lens = {1, 17, 4095};
  c.num_groups = 8;
  c.heads_per_group = 1;
  c.group_size = 4;
  c.head_dim = 128;
  c.rank_k = 128;
  c.rank_v = 128;
  c.splits = 3;
  DecodeProblem<S> problem(c, LatentRoute::kProjected);
  const std::vector<float> ref = problem.reference_route2();
  OnDevice<S> device(problem);
  cuda::dense_decode(device.p, problem.host_data());
  LATENTKV_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_LE(test::max_abs_diff(device.result(), ref), 1e-4f * (1.0f + test::max_abs(ref)));
  LatentDecodeParams<S> bad = device.p;
  bad.rank_v = 64;
  EXPECT_EQ(cuda::launch_dense_decode(bad), cudaErrorInvalidValue);
}

TEST(LatentDecodeCudaInput, LauncherReturnsInvalidValueAndWrapperThrows) {
  LATENTKV_REQUIRE_DEVICE();
  DecodeCase c;
  c.lens = {5, 40};
  c.paged = true;
  DecodeProblem<std::uint16_t> problem(c, LatentRoute::kRebuildKeys);
  OnDevice<std::uint16_t> device(problem);
  LatentDecodeParams<std::uint16_t> p = device.p;
  p.latent_k = nullptr;
  EXPECT_EQ(cuda::launch_latent_decode<LatentRoute::kRebuildKeys>(p), cudaErrorInvalidValue);
  EXPECT_THAT([&] { cuda::latent_decode<LatentRoute::kRebuildKeys>(p, problem.host_data()); },
              ::testing::ThrowsMessage<InvalidArgument>(::testing::HasSubstr("latent_k is null")));
  std::vector<std::int32_t> table = problem.block_table;
  table[0] = 1 << 20;
  EXPECT_THAT(
      [&] {
        cuda::latent_decode<LatentRoute::kRebuildKeys>(
            device.p, {std::span<const std::int32_t>(problem.seq_lens), table});
      },
      ::testing::ThrowsMessage<InvalidArgument>(::testing::HasSubstr("block_table[0][0]")));
  EXPECT_THROW(cuda::latent_decode<LatentRoute::kRebuildKeys>(device.p, {}), InvalidArgument);
}

TEST(DeviceCopy, CopiesAndRejectsMisalignment) {
  LATENTKV_REQUIRE_DEVICE();
  std::vector<float> host(1 << 16);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i);
  DeviceBuffer<float> src = upload(host);
  DeviceBuffer<float> dst(host.size());
  LATENTKV_CUDA_CHECK(cuda::launch_device_copy(src.data(), dst.data(), host.size() * 4, 64));
  std::vector<float> back(host.size());
  dst.copy_to(std::span<float>(back));
  EXPECT_EQ(back, host);
  EXPECT_EQ(cuda::launch_device_copy(src.data() + 1, dst.data(), 16, 1), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::launch_device_copy(src.data(), dst.data(), 12, 1), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace latentkv
