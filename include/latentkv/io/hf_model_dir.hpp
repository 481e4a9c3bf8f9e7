// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// A Hugging Face LLaMA checkpoint as input:
//   <dir>/config.json                   → ModelConfig (from_hf_config)
//   <dir>/model.safetensors             one file, or
//   <dir>/model.safetensors.index.json  {"metadata": {...}, "weight_map": {"<tensor>": "<shard>"}}
//        + <dir>/<shard>.safetensors    the shards it names (plain file names in <dir>)
//   or a single .safetensors file (no configuration).
// Tensors are looked up by their Hugging Face names (HfLlamaNames): model.embed_tokens.weight
// (vocab, d), model.layers.{i}.self_attn.{q,k,v,o}_proj.weight, ….mlp.{gate,up,down}_proj.weight,
// ….input_layernorm.weight, ….post_attention_layernorm.weight, model.norm.weight, lm_head.weight
// (absent when tie_word_embeddings). Shapes are [out, in], so read_float() gives (out, in) =
// the transpose of the math orientation (DESIGN §1). Q/K rows are in Hugging Face order (NeoX
// rotate-half RoPE), which is latentkv's order: no unpermute_qk_rows() as for GGUF.
//
// Everything is validated at open(): the JSON files strictly (duplicate keys are errors), every
// shard as a SafetensorsReader does, the index against the shards (every listed tensor is in its
// shard, every shard tensor is listed), and the embedding / lm_head shapes against the config.
// Errors name the file and the key or tensor (and the byte offset for JSON syntax). An HfModelDir
// is immutable after open(): its const member functions may be called concurrently, and the views
// it returns stay valid as long as it lives (including after it is moved).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/io/detail/json_reader.hpp"
#include "latentkv/io/mapped_file.hpp"
#include "latentkv/io/safetensors.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/model/model_config.hpp"

namespace latentkv {

/// Hugging Face tensor names of a LLaMA checkpoint (LlamaForCausalLM).
struct HfLlamaNames {
  [[nodiscard]] static std::string embed_tokens() { return "model.embed_tokens.weight"; }
  [[nodiscard]] static std::string final_norm() { return "model.norm.weight"; }
  [[nodiscard]] static std::string lm_head() { return "lm_head.weight"; }
  /// "model.layers.{layer}.{suffix}", e.g. layer(3, "self_attn.k_proj.weight").
  [[nodiscard]] static std::string layer(Index layer, std::string_view suffix) {
    return "model.layers." + std::to_string(layer) + "." + std::string(suffix);
  }
  [[nodiscard]] static std::string input_norm(Index l) {
    return layer(l, "input_layernorm.weight");
  }
  [[nodiscard]] static std::string q_proj(Index l) { return layer(l, "self_attn.q_proj.weight"); }
  [[nodiscard]] static std::string k_proj(Index l) { return layer(l, "self_attn.k_proj.weight"); }
  [[nodiscard]] static std::string v_proj(Index l) { return layer(l, "self_attn.v_proj.weight"); }
  [[nodiscard]] static std::string o_proj(Index l) { return layer(l, "self_attn.o_proj.weight"); }
  [[nodiscard]] static std::string post_attention_norm(Index l) {
    return layer(l, "post_attention_layernorm.weight");
  }
  [[nodiscard]] static std::string gate_proj(Index l) { return layer(l, "mlp.gate_proj.weight"); }
  [[nodiscard]] static std::string up_proj(Index l) { return layer(l, "mlp.up_proj.weight"); }
  [[nodiscard]] static std::string down_proj(Index l) { return layer(l, "mlp.down_proj.weight"); }
};

namespace detail {

/// Reads the keys of one parsed config.json; every error names the file and the key.
class HfConfigKeys {
 public:
  HfConfigKeys(const nlohmann::json& config, const std::filesystem::path& file, const char* where)
      : config_(config), file_(file), where_(where) {}

  /// The value of `key`, nullptr when it is absent or null.
  [[nodiscard]] const nlohmann::json* find(std::string_view key) const {
    const auto it = config_.find(key);
    return it == config_.end() || it->is_null() ? nullptr : &*it;
  }

  [[nodiscard]] Index integer(std::string_view key) const {
    const nlohmann::json* value = find(key);
    if (value == nullptr) fail("missing key ", detail::quoted(key), " (an integer)");
    return integer(key, *value);
  }
  [[nodiscard]] Index integer_or(std::string_view key, Index fallback) const {
    const nlohmann::json* value = find(key);
    return value == nullptr ? fallback : integer(key, *value);
  }

  [[nodiscard]] float number_or(std::string_view key, float fallback) const {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return fallback;
    if (!value->is_number()) wrong_type(key, *value, "a number");
    return static_cast<float>(value->get<double>());
  }

  [[nodiscard]] bool boolean_or(std::string_view key, bool fallback) const {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return fallback;
    if (!value->is_boolean()) wrong_type(key, *value, "true or false");
    return value->get<bool>();
  }

  [[nodiscard]] std::optional<std::string> string(std::string_view key) const {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_string()) wrong_type(key, *value, "a string");
    return value->get<std::string>();
  }

  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    raise<FormatError>(where_, file_.string(), ": ", parts...);
  }

  /// A short rendering of a JSON value for messages.
  [[nodiscard]] static std::string show(const nlohmann::json& value) {
    std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (text.size() > 80) text = text.substr(0, 77) + "...";
    return text;
  }

  [[noreturn]] void wrong_type(std::string_view key, const nlohmann::json& value,
                               const char* expected) const {
    fail("key ", detail::quoted(key), " is ", show(value), " (a JSON ", value.type_name(),
         "), expected ", expected);
  }

 private:
  [[nodiscard]] Index integer(std::string_view key, const nlohmann::json& value) const {
    if (value.is_number_unsigned()) {
      const auto v = value.get<std::uint64_t>();
      if (std::in_range<Index>(v)) return static_cast<Index>(v);
    } else if (value.is_number_integer()) {
      return static_cast<Index>(value.get<std::int64_t>());  // negative: validate() names it
    }
    wrong_type(key, value, "an integer in the range of int64");
  }

  const nlohmann::json& config_;
  const std::filesystem::path& file_;
  const char* where_;
};

}  // namespace detail

/// Reads a Hugging Face LLaMA config.json (LlamaConfig) from its text; `file` names it in messages.
///   num_hidden_layers, hidden_size, num_attention_heads, intermediate_size, vocab_size: required
///   num_key_value_heads (default num_attention_heads), head_dim (default hidden_size / heads),
///   rope_theta (default 10000), rms_norm_eps (default 1e-6), tie_word_embeddings (default false),
///   max_position_embeddings (default 0 = unknown) — the defaults are transformers' LlamaConfig
///   ones; a null value counts as absent. rope_dim = head_dim.
/// What latentkv does not implement is refused rather than ignored: model_type other than "llama",
/// a non-null rope_scaling, attention_bias or mlp_bias true, hidden_act other than "silu".
/// Throws FormatError naming the file and the key (and the byte offset for JSON syntax).
[[nodiscard]] inline ModelConfig from_hf_config_json(std::string_view text,
                                                     const std::filesystem::path& file) {
  constexpr const char* kWhere = "latentkv::from_hf_config";
  const nlohmann::json config = detail::parse_json_document(text, file, kWhere);
  const detail::HfConfigKeys keys(config, file, kWhere);
  if (!config.is_object()) {
    keys.fail("the JSON is ", detail::HfConfigKeys::show(config), " (a JSON ", config.type_name(),
              "), expected an object");
  }
  if (const auto model_type = keys.string("model_type"); model_type && *model_type != "llama") {
    keys.fail("model_type ", detail::quoted(*model_type), " is not supported, expected 'llama'");
  }
  if (const nlohmann::json* scaling = keys.find("rope_scaling")) {
    keys.fail("rope_scaling = ", detail::HfConfigKeys::show(*scaling),
              " is not supported (latentkv implements plain RoPE), expected null");
  }
  for (const char* bias : {"attention_bias", "mlp_bias"}) {
    if (keys.boolean_or(bias, false)) {
      keys.fail(bias, " = true is not supported (LLaMA projections have no bias)");
    }
  }
  if (const auto act = keys.string("hidden_act"); act && *act != "silu") {
    keys.fail("hidden_act ", detail::quoted(*act), " is not supported, expected 'silu' (SwiGLU)");
  }

  ModelConfig c;
  c.architecture = "llama";
  c.num_layers = keys.integer("num_hidden_layers");
  c.d_model = keys.integer("hidden_size");
  c.num_heads = keys.integer("num_attention_heads");
  c.num_kv_heads = keys.integer_or("num_key_value_heads", c.num_heads);
  if (keys.find("head_dim") == nullptr && c.num_heads > 0 && c.d_model % c.num_heads != 0) {
    keys.fail("hidden_size = ", c.d_model,
              " is not a multiple of num_attention_heads = ", c.num_heads,
              " and head_dim is missing");
  }
  c.head_dim = keys.integer_or("head_dim", c.num_heads > 0 ? c.d_model / c.num_heads : 0);
  c.rope_dim = c.head_dim;
  c.ffn_dim = keys.integer("intermediate_size");
  c.vocab_size = keys.integer("vocab_size");
  c.context_length = keys.integer_or("max_position_embeddings", 0);
  c.rope_base = keys.number_or("rope_theta", 10000.0f);
  c.norm_eps = keys.number_or("rms_norm_eps", 1e-6f);
  c.tied_embeddings = keys.boolean_or("tie_word_embeddings", false);
  try {
    c.validate();
  } catch (const InvalidArgument& e) {
    keys.fail("invalid configuration: ", e.what());
  }
  return c;
}

/// Reads a Hugging Face LLaMA config.json file (see from_hf_config_json).
[[nodiscard]] inline ModelConfig from_hf_config(const std::filesystem::path& config_json) {
  const MappedFile file = MappedFile::open(config_json);
  const std::string_view text(reinterpret_cast<const char*>(file.data()), file.size());
  return from_hf_config_json(text, config_json);
}

class HfModelDir {
 public:
  static constexpr std::string_view kConfigName = "config.json";
  static constexpr std::string_view kSingleName = "model.safetensors";
  static constexpr std::string_view kIndexName = "model.safetensors.index.json";

  /// Opens a model directory (config.json and model.safetensors, or the index and its shards; a
  /// single file is preferred when both exist, as transformers does) or a single .safetensors file
  /// (then has_config() is false). Throws Error when a file cannot be read and FormatError when
  /// one is malformed or they disagree.
  [[nodiscard]] static HfModelDir open(const std::filesystem::path& path) {
    constexpr const char* kWhere = "latentkv::HfModelDir::open";
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (!fs::exists(status)) {
      detail::raise<Error>(kWhere, path.string(), ": no such file or directory");
    }
    HfModelDir dir(path);
    if (!fs::is_directory(status)) {
      dir.shards_.push_back(SafetensorsReader::open(path));
      dir.build_single_index();
      return dir;
    }
    const fs::path config = path / kConfigName;
    if (!fs::exists(config, ec)) {
      detail::raise<FormatError>(kWhere, path.string(), ": no ", kConfigName,
                                 " (a Hugging Face model directory has one)");
    }
    dir.config_ = from_hf_config(config);
    if (const fs::path single = path / kSingleName; fs::exists(single, ec)) {
      dir.shards_.push_back(SafetensorsReader::open(single));
      dir.build_single_index();
    } else if (const fs::path index = path / kIndexName; fs::exists(index, ec)) {
      dir.open_shards(index);
    } else {
      detail::raise<FormatError>(kWhere, path.string(), ": neither ", kSingleName, " nor ",
                                 kIndexName, " (only safetensors checkpoints are supported)");
    }
    dir.check_against_config();
    return dir;
  }

  /// The path given to open().
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

  [[nodiscard]] bool has_config() const noexcept { return config_.has_value(); }
  /// The configuration from config.json; throws InvalidArgument for a single-file checkpoint.
  [[nodiscard]] const ModelConfig& config() const {
    if (!config_) {
      detail::raise<InvalidArgument>("latentkv::HfModelDir::config", path_.string(),
                                     " is a single .safetensors file: no config.json");
    }
    return *config_;
  }

  /// The opened files: one, or the shards in file-name order.
  [[nodiscard]] std::span<const SafetensorsReader> shards() const noexcept { return shards_; }

  /// Every tensor name, sorted.
  [[nodiscard]] std::vector<std::string_view> tensor_names() const {
    std::vector<std::string_view> names;
    names.reserve(index_.size());
    for (const auto& entry : index_) names.push_back(entry.first);
    return names;
  }

  [[nodiscard]] const SafetensorsTensorInfo* find_tensor(std::string_view name) const noexcept {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : shards_[it->second].find_tensor(name);
  }

  /// The tensor called `name`; throws FormatError naming the checkpoint and tensor when absent.
  [[nodiscard]] const SafetensorsTensorInfo& tensor(std::string_view name) const {
    return shard_of(name).tensor(name);
  }

  /// The file that holds `name`.
  [[nodiscard]] const SafetensorsReader& shard_of(std::string_view name) const {
    const auto it = index_.find(name);
    if (it == index_.end()) {
      detail::raise<FormatError>("latentkv::HfModelDir::tensor", path_.string(),
                                 ": no tensor named ", detail::quoted(name),
                                 " (the checkpoint has ", index_.size(), " tensors)");
    }
    return shards_[it->second];
  }

  /// Zero-copy bytes of `name` in its shard.
  [[nodiscard]] std::span<const std::byte> raw(std::string_view name) const {
    return shard_of(name).raw(name);
  }
  /// (rows, cols) float view of an F32 tensor, zero-copy (see SafetensorsReader::map_f32).
  [[nodiscard]] Eigen::Map<const RowMatrix<float>> map_f32(std::string_view name) const {
    return shard_of(name).map_f32(name);
  }
  /// The tensor as float (rows, cols) = (shape[0]·…·shape[n−2], shape[n−1]); F32, F16, BF16.
  [[nodiscard]] RowMatrix<float> read_float(std::string_view name) const {
    return shard_of(name).read_float(name);
  }
  /// Rows [first_row, first_row + row_count) of the tensor as float: (row_count, cols).
  [[nodiscard]] RowMatrix<float> read_float_rows(std::string_view name, Index first_row,
                                                 Index row_count) const {
    return shard_of(name).read_float_rows(name, first_row, row_count);
  }

 private:
  explicit HfModelDir(std::filesystem::path path) : path_(std::move(path)) {}

  void build_single_index() {
    for (const SafetensorsTensorInfo& info : shards_.front().tensors())
      index_.emplace(info.name, 0);
  }

  void open_shards(const std::filesystem::path& index_path) {
    constexpr const char* kWhere = "latentkv::HfModelDir::open";
    const MappedFile file = MappedFile::open(index_path);
    const nlohmann::json index = detail::parse_json_document(
        std::string_view(reinterpret_cast<const char*>(file.data()), file.size()), index_path,
        kWhere);
    const auto fail = [&](const auto&... parts) {
      detail::raise<FormatError>(kWhere, index_path.string(), ": ", parts...);
    };
    if (!index.is_object()) fail("the JSON is a ", index.type_name(), ", expected an object");
    const auto weight_map = index.find("weight_map");
    if (weight_map == index.end() || !weight_map->is_object()) {
      fail("missing key 'weight_map' (an object mapping tensor names to shard files)");
    }
    // Shard file names, each opened once, in name order (std::map).
    std::map<std::string, std::size_t, std::less<>> shard_numbers;
    for (const auto& [tensor, shard] : weight_map->items()) {
      if (!shard.is_string()) {
        fail("weight_map entry ", detail::quoted(tensor), " is a JSON ", shard.type_name(),
             ", expected a shard file name");
      }
      const auto& name = shard.get_ref<const std::string&>();
      if (name.empty() || name == "." || name == ".." ||
          name.find_first_of(std::string_view("/\\\0", 3)) != std::string::npos) {
        fail("weight_map entry ", detail::quoted(tensor), " names shard ", detail::quoted(name),
             ", expected a file name in the model directory");
      }
      shard_numbers.emplace(name, 0);
    }
    for (auto& [name, number] : shard_numbers) {
      number = shards_.size();
      shards_.push_back(SafetensorsReader::open(index_path.parent_path() / name));
    }
    for (const auto& [tensor, shard] : weight_map->items()) {
      const std::size_t number = shard_numbers.find(shard.get_ref<const std::string&>())->second;
      if (shards_[number].find_tensor(tensor) == nullptr) {
        fail("weight_map maps tensor ", detail::quoted(tensor), " to ",
             shards_[number].path().string(), ", which has no such tensor");
      }
      index_.emplace(tensor, number);
    }
    for (std::size_t number = 0; number < shards_.size(); ++number) {
      for (const SafetensorsTensorInfo& info : shards_[number].tensors()) {
        const auto it = index_.find(info.name);
        if (it == index_.end() || it->second != number) {
          fail(shards_[number].path().string(), " has tensor ", detail::quoted(info.name),
               it == index_.end() ? ", which weight_map does not list"
                                  : ", which weight_map maps to another shard");
        }
      }
    }
  }

  /// The embedding (and the untied output projection) must be (vocab, d): catches a config.json
  /// that belongs to another checkpoint.
  void check_against_config() const {
    const ModelConfig& c = *config_;
    const auto check = [&](const std::string& name) {
      const SafetensorsTensorInfo* info = find_tensor(name);
      if (info == nullptr) {
        detail::raise<FormatError>(
            "latentkv::HfModelDir::open", path_.string(), ": no tensor ", detail::quoted(name),
            name == HfLlamaNames::lm_head() ? " although config.json has tie_word_embeddings false"
                                            : "");
      }
      if (info->shape != std::vector<std::int64_t>{c.vocab_size, c.d_model}) {
        detail::raise<FormatError>("latentkv::HfModelDir::open", shard_of(name).path().string(),
                                   ": tensor ", detail::quoted(name), " has shape ",
                                   detail::ShapeText{info->shape}, ", expected [", c.vocab_size,
                                   ", ", c.d_model, "] (vocab_size, hidden_size of config.json)");
      }
    };
    check(HfLlamaNames::embed_tokens());
    if (!c.tied_embeddings) check(HfLlamaNames::lm_head());
  }

  std::filesystem::path path_;
  std::optional<ModelConfig> config_;
  std::vector<SafetensorsReader> shards_;
  std::map<std::string, std::size_t, std::less<>> index_;  // tensor name -> shard
};

}  // namespace latentkv
