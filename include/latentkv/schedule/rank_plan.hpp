// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// RankPlan: the ranks of every latent of a compressed model, and its JSON form.
//   L layers, n_kv KV heads of h channels, s heads per group (the grouping), G = n_kv / s groups
//   layers[l].k[g] = r_k of group g of layer l (A_k: (d, r_k), B_k: (r_k, s·h)); .v likewise
//   dense width per layer = 2·n_kv·h numbers per token (K and V)
//   budget = Σ_l Σ_g (r_k + r_v) / (L · 2·n_kv·h)   (DESIGN §1: the kept fraction of dense KV bytes
//                                                     at equal element size)
// A plan says nothing about how the factors were computed; the schedule that made it and the
// budget it was asked for travel with it so a report or a checkpoint can say where it came from.
//
// JSON (the --report "layers" entries use the same shape):
//   {"schedule": "progressive", "budget_requested": 0.5, "budget_achieved": 0.5,
//    "num_kv_heads": 3, "head_dim": 64, "heads_per_group": 3,
//    "layers": [{"layer": 0, "rank_k": [112], "rank_v": [96]}, ...]}
// budget_achieved is written for readers and recomputed (and checked) on reading.
#pragma once

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/linalg/matrix.hpp"

namespace latentkv {

/// The ranks of one layer's K and V latents, one entry per head group.
struct LayerRanks {
  std::vector<Index> k;  ///< (groups) r_k of each group
  std::vector<Index> v;  ///< (groups) r_v of each group

  /// Σ_g r_k: K latent numbers cached per token.
  [[nodiscard]] Index width_k() const noexcept {
    return std::accumulate(k.begin(), k.end(), Index{0});
  }
  /// Σ_g r_v: V latent numbers cached per token.
  [[nodiscard]] Index width_v() const noexcept {
    return std::accumulate(v.begin(), v.end(), Index{0});
  }
  [[nodiscard]] Index width() const noexcept { return width_k() + width_v(); }
  friend bool operator==(const LayerRanks&, const LayerRanks&) = default;
};

struct RankPlan {
  std::string schedule;            ///< name of the schedule that made the plan ("uniform", ...)
  double budget_requested = 1.0;   ///< the budget the schedule was asked for, (0, 1]
  Index num_kv_heads = 0;          ///< n_kv
  Index head_dim = 0;              ///< h
  Index heads_per_group = 0;       ///< s (n_kv: joint, 1: per head)
  std::vector<LayerRanks> layers;  ///< (L)

  [[nodiscard]] Index num_layers() const noexcept { return static_cast<Index>(layers.size()); }
  /// G = n_kv / s.
  [[nodiscard]] Index num_groups() const noexcept {
    return heads_per_group > 0 ? num_kv_heads / heads_per_group : 0;
  }
  /// 2·n_kv·h: dense K and V numbers per token per layer.
  [[nodiscard]] Index dense_width_per_layer() const noexcept { return 2 * num_kv_heads * head_dim; }
  /// Σ over layers of (Σ_g r_k + Σ_g r_v): latent numbers cached per token.
  [[nodiscard]] Index latent_width() const noexcept {
    Index total = 0;
    for (const LayerRanks& l : layers) total += l.width();
    return total;
  }
  /// latent_width() / (L·2·n_kv·h): the achieved budget.
  [[nodiscard]] double budget() const noexcept {
    const Index dense = num_layers() * dense_width_per_layer();
    return dense > 0 ? static_cast<double>(latent_width()) / static_cast<double>(dense) : 0.0;
  }

  /// Checks the head layout and that every layer has G ranks per side, each in 1..max_rank
  /// (max_rank = min(d_model, s·h)). Throws InvalidArgument naming the layer, side and group.
  void validate(Index max_rank) const {
    constexpr const char* kWhere = "latentkv::RankPlan::validate";
    if (num_kv_heads < 1 || head_dim < 1 || heads_per_group < 1 ||
        num_kv_heads % heads_per_group != 0) {
      detail::raise<InvalidArgument>(kWhere, "num_kv_heads = ", num_kv_heads,
                                     ", head_dim = ", head_dim,
                                     ", heads_per_group = ", heads_per_group,
                                     ", expected positive with heads_per_group dividing "
                                     "num_kv_heads");
    }
    if (layers.empty()) detail::raise<InvalidArgument>(kWhere, "the plan has no layers");
    const Index groups = num_groups();
    for (Index l = 0; l < num_layers(); ++l) {
      const LayerRanks& ranks = layers[static_cast<std::size_t>(l)];
      for (const auto& [side, list] : {std::pair{"k", &ranks.k}, std::pair{"v", &ranks.v}}) {
        if (static_cast<Index>(list->size()) != groups) {
          detail::raise<InvalidArgument>(kWhere, "layer ", l, " rank_", side, " has ", list->size(),
                                         " entries, expected ", groups, " (one per group of ",
                                         heads_per_group, " heads)");
        }
        for (Index g = 0; g < groups; ++g) {
          const Index r = (*list)[static_cast<std::size_t>(g)];
          if (r < 1 || r > max_rank) {
            detail::raise<InvalidArgument>(kWhere, "layer ", l, " rank_", side, "[", g, "] = ", r,
                                           ", expected 1..", max_rank);
          }
        }
      }
    }
  }

  [[nodiscard]] nlohmann::json to_json() const {
    nlohmann::json j;
    j["schedule"] = schedule;
    j["budget_requested"] = budget_requested;
    j["budget_achieved"] = budget();
    j["num_kv_heads"] = num_kv_heads;
    j["head_dim"] = head_dim;
    j["heads_per_group"] = heads_per_group;
    nlohmann::json list = nlohmann::json::array();
    for (Index l = 0; l < num_layers(); ++l) {
      const LayerRanks& r = layers[static_cast<std::size_t>(l)];
      list.push_back({{"layer", l}, {"rank_k", r.k}, {"rank_v", r.v}});
    }
    j["layers"] = std::move(list);
    return j;
  }

  /// Parses to_json()'s form. Throws FormatError naming the key; ranks are checked for shape here
  /// and against a model by validate().
  [[nodiscard]] static RankPlan from_json(const nlohmann::json& j) {
    constexpr const char* kWhere = "latentkv::RankPlan::from_json";
    const auto fail = [&](const auto&... parts) { detail::raise<FormatError>(kWhere, parts...); };
    if (!j.is_object()) fail("expected a JSON object, got ", j.type_name());
    const auto field = [&](const char* key) -> const nlohmann::json& {
      const auto it = j.find(key);
      if (it == j.end()) fail("missing key \"", key, "\"");
      return *it;
    };
    const auto integer = [&](const nlohmann::json& v, const std::string& what) -> Index {
      if (!v.is_number_integer()) fail(what, " is ", v.dump(), ", expected an integer");
      return v.get<Index>();
    };
    RankPlan plan;
    const nlohmann::json& schedule = field("schedule");
    if (!schedule.is_string()) fail("\"schedule\" is ", schedule.dump(), ", expected a string");
    plan.schedule = schedule.get<std::string>();
    const nlohmann::json& budget = field("budget_requested");
    if (!budget.is_number()) fail("\"budget_requested\" is ", budget.dump(), ", expected a number");
    plan.budget_requested = budget.get<double>();
    plan.num_kv_heads = integer(field("num_kv_heads"), "\"num_kv_heads\"");
    plan.head_dim = integer(field("head_dim"), "\"head_dim\"");
    plan.heads_per_group = integer(field("heads_per_group"), "\"heads_per_group\"");
    const nlohmann::json& layers = field("layers");
    if (!layers.is_array()) fail("\"layers\" is ", layers.type_name(), ", expected an array");
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const nlohmann::json& entry = layers[l];
      const std::string where = "layers[" + std::to_string(l) + "]";
      if (!entry.is_object()) fail(where, " is ", entry.type_name(), ", expected an object");
      if (!entry.contains("layer") ||
          integer(entry["layer"], where + ".layer") != static_cast<Index>(l)) {
        fail(where, ".layer missing or not ", l, " (layers are listed in order)");
      }
      LayerRanks ranks;
      for (const auto& [key, out] :
           {std::pair{"rank_k", &ranks.k}, std::pair{"rank_v", &ranks.v}}) {
        if (!entry.contains(key) || !entry[key].is_array()) {
          fail(where, ".", key, " missing or not an array");
        }
        for (std::size_t g = 0; g < entry[key].size(); ++g) {
          out->push_back(integer(entry[key][g], where + "." + key + "[" + std::to_string(g) + "]"));
        }
      }
      plan.layers.push_back(std::move(ranks));
    }
    if (const auto it = j.find("budget_achieved"); it != j.end()) {
      if (!it->is_number() || std::abs(it->get<double>() - plan.budget()) > 1e-9) {
        fail("\"budget_achieved\" = ", it->dump(), " disagrees with the ranks (", plan.budget(),
             ")");
      }
    }
    return plan;
  }

  friend bool operator==(const RankPlan&, const RankPlan&) = default;
};

}  // namespace latentkv
