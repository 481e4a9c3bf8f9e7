// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// io/projection_checkpoint.hpp: a ProjectedModel written and read back equals itself (joint and
// per-head, uneven ranks), the documented tensors and metadata, a rank-limited load equals
// truncation, and every malformed file (another format, a missing or reshaped tensor, a NaN, bad
// metadata) names the file and what is wrong.
#include "latentkv/io/projection_checkpoint.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <Eigen/QR>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../support/files.hpp"
#include "latentkv/io/safetensors.hpp"

namespace latentkv {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;
namespace fs = std::filesystem;

/// A tiny-model-shaped ProjectedModel (L = 2, n_kv = 2, h = 4) with random orthonormal bases.
ProjectedModel random_projections(Index heads_per_group, std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::normal_distribution<double> normal;
  ProjectedModel m;
  m.num_kv_heads = 2;
  m.head_dim = 4;
  m.heads_per_group = heads_per_group;
  m.calibration_tokens = 123;
  const Index w = heads_per_group * 4;
  for (Index l = 0; l < 2; ++l) {
    ProjectedLayer layer;
    for (Index j = 0; j < 2 / heads_per_group; ++j) {
      for (auto* side : {&layer.k, &layer.v}) {
        RowMatrix<float> g(w, w);
        for (Index i = 0; i < g.size(); ++i) g.data()[i] = static_cast<float>(normal(engine));
        ProjectedBasis b;
        b.basis = Eigen::HouseholderQR<RowMatrix<float>>(g).householderQ();
        b.basis = b.basis.leftCols(w - (l + j) % 3).eval();  // uneven ranks
        b.mean = Vector<float>::NullaryExpr(w, [&] { return static_cast<float>(normal(engine)); });
        b.variance = Vector<double>::LinSpaced(w, static_cast<double>(w), 1.0);
        side->push_back(std::move(b));
      }
    }
    m.layers.push_back(std::move(layer));
  }
  return m;
}

ModelConfig projection_config() {
  ModelConfig c;
  c.num_layers = 2;
  c.d_model = 16;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.rope_dim = 4;
  c.ffn_dim = 8;
  c.vocab_size = 10;
  return c;
}

void expect_equal(const ProjectedModel& a, const ProjectedModel& b) {
  ASSERT_EQ(a.num_layers(), b.num_layers());
  EXPECT_EQ(a.heads_per_group, b.heads_per_group);
  EXPECT_EQ(a.calibration_tokens, b.calibration_tokens);
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    for (int side = 0; side < 2; ++side) {
      const auto& x = side == 0 ? a.layers[l].k : a.layers[l].v;
      const auto& y = side == 0 ? b.layers[l].k : b.layers[l].v;
      ASSERT_EQ(x.size(), y.size());
      for (std::size_t j = 0; j < x.size(); ++j) {
        EXPECT_EQ(x[j].basis, y[j].basis) << "layer " << l << " side " << side;
        EXPECT_EQ(x[j].mean, y[j].mean);
        EXPECT_EQ(x[j].variance, y[j].variance);
      }
    }
  }
}

TEST(ProjectionCheckpoint, LoadsWhatWasWrittenWithTheDocumentedLayout) {
  const TempDir dir("latentkv_proj");
  for (const Index s : {Index{2}, Index{1}}) {
    const ProjectedModel model = random_projections(s, 3 + static_cast<std::uint64_t>(s));
    const fs::path path = dir.path() / ("p" + std::to_string(s) + ".safetensors");
    write_projection_checkpoint(path, model, projection_config(),
                                {.schedule = "energy", .skip_first = 4, .source_model = "m.gguf"});
    expect_equal(load_projection_checkpoint(path), model);
    const ProjectionCheckpointInfo info = read_projection_checkpoint_info(path);
    EXPECT_EQ(info.method, "matryoshka-pca");
    EXPECT_EQ(info.schedule, "energy");
    EXPECT_EQ(info.skip_first, 4);
    EXPECT_EQ(info.calibration_tokens, 123);
    EXPECT_EQ(info.plan.layers, model.plan().layers);
    EXPECT_EQ(info.config.d_model, 16);
    const SafetensorsReader r = SafetensorsReader::open(path);
    EXPECT_EQ(*r.find_metadata("format"), "latentkv.projected");
    EXPECT_EQ(*r.find_metadata("source_model"), "m.gguf");
    // Rank-major: basis rows are the principal directions (Pᵀ).
    const SafetensorsTensorInfo& t = r.tensor("layers.1.v.0.basis");
    EXPECT_EQ(t.shape, (std::vector<std::int64_t>{model.layers[1].v[0].rank(), s * 4}));
    EXPECT_EQ(r.tensor("layers.0.k.0.variance").dtype, SafetensorsDtype::kF64);
    EXPECT_EQ(r.tensor("layers.0.k.0.mean").shape, (std::vector<std::int64_t>{s * 4}));
  }
  // Nothing but the two files (no temporary left behind).
  EXPECT_EQ(testing::entries_of(dir.path()).size(), 2u);
}

TEST(ProjectionCheckpoint, ARankLimitedLoadEqualsTruncation) {
  const TempDir dir("latentkv_proj");
  const ProjectedModel model = random_projections(1, 5);
  const fs::path path = dir.path() / "p.safetensors";
  write_projection_checkpoint(path, model, projection_config(), {.schedule = "uniform"});
  RankPlan smaller = model.plan();
  for (LayerRanks& l : smaller.layers) {
    for (Index& r : l.k) r = 1;
    for (Index& r : l.v) r = 2;
  }
  expect_equal(load_projection_checkpoint(path, &smaller), model.truncated(smaller));
  RankPlan bigger = model.plan();
  bigger.layers[1].k[0] += 1;
  EXPECT_THROW((void)load_projection_checkpoint(path, &bigger), InvalidArgument);
}

TEST(ProjectionCheckpoint, MalformedFilesNameTheFileAndWhatIsWrong) {
  const TempDir dir("latentkv_proj");
  const ProjectedModel model = random_projections(2, 7);
  const fs::path good = dir.path() / "good.safetensors";
  write_projection_checkpoint(good, model, projection_config(), {.schedule = "energy"});
  const fs::path bad = dir.path() / "bad.safetensors";
  // Rewrites good with one change: `drop` a tensor, replace one, or change a metadata key.
  const auto rewrite = [&](const std::string& drop, const std::string& key,
                           const std::string& value, auto&& replace) {
    const SafetensorsReader r = SafetensorsReader::open(good);
    SafetensorsWriter w;
    for (const auto& [k, v] : r.metadata()) w.add_metadata(k, k == key ? value : v);
    for (const SafetensorsTensorInfo& t : r.tensors()) {
      if (t.name == drop) continue;
      if (!replace(w, t)) w.add_raw(t.name, t.dtype, t.shape, r.raw(t));
    }
    w.write(bad);
    return testing::format_error([&] { (void)load_projection_checkpoint(bad); });
  };
  const auto keep = [](SafetensorsWriter&, const SafetensorsTensorInfo&) { return false; };
  EXPECT_THAT(rewrite("layers.1.v.0.mean", "", "", keep),
              HasSubstr("tensor \"layers.1.v.0.mean\" is missing"));
  EXPECT_THAT(rewrite("", "format", "latentkv.compressed", keep),
              HasSubstr("a weight-SVD checkpoint"));
  EXPECT_THAT(rewrite("", "method", "other", keep), HasSubstr("\"method\" is \"other\""));
  EXPECT_THAT(rewrite("", "plan", "{", keep), HasSubstr("does not parse"));
  const std::string reshaped =
      rewrite("", "", "", [&](SafetensorsWriter& w, const SafetensorsTensorInfo& t) {
        if (t.name != "layers.0.k.0.basis") return false;
        w.add("layers.0.k.0.basis", RowMatrix<float>::Zero(t.shape[0], t.shape[1] - 1));
        return true;
      });
  EXPECT_THAT(reshaped, HasSubstr("tensor \"layers.0.k.0.basis\" is F32 ["));
  EXPECT_THAT(reshaped, HasSubstr(bad.string()));
  const std::string nan =
      rewrite("", "", "", [&](SafetensorsWriter& w, const SafetensorsTensorInfo& t) {
        if (t.name != "layers.1.k.0.mean") return false;
        RowMatrix<float> m = RowMatrix<float>::Zero(1, t.shape[0]);
        m(0, 2) = std::numeric_limits<float>::quiet_NaN();
        w.add(t.name, m, t.shape, SafetensorsDtype::kF32);
        return true;
      });
  EXPECT_THAT(nan, HasSubstr("tensor 'layers.1.k.0.mean' element [0, 2] is nan"));
  const std::string extra =
      rewrite("", "", "", [&](SafetensorsWriter& w, const SafetensorsTensorInfo& t) {
        if (t.name == "layers.0.v.0.mean") w.add("stray", RowMatrix<float>::Zero(1, 1));
        return false;
      });
  EXPECT_THAT(extra, HasSubstr("an unexpected tensor"));
  // Projections that do not fit the config they are written with.
  ModelConfig other = projection_config();
  other.num_kv_heads = 4;
  other.num_heads = 8;
  EXPECT_THROW(write_projection_checkpoint(dir.path() / "x.safetensors", model, other),
               InvalidArgument);
  EXPECT_FALSE(fs::exists(dir.path() / "x.safetensors"));
}

}  // namespace
}  // namespace latentkv
