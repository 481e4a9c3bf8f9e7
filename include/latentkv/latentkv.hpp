// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Umbrella header: every host-side public header. Never includes a .cuh or CUDA Toolkit header;
// include latentkv/cuda/*.hpp explicitly (and link latentkv::cuda) for the GPU paths.
#pragma once

#include "latentkv/attention/causal_attention.hpp"
#include "latentkv/attention/latent_attention.hpp"
#include "latentkv/cache/latent_kv_cache.hpp"
#include "latentkv/core/config.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/core/half.hpp"
#include "latentkv/core/rope.hpp"
#include "latentkv/eval/perplexity.hpp"
#include "latentkv/factorize/exact_svd_factorizer.hpp"
#include "latentkv/factorize/factorize_batch.hpp"
#include "latentkv/factorize/factorizer.hpp"
#include "latentkv/factorize/gram_eigen_factorizer.hpp"
#include "latentkv/factorize/grouping.hpp"
#include "latentkv/factorize/low_rank_factors.hpp"
#include "latentkv/factorize/randomized_svd_factorizer.hpp"
#include "latentkv/factorize/whitened_factorizer.hpp"
#include "latentkv/io/gguf_reader.hpp"
#include "latentkv/io/hf_model_dir.hpp"
#include "latentkv/io/mapped_file.hpp"
#include "latentkv/io/safetensors.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/linalg/parallel.hpp"
#include "latentkv/model/dense_kv_cache.hpp"
#include "latentkv/model/kv_cache.hpp"
#include "latentkv/model/llama_model.hpp"
#include "latentkv/model/llama_weights.hpp"
#include "latentkv/model/model_config.hpp"
