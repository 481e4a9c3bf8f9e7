// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// latentkv-compress: a checkpoint + a KV-cache budget → a compressed checkpoint (docs/FORMAT.md).
//   --method svd (default): low-rank factors of W_k, W_v (route 1), the options below;
//   --method matryoshka: post-RoPE PCA bases of keys and values calibrated on --calib (route 2,
//   project/; a projection file, "latentkv.projected"): --budget, --schedule
//   uniform|progressive|energy|sensitivity|search (default energy; the last two measure the KL
//   divergence of the projected model, --divergence-tokens, --search-*), --grouping, --calib,
//   --calib-tokens (default 4096 here), --sink-tokens N (the first N tokens of every calibration
//   chunk left out),
//   --multiple, --refine-steps N (Cayley refinement of the truncated bases on the layer's
//   attention-output error, project/cayley_refinement.hpp; 0 = PCA as is) on the last
//   --refine-tokens calibration tokens in chunks of --refine-ctx. latentkv-compress --model
//   PATH(.gguf | HF dir | .safetensors) --budget 0.5
//       --schedule uniform|progressive|energy|sensitivity|search
//       --factorizer svd|rsvd|whitened|svd-gain --grouping joint|per-head|group:N [--calib FILE]
//       [--layers A-B] [--recalibrate-values [--recalibrate-ridge R]]
//       [--sink-tokens N [--sink-weight W]] --out OUT.safetensors [--report REPORT.json]
// Better factors (issue 9; compress/gain_folding.hpp, compress/value_recalibration.hpp):
//   svd-gain              data-free SVD of diag(g)·W (the attention RMSNorm gain folded in; GGUF)
//   --recalibrate-values  refit W̃_o per query head by ridge least squares on the calibration
//                         activations (the last --calib-tokens of --calib), after truncation
//   --sink-tokens N       weigh the first N positions of every calibration chunk by --sink-weight
//                         (default 0: excluded) in the whitening Gram matrices
// Streams the checkpoint layer by layer (compress/compressor.hpp): spectra of every K/V group,
// the schedule's plan, then each layer's factors written straight to OUT's temporary file, renamed
// into place at the end. Calibrated choices (whitened, sensitivity, search) run the model on
// calibration text and so need a GGUF (the tokenizer and the full model come from it).
// Progress goes to stderr; the memory table to stdout. Exit status 1 with
// "latentkv-compress: error: ..." on bad input; the output is then not created.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "../common/tool_support.hpp"
#include "latentkv/compress/attention_source.hpp"
#include "latentkv/compress/calibration.hpp"
#include "latentkv/compress/compressor.hpp"
#include "latentkv/compress/dispatch.hpp"
#include "latentkv/compress/gain_folding.hpp"
#include "latentkv/compress/value_recalibration.hpp"
#include "latentkv/io/compressed_checkpoint.hpp"
#include "latentkv/io/detail/atomic_write.hpp"
#include "latentkv/io/gguf_reader.hpp"
#include "latentkv/io/hf_model_dir.hpp"
#include "latentkv/io/projection_checkpoint.hpp"
#include "latentkv/linalg/parallel.hpp"
#include "latentkv/model/llama_model.hpp"
#include "latentkv/project/cayley_refinement.hpp"
#include "latentkv/project/pca_calibration.hpp"
#include "latentkv/project/projected_divergence.hpp"
#include "latentkv/text/tokenizer.hpp"

namespace {

using latentkv::Index;
using namespace latentkv::tools;
namespace lk = latentkv;

constexpr const char* kTool = "latentkv-compress";

struct Options {
  std::string method = "svd";  // svd: weight factors (route 1); matryoshka: PCA bases (route 2)
  fs::path model;
  double budget = 0.5;
  std::string schedule;    // empty: sensitivity for a GGUF, else energy (the best measured)
  std::string factorizer;  // empty: whitened for a GGUF (calibration needs its tokenizer), else svd
  std::string grouping = "joint";
  fs::path calib;
  Index calib_tokens = 2048;      // whitening Grams
  Index divergence_tokens = 256;  // sensitivity / search
  std::string layers;
  Index multiple = 1;
  std::string dtype = "f32";
  fs::path out;
  fs::path report;
  Index search_step = 16;
  Index search_per_round = 8;
  int threads = 0;
  bool quiet = false;
  bool recalibrate_values = false;  // refit W̃_o on calibration activations
  double recalibrate_ridge = 1e-2;
  Index sink_tokens = 0;  // first positions of each calibration chunk weighted by sink_weight
  double sink_weight = 0.0;
  int refine_steps = 0;        // matryoshka: Cayley refinement steps per layer (0: PCA as is)
  Index refine_tokens = 2048;  // matryoshka: calibration tokens the refinement runs on
  Index refine_ctx = 512;      // matryoshka: tokens per refinement chunk
};

/// One source type for every input format (so the compressor is instantiated once per policy
/// combination, not once per format too).
class AnySource {
 public:
  template <lk::AttentionSource S>
  explicit AnySource(std::shared_ptr<const S> s)
      : config_(s->config()),
        attention_([s](Index l) { return s->attention(l); }),
        name_([s](Index l, lk::Projection p) { return s->tensor_name(l, p); }),
        description_(s->description()) {}
  [[nodiscard]] const lk::ModelConfig& config() const noexcept { return config_; }
  [[nodiscard]] lk::AttentionWeights attention(Index l) const { return attention_(l); }
  [[nodiscard]] std::string tensor_name(Index l, lk::Projection p) const { return name_(l, p); }
  [[nodiscard]] std::string description() const { return description_; }

 private:
  lk::ModelConfig config_;
  std::function<lk::AttentionWeights(Index)> attention_;
  std::function<std::string(Index, lk::Projection)> name_;
  std::string description_;
};

/// Writes each layer to the checkpoint as it arrives (CompressedCheckpointWriter).
struct CheckpointSink {
  fs::path path;
  std::string factorizer;
  std::string grouping;
  lk::CompressedCheckpointOptions options;
  std::optional<lk::CompressedCheckpointWriter> writer;

  void begin(const lk::ModelConfig& c, const lk::RankPlan& plan, const std::vector<Index>& dense) {
    writer.emplace(c, plan, factorizer, grouping, dense, options);
    writer->begin(path);
  }
  void layer(Index l, lk::CompressedLayer&& layer) { writer->write_layer(l, layer); }
  void end() { writer->commit(); }
};

std::pair<Index, Index> parse_layers(const std::string& text, Index num_layers) {
  if (text.empty()) return {0, num_layers - 1};
  const auto dash = text.find('-');
  try {
    std::size_t used = 0;
    const Index first = std::stol(text.substr(0, dash), &used);
    if (used != (dash == std::string::npos ? text.size() : dash)) throw std::invalid_argument("");
    Index last = first;
    if (dash != std::string::npos) {
      const std::string tail = text.substr(dash + 1);
      last = std::stol(tail, &used);
      if (used != tail.size()) throw std::invalid_argument("");
    }
    if (first < 0 || first > last || last >= num_layers) throw std::out_of_range("");
    return {first, last};
  } catch (const std::logic_error&) {
    usage_error("--layers = ", lk::detail::quoted(text),
                ", expected A-B (or A) with 0 <= A <= B <= ", num_layers - 1);
  }
}

lk::SafetensorsDtype parse_dtype(const std::string& name) {
  if (name == "f32") return lk::SafetensorsDtype::kF32;
  if (name == "f16") return lk::SafetensorsDtype::kF16;
  if (name == "bf16") return lk::SafetensorsDtype::kBF16;
  usage_error("--dtype = ", lk::detail::quoted(name), ", expected f32, f16 or bf16");
}

bool needs_model(const Options& o) {
  return o.factorizer == "whitened" || o.schedule == "sensitivity" || o.schedule == "search" ||
         o.recalibrate_values;
}

void print_table(const lk::CompressionReport& r, const lk::ModelConfig& c) {
  const double dense = static_cast<double>(r.kv_numbers_dense);
  const double latent = static_cast<double>(r.kv_numbers_latent);
  std::printf("\n| %-28s | %14s | %14s | %7s |\n", "KV cache (fp16 numbers)", "dense", "latentkv",
              "ratio");
  std::printf("|%s|%s|%s|%s|\n", std::string(30, '-').c_str(), std::string(16, '-').c_str(),
              std::string(16, '-').c_str(), std::string(9, '-').c_str());
  const auto row = [&](const std::string& name, const std::string& a, const std::string& b,
                       double ratio) {
    std::printf("| %-28s | %14s | %14s | %6.3fx |\n", name.c_str(), a.c_str(), b.c_str(), ratio);
  };
  row("numbers per token", format("%.0f", dense), format("%.0f", latent), latent / dense);
  row("bytes per token (fp16)", format("%.0f", 2 * dense), format("%.0f", 2 * latent),
      latent / dense);
  for (const auto& [label, tokens] :
       {std::pair{"KV memory at 4K tokens", 4096.0}, std::pair{"KV memory at 32K tokens", 32768.0},
        std::pair{"KV memory at 128K tokens", 131072.0}}) {
    row(label, human_bytes(2 * dense * tokens), human_bytes(2 * latent * tokens), latent / dense);
  }
  row("attention weights (params)",
      format("%lld", static_cast<long long>(r.weight_parameters_dense)),
      format("%lld", static_cast<long long>(r.weight_parameters_compressed)),
      static_cast<double>(r.weight_parameters_compressed) /
          static_cast<double>(r.weight_parameters_dense));
  std::printf(
      "\n%ld layers (%zu dense), budget achieved %.4f; fp32 caches store twice the bytes.\n",
      static_cast<long>(c.num_layers), r.dense_layers.size(), r.budget_achieved());
}

nlohmann::json report_json(const Options& o, const lk::CompressionReport& r, double seconds,
                           const nlohmann::json& schedule_state) {
  nlohmann::json j;
  j["budget_requested"] = o.budget;
  j["budget_achieved"] = r.budget_achieved();
  j["kv_bytes_per_token_dense"] = 2 * r.kv_numbers_dense;  // fp16
  j["kv_bytes_per_token_latent"] = 2 * r.kv_numbers_latent;
  j["kv_bytes_per_number"] = 2;
  nlohmann::json layers = nlohmann::json::array();
  for (Index l = 0; l < r.plan.num_layers(); ++l) {
    const lk::LayerRanks& ranks = r.plan.layers[static_cast<std::size_t>(l)];
    layers.push_back({{"layer", l}, {"rank_k", ranks.k}, {"rank_v", ranks.v}});
  }
  j["layers"] = std::move(layers);
  j["seconds"] = seconds;
  j["model"] = o.model.string();
  j["schedule"] = o.schedule;
  j["schedule_state"] = schedule_state;
  j["factorizer"] = o.factorizer;
  j["grouping"] = o.grouping;
  j["multiple"] = o.multiple;
  j["dense_layers"] = r.dense_layers;
  j["weight_parameters_dense"] = r.weight_parameters_dense;
  j["weight_parameters_compressed"] = r.weight_parameters_compressed;
  j["spectra_seconds"] = r.spectra_seconds;
  j["factorize_seconds"] = r.factorize_seconds;
  nlohmann::json matrices = nlohmann::json::array();
  for (const lk::MatrixReport& m : r.matrices) {
    matrices.push_back({{"layer", m.layer},
                        {"side", m.side == lk::Projection::kKey ? "k" : "v"},
                        {"group", m.group},
                        {"rank", m.rank},
                        {"max_rank", m.max_rank},
                        {"retained_energy", m.retained_energy},
                        {"relative_error", m.relative_error}});
  }
  j["matrices"] = std::move(matrices);
  return j;
}

/// --method matryoshka: calibrate post-RoPE PCA bases on the tail of --calib, plan ranks with a
/// spectrum schedule on their variances, write the projection file (io/projection_checkpoint.hpp).
int run_matryoshka(Options o, bool calib_tokens_given, const std::string& command_line) {
  const auto start = std::chrono::steady_clock::now();
  if (!(o.budget > 0.0 && o.budget <= 1.0)) {
    usage_error("--budget = ", o.budget, ", expected a kept fraction in (0, 1]");
  }
  if (o.schedule.empty()) o.schedule = "energy";
  lk::check_schedule_name(o.schedule);
  const auto reject = [&](bool given, const char* option) {
    if (given) usage_error(option, " applies to --method svd only");
  };
  reject(!o.factorizer.empty(), "--factorizer");
  reject(!o.layers.empty(), "--layers");
  reject(o.recalibrate_values, "--recalibrate-values");
  reject(o.sink_weight != 0.0, "--sink-weight");
  reject(o.dtype != "f32", "--dtype");
  if (o.sink_tokens < 0) usage_error("--sink-tokens = ", o.sink_tokens, ", expected >= 0");
  if (o.refine_steps < 0) usage_error("--refine-steps = ", o.refine_steps, ", expected >= 0");
  if (o.refine_tokens < 2) usage_error("--refine-tokens = ", o.refine_tokens, ", expected >= 2");
  if (o.refine_ctx < 2) usage_error("--refine-ctx = ", o.refine_ctx, ", expected >= 2");
  if (o.multiple < 1) usage_error("--multiple = ", o.multiple, ", expected >= 1");
  if (o.threads < 0) usage_error("--threads = ", o.threads, ", expected >= 1");
  const lk::AnyGrouping grouping = lk::parse_grouping(o.grouping);
  if (!fs::exists(o.model)) usage_error("--model: no file or directory at ", o.model);
  if (!(fs::is_regular_file(o.model) && o.model.extension() == ".gguf")) {
    usage_error(
        "--method matryoshka runs the model on calibration text: it needs a .gguf --model "
        "(tokenizer and weights), got ",
        o.model);
  }
  if (o.out.empty() || fs::is_directory(o.out)) {
    usage_error("--out: ", o.out, " is not a file path");
  }
  if (same_file(o.out, o.model)) {
    usage_error("--out ", o.out, " is the input checkpoint: refusing to overwrite it");
  }
  if (!o.report.empty() && (same_file(o.report, o.out) || same_file(o.report, o.model))) {
    usage_error("--report ", o.report, " would overwrite the input or the output");
  }
  if (const fs::path parent = o.out.parent_path(); !parent.empty() && !fs::is_directory(parent)) {
    usage_error("--out: no directory ", parent);
  }
  if (o.calib.empty()) o.calib = default_text();
  require_file(o.calib, "--calib");
  if (o.threads > 0) lk::set_threads(o.threads);
  if (!calib_tokens_given) o.calib_tokens = 4096;

  const lk::GgufReader gguf = lk::GgufReader::open(o.model);
  const lk::LlamaModel model = lk::LlamaModel::from_gguf(gguf);
  const lk::ModelConfig& c = model.config();
  const Index s =
      std::visit([&](const auto& g) { return g.heads_per_group(c.num_kv_heads); }, grouping);
  if (s < 1 || c.num_kv_heads % s != 0) {
    usage_error("--grouping ", o.grouping, ": groups of ", s, " do not divide the ", c.num_kv_heads,
                " KV heads");
  }
  const std::vector<std::int32_t> calib_ids =
      lk::BpeTokenizer::from_gguf(gguf).encode(read_text(o.calib, "--calib"));
  const std::vector<std::int32_t> ids = tail_tokens(calib_ids, o.calib_tokens, "--calib-tokens");
  if (o.sink_tokens >= std::min<Index>(1024, static_cast<Index>(ids.size()))) {
    usage_error("--sink-tokens = ", o.sink_tokens, " leaves no calibration token in a chunk of ",
                std::min<Index>(1024, static_cast<Index>(ids.size())));
  }
  const auto t0 = std::chrono::steady_clock::now();
  const lk::ProjectionStats stats =
      lk::collect_projection_stats(model, ids, {.ctx = 1024, .skip_first = o.sink_tokens});
  const lk::ProjectedModel full = stats.fit(s);
  const double stats_seconds = seconds_since(t0);
  // Calibrated schedules measure the KL divergence of the projected model from the dense one on
  // the last --divergence-tokens of --calib (project/projected_divergence.hpp).
  nlohmann::json schedule_state = nlohmann::json::object();
  lk::AnyRankSchedule schedule = lk::UniformRankSchedule{};
  std::optional<lk::ProjectedKlDivergence> divergence;
  if (lk::is_data_free_schedule(o.schedule)) {
    schedule = lk::make_data_free_schedule(o.schedule);
  } else {
    const auto t1 = std::chrono::steady_clock::now();
    divergence.emplace(model, full,
                       tail_tokens(calib_ids, o.divergence_tokens, "--divergence-tokens"));
    schedule_state["divergence_tokens"] = o.divergence_tokens;
    schedule_state["calib"] = o.calib.filename().string();
    if (o.schedule == "sensitivity") {
      const Index probe = std::max<Index>(1, full.rank_problem(c.d_model).max_rank() / 8);
      std::vector<Index> layers(static_cast<std::size_t>(c.num_layers));
      for (Index l = 0; l < c.num_layers; ++l) layers[static_cast<std::size_t>(l)] = l;
      const lk::LayerSensitivities measured =
          lk::measure_layer_sensitivities(*divergence, full.plan(), layers, probe);
      const lk::LayerSensitivities w = lk::per_unit_tail_energy(measured, full, probe);
      const lk::SensitivityRankSchedule sensitivity(w.k, w.v);
      schedule = sensitivity;
      schedule_state["probe_rank"] = probe;
      schedule_state["measured_k"] = measured.k;
      schedule_state["measured_v"] = measured.v;
      schedule_state["alpha"] = sensitivity.options().alpha;
      schedule_state["weight_floor"] = sensitivity.options().weight_floor;
      schedule_state["power"] = sensitivity.options().power;
      schedule_state["k_weights"] = w.k;
      schedule_state["v_weights"] = w.v;
    } else {
      const lk::ProjectedKlDivergence& d = *divergence;
      schedule = lk::GreedySearchRankSchedule(
          [&d](const lk::RankPlan& p) { return d(p); },
          {.step = o.search_step, .decrements_per_round = o.search_per_round});
      schedule_state["step"] = o.search_step;
      schedule_state["decrements_per_round"] = o.search_per_round;
    }
    if (!o.quiet) {
      std::fprintf(stderr, "%s: matryoshka: %s: %ld divergence evaluations on %ld tokens, %.1f s\n",
                   kTool, o.schedule.c_str(), static_cast<long>(divergence->evaluations()),
                   static_cast<long>(o.divergence_tokens), seconds_since(t1));
    }
  }
  const lk::RankPlan plan = lk::plan_with(schedule, full.rank_problem(c.d_model),
                                          {.budget = o.budget, .multiple = o.multiple});
  if (divergence && !o.quiet) {
    std::fprintf(stderr, "%s: matryoshka: %ld divergence evaluations in all\n", kTool,
                 static_cast<long>(divergence->evaluations()));
  }
  lk::ProjectedModel projected = full.truncated(plan);
  if (!o.quiet) {
    std::fprintf(stderr,
                 "%s: matryoshka: post-RoPE key/value statistics of %ld tokens (%s, last %ld, "
                 "first %ld of each chunk left out) in %.1f s; %s plan, budget %.4f\n",
                 kTool, static_cast<long>(stats.tokens()), o.calib.filename().c_str(),
                 static_cast<long>(ids.size()), static_cast<long>(o.sink_tokens), stats_seconds,
                 o.schedule.c_str(), plan.budget());
  }
  std::vector<lk::LayerRefinement> refinement;
  if (o.refine_steps > 0) {
    const auto t1 = std::chrono::steady_clock::now();
    const std::vector<std::int32_t> refine_ids =
        tail_tokens(ids, std::min<Index>(o.refine_tokens, std::ssize(ids)), "--refine-tokens");
    const lk::AttentionInputs inputs =
        lk::collect_attention_inputs(model, refine_ids, o.refine_ctx);
    refinement =
        lk::refine_projections(projected, model.weights(), inputs, {.steps = o.refine_steps});
    if (!o.quiet) {
      double before = 0;
      double after = 0;
      for (const lk::LayerRefinement& r : refinement) {
        before += r.initial;
        after += r.final;
      }
      const double n = static_cast<double>(refinement.size());
      std::fprintf(stderr,
                   "%s: matryoshka: Cayley refinement (%d steps at most, %ld tokens in chunks of "
                   "%ld): attention-output error %.4f -> %.4f (mean over layers) in %.1f s\n",
                   kTool, o.refine_steps, static_cast<long>(refine_ids.size()),
                   static_cast<long>(o.refine_ctx), before / n, after / n, seconds_since(t1));
    }
  }
  lk::ProjectionCheckpointOptions options;
  options.schedule = o.schedule;
  options.skip_first = o.sink_tokens;
  options.source_model =
      o.model.filename().string() + " (" + std::to_string(fs::file_size(o.model)) + " bytes)";
  options.created_by = command_line;
  options.extra_metadata["grouping"] = o.grouping;
  options.extra_metadata["multiple"] = std::to_string(o.multiple);
  options.extra_metadata["calib"] = o.calib.filename().string();
  options.extra_metadata["refine_steps"] = std::to_string(o.refine_steps);
  options.extra_metadata["schedule_state"] = schedule_state.dump();
  if (o.refine_steps > 0) {
    options.extra_metadata["refine_tokens"] = std::to_string(o.refine_tokens);
    options.extra_metadata["refine_ctx"] = std::to_string(o.refine_ctx);
  }
  lk::write_projection_checkpoint(o.out, projected, c, options);
  const double dense = 2.0 * static_cast<double>(c.num_layers * c.kv_dim());
  std::printf("| %-28s | %-14s |\n|%s|%s|\n", "projections (route 2)", "value",
              std::string(30, '-').c_str(), std::string(16, '-').c_str());
  std::printf("| %-28s | %-14s |\n", "grouping", o.grouping.c_str());
  std::printf("| %-28s | %-14s |\n", "schedule", o.schedule.c_str());
  std::printf("| %-28s | %-14.4f |\n", "budget (of dense numbers)", plan.budget());
  std::printf("| %-28s | %-14ld |\n", "latent numbers per token",
              static_cast<long>(plan.latent_width()));
  std::printf("| %-28s | %-14.0f |\n", "dense numbers per token", dense);
  std::printf("| %-28s | %-14ld |\n", "fp16 KV bytes per token",
              static_cast<long>(2 * plan.latent_width()));
  std::printf("wrote %s (%s) in %.1f s\n", o.out.c_str(),
              human_bytes(static_cast<double>(fs::file_size(o.out))).c_str(), seconds_since(start));
  if (!o.report.empty()) {
    nlohmann::json j;
    j["method"] = "matryoshka";
    j["model"] = o.model.filename().string();
    j["budget_requested"] = o.budget;
    j["plan"] = plan.to_json();
    j["grouping"] = o.grouping;
    j["calibration_tokens"] = stats.tokens();
    j["sink_tokens"] = o.sink_tokens;
    j["refine_steps"] = o.refine_steps;
    if (!refinement.empty()) {
      nlohmann::json layers = nlohmann::json::array();
      for (const lk::LayerRefinement& r : refinement) {
        layers.push_back({{"initial", r.initial}, {"final", r.final}, {"steps", r.steps}});
      }
      j["refinement"] = {{"tokens", std::min<Index>(o.refine_tokens, std::ssize(ids))},
                         {"ctx", o.refine_ctx},
                         {"layers", std::move(layers)}};
    }
    j["seconds"] = seconds_since(start);
    write_text_atomically(o.report, j.dump(2) + "\n", "latentkv-compress: --report");
  }
  return 0;
}

int run(Options o) {
  const auto start = std::chrono::steady_clock::now();
  // Cheap checks first: nothing is read or written before every option is known to be valid.
  if (!(o.budget > 0.0 && o.budget <= 1.0)) {
    usage_error("--budget = ", o.budget, ", expected a kept fraction in (0, 1]");
  }
  const bool gguf_input = fs::is_regular_file(o.model) && o.model.extension() == ".gguf";
  // Defaults: the best measured on SmolLM2 (docs/quality): calibrated when the model can run
  // (a GGUF has the tokenizer), data-free otherwise.
  if (o.factorizer.empty()) o.factorizer = gguf_input ? "whitened" : "svd";
  if (o.schedule.empty()) o.schedule = gguf_input ? "sensitivity" : "energy";
  lk::check_factorizer_name(o.factorizer);
  lk::check_schedule_name(o.schedule);
  const lk::AnyGrouping grouping = lk::parse_grouping(o.grouping);
  const lk::SafetensorsDtype dtype = parse_dtype(o.dtype);
  if (o.multiple < 1) usage_error("--multiple = ", o.multiple, ", expected >= 1");
  if (!(o.recalibrate_ridge >= 0.0) || !std::isfinite(o.recalibrate_ridge)) {
    usage_error("--recalibrate-ridge = ", o.recalibrate_ridge, ", expected >= 0");
  }
  if (o.sink_tokens < 0) usage_error("--sink-tokens = ", o.sink_tokens, ", expected >= 0");
  if (o.refine_steps != 0) usage_error("--refine-steps applies to --method matryoshka only");
  if (!(o.sink_weight >= 0.0) || !std::isfinite(o.sink_weight)) {
    usage_error("--sink-weight = ", o.sink_weight, ", expected a finite weight >= 0");
  }
  if (o.sink_tokens > 0 && o.factorizer != "whitened") {
    usage_error(
        "--sink-tokens weighs the whitening Gram matrices: it needs --factorizer whitened, "
        "not ",
        o.factorizer);
  }
  if (o.factorizer == "svd-gain" && !gguf_input) {
    usage_error(
        "--factorizer svd-gain reads the attention RMSNorm gains: it needs a .gguf --model");
  }
  if (o.threads < 0) usage_error("--threads = ", o.threads, ", expected >= 1");
  if (!fs::exists(o.model)) usage_error("--model: no file or directory at ", o.model);
  if (o.out.empty() || fs::is_directory(o.out))
    usage_error("--out: ", o.out, " is not a file path");
  for (const fs::path& input : {o.model, o.model / "model.safetensors"}) {
    if (same_file(o.out, input)) {
      usage_error("--out ", o.out, " is the input checkpoint: refusing to overwrite it");
    }
  }
  if (!o.report.empty() && (same_file(o.report, o.out) || same_file(o.report, o.model))) {
    usage_error("--report ", o.report, " would overwrite the input or the output");
  }
  if (const fs::path parent = o.out.parent_path(); !parent.empty() && !fs::is_directory(parent)) {
    usage_error("--out: no directory ", parent);
  }
  if (o.threads > 0) lk::set_threads(o.threads);

  // The input, opened lazily per layer.
  std::optional<lk::GgufReader> gguf;
  std::optional<lk::HfModelDir> hf;
  std::optional<AnySource> source;
  const bool is_gguf = fs::is_regular_file(o.model) && o.model.extension() == ".gguf";
  if (is_gguf) {
    gguf.emplace(lk::GgufReader::open(o.model));
    source.emplace(std::make_shared<const lk::GgufAttentionSource>(*gguf));
  } else if (fs::is_directory(o.model) || o.model.extension() == ".safetensors") {
    hf.emplace(lk::HfModelDir::open(o.model));
    std::optional<lk::ModelConfig> config;
    if (!hf->has_config()) {
      const fs::path beside = o.model.parent_path() / "config.json";
      if (!fs::is_regular_file(beside)) {
        usage_error("--model ", o.model,
                    ": a single .safetensors file needs config.json beside it");
      }
      config = lk::from_hf_config(beside);
    }
    source.emplace(std::make_shared<const lk::HfAttentionSource>(*hf, config));
  } else {
    usage_error("--model ", o.model,
                ": expected a .gguf file, a Hugging Face directory or a "
                ".safetensors file");
  }
  const lk::ModelConfig& c = source->config();
  const auto [first, last] = parse_layers(o.layers, c.num_layers);
  const lk::CompressorOptions copts{.first_layer = first,
                                    .last_layer = last,
                                    .threads = static_cast<unsigned>(o.threads),
                                    .factorizer_name = o.factorizer};
  if (!o.quiet) {
    std::fprintf(stderr,
                 "%s: %s: %ld layers, d_model %ld, %ld/%ld heads of %ld; budget %.4g, schedule %s, "
                 "factorizer %s, grouping %s, layers %ld-%ld\n",
                 kTool, source->description().c_str(), static_cast<long>(c.num_layers),
                 static_cast<long>(c.d_model), static_cast<long>(c.num_heads),
                 static_cast<long>(c.num_kv_heads), static_cast<long>(c.head_dim), o.budget,
                 o.schedule.c_str(), o.factorizer.c_str(), o.grouping.c_str(),
                 static_cast<long>(first), static_cast<long>(last));
  }

  // Calibration: the full model and text, only for the choices that need them.
  std::optional<lk::LlamaModel> model;
  std::vector<std::int32_t> calib_ids;
  if (needs_model(o)) {
    if (!is_gguf) {
      usage_error("--factorizer ", o.factorizer, " / --schedule ", o.schedule,
                  " run the model on calibration text: they need a .gguf --model (tokenizer and "
                  "weights)");
    }
    if (o.calib.empty()) o.calib = default_text();
    require_file(o.calib, "--calib");
    model.emplace(lk::LlamaModel::from_gguf(*gguf));
    const lk::BpeTokenizer tokenizer = lk::BpeTokenizer::from_gguf(*gguf);
    calib_ids = tokenizer.encode(read_text(o.calib, "--calib"));
    if (!o.quiet) {
      std::fprintf(stderr, "%s: calibration: %s, %zu tokens (the last ones are used)\n", kTool,
                   o.calib.filename().c_str(), calib_ids.size());
    }
  }
  lk::AnyFactorizer factorizer = lk::GramEigenFactorizer<float>{};
  if (o.factorizer == "rsvd") factorizer = lk::RandomizedSvdFactorizer<float>{};
  if (o.factorizer == "svd-gain") {
    factorizer = model ? lk::gain_folded_whitening(model->weights())
                       : lk::gain_folded_whitening(lk::load_llama_weights(*gguf));
  }
  // Calibration activations, kept per layer when the values are refit or sinks are weighted.
  std::optional<lk::AttentionInputs> inputs;
  if (o.recalibrate_values || o.sink_tokens > 0) {
    const std::vector<std::int32_t> ids = tail_tokens(calib_ids, o.calib_tokens, "--calib-tokens");
    const auto t0 = std::chrono::steady_clock::now();
    inputs = lk::collect_attention_inputs(*model, ids, 1024);
    if (!o.quiet) {
      std::fprintf(stderr, "%s: calibration activations of %ld tokens in %.1f s\n", kTool,
                   static_cast<long>(ids.size()), seconds_since(t0));
    }
  }
  if (o.factorizer == "whitened") {
    const std::vector<std::int32_t> ids = tail_tokens(calib_ids, o.calib_tokens, "--calib-tokens");
    const auto t0 = std::chrono::steady_clock::now();
    factorizer = lk::CalibratedWhitening<lk::GramEigenFactorizer<float>>(
        inputs ? lk::attention_input_grams(*inputs, o.sink_tokens, o.sink_weight)
               : lk::collect_attention_grams(*model, ids, 1024));
    if (!o.quiet) {
      std::fprintf(stderr, "%s: whitening: Gram matrices of %ld tokens in %.1f s\n", kTool,
                   static_cast<long>(ids.size()), seconds_since(t0));
    }
  }

  const lk::RankBudget budget{.budget = o.budget, .multiple = o.multiple};
  nlohmann::json schedule_state = nlohmann::json::object();
  lk::AnyRankSchedule schedule = lk::UniformRankSchedule{};
  // Calibrated schedules measure on one factorization at full rank, truncated per plan.
  std::optional<lk::CompressedModel> full;
  std::optional<lk::KlDivergence> divergence;
  std::vector<Index> selected;
  for (Index l = first; l <= last; ++l) selected.push_back(l);
  if (lk::is_data_free_schedule(o.schedule)) {
    schedule = lk::make_data_free_schedule(o.schedule);
  } else {
    const auto t0 = std::chrono::steady_clock::now();
    full = lk::with_compressor(
        factorizer, grouping, lk::UniformRankSchedule{}, copts,
        [&](const auto& compressor) { return compressor.compress(*source, {.budget = 1.0}); });
    divergence.emplace(*model, *full,
                       tail_tokens(calib_ids, o.divergence_tokens, "--divergence-tokens"));
    schedule_state["divergence_tokens"] = o.divergence_tokens;
    schedule_state["calib"] = o.calib.filename().string();
    const Index max_rank = full->max_rank();
    if (o.schedule == "sensitivity") {
      // Probe deep (an eighth of the full rank): where budgets below 0.5 put the cheap layers.
      const Index probe = std::max<Index>(1, max_rank / 8);
      const lk::LayerSensitivities measured =
          lk::measure_layer_sensitivities(*divergence, full->plan, selected, probe);
      const lk::LayerSensitivities w = lk::per_unit_tail_energy(measured, *full, selected, probe);
      const lk::SensitivityRankSchedule sensitivity(w.k, w.v);
      schedule_state["measured_k"] = measured.k;
      schedule_state["measured_v"] = measured.v;
      schedule = sensitivity;
      schedule_state["probe_rank"] = probe;
      schedule_state["alpha"] = sensitivity.options().alpha;
      schedule_state["weight_floor"] = sensitivity.options().weight_floor;
      schedule_state["power"] = sensitivity.options().power;
      schedule_state["k_weights"] = w.k;
      schedule_state["v_weights"] = w.v;
    } else {
      const lk::KlDivergence& d = *divergence;
      const lk::RankPlan base = full->plan;
      const auto expand = [selected, base](const lk::RankPlan& p) {
        lk::RankPlan out = base;
        for (std::size_t i = 0; i < selected.size(); ++i) {
          out.layers[static_cast<std::size_t>(selected[i])] = p.layers[i];
        }
        return out;
      };
      schedule = lk::GreedySearchRankSchedule(
          [&d, expand](const lk::RankPlan& p) { return d(expand(p)); },
          {.step = o.search_step, .decrements_per_round = o.search_per_round});
      schedule_state["step"] = o.search_step;
      schedule_state["decrements_per_round"] = o.search_per_round;
    }
    if (!o.quiet) {
      std::fprintf(stderr, "%s: %s: %ld divergence evaluations on %ld tokens so far, %.1f s\n",
                   kTool, o.schedule.c_str(), static_cast<long>(divergence->evaluations()),
                   static_cast<long>(o.divergence_tokens), seconds_since(t0));
    }
  }

  ProgressBar bar(o.quiet);
  const lk::CompressionProgress progress = [&](std::string_view stage, Index done, Index total) {
    bar.update(stage, done, total);
  };
  CheckpointSink sink{o.out, o.factorizer, o.grouping, {}, std::nullopt};
  sink.options.dtype = dtype;
  // What elastic loading needs to re-plan a smaller budget the way this one was planned.
  sink.options.extra_metadata["schedule_state"] = schedule_state.dump();
  sink.options.extra_metadata["multiple"] = std::to_string(o.multiple);
  sink.options.source_model =
      o.model.filename().string() + (fs::is_regular_file(o.model)
                                         ? " (" + std::to_string(fs::file_size(o.model)) + " bytes)"
                                         : "");
  if (o.recalibrate_values) {
    sink.options.extra_metadata["value_recalibration_ridge"] = format("%g", o.recalibrate_ridge);
  }
  nlohmann::json recalibration = nlohmann::json::array();
  const lk::CompressionReport report =
      lk::with_compressor(factorizer, grouping, schedule, copts, [&](const auto& compressor) {
        if (!o.recalibrate_values) return compressor.compress(*source, budget, sink, progress);
        lk::ValueRecalibrationSink<CheckpointSink> refit(sink, model->weights(), *inputs,
                                                         {.ridge = o.recalibrate_ridge});
        lk::CompressionReport r = compressor.compress(*source, budget, refit, progress);
        for (const lk::ValueRecalibrationReport& e : refit.reports()) {
          recalibration.push_back({{"relative_error_before", e.relative_error_before},
                                   {"relative_error_after", e.relative_error_after}});
        }
        return r;
      });
  if (o.recalibrate_values && !o.quiet && !recalibration.empty()) {
    double before = 0.0;
    double after = 0.0;
    for (const auto& e : recalibration) {
      before += e["relative_error_before"].get<double>();
      after += e["relative_error_after"].get<double>();
    }
    std::fprintf(stderr,
                 "%s: value recalibration (ridge %g): mean relative output error on the "
                 "calibration set %.4f -> %.4f over %zu layers\n",
                 kTool, o.recalibrate_ridge, before / static_cast<double>(recalibration.size()),
                 after / static_cast<double>(recalibration.size()), recalibration.size());
  }
  if (divergence && !o.quiet) {
    std::fprintf(stderr, "%s: %ld divergence evaluations in total\n", kTool,
                 static_cast<long>(divergence->evaluations()));
  }
  schedule_state["evaluations"] = divergence ? divergence->evaluations() : 0;
  const double seconds = seconds_since(start);
  print_table(report, c);
  std::printf("wrote %s (%s) in %.1f s\n", o.out.c_str(),
              human_bytes(static_cast<double>(fs::file_size(o.out))).c_str(), seconds);
  if (!o.report.empty()) {
    nlohmann::json j = report_json(o, report, seconds, schedule_state);
    j["recalibrate_values"] = o.recalibrate_values;
    if (o.recalibrate_values) {
      j["recalibrate_ridge"] = o.recalibrate_ridge;
      j["value_recalibration"] = recalibration;  // per compressed layer, in order
    }
    j["sink_tokens"] = o.sink_tokens;
    j["sink_weight"] = o.sink_weight;
    write_text_atomically(o.report, j.dump(2) + "\n", "latentkv-compress: --report");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "Compress the KV cache of a LLaMA-family checkpoint: low-rank K/V factors for a "
      "global KV-cache budget, written as a compressed checkpoint (docs/FORMAT.md)."};
  app.add_option("--model", o.model, "checkpoint: .gguf, Hugging Face directory or .safetensors")
      ->required();
  app.add_option("--method", o.method,
                 "svd: low-rank K/V factors (route 1); matryoshka: post-RoPE PCA bases calibrated "
                 "on --calib (route 2; a .gguf --model)")
      ->check(CLI::IsMember({"svd", "matryoshka"}))
      ->capture_default_str();
  app.add_option("--budget", o.budget, "kept fraction of dense KV-cache bytes, in (0, 1]")
      ->capture_default_str();
  app.add_option("--schedule", o.schedule,
                 "uniform|progressive|energy|sensitivity|search (default: sensitivity for a .gguf "
                 "--model, else energy)");
  app.add_option("--factorizer", o.factorizer,
                 "svd|rsvd|whitened|svd-gain (default: whitened for a .gguf --model, else svd)");
  app.add_option("--grouping", o.grouping, "joint|per-head|group:N")->capture_default_str();
  app.add_option("--calib", o.calib,
                 "calibration text for whitened/sensitivity/search (default: the WikiText-2 test "
                 "split; its last tokens are used)");
  CLI::Option* calib_tokens =
      app.add_option("--calib-tokens", o.calib_tokens,
                     "tokens for the whitening Gram matrices (matryoshka: the PCA statistics, "
                     "default 4096)")
          ->capture_default_str();
  app.add_option("--divergence-tokens", o.divergence_tokens,
                 "tokens for the KL divergence of sensitivity/search")
      ->capture_default_str();
  app.add_option("--layers", o.layers, "compress layers A-B only (others stay dense)");
  app.add_option("--multiple", o.multiple, "round ranks to multiples of this")
      ->capture_default_str();
  app.add_option("--dtype", o.dtype, "factor dtype in the file: f32|f16|bf16")
      ->capture_default_str();
  app.add_option("--out", o.out, "compressed checkpoint to write (.safetensors)")->required();
  app.add_option("--report", o.report, "JSON report to write");
  app.add_option("--search-step", o.search_step, "search: rank decrement")->capture_default_str();
  app.add_option("--search-per-round", o.search_per_round, "search: decrements per round")
      ->capture_default_str();
  app.add_option("--threads", o.threads, "threads (default: every core)");
  app.add_flag("--quiet", o.quiet, "no progress on stderr");
  app.add_flag("--recalibrate-values", o.recalibrate_values,
               "refit W~_o per query head by ridge least squares on the calibration activations "
               "(needs a .gguf --model)");
  app.add_option("--recalibrate-ridge", o.recalibrate_ridge,
                 "ridge of --recalibrate-values, relative to the mean eigenvalue (>= 0)")
      ->capture_default_str();
  app.add_option("--sink-tokens", o.sink_tokens,
                 "whitened: weigh the first N positions of each calibration chunk by --sink-weight")
      ->capture_default_str();
  app.add_option("--sink-weight", o.sink_weight,
                 "weight of the sink tokens in the whitening Gram matrices (0 = excluded)")
      ->capture_default_str();
  app.add_option("--refine-steps", o.refine_steps,
                 "matryoshka: Cayley refinement steps per layer on the attention-output error "
                 "(0: the PCA bases as they are)")
      ->capture_default_str();
  app.add_option("--refine-tokens", o.refine_tokens,
                 "matryoshka: calibration tokens the refinement runs on (the last of --calib)")
      ->capture_default_str();
  app.add_option("--refine-ctx", o.refine_ctx, "matryoshka: tokens per refinement chunk")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    if (o.method == "matryoshka") {
      std::string command_line = kTool;
      for (int i = 1; i < argc; ++i) command_line += std::string(" ") + argv[i];
      return run_matryoshka(o, calib_tokens->count() > 0, command_line);
    }
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", kTool, e.what());
    return 1;
  }
}
