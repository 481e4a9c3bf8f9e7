// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The compressed checkpoint: round trips of random CompressedModels (joint and per-head, with and
// without dense layers; F32 exact, F16 / BF16 equal to the rounded values), the metadata, the
// rank-major layout (a truncated model's tensors are byte prefixes of the full model's; a
// truncated load equals CompressedModel::truncated), the writer's checks, and every malformed
// file (edited with SafetensorsWriter, so each is a valid safetensors file) ending in a
// FormatError that names the file and the tensor or key.
#include "latentkv/io/compressed_checkpoint.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "../support/compressed_models.hpp"
#include "../support/files.hpp"

namespace latentkv {
namespace {

using testing::entries_of;
using testing::read_file;
using testing::TempDir;

namespace fs = std::filesystem;
using ::testing::AllOf;
using testing::halved;
using ::testing::HasSubstr;
using testing::random_compressed_model;

float through(SafetensorsDtype dtype, float x) {
  switch (dtype) {
    case SafetensorsDtype::kF16:
      return fp16_bits_to_float(float_to_fp16_bits(x));
    case SafetensorsDtype::kBF16:
      return bf16_bits_to_float(float_to_bf16_bits(x));
    default:
      return x;
  }
}

/// `m` with every factor rounded through `dtype` (what a file of that dtype holds).
CompressedModel rounded(CompressedModel m, SafetensorsDtype dtype) {
  const auto round = [&](RowMatrix<float>& x) {
    x = x.unaryExpr([&](float v) { return through(dtype, v); });
  };
  for (CompressedLayer& layer : m.layers) {
    for (LatentKeyGroup& g : layer.k) {
      round(g.down);
      round(g.up);
    }
    for (LatentValueGroup& g : layer.v) {
      round(g.down);
      round(g.out);
    }
  }
  return m;
}

void expect_equal(const CompressedModel& got, const CompressedModel& want) {
  EXPECT_EQ(got.config, want.config);
  EXPECT_EQ(got.plan, want.plan);
  EXPECT_EQ(got.factorizer, want.factorizer);
  EXPECT_EQ(got.grouping, want.grouping);
  ASSERT_EQ(got.layers.size(), want.layers.size());
  for (std::size_t l = 0; l < want.layers.size(); ++l) {
    const CompressedLayer& a = got.layers[l];
    const CompressedLayer& b = want.layers[l];
    EXPECT_EQ(a.compressed, b.compressed) << "layer " << l;
    ASSERT_EQ(a.k.size(), b.k.size()) << "layer " << l;
    ASSERT_EQ(a.v.size(), b.v.size()) << "layer " << l;
    for (std::size_t g = 0; g < b.k.size(); ++g) {
      EXPECT_EQ(a.k[g].down, b.k[g].down) << "layer " << l << " k group " << g;
      EXPECT_EQ(a.k[g].up, b.k[g].up) << "layer " << l << " k group " << g;
      EXPECT_EQ(a.k[g].spectrum, b.k[g].spectrum) << "layer " << l << " k group " << g;
    }
    for (std::size_t g = 0; g < b.v.size(); ++g) {
      EXPECT_EQ(a.v[g].down, b.v[g].down) << "layer " << l << " v group " << g;
      EXPECT_EQ(a.v[g].out, b.v[g].out) << "layer " << l << " v group " << g;
      EXPECT_EQ(a.v[g].spectrum, b.v[g].spectrum) << "layer " << l << " v group " << g;
    }
  }
}

// ---- round trips --------------------------------------------------------------------------------

struct Layout {
  Index heads_per_group;
  std::vector<Index> dense;
  SafetensorsDtype dtype;
};

void PrintTo(const Layout& p, std::ostream* out) {
  *out << "heads_per_group " << p.heads_per_group << ", " << to_string(p.dtype) << ", dense [";
  for (const Index l : p.dense) *out << ' ' << l;
  *out << " ]";
}

class CompressedCheckpointRoundTrip : public ::testing::TestWithParam<Layout> {};

TEST_P(CompressedCheckpointRoundTrip, LoadsWhatWasWritten) {
  const Layout& p = GetParam();
  const TempDir dir{"latentkv_ckpt"};
  const fs::path out = dir.path() / "model.lkv.safetensors";
  const CompressedModel model = random_compressed_model(p.heads_per_group, p.dense, 7);
  CompressedCheckpointOptions options;
  options.dtype = p.dtype;
  write_compressed_checkpoint(out, model, options);
  EXPECT_EQ(entries_of(dir.path()), (std::vector<fs::path>{"model.lkv.safetensors"}));

  const CompressedModel loaded = load_compressed_checkpoint(out);
  const CompressedModel expected = rounded(model, p.dtype);
  expect_equal(loaded, expected);
  if (p.dtype != SafetensorsDtype::kF32) {  // and the rounding is the dtype's, not a bigger one
    const float tolerance = p.dtype == SafetensorsDtype::kF16 ? 1e-3f : 8e-3f;
    const std::size_t l = p.dense == std::vector<Index>{0, 3} ? 1 : 0;  // a compressed layer
    const RowMatrix<float>& a = loaded.layers[l].v[0].out;
    const RowMatrix<float>& b = model.layers[l].v[0].out;
    EXPECT_LE(((a - b).cwiseAbs().array() / (b.cwiseAbs().array() + 1e-3f)).maxCoeff(), tolerance);
  }

  const CompressedCheckpointInfo info = read_compressed_checkpoint_info(out);
  EXPECT_EQ(info.config, model.config);
  EXPECT_EQ(info.plan, model.plan);
  EXPECT_EQ(info.dense_layers, p.dense);
  EXPECT_EQ(info.factor_dtype,
            p.dense.size() == 4 ? SafetensorsDtype::kF32 : p.dtype);  // all dense: no factors
  EXPECT_EQ(info.grouping, model.grouping);
  EXPECT_EQ(info.max_rank(), model.max_rank());

  // A truncated load reads prefixes and equals CompressedModel::truncated.
  const RankPlan smaller = halved(model);
  expect_equal(load_compressed_checkpoint(out, &smaller), expected.truncated(smaller));
}

INSTANTIATE_TEST_SUITE_P(Layouts, CompressedCheckpointRoundTrip,
                         ::testing::Values(Layout{3, {}, SafetensorsDtype::kF32},
                                           Layout{1, {}, SafetensorsDtype::kF32},
                                           Layout{3, {1}, SafetensorsDtype::kF32},
                                           Layout{1, {0, 3}, SafetensorsDtype::kF16},
                                           Layout{3, {2}, SafetensorsDtype::kF16},
                                           Layout{1, {}, SafetensorsDtype::kBF16},
                                           Layout{3, {0, 1, 2, 3}, SafetensorsDtype::kF32}),
                         [](const ::testing::TestParamInfo<Layout>& info) {
                           std::string name = info.param.heads_per_group == 3 ? "Joint" : "PerHead";
                           name += std::string(to_string(info.param.dtype));
                           for (const Index l : info.param.dense)
                             name += "Dense" + std::to_string(l);
                           return name;
                         });

TEST(CompressedCheckpoint, WritesRankMajorTensorsAndTheDocumentedMetadata) {
  const TempDir dir{"latentkv_ckpt"};
  const fs::path out = dir.path() / "m.safetensors";
  const CompressedModel model = random_compressed_model(3, {1});
  CompressedCheckpointOptions options;
  options.source_model = "SmolLM2-135M-Instruct.Q4_1.gguf (98362432 bytes)";
  options.extra_metadata = {{"calibration", "none"}};
  write_compressed_checkpoint(out, model, options);

  const SafetensorsReader r = SafetensorsReader::open(out);
  const auto& md = r.metadata();
  EXPECT_EQ(md.at("format"), "latentkv.compressed");
  EXPECT_EQ(md.at("format_version"), "1");
  EXPECT_EQ(md.at("latentkv_version"), LATENTKV_VERSION_STRING);
  EXPECT_EQ(md.at("method"), "lorc-svd-route1");
  EXPECT_EQ(md.at("factorizer"), "svd");
  EXPECT_EQ(md.at("grouping"), "joint");
  EXPECT_EQ(md.at("dense_layers"), "[1]");
  EXPECT_EQ(md.at("source_model"), options.source_model);
  EXPECT_EQ(md.at("created_by"), std::string("latentkv ") + LATENTKV_VERSION_STRING);
  EXPECT_EQ(md.at("calibration"), "none");
  EXPECT_EQ(RankPlan::from_json(nlohmann::json::parse(md.at("plan"))), model.plan);
  EXPECT_EQ(model_config_from_json(nlohmann::json::parse(md.at("source_config"))), model.config);
  EXPECT_EQ(md.size(), 12u);

  // 3 compressed layers × 1 group × 6 tensors; rank on axis 0.
  EXPECT_EQ(r.tensors().size(), 18u);
  EXPECT_EQ(r.find_tensor("layers.1.k.0.down"), nullptr) << "dense layers have no tensors";
  const Index rk = model.plan.layers[2].k[0];
  const Index rv = model.plan.layers[2].v[0];
  EXPECT_EQ(r.tensor("layers.2.k.0.down").shape, (std::vector<std::int64_t>{rk, 64}));
  EXPECT_EQ(r.tensor("layers.2.k.0.up").shape, (std::vector<std::int64_t>{rk, 48}));
  EXPECT_EQ(r.tensor("layers.2.k.0.sigma").shape, (std::vector<std::int64_t>{48}));
  EXPECT_EQ(r.tensor("layers.2.k.0.sigma").dtype, SafetensorsDtype::kF64);
  EXPECT_EQ(r.tensor("layers.2.v.0.down").shape, (std::vector<std::int64_t>{rv, 64}));
  EXPECT_EQ(r.tensor("layers.2.v.0.out").shape, (std::vector<std::int64_t>{rv, 3 * 2 * 64}));
  // down is A_kᵀ: the nn.Linear(d, r_k) weight.
  EXPECT_EQ(r.read_float("layers.2.k.0.down"), model.layers[2].k[0].down.transpose());
  for (const SafetensorsTensorInfo& t : r.tensors()) {
    EXPECT_EQ(t.file_offset % (safetensors_dtype_traits(t.dtype).bits / 8), 0u) << t.name;
  }
}

TEST(CompressedCheckpoint, ATruncatedModelIsAPrefixOfEveryTensor) {
  const TempDir dir{"latentkv_ckpt"};
  for (const SafetensorsDtype dtype : {SafetensorsDtype::kF32, SafetensorsDtype::kF16}) {
    const CompressedModel model = random_compressed_model(1, {2}, 3);
    const RankPlan smaller = halved(model);
    CompressedCheckpointOptions options;
    options.dtype = dtype;
    write_compressed_checkpoint(dir.path() / "full.safetensors", model, options);
    write_compressed_checkpoint(dir.path() / "small.safetensors", model.truncated(smaller),
                                options);
    const SafetensorsReader full = SafetensorsReader::open(dir.path() / "full.safetensors");
    const SafetensorsReader small = SafetensorsReader::open(dir.path() / "small.safetensors");
    ASSERT_EQ(full.tensors().size(), small.tensors().size());
    for (const SafetensorsTensorInfo& t : small.tensors()) {
      const auto a = full.raw(t.name);
      const auto b = small.raw(t);
      ASSERT_LE(b.size(), a.size()) << t.name;
      EXPECT_TRUE(std::equal(b.begin(), b.end(), a.begin())) << t.name << " is not a prefix";
      if (t.name.ends_with(".sigma")) {
        EXPECT_EQ(a.size(), b.size()) << "sigma stays whole";
      }
    }
  }
}

TEST(CompressedCheckpoint, TruncatedLoadRejectsRanksItCannotServe) {
  const TempDir dir{"latentkv_ckpt"};
  const fs::path out = dir.path() / "m.safetensors";
  const CompressedModel model = random_compressed_model(3, {1});
  write_compressed_checkpoint(out, model);
  RankPlan bigger = model.plan;
  bigger.layers[2].v[0] += 1;
  EXPECT_THAT([&] { (void)load_compressed_checkpoint(out, &bigger); },
              ::testing::ThrowsMessage<InvalidArgument>(AllOf(HasSubstr(out.string()),
                                                              HasSubstr("layer 2 rank_v[0] = "),
                                                              HasSubstr("above the file's"))));
  RankPlan dense_cut = model.plan;
  dense_cut.layers[1].k[0] = 4;
  EXPECT_THAT([&] { (void)load_compressed_checkpoint(out, &dense_cut); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("layer 1 is dense")));
  const RankPlan per_head = testing::small_compressed_plan(1);
  EXPECT_THAT([&] { (void)load_compressed_checkpoint(out, &per_head); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("in groups of 1")));
  RankPlan zero = model.plan;
  zero.layers[0].k[0] = 0;
  EXPECT_THROW((void)load_compressed_checkpoint(out, &zero), InvalidArgument);
}

// ---- the writer's checks ------------------------------------------------------------------------

TEST(CompressedCheckpointWriter, StreamsLayerByLayerAndChecksEveryShape) {
  const TempDir dir{"latentkv_ckpt"};
  const fs::path out = dir.path() / "m.safetensors";
  const CompressedModel model = random_compressed_model(3, {1});
  CompressedCheckpointWriter w(model.config, model.plan, "svd", "joint", {1});
  EXPECT_THAT([&] { w.write_layer(0, model.layers[0]); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("begin() was not called")));
  w.begin(out);
  EXPECT_TRUE(fs::exists(w.temporary_path()));

  CompressedLayer bad = model.layers[0];
  bad.k[0].down.conservativeResize(64, bad.k[0].down.cols() + 1);
  bad.k[0].down.col(bad.k[0].down.cols() - 1).setZero();
  EXPECT_THAT([&] { w.write_layer(0, bad); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  AllOf(HasSubstr("latentkv::CompressedCheckpointWriter::write_layer"),
                        HasSubstr("layer 0 k group 0 tensor 'layers.0.k.0.down': down is 64 x 5, "
                                  "expected 64 x 4"))));
  bad = model.layers[0];
  bad.v[0].out = RowMatrix<float>::Zero(bad.v[0].out.rows(), 128);
  EXPECT_THAT([&] { w.write_layer(0, bad); }, ::testing::ThrowsMessage<InvalidArgument>(HasSubstr(
                                                  "layer 0 v group 0 tensor 'layers.0.v.0.out'")));
  bad = model.layers[0];
  bad.k[0].spectrum.resize(47);
  EXPECT_THAT([&] { w.write_layer(0, bad); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("tensor 'layers.0.k.0.sigma'")));
  bad = model.layers[0];
  bad.v[0].down(3, 1) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT([&] { w.write_layer(0, bad); },
              ::testing::ThrowsMessage<InvalidArgument>(AllOf(
                  HasSubstr("tensor 'layers.0.v.0.down': down(3, 1) = nan"), HasSubstr("finite"))));
  bad = model.layers[0];
  bad.k.pop_back();
  EXPECT_THAT([&] { w.write_layer(0, bad); }, ::testing::ThrowsMessage<InvalidArgument>(
                                                  HasSubstr("layer 0 k: 0 groups, expected 1")));
  EXPECT_THAT([&] { w.write_layer(1, model.layers[1]); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  HasSubstr("layer 1 is out of order: expected layer 0")));
  EXPECT_THAT([&] { w.write_layer(0, model.layers[1]); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  HasSubstr("layer 0 is compressed in this checkpoint (dense_layers), but the "
                            "values are dense")));
  EXPECT_EQ(w.next_layer(), 0) << "rejected layers write nothing";

  w.write_layer(0, model.layers[0]);
  EXPECT_THAT([&] { w.write_layer(1, model.layers[2]); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("layer 1 is dense")));
  w.write_layer(1, model.layers[1]);
  w.write_layer(2, model.layers[2]);
  EXPECT_THAT([&] { w.commit(); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("layer 3 of 4 was not written")));
  EXPECT_FALSE(fs::exists(out));
  w.write_layer(3, model.layers[3]);
  w.commit();
  expect_equal(load_compressed_checkpoint(out), model);
  EXPECT_EQ(entries_of(dir.path()), (std::vector<fs::path>{"m.safetensors"}));
}

TEST(CompressedCheckpointWriter, RejectsInconsistentConstructionArguments) {
  const CompressedModel model = random_compressed_model(3, {1});
  const auto make = [&](RankPlan plan, std::vector<Index> dense, CompressedCheckpointOptions o,
                        ModelConfig config) {
    CompressedCheckpointWriter w(std::move(config), std::move(plan), "svd", "joint",
                                 std::move(dense), std::move(o));
  };
  const auto plan = model.plan;
  const auto config = model.config;
  EXPECT_NO_THROW(make(plan, {1}, {}, config));
  RankPlan too_big = plan;
  too_big.layers[0].k[0] = 49;
  EXPECT_THAT([&] { make(too_big, {1}, {}, config); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  AllOf(HasSubstr("latentkv::CompressedCheckpointWriter"),
                        HasSubstr("layer 0 rank_k[0] = 49, expected 1..48"))));
  EXPECT_THAT([&] { make(plan, {}, {}, config); },  // layer 1 is at max_rank: fine compressed
              ::testing::Not(::testing::Throws<std::exception>()));
  EXPECT_THAT([&] { make(plan, {0}, {}, config); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  HasSubstr("layer 0 is dense, but the plan gives it rank_k[0] = 4")));
  EXPECT_THAT(
      [&] {
        make(plan, {1, 1}, {}, config);
      },
      ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("distinct ascending")));
  EXPECT_THROW(make(plan, {4}, {}, config), InvalidArgument);
  CompressedCheckpointOptions f64;
  f64.dtype = SafetensorsDtype::kF64;
  EXPECT_THAT([&] { make(plan, {1}, f64, config); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("expected F32, F16 or BF16")));
  CompressedCheckpointOptions reserved;
  reserved.extra_metadata = {{"plan", "mine"}};
  EXPECT_THAT([&] { make(plan, {1}, reserved, config); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("'plan' is one of the format")));
  ModelConfig other = config;
  other.num_layers = 5;
  EXPECT_THAT([&] { make(plan, {1}, {}, other); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("the plan has 4 layers")));
  other = config;
  other.head_dim = 0;
  EXPECT_THROW(make(plan, {1}, {}, other), InvalidArgument);
  CompressedModel short_model = model;
  short_model.layers.pop_back();
  const TempDir dir{"latentkv_ckpt"};
  EXPECT_THAT([&] { write_compressed_checkpoint(dir.path() / "m", short_model); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("the model has 3 layers")));
  EXPECT_TRUE(entries_of(dir.path()).empty());
}

TEST(CompressedCheckpointWriter, AnAbandonedWriterLeavesTheDestinationUntouched) {
  const TempDir dir{"latentkv_ckpt"};
  const fs::path out = dir.path() / "m.safetensors";
  const CompressedModel model = random_compressed_model(1);
  write_compressed_checkpoint(out, model);
  const std::vector<std::byte> before = read_file(out);
  const CompressedModel other = random_compressed_model(1, {}, 99);
  try {
    CompressedCheckpointWriter w(other.config, other.plan, "svd", "per-head", {});
    w.begin(out);
    w.write_layer(0, other.layers[0]);
    CompressedLayer bad = other.layers[1];
    bad.k[2].up.setZero(1, 1);
    w.write_layer(1, bad);  // throws: the writer is destroyed uncommitted
    FAIL() << "write_layer accepted a bad shape";
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("layer 1 k group 2 tensor 'layers.1.k.2.up'"));
  }
  EXPECT_EQ(read_file(out), before);
  EXPECT_EQ(entries_of(dir.path()), (std::vector<fs::path>{"m.safetensors"}));
}

// ---- malformed files ----------------------------------------------------------------------------

/// A checkpoint as editable parts, written back by SafetensorsWriter (a valid safetensors file).
struct RawFile {
  struct Tensor {
    std::string name;
    SafetensorsDtype dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> bytes;
  };
  std::map<std::string, std::string> metadata;
  std::vector<Tensor> tensors;

  static RawFile read(const fs::path& path) {
    const SafetensorsReader r = SafetensorsReader::open(path);
    RawFile f;
    for (const auto& [k, v] : r.metadata()) f.metadata[k] = v;
    for (const SafetensorsTensorInfo& t : r.tensors()) {
      const auto raw = r.raw(t);
      f.tensors.push_back({t.name, t.dtype, t.shape, {raw.begin(), raw.end()}});
    }
    return f;
  }
  void write(const fs::path& path) const {
    SafetensorsWriter w;
    for (const auto& [k, v] : metadata) w.add_metadata(k, v);
    for (const Tensor& t : tensors) w.add_raw(t.name, t.dtype, t.shape, t.bytes);
    w.write(path);
  }
  Tensor& at(std::string_view name) {
    const auto it = std::find_if(tensors.begin(), tensors.end(),
                                 [&](const Tensor& t) { return t.name == name; });
    EXPECT_NE(it, tensors.end()) << name;
    return *it;
  }
  void erase(std::string_view name) {
    tensors.erase(std::find_if(tensors.begin(), tensors.end(),
                               [&](const Tensor& t) { return t.name == name; }));
  }
};

class CompressedCheckpointMalformed : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = random_compressed_model(3, {1});
    write_compressed_checkpoint(good_, model_);
  }

  /// Edits the good file into bad_, and returns the FormatError of loading it (which must name
  /// the file); read_compressed_checkpoint_info must fail alike unless `values_only`.
  template <class Edit>
  std::string error_after(Edit&& edit, bool values_only = false) {
    RawFile f = RawFile::read(good_);
    edit(f);
    f.write(bad_);
    return error_of(values_only);
  }

  std::string error_of(bool values_only = false) {
    std::string message;
    try {
      (void)load_compressed_checkpoint(bad_);
      ADD_FAILURE() << "load_compressed_checkpoint accepted the file";
    } catch (const FormatError& e) {
      message = e.what();
    }
    EXPECT_THAT(message, HasSubstr(bad_.string()));
    if (!values_only) {
      EXPECT_THROW((void)read_compressed_checkpoint_info(bad_), FormatError);
    } else {
      EXPECT_NO_THROW((void)read_compressed_checkpoint_info(bad_));
    }
    return message;
  }

  TempDir dir_{"latentkv_ckpt"};
  fs::path good_ = dir_.path() / "good.safetensors";
  fs::path bad_ = dir_.path() / "bad.safetensors";
  CompressedModel model_;
};

TEST_F(CompressedCheckpointMalformed, MissingAndUnexpectedTensors) {
  EXPECT_THAT(error_after([](RawFile& f) { f.erase("layers.2.v.0.out"); }),
              AllOf(HasSubstr("latentkv::load_compressed_checkpoint"),
                    HasSubstr("tensor 'layers.2.v.0.out' is missing"),
                    HasSubstr("rank_v[0] = 14 of layer 2")));
  EXPECT_THAT(error_after([](RawFile& f) {
                f.tensors.push_back({"layers.1.k.0.down", SafetensorsDtype::kF32, {1}, {}});
                f.tensors.back().bytes.resize(4);
              }),
              AllOf(HasSubstr("unexpected tensor 'layers.1.k.0.down'"), HasSubstr("byte offset")));
  EXPECT_THAT(error_after([](RawFile& f) {
                f.tensors.push_back({"extra", SafetensorsDtype::kU8, {0}, {}});
              }),
              HasSubstr("unexpected tensor 'extra'"));
}

TEST_F(CompressedCheckpointMalformed, WrongShapesAndDtypes) {
  EXPECT_THAT(error_after([](RawFile& f) {
                RawFile::Tensor& t = f.at("layers.0.k.0.down");  // [4, 64] -> [3, 64]
                t.shape = {3, 64};
                t.bytes.resize(3 * 64 * 4);
              }),
              AllOf(HasSubstr("tensor 'layers.0.k.0.down' has shape [3, 64], expected [4, 64]"),
                    HasSubstr("rank_k[0] = 4 of layer 0, d_model = 64"),
                    HasSubstr("header entry at byte offset")));
  EXPECT_THAT(error_after([](RawFile& f) {
                f.at("layers.0.k.0.up").shape = {48, 4};
              }),
              HasSubstr("'layers.0.k.0.up' has shape [48, 4], expected [4, 48]"));
  EXPECT_THAT(error_after([](RawFile& f) {
                RawFile::Tensor& t = f.at("layers.3.v.0.sigma");
                t.dtype = SafetensorsDtype::kF32;
                t.bytes.resize(t.bytes.size() / 2);
              }),
              HasSubstr("tensor 'layers.3.v.0.sigma' has dtype F32, expected F64"));
  EXPECT_THAT(error_after([](RawFile& f) {
                RawFile::Tensor& t = f.at("layers.2.k.0.up");
                t.dtype = SafetensorsDtype::kF16;
                t.bytes.resize(t.bytes.size() / 2);
              }),
              HasSubstr("tensor 'layers.2.k.0.up' has dtype F16, expected F32"));
  EXPECT_THAT(
      error_after([](RawFile& f) { f.at("layers.0.k.0.down").dtype = SafetensorsDtype::kI32; }),
      HasSubstr("tensor 'layers.0.k.0.down' has dtype I32, expected F32, F16 or BF16"));
}

TEST_F(CompressedCheckpointMalformed, BadOrMissingMetadata) {
  const auto set = [&](const std::string& key, const std::string& value) {
    return error_after([&](RawFile& f) { f.metadata[key] = value; });
  };
  const auto drop = [&](const std::string& key) {
    return error_after([&](RawFile& f) { f.metadata.erase(key); });
  };
  EXPECT_THAT(drop("format"), HasSubstr("not a latentkv compressed checkpoint"));
  EXPECT_THAT(set("format", "pt"), HasSubstr("\"format\" is 'pt', expected 'latentkv.compressed'"));
  EXPECT_THAT(set("format_version", "2"), HasSubstr("\"format_version\" is '2': unsupported"));
  EXPECT_THAT(drop("format_version"), HasSubstr("no 'format_version' key"));
  for (const char* key : {"latentkv_version", "method", "factorizer", "grouping", "source_model",
                          "created_by", "dense_layers", "plan", "source_config"}) {
    EXPECT_THAT(drop(key), HasSubstr(std::string("no '") + key + "' key"));
  }
  EXPECT_THAT(set("plan", "{\"schedule\": "),
              AllOf(HasSubstr("__metadata__ \"plan\""), HasSubstr("invalid JSON")));
  EXPECT_THAT(set("plan", "{\"schedule\": \"x\"}"), HasSubstr("missing key \"budget_requested\""));
  EXPECT_THAT(set("source_config", "[]"), AllOf(HasSubstr("__metadata__ \"source_config\""),
                                                HasSubstr("expected a JSON object")));
  nlohmann::json config = model_config_to_json(model_.config);
  config.erase("rope_dim");
  EXPECT_THAT(set("source_config", config.dump()), HasSubstr("missing key \"rope_dim\""));
  config = model_config_to_json(model_.config);
  config["qk_norm"] = true;
  EXPECT_THAT(set("source_config", config.dump()), HasSubstr("unknown key \"qk_norm\""));
  config = model_config_to_json(model_.config);
  config["head_dim"] = 15;
  EXPECT_THAT(set("source_config", config.dump()), HasSubstr("head_dim = 15"));
  config = model_config_to_json(model_.config);
  config["num_layers"] = 5;
  EXPECT_THAT(set("source_config", config.dump()), HasSubstr("disagree: the plan has 4 layers"));
  EXPECT_THAT(set("dense_layers", "{}"), HasSubstr("\"dense_layers\" is {}, expected an array"));
  EXPECT_THAT(set("dense_layers", "[1.5]"), HasSubstr("expected layer indices"));
  EXPECT_THAT(set("dense_layers", "[1, 7]"), HasSubstr("dense layer 7"));
  EXPECT_THAT(set("dense_layers", "[0, 1]"), HasSubstr("layer 0 is dense, but the plan gives it"));
  EXPECT_THAT(set("dense_layers", "[]"), HasSubstr("tensor 'layers.1.k.0.down' is missing"));
}

TEST_F(CompressedCheckpointMalformed, PlanAndTensorsDisagree) {
  RankPlan plan = model_.plan;
  plan.layers[3].k[0] -= 1;
  EXPECT_THAT(error_after([&](RawFile& f) { f.metadata["plan"] = plan.to_json().dump(); }),
              AllOf(HasSubstr("tensor 'layers.3.k.0.down' has shape [19, 64], expected [18, 64]"),
                    HasSubstr("rank_k[0] = 18 of layer 3")));
  plan = model_.plan;
  plan.heads_per_group = 1;
  for (LayerRanks& r : plan.layers) {
    r.k = {1, 1, 1};
    r.v = {1, 1, 1};
  }
  EXPECT_THAT(error_after([&](RawFile& f) { f.metadata["plan"] = plan.to_json().dump(); }),
              HasSubstr("disagree: layer 1 is dense"));
  plan = model_.plan;
  plan.layers[0].v[0] = 60;
  EXPECT_THAT(error_after([&](RawFile& f) { f.metadata["plan"] = plan.to_json().dump(); }),
              HasSubstr("layer 0 rank_v[0] = 60, expected 1..48"));
}

TEST_F(CompressedCheckpointMalformed, NonFiniteValuesNameTheTensorAndOffset) {
  const SafetensorsReader good = SafetensorsReader::open(good_);
  RawFile f = RawFile::read(good_);
  RawFile::Tensor& up = f.at("layers.2.k.0.up");  // [14, 48] F32
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(up.bytes.data() + (1 * 48 + 5) * 4, &nan, 4);
  f.write(bad_);
  // SafetensorsWriter keeps the good file's layout: the offset is the same in both files.
  const std::uint64_t at = good.tensor("layers.2.k.0.up").file_offset + (1 * 48 + 5) * 4;
  EXPECT_THAT(error_of(/*values_only=*/true),
              AllOf(HasSubstr("tensor 'layers.2.k.0.up' element [1, 5] is nan"),
                    HasSubstr("(at byte offset " + std::to_string(at) + ")")));

  f = RawFile::read(good_);
  const double inf = std::numeric_limits<double>::infinity();
  std::memcpy(f.at("layers.0.v.0.sigma").bytes.data() + 3 * 8, &inf, 8);
  f.write(bad_);
  EXPECT_THAT(error_of(true), HasSubstr("tensor 'layers.0.v.0.sigma' element [3] is inf"));
}

TEST_F(CompressedCheckpointMalformed, ATruncatedFileNamesTheFileAndTensor) {
  std::vector<std::byte> bytes = read_file(good_);
  bytes.resize(bytes.size() - 100);
  {
    std::ofstream out(bad_, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }
  EXPECT_THAT(error_of(), AllOf(HasSubstr("tensor '"), HasSubstr("run past the end"),
                                HasSubstr("byte offset")));
  EXPECT_THAT([&] { (void)load_compressed_checkpoint(dir_.path() / "missing.safetensors"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("missing.safetensors")));
}

TEST_F(CompressedCheckpointMalformed, AGenericSafetensorsFileIsNotACheckpoint) {
  SafetensorsWriter w;
  w.add("weight", RowMatrix<float>::Ones(2, 2));
  w.write(bad_);
  EXPECT_THAT(error_of(), HasSubstr("not a latentkv compressed checkpoint"));
}

TEST(ModelConfigJson, RoundTripsEveryField) {
  ModelConfig c = testing::small_compressed_config();
  c.context_length = 0;
  c.tied_embeddings = false;
  c.norm_eps = 1e-6f;
  c.rope_base = 500000.0f;
  EXPECT_EQ(model_config_from_json(nlohmann::json::parse(model_config_to_json(c).dump())), c);
  EXPECT_EQ(model_config_to_json(c).size(), 13u);
  nlohmann::json j = model_config_to_json(c);
  j["d_model"] = "64";
  EXPECT_THAT([&] { (void)model_config_from_json(j); },
              ::testing::ThrowsMessage<FormatError>(HasSubstr("\"d_model\" is \"64\"")));
  j = model_config_to_json(c);
  j["rope_base"] = 1e300;
  EXPECT_THAT([&] { (void)model_config_from_json(j); },
              ::testing::ThrowsMessage<FormatError>(HasSubstr("outside the float range")));
  j = model_config_to_json(c);
  j["tied_embeddings"] = 1;
  EXPECT_THROW((void)model_config_from_json(j), FormatError);
}

}  // namespace
}  // namespace latentkv
