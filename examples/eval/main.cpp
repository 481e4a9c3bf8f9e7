// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// latentkv-eval: perplexity of a GGUF checkpoint by the protocol of DESIGN §10.
//   latentkv-eval --model M.gguf [--text FILE] [--ctx 1024] [--chunks N | --all] [--threads T]
//   text  (default $LATENTKV_WIKITEXT, else the shared WikiText-2 test split) tokenized as one
//         string, no BOS → chunks of ctx tokens (short tail dropped) → each chunk from an empty
//         KV cache → PPL = exp(mean NLL of the ctx − 1 predictions per chunk)
// Progress goes to stderr; the result table (PPL, mean NLL, ctx, chunks, tokens, tokens/s, KV
// bytes per token) to stdout. Exit status 1 with "latentkv-eval: error: ..." on bad input.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "latentkv/eval/perplexity.hpp"
#include "latentkv/io/gguf_reader.hpp"
#include "latentkv/linalg/parallel.hpp"
#include "latentkv/model/dense_kv_cache.hpp"
#include "latentkv/model/llama_model.hpp"
#include "latentkv/text/tokenizer.hpp"

namespace {

using latentkv::Index;
namespace fs = std::filesystem;

constexpr const char* kTool = "latentkv-eval";

struct Options {
  fs::path model;
  fs::path text;
  Index ctx = 1024;
  Index chunks = 4;
  bool all = false;
  int threads = 0;  // 0: OpenMP's default (every core)
};

fs::path default_text() {
  if (const char* env = std::getenv("LATENTKV_WIKITEXT"); env != nullptr && *env != '\0') {
    return env;
  }
  return LATENTKV_DEFAULT_WIKITEXT;
}

/// Throws InvalidArgument with the message parts concatenated (main() prefixes the tool's name).
template <class... Parts>
[[noreturn]] void usage_error(const Parts&... parts) {
  throw latentkv::InvalidArgument(latentkv::detail::concat(parts...));
}

/// Throws InvalidArgument naming the option when `path` is not a readable regular file.
void require_file(const fs::path& path, const char* option) {
  if (!fs::is_regular_file(path)) {
    usage_error(option, ": no file at ", path, fs::exists(path) ? " (not a regular file)" : "");
  }
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  if (!in && !in.eof()) {
    usage_error("--text: cannot read ", path);
  }
  return out.str();
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
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

void print_row(const char* name, const std::string& value) {
  std::printf("| %-20s | %-14s |\n", name, value.c_str());
}

std::string format(const char* pattern, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, pattern, value);
  return buffer;
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
  const std::vector<std::int32_t> ids = tokenizer.encode(read_text(o.text));
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

  // The KV cache the model runs through. Here the next issue adds `--compressed C.safetensors`:
  // it loads the compressed checkpoint and evaluates through its latent cache instead (same
  // evaluate() call, another KvCache type); everything above and below stays as it is.
  latentkv::DenseKvCache cache(model.weights(), o.ctx);
  const std::string cache_name = "dense fp32";
  const latentkv::PerplexityResult r = evaluate(model, cache, ids, options, chunks);

  std::printf("\n%s: %s, %s KV cache, %d threads\n\n", kTool, o.model.filename().c_str(),
              cache_name.c_str(), latentkv::max_threads());
  std::printf("| %-20s | %-14s |\n|%s|%s|\n", "metric", "value", std::string(22, '-').c_str(),
              std::string(16, '-').c_str());
  print_row("PPL", format("%.4f", r.ppl));
  print_row("mean NLL (nats)", format("%.6f", r.mean_nll));
  print_row("ctx", std::to_string(r.ctx));
  print_row("chunks", std::to_string(r.chunks) + " of " + std::to_string(r.available_chunks));
  print_row("tokens", std::to_string(r.tokens));
  print_row("seconds", format("%.1f", r.seconds));
  print_row("tokens/s", format("%.1f", r.tokens_per_second()));
  print_row("KV bytes per token", std::to_string(r.kv_bytes_per_token));
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
  // Next issue: app.add_option("--compressed", ...) selects a latent cache (see run()).
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", kTool, e.what());
    return 1;
  }
}
