// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Writes the files tests/io/read_compressed_checkpoint.py checks with Python's safetensors:
//   <dir>/joint_f32.safetensors      joint grouping, F32 factors, layer 1 dense
//   <dir>/per_head_f16.safetensors   per-head grouping, F16 factors, layer 0 dense
//   <dir>/expected.json              per file: factor dtype, tensor count, the metadata, and a few
//                                    values as stored (after F16 rounding), by tensor and index
// Usage: compressed_checkpoint_python_fixture <dir> (created if missing).
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../support/compressed_models.hpp"
#include "latentkv/io/compressed_checkpoint.hpp"

namespace {

using namespace latentkv;

double stored(SafetensorsDtype dtype, float x) {
  return dtype == SafetensorsDtype::kF16 ? fp16_bits_to_float(float_to_fp16_bits(x)) : x;
}

/// Three entries (first, middle, last element) of a file tensor [rows, cols] whose element
/// [i, j] is at(i, j).
template <class At>
void sample(nlohmann::json& values, const std::string& name, Index rows, Index cols, At&& at) {
  for (const auto& [i, j] : {std::pair{Index{0}, Index{0}}, std::pair{rows / 2, cols / 3},
                             std::pair{rows - 1, cols - 1}}) {
    nlohmann::json index = cols == 0 ? nlohmann::json::array({i}) : nlohmann::json::array({i, j});
    values.push_back({{"tensor", name}, {"index", index}, {"value", at(i, j)}});
  }
}

nlohmann::json write(const std::filesystem::path& dir, const std::string& file,
                     const CompressedModel& model, SafetensorsDtype dtype) {
  CompressedCheckpointOptions options;
  options.dtype = dtype;
  options.source_model = "random test model (" + model.grouping + ")";
  options.created_by = "compressed_checkpoint_python_fixture";
  write_compressed_checkpoint(dir / file, model, options);

  nlohmann::json values = nlohmann::json::array();
  for (Index l = 0; l < static_cast<Index>(model.layers.size()); ++l) {
    const CompressedLayer& layer = model.layers[static_cast<std::size_t>(l)];
    for (Index g = 0; g < static_cast<Index>(layer.k.size()); ++g) {
      const LatentKeyGroup& k = layer.k[static_cast<std::size_t>(g)];
      const LatentValueGroup& v = layer.v[static_cast<std::size_t>(g)];
      // down in the file is Aᵀ: element [i, j] = A(j, i).
      sample(values, compressed_tensor_name(l, "k", g, "down"), k.down.cols(), k.down.rows(),
             [&](Index i, Index j) { return stored(dtype, k.down(j, i)); });
      sample(values, compressed_tensor_name(l, "k", g, "up"), k.up.rows(), k.up.cols(),
             [&](Index i, Index j) { return stored(dtype, k.up(i, j)); });
      sample(values, compressed_tensor_name(l, "k", g, "sigma"), k.spectrum.size(), 0,
             [&](Index i, Index) { return k.spectrum(i); });
      sample(values, compressed_tensor_name(l, "v", g, "down"), v.down.cols(), v.down.rows(),
             [&](Index i, Index j) { return stored(dtype, v.down(j, i)); });
      sample(values, compressed_tensor_name(l, "v", g, "out"), v.out.rows(), v.out.cols(),
             [&](Index i, Index j) { return stored(dtype, v.out(i, j)); });
      sample(values, compressed_tensor_name(l, "v", g, "sigma"), v.spectrum.size(), 0,
             [&](Index i, Index) { return v.spectrum(i); });
    }
  }
  const CompressedCheckpointInfo info = read_compressed_checkpoint_info(dir / file);
  const SafetensorsReader reader = SafetensorsReader::open(dir / file);
  nlohmann::json metadata = nlohmann::json::object();
  for (const auto& [key, value] : info.metadata) metadata[key] = value;
  return {{"file", file},
          {"factor_dtype", std::string(to_string(dtype))},
          {"num_tensors", reader.tensors().size()},
          {"metadata", metadata},
          {"values", values}};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output dir>\n", argv[0]);
    return 2;
  }
  try {
    const std::filesystem::path dir = argv[1];
    std::filesystem::create_directories(dir);
    nlohmann::json files = nlohmann::json::array();
    files.push_back(write(dir, "joint_f32.safetensors",
                          testing::random_compressed_model(3, {1}, 11), SafetensorsDtype::kF32));
    files.push_back(write(dir, "per_head_f16.safetensors",
                          testing::random_compressed_model(1, {0}, 12), SafetensorsDtype::kF16));
    std::ofstream(dir / "expected.json") << nlohmann::json{{"files", files}}.dump(1) << '\n';
    std::printf("wrote %s/{joint_f32,per_head_f16}.safetensors and expected.json\n",
                dir.string().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compressed_checkpoint_python_fixture: %s\n", e.what());
    return 1;
  }
  return 0;
}
