// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// latentkv-eval: perplexity of a GGUF checkpoint by the protocol of DESIGN §10, dense or through
// the latent KV cache of a compressed checkpoint (latentkv-compress, docs/FORMAT.md).
//   latentkv-eval --model M.gguf [--compressed C.safetensors [--budget B] [--cache-dtype D]]
//                 [--text FILE] [--ctx 1024] [--chunks N | --all] [--threads T]
//                 [--kl-divergence]
//   C may also be a route-2 projection file (latentkv-compress --method matryoshka,
//         io/projection_checkpoint.hpp): run through ProjectedKvCache (f32 | f16 latents, or one
//         quantized dtype per side, QuantizedProjectedKvCache; not auto); --budget re-plans by
//         the file's schedule (its stored state) on its variances and truncates the bases; with
//         a quantized dtype it is bytes: the largest rank plan whose codes fit B.
//   --cache-dtype D: f32 | f16 | int8 | int4 | int3 | int2 (uniform asymmetric, fp16 scale and
//         zero per group) | lm4 | lm3 | lm2 (Gaussian Lloyd-Max levels, fp16 mean and RMS per
//         group) | auto (a rank and a bit width per latent, chosen for --budget in bytes out of
//         --bits, default 16,8,4,3,2; schedule/rank_bits_planner.hpp); quantized latents
//         (quant/latent_codec.hpp) take
//         --quant-group G (64)  --key-axis token|channel (token)  --value-axis token|channel
//         (token)  --value-dtype D (the values' own codec; default: as --cache-dtype)
//         --rotate on|off (on: Walsh–Hadamard rotation folded into the factors)  --sinks N (0)
//         --bytes-context T (4096: the context sinks and windows are counted at)
//   --budget B: the kept fraction of the dense fp16 KV cache's bytes per token (every code, scale,
//         zero, sink and window byte, at --bytes-context). f32/f16: B < C's own, re-planned by C's
//         schedule on C's spectra and applied by truncation (compress/elastic.hpp; fp16 latents:
//         bytes = numbers); a search plan re-runs its search on C's factors, from C's plan.
//         Quantized dtypes: ranks (≤ C's) and, for auto, bits planned together for B bytes by
//         the rank × bits planner on C's spectra and C's sensitivity weights (when C has them)
//   text  (default $LATENTKV_WIKITEXT, else the shared WikiText-2 test split) tokenized as one
//         string, no BOS → chunks of ctx tokens (short tail dropped) → each chunk from an empty
//         KV cache → PPL = exp(mean NLL of the ctx − 1 predictions per chunk)
//   --kl-divergence (with --compressed): the dense model runs beside the compressed one on the same
//         chunks (eval/kl_divergence.hpp): mean KL(dense ‖ compressed) per token, its 99th
//         percentile, top-1 agreement, and the dense PPL of the same pass
// Progress goes to stderr; the result table (PPL, mean NLL, ctx, chunks, tokens, tokens/s, KV
// bytes per token, bits per cached number, KV vs the dense fp16 cache) to stdout. Exit status 1
// with "latentkv-eval: error: ..." on bad input.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "../common/tool_support.hpp"
#include "latentkv/cache/latent_kv_cache.hpp"
#include "latentkv/cache/projected_kv_cache.hpp"
#include "latentkv/compress/calibration.hpp"
#include "latentkv/compress/dispatch.hpp"
#include "latentkv/compress/elastic.hpp"
#include "latentkv/eval/kl_divergence.hpp"
#include "latentkv/eval/perplexity.hpp"
#include "latentkv/io/compressed_checkpoint.hpp"
#include "latentkv/io/detail/atomic_write.hpp"
#include "latentkv/io/gguf_reader.hpp"
#include "latentkv/io/projection_checkpoint.hpp"
#include "latentkv/linalg/parallel.hpp"
#include "latentkv/model/dense_kv_cache.hpp"
#include "latentkv/model/llama_model.hpp"
#include "latentkv/project/projected_divergence.hpp"
#include "latentkv/schedule/rank_bits_planner.hpp"
#include "latentkv/text/tokenizer.hpp"

namespace {

using latentkv::Index;
using namespace latentkv::tools;
namespace lk = latentkv;

constexpr const char* kTool = "latentkv-eval";

struct Options {
  fs::path model;
  fs::path compressed;
  double budget = 0.0;  // 0: the compressed checkpoint's own
  std::string cache_dtype = "f32";
  std::string value_dtype;  // empty: as cache_dtype (quantized only)
  Index quant_group = 64;
  std::string key_axis = "token";
  std::string value_axis = "token";
  std::string rotate = "on";
  Index sinks = 0;
  Index bytes_context = 4096;
  bool quant_options = false;  // any of the quantization options was given
  fs::path text;
  Index ctx = 1024;
  Index chunks = 4;
  bool all = false;
  int threads = 0;                   // 0: OpenMP's default (every core)
  fs::path json;                     // also write the result as JSON here
  bool kl_divergence = false;        // also KL(dense ‖ compressed) and top-1 agreement
  std::string bits = "16,8,4,3,2";   // --cache-dtype auto: the widths to choose from
  std::vector<double> noise_weight;  // planner γ_K, γ_V (empty: the planner's defaults)
  bool bits_given = false;
};

/// Whether `path` is a route-2 projection file (metadata format "latentkv.projected").
bool is_projection_file(const fs::path& path) {
  const lk::SafetensorsReader reader = lk::SafetensorsReader::open(path);
  const std::string* format = reader.find_metadata("format");
  return format != nullptr && *format == lk::kProjectionCheckpointFormat;
}

/// Runs the protocol through `cache`, printing per-chunk progress to stderr.
template <class Cache>
latentkv::PerplexityResult evaluate(const latentkv::LlamaModel& model, Cache& cache,
                                    const std::vector<std::int32_t>& ids,
                                    const latentkv::PerplexityOptions& options, Index chunks) {
  double total = 0.0;
  return latentkv::perplexity(
      model, cache, ids, options, [&](Index chunk, double nll, double seconds) {
        total += nll;
        std::fprintf(stderr, "  chunk %ld/%ld: mean NLL %.6f, running PPL %.4f, %.1f s\n",
                     static_cast<long>(chunk + 1), static_cast<long>(chunks), nll,
                     std::exp(total / static_cast<double>(chunk + 1)), seconds);
      });
}

/// Whether --cache-dtype names a quantized codec (auto: bits chosen per latent).
bool quantized_dtype(const std::string& dtype) { return dtype != "f32" && dtype != "f16"; }

/// The bit width a dtype name stands for ("int4" → 4, "lm3" → 3).
int dtype_bits(const std::string& dtype) {
  return std::stoi(dtype.substr(dtype.starts_with("lm") ? 2 : 3));
}

/// --bits "16,8,4" → {16, 8, 4} (each 2, 3, 4, 5, 6, 8 or 16, no repeats).
std::vector<int> parse_bits(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    int b = 0;
    try {
      std::size_t used = 0;
      b = std::stoi(item, &used);
      if (used != item.size()) b = 0;
    } catch (const std::exception&) {
      b = 0;
    }
    if (!lk::supported_latent_bits(b)) {
      usage_error(
          "--bits = ", text, ": \"", item,
          "\" is not a bit width, expected a comma-separated list out of 2, 3, 4, 5, 6, 8, 16");
    }
    if (std::find(out.begin(), out.end(), b) != out.end()) {
      usage_error("--bits = ", text, ": ", b, " appears twice");
    }
    out.push_back(b);
  }
  if (out.empty()) usage_error("--bits is empty, expected e.g. 16,8,4,3,2");
  return out;
}

/// One side's codec from its dtype name ("int4", "lm3", ...) and the shared options.
lk::LatentCodec codec_from(const std::string& dtype, const std::string& axis, const Options& o,
                           const char* option) {
  lk::LatentCodec c;
  c.grid = dtype.starts_with("lm") ? lk::QuantGrid::kLloydMax : lk::QuantGrid::kUniform;
  c.bits = dtype == "auto" ? 4 : dtype_bits(dtype);  // auto: bits come from the plan
  c.axis = axis == "channel" ? lk::QuantAxis::kPerChannel : lk::QuantAxis::kPerToken;
  c.group_size = o.quant_group;
  c.sinks = o.sinks;
  try {
    c.validate("codec");
  } catch (const lk::InvalidArgument& e) {
    usage_error(option, " ", dtype, ": ", e.what());
  }
  return c;
}

/// The quantization of --cache-dtype and its options (checked, errors naming the option).
lk::LatentQuantConfig quant_config(const Options& o) {
  if (o.quant_group < 8 || o.quant_group > 4096) {
    usage_error("--quant-group = ", o.quant_group,
                ", expected 8..4096 (numbers sharing one fp16 scale and zero)");
  }
  if (o.sinks < 0 || o.sinks > 4096) usage_error("--sinks = ", o.sinks, ", expected 0..4096");
  if (o.bytes_context < 1) usage_error("--bytes-context = ", o.bytes_context, ", expected >= 1");
  lk::LatentQuantConfig q;
  q.key = codec_from(o.cache_dtype, o.key_axis, o, "--cache-dtype");
  q.value = codec_from(o.value_dtype.empty() ? o.cache_dtype : o.value_dtype, o.value_axis, o,
                       o.value_dtype.empty() ? "--cache-dtype" : "--value-dtype");
  q.rotate = o.rotate == "on";
  return q;
}

/// "int4 g64 K:token V:token rot" — the codec in a cache name.
std::string quant_name(const Options& o) {
  const std::string value = o.value_dtype.empty() ? o.cache_dtype : o.value_dtype;
  std::string name = o.cache_dtype == value ? o.cache_dtype : "K " + o.cache_dtype + " V " + value;
  if (o.cache_dtype == "auto") name = "auto{" + o.bits + "}";
  name += " g" + std::to_string(o.quant_group) + " K:" + o.key_axis + " V:" + o.value_axis;
  name += o.rotate == "on" ? " rotated" : " unrotated";
  if (o.sinks > 0) name += " sinks " + std::to_string(o.sinks);
  return name;
}

/// Runs the dense model beside `cache` on the protocol's chunks (KL, top-1, both PPLs), printing
/// per-chunk progress to stderr.
template <class Cache>
latentkv::KlDivergenceResult evaluate_kl(const latentkv::LlamaModel& model, Cache& cache,
                                         const std::vector<std::int32_t>& ids,
                                         const latentkv::PerplexityOptions& options, Index chunks) {
  latentkv::DenseKvCache dense(model.weights(), options.ctx);
  return latentkv::kl_divergence(
      model, dense, cache, ids, {.ctx = options.ctx, .max_chunks = options.max_chunks},
      [&](Index chunk, double kl, double seconds) {
        std::fprintf(stderr, "  chunk %ld/%ld: mean KL %.6f, %.1f s\n",
                     static_cast<long>(chunk + 1), static_cast<long>(chunks), kl, seconds);
      });
}

void print_row(const char* name, const std::string& value) {
  std::printf("| %-24s | %-16s |\n", name, value.c_str());
}

/// The compressed checkpoint at `o.budget` (its own plan when 0): re-planned by its schedule and
/// truncated. Messages go to stderr.
lk::CompressedModel load_compressed(const Options& o, const lk::LlamaModel& model,
                                    const lk::BpeTokenizer& tokenizer) {
  require_file(o.compressed, "--compressed");
  const lk::CompressedCheckpointInfo info = lk::read_compressed_checkpoint_info(o.compressed);
  const lk::ModelConfig& a = info.config;
  const lk::ModelConfig& b = model.config();
  if (a.num_layers != b.num_layers || a.d_model != b.d_model || a.num_heads != b.num_heads ||
      a.num_kv_heads != b.num_kv_heads || a.head_dim != b.head_dim ||
      a.vocab_size != b.vocab_size) {
    usage_error("--compressed ", o.compressed, " was made from a model with ", a.num_layers,
                " layers, d_model ", a.d_model, ", ", a.num_heads, "/", a.num_kv_heads,
                " heads of ", a.head_dim, "; --model has ", b.num_layers, ", ", b.d_model, ", ",
                b.num_heads, "/", b.num_kv_heads, " heads of ", b.head_dim);
  }
  lk::CompressedModel compressed = lk::load_compressed_checkpoint(o.compressed);
  if (o.budget == 0.0 || quantized_dtype(o.cache_dtype)) return compressed;  // see plan_bytes()
  const double own = lk::compressed_plan(compressed).budget();
  if (!(o.budget > 0.0 && o.budget <= own + 1e-12)) {
    usage_error("--budget = ", o.budget, ", expected in (0, ", own, "] (", o.compressed.filename(),
                " holds budget ", own, "; a larger one needs recompressing)");
  }
  nlohmann::json state = nlohmann::json::object();
  if (const auto it = info.metadata.find("schedule_state"); it != info.metadata.end()) {
    state = nlohmann::json::parse(it->second);
  }
  Index multiple = 1;
  if (const auto it = info.metadata.find("multiple"); it != info.metadata.end()) {
    multiple = std::stol(it->second);
  }
  const std::string& name = compressed.plan.schedule;
  std::optional<lk::KlDivergence> divergence;
  lk::GreedySearchRankSchedule::Divergence search;
  if (name == "search") {
    const Index tokens = state.value("divergence_tokens", Index{256});
    const std::vector<std::int32_t> ids = tail_tokens(
        tokenizer.encode(read_text(default_text(), "calibration")), tokens, "divergence_tokens");
    divergence.emplace(model, compressed, ids);
    search = [&](const lk::RankPlan& p) {
      return (*divergence)(lk::expand_compressed_plan(compressed, p));
    };
  }
  const auto start = std::chrono::steady_clock::now();
  const lk::AnyRankSchedule schedule = lk::schedule_from_state(name, state, search);
  lk::CompressedModel out = std::visit(
      [&](const auto& s) { return lk::rebudget(compressed, s, o.budget, multiple); }, schedule);
  std::fprintf(stderr, "%s: re-planned %s at budget %.4g (file: %.4g) by schedule %s in %.1f s\n",
               kTool, o.compressed.filename().c_str(), o.budget, own, name.c_str(),
               seconds_since(start));
  return out;
}

/// A quantized cache at --budget: the model truncated to the planned ranks and the codecs' bits
/// per latent (schedule/rank_bits_planner.hpp), for B of the dense fp16 cache's bytes per token.
struct BytePlan {
  lk::CompressedModel model;
  lk::LatentQuantConfig quant;
  nlohmann::json plan;  // RankBitsPlan::to_json() + the weights used
};

BytePlan plan_bytes(const Options& o, const lk::CompressedModel& file,
                    const lk::LatentQuantConfig& quant) {
  if (!(o.budget > 0.0 && o.budget <= 1.0)) {
    usage_error("--budget = ", o.budget,
                ", expected in (0, 1] (the kept fraction of the dense fp16 "
                "KV cache's bytes)");
  }
  const lk::CompressedCheckpointInfo info = lk::read_compressed_checkpoint_info(o.compressed);
  nlohmann::json state = nlohmann::json::object();
  if (const auto it = info.metadata.find("schedule_state"); it != info.metadata.end()) {
    state = nlohmann::json::parse(it->second);
  }
  lk::RankBitsPlanner::Options options;
  options.bits =
      o.cache_dtype == "auto" ? parse_bits(o.bits) : std::vector<int>{dtype_bits(o.cache_dtype)};
  options.key = quant.key;
  options.value = quant.value;
  options.context = o.bytes_context;
  if (!o.noise_weight.empty()) {
    if (o.noise_weight.size() > 2 || o.noise_weight[0] < 0.0 || o.noise_weight.back() < 0.0) {
      usage_error("--noise-weight expects one or two numbers >= 0 (keys, values)");
    }
    options.key_noise_weight = o.noise_weight.front();
    options.value_noise_weight = o.noise_weight.back();
  }
  const bool weighted = file.plan.schedule == "sensitivity" && state.contains("k_weights") &&
                        state.contains("v_weights");
  if (weighted) {
    options.alpha = state.value("alpha", options.alpha);
    options.weight_floor = state.value("weight_floor", options.weight_floor);
  }
  const std::vector<Index> layers = lk::compressed_layers(file);
  const lk::ModelConfig& c = file.config;
  const double dense_fp16 = 2.0 * static_cast<double>(c.num_layers * c.kv_dim()) * 2.0;
  const double dense_layers =
      static_cast<double>(c.num_layers - static_cast<Index>(layers.size())) * 2.0 *
      static_cast<double>(c.kv_dim()) * 4.0;  // fp32 K, V
  const double available = o.budget * dense_fp16 - dense_layers;
  const auto start = std::chrono::steady_clock::now();
  const lk::RankProblem problem = lk::spectra_of(file);
  const lk::RankPlan ceiling = lk::compressed_plan(file);
  const auto make = [&]() -> lk::RankBitsPlanner {
    if (!weighted) return lk::RankBitsPlanner(options);
    std::vector<double> k = state["k_weights"].get<std::vector<double>>();
    std::vector<double> v = state["v_weights"].get<std::vector<double>>();
    std::vector<double> k_planned;
    std::vector<double> v_planned;
    for (const Index l : layers) {
      k_planned.push_back(k.at(static_cast<std::size_t>(l)));
      v_planned.push_back(v.at(static_cast<std::size_t>(l)));
    }
    return lk::RankBitsPlanner(std::move(k_planned), std::move(v_planned), options);
  };
  const lk::RankBitsPlanner planner = make();
  if (available < planner.min_bytes(problem, ceiling) - 1e-9) {
    usage_error("--budget = ", o.budget, ": no plan of ranks and bits out of {", o.bits,
                "} fits in ", format("%.1f", o.budget * dense_fp16),
                " bytes per token; the smallest takes ",
                format("%.1f", planner.min_bytes(problem, ceiling) + dense_layers), " (",
                format("%.4f", (planner.min_bytes(problem, ceiling) + dense_layers) / dense_fp16),
                " of fp16)");
  }
  const lk::RankBitsPlan plan = planner.plan(problem, available, ceiling);
  BytePlan out{file.truncated(lk::expand_compressed_plan(file, plan.ranks)), quant, plan.to_json()};
  out.quant.layer_bits.assign(static_cast<std::size_t>(c.num_layers), lk::LayerBits{});
  for (std::size_t i = 0; i < layers.size(); ++i) {
    out.quant.layer_bits[static_cast<std::size_t>(layers[i])] = plan.bits[i];
  }
  out.plan["weights"] = weighted ? "sensitivity (the file's)" : "uniform";
  out.plan["model_layers"] = layers;
  double numbers = 0.0;
  double bits = 0.0;
  for (std::size_t i = 0; i < plan.bits.size(); ++i) {
    const lk::LayerRanks& r = plan.ranks.layers[i];
    for (std::size_t g = 0; g < r.k.size(); ++g) {
      numbers += static_cast<double>(r.k[g] + r.v[g]);
      bits += static_cast<double>(r.k[g] * plan.bits[i].k[g] + r.v[g] * plan.bits[i].v[g]);
    }
  }
  std::fprintf(stderr,
               "%s: planned ranks and bits for budget %.4g (%.1f bytes per token) in %.1f s: "
               "%.0f latent numbers per token (%.3f of dense), %.2f code bits per number on "
               "average, %s weights\n",
               kTool, o.budget, o.budget * dense_fp16, seconds_since(start), numbers,
               numbers / static_cast<double>(2 * c.num_layers * c.kv_dim()), bits / numbers,
               weighted ? "sensitivity" : "uniform");
  return out;
}

int run(const Options& o) {
  // Cheap checks first, before loading the model and tokenizing the text.
  require_file(o.model, "--model");
  if (!fs::is_regular_file(o.text)) {
    usage_error("--text: no file at ", o.text,
                " (pass --text FILE or set LATENTKV_WIKITEXT to wikitext-2-raw-test.txt)");
  }
  if (o.ctx < 2) {
    usage_error("--ctx = ", o.ctx, ", expected >= 2 (a chunk predicts ctx - 1 tokens)");
  }
  if (!o.all && o.chunks < 1) {
    usage_error("--chunks = ", o.chunks, ", expected >= 1 (or --all)");
  }
  if (o.threads < 0) {
    usage_error("--threads = ", o.threads, ", expected >= 1");
  }
  if (o.compressed.empty() && o.kl_divergence) {
    usage_error("--kl-divergence needs --compressed (it compares a compressed model with --model)");
  }
  if (o.compressed.empty() && o.budget != 0.0) {
    usage_error("--budget needs --compressed (a dense model has no budget to change)");
  }
  if (!o.compressed.empty()) require_file(o.compressed, "--compressed");
  const bool projection_file = !o.compressed.empty() && is_projection_file(o.compressed);
  const bool quantized = quantized_dtype(o.cache_dtype);
  if (projection_file && o.cache_dtype == "auto") {
    usage_error("--cache-dtype auto with the projection file ", o.compressed,
                ": route-2 latents run as f32, f16 or one quantized dtype for both sides "
                "(int8|int6|int5|int4|int3|int2|lm4|lm3|lm2, --value-dtype for the values)");
  }
  if (quantized && o.compressed.empty()) {
    usage_error("--cache-dtype ", o.cache_dtype,
                " needs --compressed (the dense cache stores fp32 K and V)");
  }
  if (!quantized && (o.quant_options || !o.value_dtype.empty())) {
    usage_error(
        "--quant-group, --key-axis, --value-axis, --value-dtype, --rotate, --sinks and "
        "--bytes-context need a quantized --cache-dtype "
        "(int8|int6|int5|int4|int3|int2|lm4|lm3|lm2), "
        "got ",
        o.cache_dtype);
  }
  if (!o.value_dtype.empty() && !quantized_dtype(o.value_dtype)) {
    usage_error("--value-dtype = ", o.value_dtype,
                ", expected a quantized dtype "
                "(int8|int6|int5|int4|int3|int2|lm4|lm3|lm2)");
  }
  if (o.cache_dtype == "auto" && o.budget == 0.0) {
    usage_error("--cache-dtype auto needs --budget (the bytes its ranks and bits are planned for)");
  }
  if (o.bits_given && o.cache_dtype != "auto") {
    usage_error("--bits needs --cache-dtype auto (got ", o.cache_dtype, ")");
  }
  if (o.cache_dtype == "auto") (void)parse_bits(o.bits);
  if (!o.value_dtype.empty() && o.cache_dtype == "auto") {
    usage_error("--value-dtype with --cache-dtype auto: the plan chooses both sides' bits");
  }
  std::optional<lk::LatentQuantConfig> quant;
  if (quantized) quant = quant_config(o);
  if (o.threads > 0) latentkv::set_threads(o.threads);

  const auto load_start = std::chrono::steady_clock::now();
  const latentkv::GgufReader reader = latentkv::GgufReader::open(o.model);
  const latentkv::LlamaModel model = latentkv::LlamaModel::from_gguf(reader);
  const latentkv::BpeTokenizer tokenizer = latentkv::BpeTokenizer::from_gguf(reader);
  const double load_seconds = seconds_since(load_start);
  const latentkv::ModelConfig& c = model.config();
  std::fprintf(stderr,
               "%s: %s: %s, %ld layers, d_model %ld, %ld/%ld heads of %ld, vocab %ld (loaded as "
               "fp32 in %.1f s)\n",
               kTool, o.model.filename().c_str(), c.architecture.c_str(),
               static_cast<long>(c.num_layers), static_cast<long>(c.d_model),
               static_cast<long>(c.num_heads), static_cast<long>(c.num_kv_heads),
               static_cast<long>(c.head_dim), static_cast<long>(c.vocab_size), load_seconds);

  const auto tokenize_start = std::chrono::steady_clock::now();
  const std::vector<std::int32_t> ids = tokenizer.encode(read_text(o.text, "--text"));
  const auto num_ids = static_cast<Index>(ids.size());
  std::fprintf(stderr, "%s: %s: %ld tokens (no BOS) in %.2f s, %ld chunks of %ld\n", kTool,
               o.text.filename().c_str(), static_cast<long>(num_ids), seconds_since(tokenize_start),
               static_cast<long>(num_ids / o.ctx), static_cast<long>(o.ctx));
  if (num_ids < o.ctx) {
    usage_error("--text ", o.text, " has ", num_ids, " tokens, fewer than one chunk of --ctx ",
                o.ctx);
  }
  if (!o.all && o.chunks > num_ids / o.ctx) {
    usage_error("--chunks = ", o.chunks, " but ", o.text, " has only ", num_ids / o.ctx,
                " chunks of ", o.ctx, " tokens (use --all for every chunk)");
  }
  const latentkv::PerplexityOptions options{.ctx = o.ctx, .max_chunks = o.all ? 0 : o.chunks};
  const Index chunks = o.all ? num_ids / o.ctx : o.chunks;

  latentkv::PerplexityResult r;
  std::optional<latentkv::KlDivergenceResult> kl;
  nlohmann::json byte_plan;  // quantized at --budget: the rank × bits plan
  std::string cache_name = "dense fp32";
  double budget = 1.0;
  double bytes_per_token = 0.0;  // exact (quantized: at --bytes-context)
  Index numbers_per_token = 2 * c.num_layers * c.kv_dim();
  // A compressed cache: perplexity (and KL against dense with --kl-divergence).
  const auto run_through = [&](auto& cache) {
    if (o.kl_divergence) {
      kl = evaluate_kl(model, cache, ids, options, chunks);
      r = kl->test;
    } else {
      r = evaluate(model, cache, ids, options, chunks);
    }
    numbers_per_token = cache.numbers_per_token();
  };
  if (o.compressed.empty()) {
    latentkv::DenseKvCache cache(model.weights(), o.ctx);
    r = evaluate(model, cache, ids, options, chunks);
  } else if (projection_file) {
    // Route 2 (--method matryoshka): post-RoPE projections, attention in latent space.
    const lk::ProjectionCheckpointInfo info = lk::read_projection_checkpoint_info(o.compressed);
    lk::ProjectedModel projected = lk::load_projection_checkpoint(o.compressed);
    try {
      projected.validate(c);
    } catch (const lk::InvalidArgument& e) {
      usage_error("--compressed ", o.compressed, " does not fit --model ", o.model, ": ", e.what());
    }
    // Bytes per token of projections under the quantized codecs, at --bytes-context.
    const auto coded_bytes = [&](const lk::ProjectedModel& m) {
      double total = 0.0;
      for (const lk::ProjectedLayer& layer : m.layers) {
        for (const lk::ProjectedBasis& b : layer.k) {
          total += lk::latent_bytes_per_token(b.rank(), quant->key, o.bytes_context);
        }
        for (const lk::ProjectedBasis& b : layer.v) {
          total += lk::latent_bytes_per_token(b.rank(), quant->value, o.bytes_context);
        }
      }
      return total;
    };
    const double dense_fp16 = 2.0 * static_cast<double>(c.num_layers * c.kv_dim()) * 2.0;
    if (o.budget != 0.0) {
      // Unquantized, --budget is the kept fraction of latent numbers (= of fp16 bytes for f16).
      // Quantized, it is bytes: the ranks re-planned for the largest fraction of numbers whose
      // codes, scales and zeros fit B of the dense fp16 cache's bytes (bisection below).
      const double held = quant ? coded_bytes(projected) / dense_fp16 : info.plan.budget();
      if (o.budget > held + 1e-9) {
        usage_error("--budget = ", o.budget, " is above the file's ", held,
                    quant ? " at this --cache-dtype" : "",
                    " (a file holds its plan's ranks; recompress for more)");
      }
      const auto multiple = info.metadata.find("multiple");
      const lk::RankBudget b{
          .budget = o.budget,
          .multiple = multiple == info.metadata.end() ? 1 : std::stoll(multiple->second),
          .ceiling = info.plan};
      // The file's schedule, rebuilt from its stored state (sensitivity weights; a search
      // measures its divergence again, on the calibration text's tail as the compressor did).
      nlohmann::json state = nlohmann::json::object();
      if (const auto it = info.metadata.find("schedule_state"); it != info.metadata.end()) {
        state = nlohmann::json::parse(it->second);
      }
      std::optional<lk::ProjectedKlDivergence> divergence;
      lk::GreedySearchRankSchedule::Divergence search;
      if (info.schedule == "search") {
        const Index tokens = state.value("divergence_tokens", Index{256});
        divergence.emplace(model, projected,
                           tail_tokens(tokenizer.encode(read_text(default_text(), "calibration")),
                                       tokens, "divergence_tokens"));
        search = [&](const lk::RankPlan& p) { return (*divergence)(p); };
      }
      const lk::AnyRankSchedule schedule = lk::schedule_from_state(info.schedule, state, search);
      const lk::RankProblem problem = projected.rank_problem(c.d_model);
      const auto replan = [&](double numbers) {
        lk::RankBudget nb = b;
        nb.budget = numbers;
        return projected.truncated(lk::plan_with(schedule, problem, nb));
      };
      if (!quant) {
        projected = replan(o.budget);
      } else {
        if (info.schedule == "search") {
          usage_error(
              "--budget with a quantized --cache-dtype re-plans by bytes, many plans: "
              "a search-planned file would search each time; use the file's budget or "
              "--cache-dtype f16");
        }
        double lo = 0.0;  // largest numbers fraction known to fit (0: none yet)
        double hi = info.plan.budget();
        std::optional<lk::ProjectedModel> best;
        for (int i = 0; i < 40 && hi - lo > 1e-6; ++i) {
          const double mid = 0.5 * (lo + hi);
          std::optional<lk::ProjectedModel> trial;
          try {
            trial = replan(mid);
          } catch (const lk::InvalidArgument&) {  // below the smallest plan
          }
          if (trial && coded_bytes(*trial) <= o.budget * dense_fp16 + 1e-9) {
            lo = mid;
            best = std::move(trial);
          } else {
            hi = mid;
          }
        }
        if (!best) {
          usage_error("--budget = ", o.budget, ": no plan of ", o.compressed.filename(),
                      " fits that many bytes at --cache-dtype ", o.cache_dtype);
        }
        projected = std::move(*best);
      }
    }
    budget = projected.plan().budget();
    const auto grouping = info.metadata.find("grouping");
    cache_name = "projected " + o.cache_dtype + " (route 2, " + info.method + ", " +
                 (grouping == info.metadata.end() ? std::string("?") : grouping->second) + ", " +
                 info.schedule + ", budget " + format("%.4f", budget) + ")";
    if (quant) {
      cache_name = "projected " + quant_name(o) + " (route 2, " + info.method + ", " +
                   (grouping == info.metadata.end() ? std::string("?") : grouping->second) + ", " +
                   info.schedule + ", ranks at budget " + format("%.4f", budget) + ")";
      lk::QuantizedProjectedKvCache cache(model.weights(), projected, *quant, o.ctx);
      run_through(cache);
      bytes_per_token = cache.bytes_per_token_at(o.bytes_context);
    } else if (o.cache_dtype == "f16") {
      lk::ProjectedKvCache<std::uint16_t> cache(model.weights(), projected, o.ctx);
      run_through(cache);
    } else {
      lk::ProjectedKvCache<float> cache(model.weights(), projected, o.ctx);
      run_through(cache);
    }
  } else {
    lk::CompressedModel compressed = load_compressed(o, model, tokenizer);
    if (quant && o.budget != 0.0) {
      BytePlan planned = plan_bytes(o, compressed, *quant);
      compressed = std::move(planned.model);
      quant = std::move(planned.quant);
      byte_plan = std::move(planned.plan);
    }
    budget = compressed.plan.budget();
    cache_name = "latent " + (quant ? quant_name(o) : o.cache_dtype) + " (" + compressed.grouping +
                 ", " + compressed.plan.schedule + ", budget " +
                 format("%.4f", compressed.plan.budget()) + ")";
    if (quant) {
      lk::QuantizedLatentKvCache cache(model.weights(), compressed, *quant, o.ctx);
      run_through(cache);
      bytes_per_token = cache.bytes_per_token_at(o.bytes_context);
    } else if (o.cache_dtype == "f16") {
      lk::LatentKvCache<std::uint16_t> cache(model.weights(), compressed, o.ctx);
      run_through(cache);
    } else {
      lk::LatentKvCache<float> cache(model.weights(), compressed, o.ctx);
      run_through(cache);
    }
  }
  if (!quant) bytes_per_token = static_cast<double>(r.kv_bytes_per_token);
  const std::int64_t dense_bytes = 2 * c.num_layers * c.kv_dim() * 4;
  const double dense_fp16_bytes = 2.0 * static_cast<double>(c.num_layers * c.kv_dim()) * 2.0;
  const double bits_per_number = 8.0 * bytes_per_token / static_cast<double>(numbers_per_token);

  std::printf("\n%s: %s, %s KV cache, %d threads\n\n", kTool, o.model.filename().c_str(),
              cache_name.c_str(), latentkv::max_threads());
  std::printf("| %-24s | %-16s |\n|%s|%s|\n", "metric", "value", std::string(26, '-').c_str(),
              std::string(18, '-').c_str());
  print_row("PPL", format("%.4f", r.ppl));
  print_row("mean NLL (nats)", format("%.6f", r.mean_nll));
  print_row("ctx", std::to_string(r.ctx));
  print_row("chunks", std::to_string(r.chunks) + " of " + std::to_string(r.available_chunks));
  print_row("tokens", std::to_string(r.tokens));
  print_row("seconds", format("%.1f", r.seconds));
  print_row("tokens/s", format("%.1f", r.tokens_per_second()));
  print_row("KV bytes per token",
            quant ? format("%.2f (at %ld)", bytes_per_token, static_cast<long>(o.bytes_context))
                  : std::to_string(r.kv_bytes_per_token));
  print_row("bits per cached number", format("%.3f", bits_per_number));
  print_row("KV vs dense fp32", format("%.4f", bytes_per_token / static_cast<double>(dense_bytes)));
  print_row("KV vs dense fp16", format("%.4f", bytes_per_token / dense_fp16_bytes));
  if (kl) {
    print_row("dense PPL (same pass)", format("%.4f", kl->reference.ppl));
    print_row("PPL vs dense", format("%+.2f%%", 100.0 * (r.ppl / kl->reference.ppl - 1.0)));
    print_row("mean KL (nats/token)", format("%.6f", kl->mean_kl));
    print_row("KL 99th percentile", format("%.6f", kl->kl_p99));
    print_row("KL median", format("%.6f", kl->kl_median));
    print_row("KL max", format("%.6f", kl->kl_max));
    print_row("same top-1", format("%.4f%%", 100.0 * kl->same_top1));
  }
  if (!o.json.empty()) {
    nlohmann::json j;
    j["model"] = o.model.filename().string();
    j["compressed"] = o.compressed.empty() ? "" : o.compressed.filename().string();
    j["cache"] = cache_name;
    j["ppl"] = r.ppl;
    j["mean_nll"] = r.mean_nll;
    j["chunk_nll"] = r.chunk_nll;
    j["ctx"] = r.ctx;
    j["chunks"] = r.chunks;
    j["tokens"] = r.tokens;
    j["seconds"] = r.seconds;
    j["tokens_per_second"] = r.tokens_per_second();
    j["kv_bytes_per_token"] = r.kv_bytes_per_token;
    j["kv_bytes_per_token_dense_fp32"] = dense_bytes;
    j["kv_bytes_per_token_exact"] = bytes_per_token;
    j["kv_vs_dense_fp16"] = bytes_per_token / dense_fp16_bytes;
    j["bits_per_number"] = bits_per_number;
    j["numbers_per_token"] = numbers_per_token;
    j["cache_dtype"] = o.compressed.empty() ? "f32" : o.cache_dtype;
    if (quant) {
      j["quant"] = {{"key_dtype", o.cache_dtype},
                    {"value_dtype", o.value_dtype.empty() ? o.cache_dtype : o.value_dtype},
                    {"group_size", o.quant_group},
                    {"key_axis", o.key_axis},
                    {"value_axis", o.value_axis},
                    {"rotate", quant->rotate},
                    {"sinks", o.sinks},
                    {"bytes_context", o.bytes_context}};
    }
    j["budget"] = budget;  // the plan's kept fraction of latent numbers
    if (o.budget != 0.0) j["budget_requested"] = o.budget;
    if (!byte_plan.is_null()) j["rank_bits_plan"] = byte_plan;
    if (kl) {
      j["kl_divergence"] = {{"reference", "dense fp32"},
                            {"mean", kl->mean_kl},
                            {"p99", kl->kl_p99},
                            {"median", kl->kl_median},
                            {"max", kl->kl_max},
                            {"same_top1", kl->same_top1},
                            {"chunk_kl", kl->chunk_kl},
                            {"dense_ppl", kl->reference.ppl},
                            {"dense_mean_nll", kl->reference.mean_nll},
                            {"dense_chunk_nll", kl->reference.chunk_nll}};
    }
    write_text_atomically(o.json, j.dump(2) + "\n", "latentkv-eval: --json");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  o.text = default_text();
  CLI::App app{
      "Perplexity of a GGUF checkpoint (DESIGN §10): the text tokenized as one string without BOS, "
      "non-overlapping chunks of --ctx tokens, each from an empty KV cache."};
  app.add_option("--model", o.model, "GGUF checkpoint of a LLaMA-architecture model")->required();
  app.add_option("--text", o.text, "UTF-8 text file")->capture_default_str();
  app.add_option("--ctx", o.ctx, "tokens per chunk (>= 2)")->capture_default_str();
  CLI::Option* chunks =
      app.add_option("--chunks", o.chunks, "evaluate the first N chunks")->capture_default_str();
  CLI::Option* all = app.add_flag("--all", o.all, "evaluate every complete chunk of the text");
  chunks->excludes(all);
  app.add_option("--threads", o.threads, "threads (default: every core)");
  app.add_option(
      "--compressed", o.compressed,
      "compressed checkpoint of --model (latentkv-compress): evaluate through its latent "
      "KV cache");
  app.add_option("--budget", o.budget,
                 "with --compressed: the kept fraction of the dense fp16 KV cache's bytes per "
                 "token (f32/f16: a smaller budget than the file's, re-planned and truncated; "
                 "quantized: ranks and bits planned for it)");
  CLI::Option* bits_option = app.add_option(
      "--bits", o.bits, "--cache-dtype auto: the bit widths to choose from (16 = fp16)");
  bits_option->capture_default_str();
  app.add_option("--noise-weight", o.noise_weight,
                 "quantized --budget: the planner's cost of quantization noise against truncated "
                 "energy, for keys and values (one or two numbers; default: the calibrated ones)")
      ->delimiter(',');
  app.add_option("--json", o.json, "also write the result as JSON to this file");
  const std::vector<std::string> dtypes = {"f32",  "f16",  "int8", "int6", "int5", "int4",
                                           "int3", "int2", "lm4",  "lm3",  "lm2",  "auto"};
  app.add_option(
         "--cache-dtype", o.cache_dtype,
         "with --compressed: latent storage f32|f16, or quantized int8|int6|int5|int4|int3|int2 "
         "(uniform) or lm4|lm3|lm2 (Gaussian Lloyd-Max), or auto (ranks and bits "
         "planned for --budget in bytes)")
      ->capture_default_str()
      ->check(CLI::IsMember(dtypes));
  app.add_option("--value-dtype", o.value_dtype,
                 "quantized values' own codec (default: as --cache-dtype)")
      ->check(CLI::IsMember(dtypes));
  std::vector<CLI::Option*> quant_options = {
      app.add_option("--quant-group", o.quant_group, "numbers per fp16 scale and zero (8..4096)")
          ->capture_default_str(),
      app.add_option("--key-axis", o.key_axis,
                     "key groups along a token's channels or a "
                     "channel's tokens (KIVI)")
          ->capture_default_str()
          ->check(CLI::IsMember({"token", "channel"})),
      app.add_option("--value-axis", o.value_axis, "value groups: token|channel")
          ->capture_default_str()
          ->check(CLI::IsMember({"token", "channel"})),
      app.add_option("--rotate", o.rotate, "Walsh–Hadamard rotation of the latents: on|off")
          ->capture_default_str()
          ->check(CLI::IsMember({"on", "off"})),
      app.add_option("--sinks", o.sinks, "first tokens kept fp16")->capture_default_str(),
      app.add_option("--bytes-context", o.bytes_context,
                     "context length at which sinks and fp16 windows are counted")
          ->capture_default_str()};
  app.add_flag("--kl-divergence", o.kl_divergence,
               "with --compressed: also run the dense model on the same chunks and report "
               "KL(dense || compressed) per token (mean, 99th percentile) and top-1 agreement");
  CLI11_PARSE(app, argc, argv);
  for (const CLI::Option* option : quant_options) o.quant_options |= option->count() > 0;
  o.bits_given = bits_option->count() > 0;
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", kTool, e.what());
    return 1;
  }
}
