// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The route-2 projection checkpoint (docs/FORMAT.md, "Projection files"): a safetensors file
// holding a ProjectedModel (project/projected_model.hpp), rank-major, plus metadata.
//   h = head_dim, s = KV heads per group, G = n_kv / s groups; for layer l, group j:
//   layers.{l}.k.{j}.basis     [r_k, s·h]  F32 P_kᵀ: row i is the i-th principal direction
//   layers.{l}.k.{j}.mean      [s·h]       F32 μ_k
//   layers.{l}.k.{j}.variance  [s·h]       F64 every eigenvalue λ, descending
//   layers.{l}.v.{j}.basis / .mean / .variance   the same for the values
// Axis 0 of a basis is the latent index, so the rank-r' projections are a byte prefix of each
// basis (load_projection_checkpoint(path, &smaller) reads only it).
// __metadata__: format = "latentkv.projected", format_version = "1", latentkv_version, method
// ("matryoshka-pca"), schedule (the name the plan was made with, used to re-plan a smaller
// budget), plan (RankPlan JSON), source_config (ModelConfig JSON), calibration_tokens,
// skip_first, source_model, created_by, plus the caller's extra keys.
// Written in one piece (a few MB) through a temporary file renamed over the destination; the
// reader validates everything (FormatError naming the file, key or tensor).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/core/version.hpp"
#include "latentkv/io/compressed_checkpoint.hpp"
#include "latentkv/io/safetensors.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/model/model_config.hpp"
#include "latentkv/project/projected_model.hpp"
#include "latentkv/schedule/rank_plan.hpp"

namespace latentkv {

inline constexpr std::string_view kProjectionCheckpointFormat = "latentkv.projected";
inline constexpr std::string_view kProjectionCheckpointFormatVersion = "1";
/// Post-RoPE PCA bases of MatryoshkaKV (route 2), calibrated on text.
inline constexpr std::string_view kMatryoshkaPcaMethod = "matryoshka-pca";

/// "layers.{l}.{side}.{group}.{part}".
[[nodiscard]] inline std::string projection_tensor_name(Index layer, std::string_view side,
                                                        Index group, std::string_view part) {
  return "layers." + std::to_string(layer) + "." + std::string(side) + "." + std::to_string(group) +
         "." + std::string(part);
}

struct ProjectionCheckpointOptions {
  std::string schedule = "energy";  ///< the schedule the plan was made with ("uniform", …)
  Index skip_first = 0;             ///< calibration tokens left out at the start of every chunk
  std::string source_model = "";    ///< file name of the model the projections were calibrated on
  std::string created_by = "latentkv " LATENTKV_VERSION_STRING;  ///< the producing tool
  std::map<std::string, std::string> extra_metadata = {};
};

/// What a projection file says about itself (its metadata, validated).
struct ProjectionCheckpointInfo {
  ModelConfig config;
  RankPlan plan;
  std::string method;
  std::string schedule;
  Index calibration_tokens = 0;
  Index skip_first = 0;
  std::map<std::string, std::string, std::less<>> metadata;
};

/// Writes `model` (a config it was calibrated on, for source_config) to `path` atomically.
/// Throws InvalidArgument when the projections do not fit `config`, Error when writing fails.
inline void write_projection_checkpoint(const std::filesystem::path& path,
                                        const ProjectedModel& model, const ModelConfig& config,
                                        const ProjectionCheckpointOptions& options = {}) {
  model.validate(config);
  SafetensorsWriter writer;
  const RankPlan plan = model.plan();
  writer.add_metadata("format", std::string(kProjectionCheckpointFormat));
  writer.add_metadata("format_version", std::string(kProjectionCheckpointFormatVersion));
  writer.add_metadata("latentkv_version", LATENTKV_VERSION_STRING);
  writer.add_metadata("method", std::string(kMatryoshkaPcaMethod));
  writer.add_metadata("schedule", options.schedule);
  writer.add_metadata("plan", plan.to_json().dump());
  writer.add_metadata("source_config", model_config_to_json(config).dump());
  writer.add_metadata("calibration_tokens", std::to_string(model.calibration_tokens));
  writer.add_metadata("skip_first", std::to_string(options.skip_first));
  writer.add_metadata("source_model", options.source_model);
  writer.add_metadata("created_by", options.created_by);
  for (const auto& [key, value] : options.extra_metadata) writer.add_metadata(key, value);
  for (Index l = 0; l < model.num_layers(); ++l) {
    const ProjectedLayer& layer = model.layers[static_cast<std::size_t>(l)];
    for (const auto& [side, list] : {std::pair{"k", &layer.k}, std::pair{"v", &layer.v}}) {
      for (std::size_t j = 0; j < list->size(); ++j) {
        const ProjectedBasis& b = (*list)[j];
        const auto g = static_cast<Index>(j);
        const RowMatrix<float> basis_t = b.basis.transpose();
        writer.add(projection_tensor_name(l, side, g, "basis"), basis_t);
        writer.add(projection_tensor_name(l, side, g, "mean"), b.mean.transpose(), {b.mean.size()},
                   SafetensorsDtype::kF32);
        writer.add_raw(projection_tensor_name(l, side, g, "variance"), SafetensorsDtype::kF64,
                       {b.variance.size()},
                       std::as_bytes(std::span<const double>(
                           b.variance.data(), static_cast<std::size_t>(b.variance.size()))));
      }
    }
  }
  writer.write(path);
}

namespace detail {

[[nodiscard]] inline ProjectionCheckpointInfo inspect_projection_checkpoint(
    const SafetensorsReader& reader, const char* where) {
  const std::string file = reader.path().string();
  const auto fail = [&](const auto&... parts) { raise<FormatError>(where, file, ": ", parts...); };
  const auto key = [&](std::string_view name) -> const std::string& {
    const std::string* value = reader.find_metadata(name);
    if (value == nullptr) fail("metadata key ", quoted(name), " is missing");
    return *value;
  };
  const std::string& format = key("format");
  if (format != kProjectionCheckpointFormat) {
    fail("metadata \"format\" is \"", format, "\", expected \"", kProjectionCheckpointFormat,
         "\" (",
         format == kCompressedCheckpointFormat
             ? "a weight-SVD checkpoint: load it with load_compressed_checkpoint"
             : "not a latentkv projection file",
         ")");
  }
  if (key("format_version") != kProjectionCheckpointFormatVersion) {
    fail("metadata \"format_version\" is \"", key("format_version"), "\", expected \"",
         kProjectionCheckpointFormatVersion, "\"");
  }
  ProjectionCheckpointInfo info;
  info.method = key("method");
  if (info.method != kMatryoshkaPcaMethod) {
    fail("metadata \"method\" is \"", info.method, "\", expected \"", kMatryoshkaPcaMethod, "\"");
  }
  info.schedule = key("schedule");
  try {
    info.config = model_config_from_json(nlohmann::json::parse(key("source_config")));
    info.plan = RankPlan::from_json(nlohmann::json::parse(key("plan")));
    info.calibration_tokens = std::stoll(key("calibration_tokens"));
    info.skip_first = std::stoll(key("skip_first"));
  } catch (const FormatError& e) {
    fail(e.what());
  } catch (const std::exception& e) {
    fail(
        "metadata \"source_config\", \"plan\", \"calibration_tokens\" or \"skip_first\" does not "
        "parse: ",
        e.what());
  }
  if (info.plan.num_layers() != info.config.num_layers ||
      info.plan.num_kv_heads != info.config.num_kv_heads ||
      info.plan.head_dim != info.config.head_dim) {
    fail("the plan (", info.plan.num_layers(), " layers, n_kv = ", info.plan.num_kv_heads,
         ", h = ", info.plan.head_dim, ") does not fit source_config (", info.config.num_layers,
         ", ", info.config.num_kv_heads, ", ", info.config.head_dim, ")");
  }
  try {
    info.plan.validate(info.plan.heads_per_group * info.plan.head_dim);
  } catch (const InvalidArgument& e) {
    fail("metadata \"plan\": ", e.what());
  }
  const Index width = info.plan.heads_per_group * info.plan.head_dim;
  Index expected_tensors = 0;
  for (Index l = 0; l < info.plan.num_layers(); ++l) {
    const LayerRanks& r = info.plan.layers[static_cast<std::size_t>(l)];
    for (const auto& side_ranks : {std::pair{"k", &r.k}, std::pair{"v", &r.v}}) {
      const char* side = side_ranks.first;    // not a structured binding: the lambda below captures
      const auto* ranks = side_ranks.second;  // it, which clang before 16 rejects
      for (std::size_t j = 0; j < ranks->size(); ++j) {
        const auto g = static_cast<Index>(j);
        const auto expect = [&](std::string_view part, SafetensorsDtype dtype,
                                std::vector<std::int64_t> shape) {
          const std::string name = projection_tensor_name(l, side, g, part);
          const SafetensorsTensorInfo* t = reader.find_tensor(name);
          if (t == nullptr) fail("tensor ", quoted(name), " is missing");
          if (t->dtype != dtype || t->shape != shape) {
            fail("tensor ", quoted(name), " is ", safetensors_dtype_traits(t->dtype).name, " ",
                 ShapeText{t->shape}, ", expected ", safetensors_dtype_traits(dtype).name, " ",
                 ShapeText{shape});
          }
          ++expected_tensors;
        };
        expect("basis", SafetensorsDtype::kF32, {(*ranks)[j], width});
        expect("mean", SafetensorsDtype::kF32, {width});
        expect("variance", SafetensorsDtype::kF64, {width});
      }
    }
  }
  if (static_cast<Index>(reader.tensors().size()) != expected_tensors) {
    fail(reader.tensors().size(), " tensors, expected ", expected_tensors,
         " (an unexpected tensor)");
  }
  info.metadata = reader.metadata();
  return info;
}

}  // namespace detail

/// The file's metadata, validated with every tensor's dtype and shape; no tensor data is read.
[[nodiscard]] inline ProjectionCheckpointInfo read_projection_checkpoint_info(
    const std::filesystem::path& path) {
  const SafetensorsReader reader = SafetensorsReader::open(path);
  return detail::inspect_projection_checkpoint(reader, "latentkv::read_projection_checkpoint_info");
}

/// Loads the projections; with `ranks` (the file's layout, no entry above the file's; else
/// InvalidArgument) only the leading rows of every basis are read, and the result equals
/// load_projection_checkpoint(path).truncated(*ranks). Throws FormatError naming the file and the
/// tensor or key, including the offset of a NaN or Inf.
[[nodiscard]] inline ProjectedModel load_projection_checkpoint(const std::filesystem::path& path,
                                                               const RankPlan* ranks = nullptr) {
  constexpr const char* kWhere = "latentkv::load_projection_checkpoint";
  const SafetensorsReader reader = SafetensorsReader::open(path);
  const ProjectionCheckpointInfo info = detail::inspect_projection_checkpoint(reader, kWhere);
  const RankPlan& plan = ranks != nullptr ? *ranks : info.plan;
  if (ranks != nullptr) {
    const RankPlan& file = info.plan;
    if (ranks->num_layers() != file.num_layers() || ranks->num_kv_heads != file.num_kv_heads ||
        ranks->head_dim != file.head_dim || ranks->heads_per_group != file.heads_per_group) {
      detail::raise<InvalidArgument>(kWhere, path.string(),
                                     ": ranks: the plan's layout differs "
                                     "from the file's");
    }
    for (Index l = 0; l < file.num_layers(); ++l) {
      const LayerRanks& want = ranks->layers[static_cast<std::size_t>(l)];
      const LayerRanks& have = file.layers[static_cast<std::size_t>(l)];
      for (std::size_t j = 0; j < have.k.size(); ++j) {
        if (want.k.size() != have.k.size() || want.v.size() != have.v.size() || want.k[j] < 1 ||
            want.v[j] < 1 || want.k[j] > have.k[j] || want.v[j] > have.v[j]) {
          detail::raise<InvalidArgument>(kWhere, path.string(), ": ranks: layer ", l, " group ", j,
                                         " asks for more than the file holds or for none");
        }
      }
    }
  }
  ProjectedModel model;
  model.num_kv_heads = info.plan.num_kv_heads;
  model.head_dim = info.plan.head_dim;
  model.heads_per_group = info.plan.heads_per_group;
  model.calibration_tokens = info.calibration_tokens;
  for (Index l = 0; l < plan.num_layers(); ++l) {
    const LayerRanks& r = plan.layers[static_cast<std::size_t>(l)];
    ProjectedLayer layer;
    for (const auto& [side, ranks_of, list] :
         {std::tuple{"k", &r.k, &layer.k}, std::tuple{"v", &r.v, &layer.v}}) {
      for (std::size_t j = 0; j < ranks_of->size(); ++j) {
        const auto g = static_cast<Index>(j);
        ProjectedBasis b;
        b.basis = detail::read_finite_rows(reader, projection_tensor_name(l, side, g, "basis"),
                                           (*ranks_of)[j], kWhere)
                      .transpose();
        b.mean =
            detail::read_finite_rows(reader, projection_tensor_name(l, side, g, "mean"), 1, kWhere)
                .transpose();
        b.variance = detail::read_finite_sigma(
            reader, projection_tensor_name(l, side, g, "variance"), kWhere);
        list->push_back(std::move(b));
      }
    }
    model.layers.push_back(std::move(layer));
  }
  try {
    model.validate(info.config);
  } catch (const InvalidArgument& e) {
    detail::raise<FormatError>(kWhere, path.string(), ": ", e.what());
  }
  return model;
}

}  // namespace latentkv
