// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Quantized latents (DESIGN §8): the codes a latent KV cache stores instead of fp32/fp16 latents,
// for one head group's latent matrix C: (length, width) (width = r_k,j or r_v,j).
//   group       n numbers that share one (scale, zero): along the channels of one token
//               (QuantAxis::kPerToken: token t, channels [i·G, min((i+1)·G, width)), the last
//               group of a row may be short) or along the tokens of one channel
//               (QuantAxis::kPerChannel, KIVI's choice for keys: channel a, tokens of group i)
//   code        q ∈ [0, 2^b), b = bits ∈ {2, 3, 4, 5, 6, 8}, bit-packed little-endian per token
//               row: code a of a row sits at bits [a·b, a·b + b) of the row's ⌈width·b/8⌉ bytes
//   decode      x̂ = table[q]·scale + zero, scale and zero stored as fp16 per group
//     uniform   (QuantGrid::kUniform, asymmetric min/max): table[q] = q, zero = min,
//               scale = (max − min)/(2^b − 1), q = round((x − zero)/scale)
//     Lloyd-Max (QuantGrid::kLloydMax, TurboQuant's idea after a rotation, quant/hadamard.hpp):
//               table = the 2^b MSE-optimal levels of a standard Gaussian (lloyd_max_levels()),
//               zero = the group's mean, scale = its RMS deviation; q = the nearest level
//   sinks       the first `sinks` tokens stay fp16 (attention sinks), never quantized
//   fp16        b = 16: no codes at all, every token stays fp16 (a rank × bits plan,
//               schedule/rank_bits_planner.hpp, may keep a fragile latent unquantized)
//   window      kPerChannel only: tokens after the sinks wait in fp16 until G of them fill a
//               group, then are quantized together (so 0..G−1 recent tokens are fp16)
// Bytes per token of a width-w latent at context length T (latent_bytes_per_token(); every byte
// counted), with S = min(sinks, T), n = T − S:
//   b = 16:      2w
//   kPerToken:   (S·2w + n·(⌈w·b/8⌉ + 4·⌈w/G⌉)) / T
//   kPerChannel: (S·2w + ⌊n/G⌋·(G·⌈w·b/8⌉ + 4w) + (n mod G)·2w) / T
// e.g. b = 4, G = 64, kPerToken: 4.5 bits per number (llama.cpp's q4_0 is 4.5 bits too).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numbers>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/core/half.hpp"
#include "latentkv/linalg/matrix.hpp"

namespace latentkv {

/// Which numbers share a scale: one token's channels, or one channel's tokens.
enum class QuantAxis : std::uint8_t { kPerToken, kPerChannel };
/// The quantization levels: a uniform grid (asymmetric) or Gaussian Lloyd-Max levels.
enum class QuantGrid : std::uint8_t { kUniform, kLloydMax };

/// Whether `bits` is a width the codecs store: 2..6 or 8 bits of codes, or 16 (fp16 latents).
[[nodiscard]] constexpr bool supported_latent_bits(int bits) noexcept {
  return (bits >= 2 && bits <= 6) || bits == 8 || bits == 16;
}

/// How one side (keys or values) of a latent cache is quantized (see the notation block).
struct LatentCodec {
  int bits = 8;  ///< b: 2, 3, 4, 5, 6 or 8 (Lloyd-Max: 2, 3 or 4); 16: fp16, not quantized
  QuantGrid grid = QuantGrid::kUniform;   ///< levels
  QuantAxis axis = QuantAxis::kPerToken;  ///< what a group runs along
  Index group_size = 64;                  ///< G: numbers per group, 8..4096
  Index sinks = 0;                        ///< first tokens kept fp16, 0..4096

  /// Throws InvalidArgument naming the field (bits, group_size, sinks) and `where`.
  void validate(const char* where) const {
    if (!supported_latent_bits(bits)) {
      detail::raise<InvalidArgument>(where, "bits = ", bits,
                                     ", expected 2, 3, 4, 5, 6, 8 or 16 (fp16, unquantized)");
    }
    if (grid == QuantGrid::kLloydMax && bits > 4 && bits != 16) {
      detail::raise<InvalidArgument>(where, "bits = ", bits,
                                     " with the Lloyd-Max grid, expected 2, 3 or 4 (at 8 bits "
                                     "the uniform grid is already near-lossless)");
    }
    if (group_size < 8 || group_size > 4096) {
      detail::raise<InvalidArgument>(where, "group_size = ", group_size,
                                     ", expected 8..4096 (a smaller group spends more bytes on "
                                     "its fp16 scale and zero than on its codes)");
    }
    if (sinks < 0 || sinks > 4096) {
      detail::raise<InvalidArgument>(where, "sinks = ", sinks, ", expected 0..4096");
    }
  }
};

/// The bit width of one layer's K and V latents, one entry per head group (16: fp16).
struct LayerBits {
  std::vector<int> k;  ///< (groups)
  std::vector<int> v;  ///< (groups)
  friend bool operator==(const LayerBits&, const LayerBits&) = default;
};

/// A latent cache's quantization: one codec per side, and whether latents are rotated first.
/// `layer_bits` (empty, or one entry per model layer; a dense layer's entry is ignored) overrides
/// the codecs' bits per layer, side and group, as a rank × bits plan chooses them
/// (schedule/rank_bits_planner.hpp); 16 keeps that latent fp16.
struct LatentQuantConfig {
  LatentCodec key;                    ///< key latents C^k
  LatentCodec value;                  ///< value latents C^v
  bool rotate = true;                 ///< fold a Walsh–Hadamard rotation into the factors
  std::vector<LayerBits> layer_bits;  ///< (L) or empty: per-group bit widths
};

/// The 2^bits Lloyd-Max levels of a standard Gaussian (bits 1..4), ascending and symmetric:
/// bits 2 → ±0.4528, ±1.5104. Computed once by Lloyd's iteration on the closed-form centroids
/// E[x | a < x < b] = (φ(a) − φ(b)) / (Φ(b) − Φ(a)).
[[nodiscard]] inline const std::vector<float>& lloyd_max_levels(int bits) {
  if (bits < 1 || bits > 4) {
    detail::raise<InvalidArgument>("latentkv::lloyd_max_levels", "bits = ", bits,
                                   ", expected 1..4");
  }
  static const std::vector<std::vector<float>> tables = [] {
    std::vector<std::vector<float>> out(5);
    const auto pdf = [](double x) {
      return std::exp(-0.5 * x * x) / std::sqrt(2.0 * std::numbers::pi);
    };
    const auto cdf = [](double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); };
    for (int b = 1; b <= 4; ++b) {
      const auto n = std::size_t{1} << b;
      constexpr double kInf = std::numeric_limits<double>::infinity();
      std::vector<double> level(n);
      for (std::size_t i = 0; i < n; ++i) {
        level[i] = -3.0 + 6.0 * (static_cast<double>(i) + 0.5) / static_cast<double>(n);
      }
      for (int iteration = 0; iteration < 2000; ++iteration) {
        for (std::size_t i = 0; i < n; ++i) {
          const double lo = i == 0 ? -kInf : 0.5 * (level[i - 1] + level[i]);
          const double hi = i == n - 1 ? kInf : 0.5 * (level[i] + level[i + 1]);
          level[i] = (pdf(lo) - pdf(hi)) / (cdf(hi) - cdf(lo));
        }
      }
      out[static_cast<std::size_t>(b)].assign(level.begin(), level.end());
    }
    return out;
  }();
  return tables[static_cast<std::size_t>(bits)];
}

/// Bytes of one token row of codes: ⌈width·bits/8⌉.
[[nodiscard]] constexpr Index code_row_bytes(Index width, int bits) noexcept {
  return (width * bits + 7) / 8;
}

/// Average bytes per token of a width-`width` latent under `codec` at context length `context`
/// (the formulas of the notation block: codes, fp16 scales and zeros, fp16 sinks and window).
[[nodiscard]] inline double latent_bytes_per_token(Index width, const LatentCodec& codec,
                                                   Index context = 4096) {
  constexpr const char* kWhere = "latentkv::latent_bytes_per_token";
  codec.validate(kWhere);
  if (width < 1 || context < 1) {
    detail::raise<InvalidArgument>(kWhere, "width = ", width, ", context = ", context,
                                   ", expected >= 1");
  }
  const double w = static_cast<double>(width);
  if (codec.bits == 16) return 2.0 * w;
  const Index sinks = std::min(codec.sinks, context);
  const Index n = context - sinks;
  const double row = static_cast<double>(code_row_bytes(width, codec.bits));
  const Index g = codec.group_size;
  double total = static_cast<double>(sinks) * 2.0 * w;
  if (codec.axis == QuantAxis::kPerToken) {
    total += static_cast<double>(n) * (row + 4.0 * static_cast<double>((width + g - 1) / g));
  } else {
    total += static_cast<double>(n / g) * (static_cast<double>(g) * row + 4.0 * w) +
             static_cast<double>(n % g) * 2.0 * w;
  }
  return total / static_cast<double>(context);
}

/// Kernel-facing view of one group's quantized latents (trivially copyable: pointers and
/// extents). Tokens [0, sinks) are rows of `sink`, [sinks, sinks + quantized) rows of `codes`,
/// the rest (≤ G − 1, kPerChannel only) rows of `window`.
struct QuantizedLatentView {
  const std::uint8_t* codes = nullptr;    // (quantized, row_bytes) packed codes (+1 pad byte)
  const std::uint16_t* scale = nullptr;   // fp16; kPerToken (quantized, ⌈w/G⌉), kPerChannel
                                          // (quantized/G, w)
  const std::uint16_t* zero = nullptr;    // fp16, as scale
  const std::uint16_t* sink = nullptr;    // (sinks, w) fp16
  const std::uint16_t* window = nullptr;  // (length − sinks − quantized, w) fp16
  const float* table = nullptr;           // (2^bits) levels: q (uniform) or Lloyd-Max
  Index width = 0;                        // w
  Index row_bytes = 0;                    // ⌈w·bits/8⌉
  Index group_size = 0;                   // G
  Index sinks = 0;                        // sink rows held (≤ codec.sinks)
  Index quantized = 0;                    // rows of codes
  Index length = 0;                       // tokens held
  int bits = 0;                           // b
  QuantAxis axis = QuantAxis::kPerToken;

  /// Decodes tokens [k0, k0 + kb) to fp32: out (kb, width), row stride width. The caller keeps
  /// 0 ≤ k0, k0 + kb ≤ length.
  void decode_rows(Index k0, Index kb, float* out) const noexcept {
    const std::uint32_t mask = (1u << bits) - 1u;
    const Index groups = (width + group_size - 1) / group_size;
    for (Index t = k0; t < k0 + kb; ++t) {
      float* to = out + (t - k0) * width;
      if (t < sinks || t >= sinks + quantized) {
        const std::uint16_t* from =
            t < sinks ? sink + t * width : window + (t - sinks - quantized) * width;
        for (Index a = 0; a < width; ++a) to[a] = fp16_bits_to_float(from[a]);
        continue;
      }
      const Index q = t - sinks;
      const std::uint8_t* row = codes + q * row_bytes;
      const auto code = [&](Index a) {
        const Index bit = a * bits;
        const std::uint32_t two = static_cast<std::uint32_t>(row[bit >> 3]) |
                                  (static_cast<std::uint32_t>(row[(bit >> 3) + 1]) << 8);
        return (two >> (bit & 7)) & mask;
      };
      if (axis == QuantAxis::kPerToken) {
        for (Index i = 0; i < groups; ++i) {
          const float s = fp16_bits_to_float(scale[q * groups + i]);
          const float z = fp16_bits_to_float(zero[q * groups + i]);
          const Index end = std::min(width, (i + 1) * group_size);
          for (Index a = i * group_size; a < end; ++a) to[a] = table[code(a)] * s + z;
        }
      } else {
        const std::uint16_t* s = scale + (q / group_size) * width;
        const std::uint16_t* z = zero + (q / group_size) * width;
        for (Index a = 0; a < width; ++a) {
          to[a] = table[code(a)] * fp16_bits_to_float(s[a]) + fp16_bits_to_float(z[a]);
        }
      }
    }
  }
};

static_assert(std::is_trivially_copyable_v<QuantizedLatentView>);

/// The quantized latents of one head group (owning storage): append() quantizes fp32 latent rows
/// (per token now, or per channel once a window of G tokens fills), view() exposes them to the
/// kernel. Width and codec are fixed at construction.
class QuantizedLatents {
 public:
  QuantizedLatents() = default;
  /// width: latent channels (≥ 1); codec: validated (InvalidArgument naming the field).
  QuantizedLatents(Index width, const LatentCodec& codec) : width_(width), codec_(codec) {
    constexpr const char* kWhere = "latentkv::QuantizedLatents";
    codec.validate(kWhere);
    if (width < 1) detail::raise<InvalidArgument>(kWhere, "width = ", width, ", expected >= 1");
    row_bytes_ = code_row_bytes(width, codec.bits);
    groups_ = (width + codec.group_size - 1) / codec.group_size;
    if (codec.bits == 16) {
      // no table: every row is an fp16 "sink"
    } else if (codec.grid == QuantGrid::kLloydMax) {
      table_ = lloyd_max_levels(codec.bits);
    } else {
      table_.resize(std::size_t{1} << codec.bits);
      for (std::size_t q = 0; q < table_.size(); ++q) table_[q] = static_cast<float>(q);
    }
    codes_.assign(1, 0);  // the pad byte the decoder's two-byte reads may touch
  }

  /// Appends `rows` (n, width) of fp32 latents.
  void append(const MatrixCRef<float>& rows) {
    if (rows.cols() != width_) {
      detail::raise<InvalidArgument>("latentkv::QuantizedLatents::append", "rows have ",
                                     rows.cols(), " columns, expected width = ", width_);
    }
    for (Index t = 0; t < rows.rows(); ++t) {
      const float* row = rows.row(t).data();
      if (codec_.bits == 16 || sinks_ < codec_.sinks) {
        push_fp16(sink_, row);
        ++sinks_;
      } else if (codec_.axis == QuantAxis::kPerToken) {
        quantize_token(row);
      } else {
        push_fp16(window_, row);
        if (static_cast<Index>(window_.size()) == codec_.group_size * width_) flush_window();
      }
    }
  }

  /// Forgets every token (keeps the memory).
  void clear() noexcept {
    codes_.resize(1);
    scale_.clear();
    zero_.clear();
    sink_.clear();
    window_.clear();
    sinks_ = 0;
    quantized_ = 0;
  }

  [[nodiscard]] Index width() const noexcept { return width_; }
  [[nodiscard]] const LatentCodec& codec() const noexcept { return codec_; }
  [[nodiscard]] Index length() const noexcept {
    return sinks_ + quantized_ + static_cast<Index>(window_.size()) / std::max<Index>(width_, 1);
  }
  /// Tokens held in fp16 (sinks and window).
  [[nodiscard]] Index full_precision_tokens() const noexcept { return length() - quantized_; }
  /// Bytes held now (codes without the pad byte, scales, zeros, sinks, window).
  [[nodiscard]] std::int64_t bytes() const noexcept {
    return static_cast<std::int64_t>(codes_.size() - 1) +
           2 * static_cast<std::int64_t>(scale_.size() + zero_.size() + sink_.size() +
                                         window_.size());
  }

  /// The kernel's view; valid until the next append() or clear().
  [[nodiscard]] QuantizedLatentView view() const noexcept {
    QuantizedLatentView v;
    v.codes = codes_.data();
    v.scale = scale_.data();
    v.zero = zero_.data();
    v.sink = sink_.data();
    v.window = window_.data();
    v.table = table_.data();
    v.width = width_;
    v.row_bytes = row_bytes_;
    v.group_size = codec_.group_size;
    v.sinks = sinks_;
    v.quantized = quantized_;
    v.length = length();
    v.bits = codec_.bits;
    v.axis = codec_.axis;
    return v;
  }

  /// Every token decoded: (length, width) fp32.
  [[nodiscard]] RowMatrix<float> decode() const {
    RowMatrix<float> out(length(), width_);
    if (out.rows() > 0) view().decode_rows(0, out.rows(), out.data());
    return out;
  }

 private:
  void push_fp16(std::vector<std::uint16_t>& to, const float* row) {
    for (Index a = 0; a < width_; ++a) to.push_back(float_to_fp16_bits(row[a]));
  }

  /// Encodes n values x[0], x[stride], ... into codes[a0 + i·code_stride] of the current rows
  /// and returns the group's fp16 (scale, zero).
  void encode_group(const float* x, Index n, Index stride, std::uint8_t* const* rows,
                    Index row_step, Index a0, Index a_step, std::uint16_t& scale_bits,
                    std::uint16_t& zero_bits) {
    float lo = x[0];
    float hi = x[0];
    double sum = 0.0;
    for (Index i = 0; i < n; ++i) {
      const float v = x[i * stride];
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      sum += v;
    }
    const int levels = 1 << codec_.bits;
    float scale = 0.0f;
    float zero = 0.0f;
    if (codec_.grid == QuantGrid::kUniform) {
      zero = lo;
      scale = (hi - lo) / static_cast<float>(levels - 1);
    } else {
      const double mean = sum / static_cast<double>(n);
      double sq = 0.0;
      for (Index i = 0; i < n; ++i) {
        const double d = x[i * stride] - mean;
        sq += d * d;
      }
      zero = static_cast<float>(mean);
      scale = static_cast<float>(std::sqrt(sq / static_cast<double>(n)));
    }
    scale_bits = float_to_fp16_bits(scale);
    zero_bits = float_to_fp16_bits(zero);
    const float s = fp16_bits_to_float(scale_bits);
    const float z = fp16_bits_to_float(zero_bits);
    const float inverse = s > 0.0f ? 1.0f / s : 0.0f;
    for (Index i = 0; i < n; ++i) {
      const float u = (x[i * stride] - z) * inverse;
      std::uint32_t q = 0;
      if (codec_.grid == QuantGrid::kUniform) {
        q = static_cast<std::uint32_t>(
            std::clamp(std::nearbyint(u), 0.0f, static_cast<float>(levels - 1)));
      } else {  // nearest level: count the midpoints below u
        for (int k = 1; k < levels; ++k) {
          if (u > 0.5f * (table_[static_cast<std::size_t>(k - 1)] +
                          table_[static_cast<std::size_t>(k)])) {
            q = static_cast<std::uint32_t>(k);
          }
        }
      }
      std::uint8_t* row = rows[i * row_step];
      const Index bit = (a0 + i * a_step) * codec_.bits;
      const std::uint32_t shifted = q << (bit & 7);
      row[bit >> 3] = static_cast<std::uint8_t>(row[bit >> 3] | (shifted & 0xffu));
      if ((shifted >> 8) != 0u) {
        row[(bit >> 3) + 1] = static_cast<std::uint8_t>(row[(bit >> 3) + 1] | (shifted >> 8));
      }
    }
  }

  /// Grows codes_ by `rows` zeroed rows; returns a pointer to the first new row.
  std::uint8_t* new_code_rows(Index rows) {
    const std::size_t at = codes_.size() - 1;  // overwrite the pad byte
    codes_.resize(at + static_cast<std::size_t>(rows * row_bytes_) + 1, 0);
    std::fill(codes_.begin() + static_cast<std::ptrdiff_t>(at), codes_.end(), 0);
    return codes_.data() + at;
  }

  void quantize_token(const float* row) {
    std::uint8_t* codes = new_code_rows(1);
    for (Index i = 0; i < groups_; ++i) {
      const Index a0 = i * codec_.group_size;
      const Index n = std::min(codec_.group_size, width_ - a0);
      std::uint16_t s = 0;
      std::uint16_t z = 0;
      encode_group(row + a0, n, 1, &codes, 0, a0, 1, s, z);
      scale_.push_back(s);
      zero_.push_back(z);
    }
    ++quantized_;
  }

  void flush_window() {
    const Index g = codec_.group_size;
    std::vector<float> x(window_.size());
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = fp16_bits_to_float(window_[i]);
    std::uint8_t* first = new_code_rows(g);
    std::vector<std::uint8_t*> rows(static_cast<std::size_t>(g));
    for (Index t = 0; t < g; ++t) rows[static_cast<std::size_t>(t)] = first + t * row_bytes_;
    for (Index a = 0; a < width_; ++a) {
      std::uint16_t s = 0;
      std::uint16_t z = 0;
      encode_group(x.data() + a, g, width_, rows.data(), 1, a, 0, s, z);
      scale_.push_back(s);
      zero_.push_back(z);
    }
    quantized_ += g;
    window_.clear();
  }

  Index width_ = 0;
  LatentCodec codec_;
  Index row_bytes_ = 0;
  Index groups_ = 0;                 // ⌈w/G⌉ (kPerToken)
  std::vector<float> table_;         // (2^bits)
  std::vector<std::uint8_t> codes_;  // (quantized·row_bytes + 1)
  std::vector<std::uint16_t> scale_;
  std::vector<std::uint16_t> zero_;
  std::vector<std::uint16_t> sink_;    // (sinks, w)
  std::vector<std::uint16_t> window_;  // (window tokens, w)
  Index sinks_ = 0;
  Index quantized_ = 0;
};

/// The codec's relative squared error on Gaussian latents: Σ(x̂ − x)² / Σ x² over `tokens` rows
/// of `width` i.i.d. N(0, 1) numbers (a fixed seed; Box–Muller on a 64-bit Mersenne twister, so
/// the value is the same on every platform), quantized and decoded by QuantizedLatents. After the
/// Walsh–Hadamard rotation a latent's numbers are close to Gaussian within a group, so this is
/// the noise-to-signal ratio the rank × bits planner charges a quantized latent
/// (schedule/rank_bits_planner.hpp). Sinks are ignored (the codec's error, not the cache's); fp16
/// (bits 16) returns fp16's own rounding error. tokens ≥ 1 (kPerChannel: a multiple of G is
/// quantized, the rest stays fp16 as in the cache).
[[nodiscard]] inline double codec_gaussian_error(LatentCodec codec, Index width,
                                                 Index tokens = 2048) {
  constexpr const char* kWhere = "latentkv::codec_gaussian_error";
  codec.validate(kWhere);
  if (width < 1 || tokens < 1) {
    detail::raise<InvalidArgument>(kWhere, "width = ", width, ", tokens = ", tokens,
                                   ", expected >= 1");
  }
  codec.sinks = 0;
  RowMatrix<float> x(tokens, width);
  std::mt19937_64 engine(0x6c6174656e746b76ull);  // "latentkv"
  const auto uniform = [&] {                      // (0, 1]
    return (static_cast<double>(engine() >> 11) + 1.0) * (1.0 / 9007199254740992.0);
  };
  for (Index i = 0; i < x.size(); i += 2) {
    const double radius = std::sqrt(-2.0 * std::log(uniform()));
    const double angle = 2.0 * std::numbers::pi * uniform();
    x.data()[i] = static_cast<float>(radius * std::cos(angle));
    if (i + 1 < x.size()) x.data()[i + 1] = static_cast<float>(radius * std::sin(angle));
  }
  QuantizedLatents q(width, codec);
  q.append(x);
  const RowMatrix<float> y = q.decode();
  double error = 0.0;
  double energy = 0.0;
  for (Index i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(y.data()[i]) - static_cast<double>(x.data()[i]);
    error += d * d;
    energy += static_cast<double>(x.data()[i]) * static_cast<double>(x.data()[i]);
  }
  return error / energy;
}

}  // namespace latentkv
