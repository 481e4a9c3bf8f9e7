// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Test support (not public API): LlamaWeights written as a Hugging Face checkpoint directory
// (config.json + model.safetensors with [out, in] tensors), for the tools' input tests.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "latentkv/io/hf_model_dir.hpp"
#include "latentkv/io/safetensors.hpp"
#include "latentkv/model/llama_weights.hpp"

namespace latentkv::testing {

/// Writes `w` as a Hugging Face directory (config.json + model.safetensors, [out, in] tensors).
inline void write_hf_dir(const LlamaWeights& w, const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  const ModelConfig& c = w.config;
  nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}},
                           {"model_type", "llama"},
                           {"hidden_size", c.d_model},
                           {"intermediate_size", c.ffn_dim},
                           {"num_hidden_layers", c.num_layers},
                           {"num_attention_heads", c.num_heads},
                           {"num_key_value_heads", c.num_kv_heads},
                           {"vocab_size", c.vocab_size},
                           {"rms_norm_eps", c.norm_eps},
                           {"rope_theta", c.rope_base},
                           {"tie_word_embeddings", c.tied_embeddings},
                           {"max_position_embeddings", c.context_length},
                           {"hidden_act", "silu"}};
  std::ofstream(dir / "config.json") << config.dump(2);
  SafetensorsWriter out;
  out.add(HfLlamaNames::embed_tokens(), w.token_embedding);
  out.add(HfLlamaNames::final_norm(), w.output_norm.transpose(), {c.d_model},
          SafetensorsDtype::kF32);
  for (Index l = 0; l < c.num_layers; ++l) {
    const LayerWeights& layer = w.layers[static_cast<std::size_t>(l)];
    out.add(HfLlamaNames::input_norm(l), layer.attention_norm.transpose(), {c.d_model},
            SafetensorsDtype::kF32);
    out.add(HfLlamaNames::q_proj(l), layer.attention.wq.transpose());
    out.add(HfLlamaNames::k_proj(l), layer.attention.wk.transpose());
    out.add(HfLlamaNames::v_proj(l), layer.attention.wv.transpose());
    out.add(HfLlamaNames::o_proj(l), layer.attention.wo.transpose());
  }
  out.write(dir / "model.safetensors");
}

}  // namespace latentkv::testing
