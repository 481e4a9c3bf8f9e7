// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Every instantiation of the latent decode kernels (route × storage; the layout is a runtime
// choice of the same kernel), for check_spills.cmake: compiled with -Xptxas -v for each
// architecture, never linked.
#include "latentkv/cuda/latent_attention.cuh"

namespace latentkv::cuda {

template cudaError_t launch_latent_decode<LatentRoute::kRebuildKeys, float>(
    const LatentDecodeParams<float>&, cudaStream_t) noexcept;
template cudaError_t launch_latent_decode<LatentRoute::kRebuildKeys, std::uint16_t>(
    const LatentDecodeParams<std::uint16_t>&, cudaStream_t) noexcept;
template cudaError_t launch_latent_decode<LatentRoute::kRebuildKeys, Bf16>(
    const LatentDecodeParams<Bf16>&, cudaStream_t) noexcept;
template cudaError_t launch_latent_decode<LatentRoute::kProjected, float>(
    const LatentDecodeParams<float>&, cudaStream_t) noexcept;
template cudaError_t launch_latent_decode<LatentRoute::kProjected, std::uint16_t>(
    const LatentDecodeParams<std::uint16_t>&, cudaStream_t) noexcept;
template cudaError_t launch_latent_decode<LatentRoute::kProjected, Bf16>(
    const LatentDecodeParams<Bf16>&, cudaStream_t) noexcept;

}  // namespace latentkv::cuda
