// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The latentkv compressed checkpoint (docs/FORMAT.md is the specification): a safetensors file
// holding a CompressedModel's factors, rank-major, plus metadata that says how to run them.
//   d = d_model, h = head_dim, s = KV heads per group, g = n_q / n_kv, G = n_kv / s groups,
//   max_rank = min(d, s·h); for layer l (not dense) and group j (compressed_model.hpp notation):
//   layers.{l}.k.{j}.down   [r_k, d]      A_kᵀ (the nn.Linear(d, r_k) weight; in memory A_k (d,
//   r_k)) layers.{l}.k.{j}.up     [r_k, s·h]    B_k (pre-RoPE keys of the group's heads)
//   layers.{l}.k.{j}.sigma  [max_rank]    F64, the full spectrum σ
//   layers.{l}.v.{j}.down   [r_v, d]      A_vᵀ
//   layers.{l}.v.{j}.out    [r_v, s·g·d]  W̃_o (B_v folded into W_o)
//   layers.{l}.v.{j}.sigma  [max_rank]    F64
// Axis 0 of every factor is the latent index, so the rank-r' model is the first r' rows of every
// factor: a byte prefix of each tensor (load_compressed_checkpoint(path, &smaller) reads only it).
// Dense layers (CompressedLayer::compressed == false) have no tensors; "dense_layers" lists them.
// Factors are F32 (default), F16 or BF16, one dtype for the whole file; sigma is always F64.
// __metadata__: format = "latentkv.compressed", format_version = "1", latentkv_version, method,
// factorizer, grouping, plan (RankPlan JSON), source_config (ModelConfig JSON), dense_layers
// (JSON array), source_model, created_by, plus the caller's extra keys.
//
// The writer streams (SafetensorsStreamWriter): peak memory is one layer plus the header. The
// reader validates everything before it returns (FormatError naming the file, the tensor or key,
// and the byte offset where there is one): metadata, plan against config, every tensor's presence,
// dtype and shape, no unexpected tensor, finite values.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "latentkv/compress/compressed_model.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/core/version.hpp"
#include "latentkv/io/detail/json_reader.hpp"
#include "latentkv/io/safetensors.hpp"
#include "latentkv/io/safetensors_stream_writer.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/model/model_config.hpp"
#include "latentkv/schedule/rank_plan.hpp"

namespace latentkv {

inline constexpr std::string_view kCompressedCheckpointFormat = "latentkv.compressed";
inline constexpr std::string_view kCompressedCheckpointFormatVersion = "1";
/// Factors from an SVD of W_k / W_v (LoRC / Palu; plain, randomized or whitened: see factorizer),
/// run by route 1 (DESIGN §3): pre-RoPE key latents rebuilt with B_k in the kernel, values in
/// latent space through W̃_o.
inline constexpr std::string_view kLorcSvdRoute1Method = "lorc-svd-route1";

// ---- ModelConfig as JSON ------------------------------------------------------------------------

/// Every field of `c`: {"architecture": "llama", "num_layers": 30, ..., "rope_base": 100000.0,
/// "norm_eps": 9.999999747378752e-06, "tied_embeddings": true} (floats as the double of the float).
[[nodiscard]] inline nlohmann::json model_config_to_json(const ModelConfig& c) {
  nlohmann::json j = nlohmann::json::object();
  j["architecture"] = c.architecture;
  j["num_layers"] = c.num_layers;
  j["d_model"] = c.d_model;
  j["num_heads"] = c.num_heads;
  j["num_kv_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["rope_dim"] = c.rope_dim;
  j["ffn_dim"] = c.ffn_dim;
  j["vocab_size"] = c.vocab_size;
  j["context_length"] = c.context_length;
  j["rope_base"] = c.rope_base;
  j["norm_eps"] = c.norm_eps;
  j["tied_embeddings"] = c.tied_embeddings;
  return j;
}

/// Parses model_config_to_json()'s form: every key required, no other key allowed (a field this
/// version does not know may change how the model runs). Throws FormatError naming the key; does
/// not call validate().
[[nodiscard]] inline ModelConfig model_config_from_json(const nlohmann::json& j) {
  constexpr const char* kWhere = "latentkv::model_config_from_json";
  const auto fail = [&](const auto&... parts) { detail::raise<FormatError>(kWhere, parts...); };
  if (!j.is_object()) fail("expected a JSON object, got ", j.type_name());
  static const std::set<std::string, std::less<>> kKeys = {
      "architecture", "num_layers", "d_model",        "num_heads",  "num_kv_heads",
      "head_dim",     "rope_dim",   "ffn_dim",        "vocab_size", "context_length",
      "rope_base",    "norm_eps",   "tied_embeddings"};
  for (const auto& [key, value] : j.items()) {
    if (!kKeys.contains(key)) fail("unknown key \"", key, "\"");
  }
  const auto field = [&](const char* key) -> const nlohmann::json& {
    const auto it = j.find(key);
    if (it == j.end()) fail("missing key \"", key, "\"");
    return *it;
  };
  const auto integer = [&](const char* key) -> Index {
    const nlohmann::json& v = field(key);
    if (!v.is_number_integer()) fail("\"", key, "\" is ", v.dump(), ", expected an integer");
    if (v.is_number_unsigned() &&
        v.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<Index>::max())) {
      fail("\"", key, "\" is ", v.dump(), ", too large");
    }
    return v.get<Index>();
  };
  const auto number = [&](const char* key) -> float {
    const nlohmann::json& v = field(key);
    if (!v.is_number()) fail("\"", key, "\" is ", v.dump(), ", expected a number");
    const double x = v.get<double>();
    if (!(std::abs(x) <= std::numeric_limits<float>::max())) {
      fail("\"", key, "\" is ", v.dump(), ", outside the float range");
    }
    return static_cast<float>(x);
  };
  ModelConfig c;
  const nlohmann::json& architecture = field("architecture");
  if (!architecture.is_string()) {
    fail("\"architecture\" is ", architecture.dump(), ", expected a string");
  }
  c.architecture = architecture.get<std::string>();
  c.num_layers = integer("num_layers");
  c.d_model = integer("d_model");
  c.num_heads = integer("num_heads");
  c.num_kv_heads = integer("num_kv_heads");
  c.head_dim = integer("head_dim");
  c.rope_dim = integer("rope_dim");
  c.ffn_dim = integer("ffn_dim");
  c.vocab_size = integer("vocab_size");
  c.context_length = integer("context_length");
  c.rope_base = number("rope_base");
  c.norm_eps = number("norm_eps");
  const nlohmann::json& tied = field("tied_embeddings");
  if (!tied.is_boolean()) fail("\"tied_embeddings\" is ", tied.dump(), ", expected a boolean");
  c.tied_embeddings = tied.get<bool>();
  return c;
}

// ---- names, options, info -----------------------------------------------------------------------

/// "layers.{layer}.{side}.{group}.{part}": side "k" or "v", part "down", "up", "out" or "sigma".
[[nodiscard]] inline std::string compressed_tensor_name(Index layer, std::string_view side,
                                                        Index group, std::string_view part) {
  return detail::concat("layers.", layer, ".", side, ".", group, ".", part);
}

struct CompressedCheckpointOptions {
  SafetensorsDtype dtype = SafetensorsDtype::kF32;  ///< of the factors: F32, F16 or BF16
  std::string method{kLorcSvdRoute1Method};         ///< how the factors are meant to be run
  std::string source_model;                         ///< free text: "SmolLM2.gguf (98362432 bytes)"
  std::string created_by = "latentkv " LATENTKV_VERSION_STRING;  ///< the producing tool
  std::map<std::string, std::string> extra_metadata;  ///< more keys (not the format's own)
};

/// What a checkpoint says about itself, without its factors.
struct CompressedCheckpointInfo {
  std::filesystem::path path;
  ModelConfig config;                                        ///< source_config
  RankPlan plan;                                             ///< plan (dense layers at max_rank)
  std::string method;                                        ///< method
  std::string factorizer;                                    ///< factorizer
  std::string grouping;                                      ///< grouping
  std::vector<Index> dense_layers;                           ///< dense_layers, ascending
  SafetensorsDtype factor_dtype = SafetensorsDtype::kF32;    ///< F32 when every layer is dense
  std::map<std::string, std::string, std::less<>> metadata;  ///< every __metadata__ entry

  [[nodiscard]] bool is_dense(Index layer) const {
    return std::binary_search(dense_layers.begin(), dense_layers.end(), layer);
  }
  /// min(d, s·h): the length of every sigma, the rank of a dense layer's plan entries.
  [[nodiscard]] Index max_rank() const noexcept {
    return std::min(config.d_model, plan.heads_per_group * config.head_dim);
  }
};

namespace detail {

/// The format's own metadata keys (reserved: extra_metadata may not use them).
inline constexpr std::array<std::string_view, 11> kCompressedCheckpointKeys = {
    "format", "format_version", "latentkv_version", "method",       "factorizer", "grouping",
    "plan",   "source_config",  "dense_layers",     "source_model", "created_by"};

/// One tensor the plan calls for, with what decides its shape (for messages).
struct CompressedTensorSpec {
  std::string name;
  SafetensorsDtype dtype;
  std::vector<std::int64_t> shape;
  std::string because;  // "rank_k[0] = 9 of layer 2, d_model = 64"
};

/// Every tensor of a checkpoint, in the writer's declaration (and write) order: per compressed
/// layer, per group k.down, k.up, k.sigma, then per group v.down, v.out, v.sigma.
[[nodiscard]] inline std::vector<CompressedTensorSpec> compressed_tensor_specs(
    const ModelConfig& config, const RankPlan& plan, const std::vector<Index>& dense,
    SafetensorsDtype factor_dtype) {
  const Index d = config.d_model;
  const Index s = plan.heads_per_group;
  const Index sh = s * config.head_dim;
  const Index max_rank = std::min(d, sh);
  std::vector<CompressedTensorSpec> specs;
  for (Index l = 0; l < plan.num_layers(); ++l) {
    if (std::binary_search(dense.begin(), dense.end(), l)) continue;
    const LayerRanks& ranks = plan.layers[static_cast<std::size_t>(l)];
    for (const std::string_view side : {"k", "v"}) {
      const std::vector<Index>& list = side == "k" ? ranks.k : ranks.v;
      for (Index j = 0; j < static_cast<Index>(list.size()); ++j) {
        const Index r = list[static_cast<std::size_t>(j)];
        const std::string rank = concat("rank_", side, "[", j, "] = ", r, " of layer ", l);
        const auto add = [&](std::string_view part, SafetensorsDtype dtype,
                             std::vector<std::int64_t> shape, std::string because) {
          specs.push_back({compressed_tensor_name(l, side, j, part), dtype, std::move(shape),
                           std::move(because)});
        };
        add("down", factor_dtype, {r, d}, concat(rank, ", d_model = ", d));
        if (side == "k") {
          add("up", factor_dtype, {r, sh},
              concat(rank, ", ", s, " heads per group of head_dim ", config.head_dim));
        } else {
          add("out", factor_dtype, {r, s * config.group_size() * d},
              concat(rank, ", ", s, " heads per group, ", config.group_size(),
                     " query heads per KV head, d_model = ", d));
        }
        add("sigma", SafetensorsDtype::kF64, {max_rank},
            concat("max_rank = min(d_model, heads_per_group·head_dim) = ", max_rank));
      }
    }
  }
  return specs;
}

/// Checks a (config, plan, dense layers) triple; `fail(parts...)` throws.
template <class Fail>
void check_compressed_layout(const ModelConfig& config, const RankPlan& plan,
                             const std::vector<Index>& dense, Fail&& fail) {
  if (plan.num_layers() != config.num_layers || plan.num_kv_heads != config.num_kv_heads ||
      plan.head_dim != config.head_dim) {
    fail("the plan has ", plan.num_layers(), " layers of ", plan.num_kv_heads,
         " KV heads of head_dim ", plan.head_dim, ", the config ", config.num_layers, ", ",
         config.num_kv_heads, ", ", config.head_dim);
  }
  const Index max_rank = std::min(config.d_model, plan.heads_per_group * config.head_dim);
  try {
    plan.validate(max_rank);
  } catch (const InvalidArgument& e) {
    fail("invalid plan: ", e.what());
  }
  for (std::size_t i = 0; i < dense.size(); ++i) {
    const Index l = dense[i];
    if (l < 0 || l >= config.num_layers || (i > 0 && dense[i - 1] >= l)) {
      fail("dense layer ", l, " (entry ", i, " of ", dense.size(),
           "): expected distinct ascending layer indices in 0..", config.num_layers - 1);
    }
    const LayerRanks& ranks = plan.layers[static_cast<std::size_t>(l)];
    for (const auto& [side, list] : {std::pair{"k", &ranks.k}, std::pair{"v", &ranks.v}}) {
      for (std::size_t j = 0; j < list->size(); ++j) {
        if ((*list)[j] != max_rank) {
          fail("layer ", l, " is dense, but the plan gives it rank_", side, "[", j,
               "] = ", (*list)[j], ", expected max_rank = ", max_rank);
        }
      }
    }
  }
}

}  // namespace detail

// ---- the writer ---------------------------------------------------------------------------------

/// Streams a compressed checkpoint layer by layer: construct (the header is fixed), begin(path),
/// write_layer(0..L−1) in order, commit(). Destroying it before commit() removes the temporary
/// file and leaves the destination untouched.
class CompressedCheckpointWriter {
 public:
  /// `dense_layers` lists the layers without factors (any order). Throws InvalidArgument when the
  /// config is invalid, the plan does not fit it (layer / head counts, ranks in 1..max_rank, dense
  /// layers at max_rank), the dtype is not F32 / F16 / BF16 or an extra key is a reserved one.
  CompressedCheckpointWriter(ModelConfig config, RankPlan plan, std::string factorizer,
                             std::string grouping, std::vector<Index> dense_layers,
                             CompressedCheckpointOptions options = {})
      : config_(std::move(config)), plan_(std::move(plan)), dense_(std::move(dense_layers)) {
    constexpr const char* kWhere = "latentkv::CompressedCheckpointWriter";
    config_.validate();
    std::sort(dense_.begin(), dense_.end());
    detail::check_compressed_layout(config_, plan_, dense_, [&](const auto&... parts) {
      detail::raise<InvalidArgument>(kWhere, parts...);
    });
    if (options.dtype != SafetensorsDtype::kF32 && options.dtype != SafetensorsDtype::kF16 &&
        options.dtype != SafetensorsDtype::kBF16) {
      detail::raise<InvalidArgument>(kWhere, "factor dtype ", to_string(options.dtype),
                                     ", expected F32, F16 or BF16");
    }
    for (const auto& [key, value] : options.extra_metadata) {
      if (std::find(detail::kCompressedCheckpointKeys.begin(),
                    detail::kCompressedCheckpointKeys.end(),
                    key) != detail::kCompressedCheckpointKeys.end()) {
        detail::raise<InvalidArgument>(kWhere, "extra metadata key ", detail::quoted(key),
                                       " is one of the format's own keys");
      }
    }
    nlohmann::json dense_json = dense_;
    writer_.add_metadata("format", std::string(kCompressedCheckpointFormat))
        .add_metadata("format_version", std::string(kCompressedCheckpointFormatVersion))
        .add_metadata("latentkv_version", LATENTKV_VERSION_STRING)
        .add_metadata("method", std::move(options.method))
        .add_metadata("factorizer", std::move(factorizer))
        .add_metadata("grouping", std::move(grouping))
        .add_metadata("plan", plan_.to_json().dump())
        .add_metadata("source_config", model_config_to_json(config_).dump())
        .add_metadata("dense_layers", dense_json.dump())
        .add_metadata("source_model", std::move(options.source_model))
        .add_metadata("created_by", std::move(options.created_by));
    for (auto& [key, value] : options.extra_metadata) writer_.add_metadata(key, std::move(value));
    for (detail::CompressedTensorSpec& spec :
         detail::compressed_tensor_specs(config_, plan_, dense_, options.dtype)) {
      writer_.declare(std::move(spec.name), spec.dtype, std::move(spec.shape));
    }
  }

  /// Writes the header to "<path>.tmp.<pid>". Throws Error naming the file when it cannot.
  void begin(const std::filesystem::path& path) { writer_.begin(path); }

  /// Writes layer `layer` (the next one: 0, 1, ..., L−1). A dense layer takes a CompressedLayer
  /// with compressed == false and no groups. Every shape is checked against the plan and config,
  /// and every value must be finite, before anything is written: InvalidArgument names the layer,
  /// side, group and tensor (the writer stays usable). Error when the file cannot be written.
  void write_layer(Index layer, const CompressedLayer& values) {
    constexpr const char* kWhere = "latentkv::CompressedCheckpointWriter::write_layer";
    if (!writer_.begun()) detail::raise<InvalidArgument>(kWhere, "begin() was not called");
    if (layer != next_layer_) {
      detail::raise<InvalidArgument>(
          kWhere, "layer ", layer, " is out of order: expected layer ", next_layer_,
          next_layer_ == plan_.num_layers() ? " (none)" : "", " next, of ", plan_.num_layers());
    }
    const bool dense = std::binary_search(dense_.begin(), dense_.end(), layer);
    if (values.compressed == dense) {
      detail::raise<InvalidArgument>(kWhere, "layer ", layer, " is ",
                                     dense ? "dense" : "compressed",
                                     " in this checkpoint (dense_layers), but the values are ",
                                     values.compressed ? "compressed" : "dense");
    }
    const Index groups = plan_.num_groups();
    if (dense) {
      if (!values.k.empty() || !values.v.empty()) {
        detail::raise<InvalidArgument>(kWhere, "layer ", layer, " is dense but has ",
                                       values.k.size(), " key and ", values.v.size(),
                                       " value groups, expected none");
      }
      ++next_layer_;
      return;
    }
    const LayerRanks& ranks = plan_.layers[static_cast<std::size_t>(layer)];
    const Index d = config_.d_model;
    const Index sh = plan_.heads_per_group * config_.head_dim;
    const Index out_cols = plan_.heads_per_group * config_.group_size() * d;
    const Index max_rank = std::min(d, sh);
    for (const auto& [side, count] :
         {std::pair{"k", values.k.size()}, std::pair{"v", values.v.size()}}) {
      if (static_cast<Index>(count) != groups) {
        detail::raise<InvalidArgument>(kWhere, "layer ", layer, " ", side, ": ", count,
                                       " groups, expected ", groups, " (the plan's)");
      }
    }
    const auto check = [&](const char* side, Index g, const char* part, const auto& m, Index rows,
                           Index cols) {
      const Index rank = (side[0] == 'k' ? ranks.k : ranks.v)[static_cast<std::size_t>(g)];
      const std::string name = compressed_tensor_name(layer, side, g, part);
      if (m.rows() != rows || m.cols() != cols) {
        detail::raise<InvalidArgument>(
            kWhere, "layer ", layer, " ", side, " group ", g, " tensor ", detail::quoted(name),
            ": ", part, " is ", m.rows(), " x ", m.cols(), ", expected ", rows, " x ", cols,
            " (rank_", side, "[", g, "] = ", rank, " in the plan, max_rank = ", max_rank, ")");
      }
      for (Index i = 0; i < m.rows(); ++i) {
        for (Index j = 0; j < m.cols(); ++j) {
          if (!std::isfinite(m(i, j))) {
            detail::raise<InvalidArgument>(kWhere, "layer ", layer, " ", side, " group ", g,
                                           " tensor ", detail::quoted(name), ": ", part, "(", i,
                                           ", ", j, ") = ", m(i, j), ", expected a finite value");
          }
        }
      }
    };
    for (Index g = 0; g < groups; ++g) {
      const auto gi = static_cast<std::size_t>(g);
      const LatentKeyGroup& k = values.k[gi];
      check("k", g, "down", k.down, d, ranks.k[gi]);
      check("k", g, "up", k.up, ranks.k[gi], sh);
      check("k", g, "sigma", k.spectrum, max_rank, 1);
      const LatentValueGroup& v = values.v[gi];
      check("v", g, "down", v.down, d, ranks.v[gi]);
      check("v", g, "out", v.out, ranks.v[gi], out_cols);
      check("v", g, "sigma", v.spectrum, max_rank, 1);
    }
    for (Index g = 0; g < groups; ++g) {  // the order of detail::compressed_tensor_specs
      const LatentKeyGroup& k = values.k[static_cast<std::size_t>(g)];
      writer_.write(compressed_tensor_name(layer, "k", g, "down"), k.down.transpose());
      writer_.write(compressed_tensor_name(layer, "k", g, "up"), k.up);
      writer_.write(compressed_tensor_name(layer, "k", g, "sigma"), k.spectrum);
    }
    for (Index g = 0; g < groups; ++g) {
      const LatentValueGroup& v = values.v[static_cast<std::size_t>(g)];
      writer_.write(compressed_tensor_name(layer, "v", g, "down"), v.down.transpose());
      writer_.write(compressed_tensor_name(layer, "v", g, "out"), v.out);
      writer_.write(compressed_tensor_name(layer, "v", g, "sigma"), v.spectrum);
    }
    ++next_layer_;
  }

  /// Checks that every layer was written, then fsyncs and renames the file into place.
  void commit() {
    if (writer_.begun() && next_layer_ < plan_.num_layers()) {
      detail::raise<InvalidArgument>("latentkv::CompressedCheckpointWriter::commit", "layer ",
                                     next_layer_, " of ", plan_.num_layers(), " was not written");
    }
    writer_.commit();
  }

  /// The layer write_layer() expects next (L when all were written).
  [[nodiscard]] Index next_layer() const noexcept { return next_layer_; }
  [[nodiscard]] std::filesystem::path temporary_path() const { return writer_.temporary_path(); }

 private:
  ModelConfig config_;
  RankPlan plan_;
  std::vector<Index> dense_;  // ascending
  SafetensorsStreamWriter writer_;
  Index next_layer_ = 0;
};

/// Writes `model` to `path` (atomically, one layer at a time). Throws InvalidArgument as
/// CompressedCheckpointWriter does, and when the model's layer count is not the plan's.
inline void write_compressed_checkpoint(const std::filesystem::path& path,
                                        const CompressedModel& model,
                                        CompressedCheckpointOptions options = {}) {
  if (static_cast<Index>(model.layers.size()) != model.plan.num_layers()) {
    detail::raise<InvalidArgument>("latentkv::write_compressed_checkpoint", "the model has ",
                                   model.layers.size(), " layers, its plan ",
                                   model.plan.num_layers());
  }
  std::vector<Index> dense;
  for (std::size_t l = 0; l < model.layers.size(); ++l) {
    if (!model.layers[l].compressed) dense.push_back(static_cast<Index>(l));
  }
  CompressedCheckpointWriter writer(model.config, model.plan, model.factorizer, model.grouping,
                                    std::move(dense), std::move(options));
  writer.begin(path);
  for (std::size_t l = 0; l < model.layers.size(); ++l) {
    writer.write_layer(static_cast<Index>(l), model.layers[l]);
  }
  writer.commit();
}

// ---- the reader ---------------------------------------------------------------------------------

namespace detail {

/// Validates the metadata and the tensor table of an open checkpoint (no tensor data is read).
[[nodiscard]] inline CompressedCheckpointInfo inspect_compressed_checkpoint(
    const SafetensorsReader& reader, const char* where) {
  const std::string file = reader.path().string();
  const auto fail = [&](const auto&... parts) { raise<FormatError>(where, file, ": ", parts...); };
  CompressedCheckpointInfo info;
  info.path = reader.path();
  info.metadata = reader.metadata();
  const std::string* format = reader.find_metadata("format");
  if (format == nullptr) {
    fail("not a latentkv compressed checkpoint: __metadata__ has no \"format\" key");
  }
  if (*format != kCompressedCheckpointFormat) {
    fail("__metadata__ \"format\" is ", detail::quoted(*format), ", expected ",
         detail::quoted(kCompressedCheckpointFormat));
  }
  const auto text = [&](std::string_view key) -> const std::string& {
    const std::string* value = reader.find_metadata(key);
    if (value == nullptr) fail("__metadata__ has no ", detail::quoted(key), " key");
    return *value;
  };
  if (text("format_version") != kCompressedCheckpointFormatVersion) {
    fail("__metadata__ \"format_version\" is ", detail::quoted(text("format_version")),
         ": unsupported (this latentkv reads version ", kCompressedCheckpointFormatVersion, ")");
  }
  for (const std::string_view key : kCompressedCheckpointKeys) (void)text(key);  // all present
  info.method = text("method");
  info.factorizer = text("factorizer");
  info.grouping = text("grouping");
  const auto json_of = [&](std::string_view key) {
    // Offsets in these messages count from the start of the metadata value.
    const std::filesystem::path what = concat(file, ": __metadata__ \"", key, "\"");
    return parse_json_document(text(key), what, where);
  };
  const auto rethrow = [&](std::string_view key, const std::exception& e) {
    fail("__metadata__ \"", key, "\": ", e.what());
  };
  const nlohmann::json plan = json_of("plan");  // its errors name the file and key already
  try {
    info.plan = RankPlan::from_json(plan);
  } catch (const FormatError& e) {
    rethrow("plan", e);
  }
  const nlohmann::json config = json_of("source_config");
  try {
    info.config = model_config_from_json(config);
    info.config.validate();
  } catch (const Error& e) {
    rethrow("source_config", e);
  }
  const nlohmann::json dense = json_of("dense_layers");
  if (!dense.is_array())
    fail("__metadata__ \"dense_layers\" is ", dense.dump(), ", expected an array");
  for (const nlohmann::json& l : dense) {
    if (!l.is_number_integer()) {
      fail("__metadata__ \"dense_layers\" has ", l.dump(), ", expected layer indices");
    }
    info.dense_layers.push_back(l.get<Index>());
  }
  check_compressed_layout(info.config, info.plan, info.dense_layers, [&](const auto&... parts) {
    fail("__metadata__ \"plan\", \"source_config\" and \"dense_layers\" disagree: ", parts...);
  });

  // Tensors: the factor dtype is the first factor's; every tensor as the plan says, and no other.
  std::vector<CompressedTensorSpec> specs =
      compressed_tensor_specs(info.config, info.plan, info.dense_layers, SafetensorsDtype::kF32);
  for (const CompressedTensorSpec& spec : specs) {
    if (spec.dtype == SafetensorsDtype::kF64) continue;
    if (const SafetensorsTensorInfo* t = reader.find_tensor(spec.name)) {
      if (t->dtype != SafetensorsDtype::kF32 && t->dtype != SafetensorsDtype::kF16 &&
          t->dtype != SafetensorsDtype::kBF16) {
        fail("tensor ", detail::quoted(t->name), " has dtype ", to_string(t->dtype),
             ", expected F32, F16 or BF16 (header entry at byte offset ", t->header_offset, ")");
      }
      info.factor_dtype = t->dtype;
      break;
    }
  }
  std::set<std::string_view> expected;
  for (CompressedTensorSpec& spec : specs) {
    if (spec.dtype != SafetensorsDtype::kF64) spec.dtype = info.factor_dtype;
    expected.insert(spec.name);
    const SafetensorsTensorInfo* t = reader.find_tensor(spec.name);
    if (t == nullptr) {
      fail("tensor ", detail::quoted(spec.name), " is missing (", spec.because, "; the file has ",
           reader.tensors().size(), " tensors)");
    }
    if (t->dtype != spec.dtype) {
      fail("tensor ", detail::quoted(spec.name), " has dtype ", to_string(t->dtype), ", expected ",
           to_string(spec.dtype),
           spec.dtype == SafetensorsDtype::kF64 ? " (sigma is always F64)"
                                                : " (every factor has the first factor's dtype)",
           " (header entry at byte offset ", t->header_offset, ")");
    }
    if (t->shape != spec.shape) {
      fail("tensor ", detail::quoted(spec.name), " has shape ", ShapeText{t->shape}, ", expected ",
           ShapeText{spec.shape}, " (", spec.because, ") (header entry at byte offset ",
           t->header_offset, ")");
    }
  }
  for (const SafetensorsTensorInfo& t : reader.tensors()) {
    if (!expected.contains(t.name)) {
      fail("unexpected tensor ", detail::quoted(t.name), " (not called for by the plan",
           info.dense_layers.empty() ? "" : " and dense_layers", ") (header entry at byte offset ",
           t.header_offset, ")");
    }
  }
  return info;
}

/// Rows [0, rows) of a factor as float: (rows, cols); FormatError at the first non-finite value.
[[nodiscard]] inline RowMatrix<float> read_finite_rows(const SafetensorsReader& reader,
                                                       std::string_view name, Index rows,
                                                       const char* where) {
  const SafetensorsTensorInfo& t = reader.tensor(name);
  RowMatrix<float> m = reader.read_float_rows(t, 0, rows);
  const std::uint64_t size = safetensors_dtype_traits(t.dtype).bits / 8;
  for (Index k = 0; k < m.size(); ++k) {
    if (!std::isfinite(m.data()[k])) {
      raise<FormatError>(where, reader.path().string(), ": tensor ", detail::quoted(name),
                         " element [", k / m.cols(), ", ", k % m.cols(), "] is ", m.data()[k],
                         ", expected a finite value (at byte offset ",
                         t.file_offset + static_cast<std::uint64_t>(k) * size, ")");
    }
  }
  return m;
}

[[nodiscard]] inline Vector<double> read_finite_sigma(const SafetensorsReader& reader,
                                                      std::string_view name, const char* where) {
  const SafetensorsTensorInfo& t = reader.tensor(name);
  const std::span<const std::byte> bytes = reader.raw(t);
  Vector<double> sigma(static_cast<Index>(bytes.size() / 8));
  if (sigma.size() > 0) std::memcpy(sigma.data(), bytes.data(), bytes.size());  // may be unaligned
  for (Index k = 0; k < sigma.size(); ++k) {
    if (!std::isfinite(sigma(k))) {
      raise<FormatError>(where, reader.path().string(), ": tensor ", detail::quoted(name),
                         " element [", k, "] is ", sigma(k),
                         ", expected a finite value (at byte offset ",
                         t.file_offset + static_cast<std::uint64_t>(k) * 8, ")");
    }
  }
  return sigma;
}

}  // namespace detail

/// The checkpoint's config, plan, dense layers, factor dtype and metadata, after validating the
/// header (every tensor present with its expected dtype and shape); no factor is read. Throws
/// Error when the file cannot be read, FormatError naming the file, the key or tensor, and the
/// offset where there is one.
[[nodiscard]] inline CompressedCheckpointInfo read_compressed_checkpoint_info(
    const std::filesystem::path& path) {
  constexpr const char* kWhere = "latentkv::read_compressed_checkpoint_info";
  const SafetensorsReader reader = SafetensorsReader::open(path);
  return detail::inspect_compressed_checkpoint(reader, kWhere);
}

/// Loads the checkpoint as a CompressedModel in math orientation (down = A: (d, r)). With `ranks`
/// (the file's layout: layers, KV heads, head_dim, heads_per_group; no entry above the file's;
/// dense layers at max_rank; else InvalidArgument) only the leading rows of every factor are read
/// and the result equals load_compressed_checkpoint(path).truncated(*ranks). Throws as
/// read_compressed_checkpoint_info, and FormatError naming the tensor and offset of a NaN or Inf.
[[nodiscard]] inline CompressedModel load_compressed_checkpoint(const std::filesystem::path& path,
                                                                const RankPlan* ranks = nullptr) {
  constexpr const char* kWhere = "latentkv::load_compressed_checkpoint";
  const SafetensorsReader reader = SafetensorsReader::open(path);
  CompressedCheckpointInfo info = detail::inspect_compressed_checkpoint(reader, kWhere);
  const Index max_rank = info.max_rank();
  if (ranks != nullptr) {
    const RankPlan& file = info.plan;
    const auto bad = [&](const auto&... parts) {
      detail::raise<InvalidArgument>(kWhere, path.string(), ": ranks: ", parts...);
    };
    try {
      ranks->validate(max_rank);
    } catch (const InvalidArgument& e) {
      bad(e.what());
    }
    if (ranks->num_layers() != file.num_layers() || ranks->num_kv_heads != file.num_kv_heads ||
        ranks->head_dim != file.head_dim || ranks->heads_per_group != file.heads_per_group) {
      bad("the plan has ", ranks->num_layers(), " layers, ", ranks->num_kv_heads, " KV heads of ",
          ranks->head_dim, " in groups of ", ranks->heads_per_group, ", the file ",
          file.num_layers(), ", ", file.num_kv_heads, ", ", file.head_dim, ", ",
          file.heads_per_group);
    }
    for (Index l = 0; l < file.num_layers(); ++l) {
      const LayerRanks& want = ranks->layers[static_cast<std::size_t>(l)];
      const LayerRanks& have = file.layers[static_cast<std::size_t>(l)];
      for (const auto& [side, w, h] :
           {std::tuple{"k", &want.k, &have.k}, std::tuple{"v", &want.v, &have.v}}) {
        for (std::size_t g = 0; g < w->size(); ++g) {
          if (info.is_dense(l) && (*w)[g] != max_rank) {
            bad("layer ", l, " is dense, but rank_", side, "[", g, "] = ", (*w)[g], ", expected ",
                max_rank);
          }
          if ((*w)[g] > (*h)[g]) {
            bad("layer ", l, " rank_", side, "[", g, "] = ", (*w)[g], ", above the file's ",
                (*h)[g], " (truncation only shrinks)");
          }
        }
      }
    }
  }
  CompressedModel model;
  model.config = info.config;
  model.plan = ranks != nullptr ? *ranks : info.plan;
  model.factorizer = info.factorizer;
  model.grouping = info.grouping;
  model.layers.resize(static_cast<std::size_t>(model.plan.num_layers()));
  for (Index l = 0; l < model.plan.num_layers(); ++l) {
    CompressedLayer& layer = model.layers[static_cast<std::size_t>(l)];
    if (info.is_dense(l)) {
      layer.compressed = false;
      continue;
    }
    const LayerRanks& r = model.plan.layers[static_cast<std::size_t>(l)];
    for (Index g = 0; g < model.plan.num_groups(); ++g) {
      const auto gi = static_cast<std::size_t>(g);
      const auto name = [&](const char* side, const char* part) {
        return compressed_tensor_name(l, side, g, part);
      };
      LatentKeyGroup k;
      k.down = detail::read_finite_rows(reader, name("k", "down"), r.k[gi], kWhere).transpose();
      k.up = detail::read_finite_rows(reader, name("k", "up"), r.k[gi], kWhere);
      k.spectrum = detail::read_finite_sigma(reader, name("k", "sigma"), kWhere);
      layer.k.push_back(std::move(k));
    }
    for (Index g = 0; g < model.plan.num_groups(); ++g) {
      const auto gi = static_cast<std::size_t>(g);
      const auto name = [&](const char* side, const char* part) {
        return compressed_tensor_name(l, side, g, part);
      };
      LatentValueGroup v;
      v.down = detail::read_finite_rows(reader, name("v", "down"), r.v[gi], kWhere).transpose();
      v.out = detail::read_finite_rows(reader, name("v", "out"), r.v[gi], kWhere);
      v.spectrum = detail::read_finite_sigma(reader, name("v", "sigma"), kWhere);
      layer.v.push_back(std::move(v));
    }
  }
  return model;
}

}  // namespace latentkv
