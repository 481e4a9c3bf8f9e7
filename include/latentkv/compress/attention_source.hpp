// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Where the Compressor reads a layer's attention weights from, one layer at a time, so that a
// checkpoint larger than memory streams through it (peak memory: a layer, not the model).
//   source.config()         the model's ModelConfig (validated)
//   source.attention(l)     AttentionWeights of layer l in math orientation, Hugging Face channel
//                           order: W_k, W_v (d, n_kv·h), W_o (n_q·h, d); W_q is left empty (the
//                           compressor never needs it)
//   source.tensor_name(l, side)  the checkpoint tensor behind W_k / W_v / W_o of layer l, for
//                           error messages ("blk.3.attn_k.weight")
//   source.description()    one line naming the file, for reports
// Models:
//   GgufAttentionSource     a "llama" GGUF (llama.cpp names; W_k rows un-permuted, dequantized to
//                           fp32 tensor by tensor from the memory-mapped file)
//   HfAttentionSource       a Hugging Face directory or single .safetensors file (HfModelDir)
//   WeightsAttentionSource  LlamaWeights already in memory (tests, calibrated paths)
// Every source checks each tensor's shape against the config and throws FormatError naming the
// file and the tensor; non-finite values are reported by the Compressor with the same names.
#pragma once

#include <concepts>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "latentkv/core/error.hpp"
#include "latentkv/io/gguf_reader.hpp"
#include "latentkv/io/hf_model_dir.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/model/llama_weights.hpp"
#include "latentkv/model/model_config.hpp"

namespace latentkv {

/// Which projection of a layer's attention.
enum class Projection : std::uint8_t { kKey, kValue, kOutput };

[[nodiscard]] constexpr std::string_view to_string(Projection p) noexcept {
  switch (p) {
    case Projection::kKey:
      return "W_k";
    case Projection::kValue:
      return "W_v";
    case Projection::kOutput:
      return "W_o";
  }
  return "?";
}

template <class S>
concept AttentionSource = requires(const S& s, Index layer, Projection p) {
  { s.config() } -> std::convertible_to<const ModelConfig&>;
  { s.attention(layer) } -> std::same_as<AttentionWeights>;
  { s.tensor_name(layer, p) } -> std::convertible_to<std::string>;
  { s.description() } -> std::convertible_to<std::string>;
};

namespace detail {

inline void check_source_layer(const ModelConfig& c, Index layer, const char* where) {
  if (layer < 0 || layer >= c.num_layers) {
    raise<InvalidArgument>(where, "layer = ", layer, ", expected 0..", c.num_layers - 1);
  }
}

}  // namespace detail

/// Reads a "llama" GGUF layer by layer. The reader must outlive the source.
class GgufAttentionSource {
 public:
  explicit GgufAttentionSource(const GgufReader& reader)
      : reader_(&reader), config_(from_gguf(reader)) {
    if (config_.architecture != "llama") {
      detail::raise<FormatError>("latentkv::GgufAttentionSource", reader.path().string(),
                                 ": general.architecture = ", detail::quoted(config_.architecture),
                                 ", expected \"llama\"");
    }
    config_.validate();
  }

  [[nodiscard]] const ModelConfig& config() const noexcept { return config_; }

  [[nodiscard]] std::string tensor_name(Index layer, Projection p) const {
    const char* suffix = p == Projection::kKey     ? "attn_k.weight"
                         : p == Projection::kValue ? "attn_v.weight"
                                                   : "attn_output.weight";
    return "blk." + std::to_string(layer) + "." + suffix;
  }

  /// W_k, W_v, W_o of `layer` (see the notation block); FormatError naming the tensor when its
  /// shape disagrees with the config.
  [[nodiscard]] AttentionWeights attention(Index layer) const {
    detail::check_source_layer(config_, layer, "latentkv::GgufAttentionSource::attention");
    const ModelConfig& c = config_;
    AttentionWeights w;
    w.wk =
        unpermute_qk_rows(detail::load_gguf_matrix(*reader_, tensor_name(layer, Projection::kKey),
                                                   c.kv_dim(), c.d_model),
                          c.num_kv_heads)
            .transpose();
    w.wv = detail::load_gguf_matrix(*reader_, tensor_name(layer, Projection::kValue), c.kv_dim(),
                                    c.d_model)
               .transpose();
    w.wo = detail::load_gguf_matrix(*reader_, tensor_name(layer, Projection::kOutput), c.d_model,
                                    c.q_dim())
               .transpose();
    return w;
  }

  [[nodiscard]] std::string description() const {
    return reader_->path().filename().string() + " (GGUF)";
  }

 private:
  const GgufReader* reader_;
  ModelConfig config_;
};

/// Reads a Hugging Face checkpoint (HfModelDir with a config) layer by layer. The directory must
/// outlive the source.
class HfAttentionSource {
 public:
  /// config: the model's configuration; by default the directory's config.json (a single
  /// .safetensors file has none: pass it, e.g. from_hf_config of a config.json beside it).
  explicit HfAttentionSource(const HfModelDir& dir,
                             std::optional<ModelConfig> config = std::nullopt)
      : dir_(&dir), config_(config ? std::move(*config) : dir.config()) {
    config_.validate();
  }

  [[nodiscard]] const ModelConfig& config() const noexcept { return config_; }

  [[nodiscard]] std::string tensor_name(Index layer, Projection p) const {
    return p == Projection::kKey     ? HfLlamaNames::k_proj(layer)
           : p == Projection::kValue ? HfLlamaNames::v_proj(layer)
                                     : HfLlamaNames::o_proj(layer);
  }

  [[nodiscard]] AttentionWeights attention(Index layer) const {
    detail::check_source_layer(config_, layer, "latentkv::HfAttentionSource::attention");
    const ModelConfig& c = config_;
    AttentionWeights w;
    w.wk = read(tensor_name(layer, Projection::kKey), c.kv_dim(), c.d_model).transpose();
    w.wv = read(tensor_name(layer, Projection::kValue), c.kv_dim(), c.d_model).transpose();
    w.wo = read(tensor_name(layer, Projection::kOutput), c.d_model, c.q_dim()).transpose();
    return w;
  }

  [[nodiscard]] std::string description() const {
    return dir_->path().filename().string() + " (safetensors)";
  }

 private:
  /// The tensor `name` as (rows, cols) = [out, in]; FormatError naming the file and tensor.
  [[nodiscard]] RowMatrix<float> read(const std::string& name, Index rows, Index cols) const {
    const SafetensorsTensorInfo& info = dir_->tensor(name);
    if (info.shape.size() != 2 || info.shape[0] != rows || info.shape[1] != cols) {
      detail::raise<FormatError>("latentkv::HfAttentionSource",
                                 dir_->shard_of(name).path().string(), ": tensor ",
                                 detail::quoted(name), " has shape ", detail::ShapeText{info.shape},
                                 ", expected [", rows, ", ", cols, "]");
    }
    return dir_->read_float(name);
  }

  const HfModelDir* dir_;
  ModelConfig config_;
};

/// Serves LlamaWeights already in memory (their W_k, W_v, W_o are copied per call). The weights
/// must outlive the source.
class WeightsAttentionSource {
 public:
  explicit WeightsAttentionSource(const LlamaWeights& weights, std::string description = "weights")
      : weights_(&weights), description_(std::move(description)) {
    weights.config.validate();
  }

  [[nodiscard]] const ModelConfig& config() const noexcept { return weights_->config; }

  [[nodiscard]] std::string tensor_name(Index layer, Projection p) const {
    return "layers[" + std::to_string(layer) + "].attention." +
           (p == Projection::kKey     ? "wk"
            : p == Projection::kValue ? "wv"
                                      : "wo");
  }

  [[nodiscard]] AttentionWeights attention(Index layer) const {
    detail::check_source_layer(config(), layer, "latentkv::WeightsAttentionSource::attention");
    const AttentionWeights& a = weights_->layers[static_cast<std::size_t>(layer)].attention;
    const ModelConfig& c = config();
    const auto check = [&](const RowMatrix<float>& m, Projection p, Index rows, Index cols) {
      if (m.rows() != rows || m.cols() != cols) {
        detail::raise<InvalidArgument>("latentkv::WeightsAttentionSource", tensor_name(layer, p),
                                       " is (", m.rows(), ", ", m.cols(), "), expected (", rows,
                                       ", ", cols, ")");
      }
    };
    check(a.wk, Projection::kKey, c.d_model, c.kv_dim());
    check(a.wv, Projection::kValue, c.d_model, c.kv_dim());
    check(a.wo, Projection::kOutput, c.q_dim(), c.d_model);
    return {RowMatrix<float>(), a.wk, a.wv, a.wo};
  }

  [[nodiscard]] std::string description() const { return description_; }

 private:
  const LlamaWeights* weights_;
  std::string description_;
};

static_assert(AttentionSource<GgufAttentionSource>);
static_assert(AttentionSource<HfAttentionSource>);
static_assert(AttentionSource<WeightsAttentionSource>);

}  // namespace latentkv
