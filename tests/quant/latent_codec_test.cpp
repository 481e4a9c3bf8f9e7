// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// quant/latent_codec.hpp: the Gaussian Lloyd-Max levels (published values), round-trip error
// bounds of the uniform grid per bit width, bit packing (a known byte), short groups at a row's
// edge, the per-channel window and fp16 sinks, bytes per token (formula = bytes actually held),
// Lloyd-Max against uniform on Gaussian data (wins at 2-3 bits, not 4), the kernel decoding codes
// block by block equal to the kernel on the decoded fp32 latents, and rejected codecs (naming the
// field).
#include "latentkv/quant/latent_codec.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "../support/expect_invalid.hpp"
#include "../support/tiny_llama.hpp"
#include "latentkv/attention/latent_attention.hpp"

namespace latentkv {
namespace {

RowMatrix<float> gaussian(Index rows, Index cols, std::uint64_t seed, double stddev = 1.0) {
  std::mt19937_64 engine(seed);
  return testing::random_matrix(rows, cols, stddev, engine);
}

LatentCodec codec(int bits, Index group, QuantAxis axis = QuantAxis::kPerToken,
                  QuantGrid grid = QuantGrid::kUniform, Index sinks = 0) {
  LatentCodec c;
  c.bits = bits;
  c.group_size = group;
  c.axis = axis;
  c.grid = grid;
  c.sinks = sinks;
  return c;
}

RowMatrix<float> round_trip(const RowMatrix<float>& x, const LatentCodec& c) {
  QuantizedLatents q(x.cols(), c);
  q.append(x);
  return q.decode();
}

using testing::expect_invalid;

TEST(LatentCodec, LloydMaxLevelsAreTheGaussianOnes) {
  // Max (1960): 1 bit ±0.7979, 2 bits ±0.4528 ±1.5104, 3 bits 0.2451 0.7560 1.3439 2.1519,
  // 4 bits outermost 2.7326.
  EXPECT_NEAR(lloyd_max_levels(1)[1], 0.7979, 1e-4);
  EXPECT_NEAR(lloyd_max_levels(2)[2], 0.4528, 1e-4);
  EXPECT_NEAR(lloyd_max_levels(2)[3], 1.5104, 1e-4);
  const std::vector<float>& three = lloyd_max_levels(3);
  EXPECT_NEAR(three[4], 0.2451, 1e-4);
  EXPECT_NEAR(three[5], 0.7560, 1e-4);
  EXPECT_NEAR(three[6], 1.3439, 2e-4);
  EXPECT_NEAR(three[7], 2.1519, 2e-4);
  const std::vector<float>& four = lloyd_max_levels(4);
  ASSERT_EQ(four.size(), 16u);
  EXPECT_NEAR(four[15], 2.7326, 2e-4);
  for (std::size_t i = 0; i < 16; ++i) EXPECT_NEAR(four[i], -four[15 - i], 1e-6);
  EXPECT_THROW((void)lloyd_max_levels(5), InvalidArgument);
}

TEST(LatentCodec, UniformRoundTripErrorIsHalfAStepPerBitWidth) {
  const RowMatrix<float> x = gaussian(33, 96, 1, 3.0);
  double previous = 1e9;
  for (const int bits : {2, 3, 4, 5, 6, 8}) {
    const RowMatrix<float> y = round_trip(x, codec(bits, 32));
    double worst = 0.0;  // error / (half a step of its group)
    for (Index t = 0; t < x.rows(); ++t) {
      for (Index g = 0; g < 3; ++g) {
        const auto in = x.row(t).segment(g * 32, 32);
        const double half_step =
            0.5 * (in.maxCoeff() - in.minCoeff()) / static_cast<double>((1 << bits) - 1);
        const double error = (y.row(t).segment(g * 32, 32) - in).cwiseAbs().maxCoeff();
        worst = std::max(worst, error / half_step);
      }
    }
    // fp16 scale and zero add a little on top of half a step (relative 2^-11 of the range, so
    // more steps' worth at more bits).
    EXPECT_LT(worst, bits == 8 ? 1.3 : bits >= 5 ? 1.1 : 1.02) << bits << " bits";
    EXPECT_GT(worst, 0.5) << bits << " bits";  // it is lossy
    const double rms = std::sqrt((y - x).squaredNorm() / static_cast<double>(x.size()));
    EXPECT_LT(rms, previous) << bits << " bits";
    previous = rms;
  }
}

TEST(LatentCodec, PacksCodesLittleEndianAcrossBytes) {
  // Codes 0, 1, 2, ..., 7 repeated: min 0, max 7 → scale 1, zero 0 exactly, codes = the values.
  RowMatrix<float> x(1, 16);
  for (Index a = 0; a < 16; ++a) x(0, a) = static_cast<float>(a % 8);
  QuantizedLatents q(16, codec(3, 16));
  q.append(x);
  const QuantizedLatentView v = q.view();
  EXPECT_EQ(v.row_bytes, 6);  // 16·3 bits
  // Byte 0 holds code 0 (bits 0-2), code 1 (bits 3-5) and the low two bits of code 2.
  EXPECT_EQ(v.codes[0], (1u << 3) | ((2u & 3u) << 6));
  EXPECT_EQ(v.codes[1], (2u >> 2) | (3u << 1) | (4u << 4) | ((5u & 1u) << 7));
  EXPECT_EQ(q.decode(), x);
  // Every width and bit count decodes what it encoded when the values sit on the grid.
  for (const int bits : {2, 3, 4, 5, 6, 8}) {
    for (const Index width : {1, 7, 9, 33}) {
      RowMatrix<float> grid(3, width);
      const int top = (1 << bits) - 1;
      for (Index t = 0; t < 3; ++t) {
        for (Index a = 0; a < width; ++a) grid(t, a) = static_cast<float>((a * 5 + t) % (top + 1));
        grid(t, 0) = 0.0f;
        grid(t, width - 1) = static_cast<float>(top);
      }
      EXPECT_EQ(round_trip(grid, codec(bits, 64)), grid) << bits << " bits, width " << width;
    }
  }
}

TEST(LatentCodec, ShortLastGroupHasItsOwnScale) {
  // Width 40 in groups of 16: 16 + 16 + 8. The last 8 channels are huge; the first groups keep
  // their fine steps, and the short group decodes within its own step.
  RowMatrix<float> x = gaussian(4, 40, 2, 0.01);
  x.rightCols(8) *= 10000.0f;
  QuantizedLatents q(40, codec(4, 16));
  q.append(x);
  EXPECT_EQ(q.bytes(), 4 * (20 + 3 * 4));  // 40 nibbles + 3 (scale, zero) per token
  const RowMatrix<float> y = q.decode();
  EXPECT_LT((y.leftCols(32) - x.leftCols(32)).cwiseAbs().maxCoeff(), 0.01f);
  const float range = x.rightCols(8).maxCoeff() - x.rightCols(8).minCoeff();
  EXPECT_LT((y.rightCols(8) - x.rightCols(8)).cwiseAbs().maxCoeff(), range / 15.0f);
}

TEST(LatentCodec, PerChannelKeepsAFullPrecisionWindowUntilAGroupFills) {
  RowMatrix<float> x = gaussian(21, 12, 3);
  x.col(5).array() += 50.0f;  // an outlier channel: per channel, it costs nothing
  QuantizedLatents q(12, codec(4, 8, QuantAxis::kPerChannel));
  const auto fp16 = [](const RowMatrix<float>& m) {
    return RowMatrix<float>(
        m.unaryExpr([](float v) { return fp16_bits_to_float(float_to_fp16_bits(v)); }));
  };
  q.append(x.topRows(5));
  EXPECT_EQ(q.length(), 5);
  EXPECT_EQ(q.full_precision_tokens(), 5);
  EXPECT_EQ(q.decode(), fp16(x.topRows(5)));  // still fp16, exactly
  q.append(x.middleRows(5, 3));               // the group of 8 fills
  EXPECT_EQ(q.full_precision_tokens(), 0);
  EXPECT_EQ(q.view().quantized, 8);
  q.append(x.bottomRows(13));  // 8 more quantized, 5 waiting
  EXPECT_EQ(q.length(), 21);
  EXPECT_EQ(q.full_precision_tokens(), 5);
  const RowMatrix<float> y = q.decode();
  EXPECT_EQ(y.bottomRows(5), fp16(x.bottomRows(5)));
  EXPECT_NE(y.topRows(16), fp16(x.topRows(16)));
  // Per channel, the outlier channel's offset does not widen the others' steps.
  const double per_channel = (y.topRows(16) - x.topRows(16)).cwiseAbs().maxCoeff();
  const RowMatrix<float> per_token = round_trip(x.topRows(16), codec(4, 12));
  const double token_error = (per_token - x.topRows(16)).cwiseAbs().maxCoeff();
  EXPECT_LT(per_channel, 0.5);
  EXPECT_GT(token_error, 1.0);
  // Appending in other chunks gives the same codes.
  QuantizedLatents r(12, codec(4, 8, QuantAxis::kPerChannel));
  for (Index t = 0; t < 21; ++t) r.append(x.row(t));
  EXPECT_EQ(r.decode(), y);
  q.clear();
  EXPECT_EQ(q.length(), 0);
  EXPECT_EQ(q.bytes(), 0);
}

TEST(LatentCodec, SinksStayFp16) {
  RowMatrix<float> x = gaussian(10, 16, 4);
  x.row(0) *= 1000.0f;  // a sink token with huge latents
  for (const QuantAxis axis : {QuantAxis::kPerToken, QuantAxis::kPerChannel}) {
    QuantizedLatents q(16, codec(2, 8, axis, QuantGrid::kUniform, 2));
    q.append(x);
    const RowMatrix<float> y = q.decode();
    for (Index t = 0; t < 2; ++t) {
      for (Index a = 0; a < 16; ++a) {
        EXPECT_EQ(y(t, a), fp16_bits_to_float(float_to_fp16_bits(x(t, a))));
      }
    }
    EXPECT_NE(y.row(5), x.row(5));  // 2 bits after the sinks
    EXPECT_EQ(q.view().sinks, 2);
  }
}

TEST(LatentCodec, BytesPerTokenCountsEveryByte) {
  // 4 bits, G = 64, per token: 32 bytes of codes + fp16 scale and zero = 36 bytes = 4.5 bits.
  EXPECT_DOUBLE_EQ(latent_bytes_per_token(64, codec(4, 64)), 36.0);
  EXPECT_DOUBLE_EQ(latent_bytes_per_token(192, codec(8, 64)), 192.0 + 3 * 4);
  EXPECT_DOUBLE_EQ(latent_bytes_per_token(96, codec(3, 32)), 36.0 + 3 * 4);
  // Per channel with 4 sinks at 4096: 4 fp16 rows, 63 full groups, 60 fp16 window rows.
  const LatentCodec channel = codec(4, 64, QuantAxis::kPerChannel, QuantGrid::kUniform, 4);
  EXPECT_DOUBLE_EQ(latent_bytes_per_token(64, channel),
                   (4.0 * 128 + 63.0 * (64 * 32 + 4 * 64) + 60.0 * 128) / 4096.0);
  EXPECT_DOUBLE_EQ(latent_bytes_per_token(64, channel, 100),
                   (4.0 * 128 + 1.0 * (64 * 32 + 4 * 64) + 32.0 * 128) / 100.0);
  // The formula is what a store holding `context` tokens actually holds.
  const RowMatrix<float> x = gaussian(1000, 40, 5);
  for (const LatentCodec& c :
       {codec(3, 16), channel, codec(2, 8, QuantAxis::kPerToken, QuantGrid::kLloydMax, 3)}) {
    QuantizedLatents q(40, c);
    q.append(x);
    EXPECT_DOUBLE_EQ(static_cast<double>(q.bytes()) / 1000.0, latent_bytes_per_token(40, c, 1000));
  }
}

TEST(LatentCodec, LloydMaxBeatsUniformOnGaussianLatentsAtTwoAndThreeBitsNotFour) {
  // Groups of 64 Gaussian numbers, the same 4 bytes per group: at 2 and 3 bits the Gaussian
  // levels win clearly; at 4 bits the min/max grid of 64 samples (about ±2.4σ in 15 steps) is
  // finer than Lloyd-Max's levels scaled by the group's RMS, and wins (as on SmolLM2,
  // quantized.md).
  const RowMatrix<float> x = gaussian(256, 128, 6);
  for (const int bits : {2, 3, 4}) {
    const auto mse = [&](QuantGrid grid) {
      return (round_trip(x, codec(bits, 64, QuantAxis::kPerToken, grid)) - x).squaredNorm();
    };
    const double uniform = mse(QuantGrid::kUniform);
    const double lloyd = mse(QuantGrid::kLloydMax);
    if (bits < 4) {
      EXPECT_LT(lloyd, 0.9 * uniform) << bits << " bits";
    } else {
      EXPECT_GT(lloyd, uniform) << bits << " bits";
    }
  }
}

TEST(LatentCodec, KernelDecodingBlocksEqualsTheKernelOnDecodedLatents) {
  // One group (s = 1, g = 2, h = 16), 300 keys (3 key blocks, the last one short), 40 queries
  // at the end; the codes' kernel against the fp32 kernel on exactly the decoded latents.
  const Index length = 300, tokens = 40, h = 16, rk = 24, rv = 20, g = 2;
  const RowMatrix<float> ck = gaussian(length, rk, 7);
  const RowMatrix<float> cv = gaussian(length, rv, 8);
  const RowMatrix<float> up = gaussian(rk, h, 9, 0.3);
  const RowMatrix<float> queries = gaussian(tokens, g * h, 10);
  const RowMatrix<float> rope = rope_table(length, h, 10000.0f);
  QuantizedLatents qk(rk, codec(4, 8, QuantAxis::kPerChannel, QuantGrid::kUniform, 3));
  QuantizedLatents qv(rv, codec(3, 16, QuantAxis::kPerToken, QuantGrid::kLloydMax));
  qk.append(ck);
  qv.append(cv);
  const RowMatrix<float> dk = qk.decode();
  const RowMatrix<float> dv = qv.decode();
  const auto run = [&](auto latent_k, auto latent_v, Index ld_k, Index ld_v) {
    using S = std::remove_cv_t<std::remove_pointer_t<decltype(latent_k)>>;
    RowMatrix<float> out(tokens, g * rv);
    LatentAttentionParams<S> p;
    p.queries = queries.data();
    p.ld_queries = g * h;
    p.latent_k = latent_k;
    p.ld_latent_k = ld_k;
    p.up_k = up.data();
    p.ld_up_k = h;
    p.latent_v = latent_v;
    p.ld_latent_v = ld_v;
    p.rope = rope.data();
    p.ld_rope = h;
    p.out = out.data();
    p.ld_out = g * rv;
    p.tokens = tokens;
    p.length = length;
    p.first_position = length - tokens;
    p.heads_per_group = 1;
    p.group_size = g;
    p.head_dim = h;
    p.rope_dim = h;
    p.rank_k = rk;
    p.rank_v = rv;
    p.scale = 0.25f;
    run_latent_attention(std::span<const LatentAttentionParams<S>>(&p, 1));
    return out;
  };
  const QuantizedLatentView vk = qk.view();
  const QuantizedLatentView vv = qv.view();
  const RowMatrix<float> want = run(dk.data(), dv.data(), rk, rv);
  const RowMatrix<float> got = run(&vk, &vv, rk, rv);
  EXPECT_LT((got - want).cwiseAbs().maxCoeff(), 1e-6f);
  const RowMatrix<float> exact = run(ck.data(), cv.data(), rk, rv);
  EXPECT_GT((exact - want).cwiseAbs().maxCoeff(), 1e-3f);  // the codes are lossy
}

TEST(LatentCodec, SixteenBitsKeepsEveryTokenFp16) {
  const RowMatrix<float> x = gaussian(70, 40, 11);
  const LatentCodec c = codec(16, 64);
  QuantizedLatents q(40, c);
  q.append(x);
  const RowMatrix<float> y = q.decode();
  for (Index i = 0; i < x.size(); ++i) {
    EXPECT_EQ(y.data()[i], fp16_bits_to_float(float_to_fp16_bits(x.data()[i])));
  }
  EXPECT_EQ(q.full_precision_tokens(), 70);
  EXPECT_EQ(q.bytes(), 70 * 40 * 2);
  EXPECT_DOUBLE_EQ(latent_bytes_per_token(40, c, 4096), 80.0);
  EXPECT_DOUBLE_EQ(latent_bytes_per_token(40, codec(16, 64, QuantAxis::kPerChannel), 100), 80.0);
}

TEST(LatentCodec, GaussianErrorFallsWithBitsAndMatchesTheUniformGrid) {
  // Uniform grid on N(0, 1) groups of 64: range ≈ 2·2.4σ, step Δ = range/(2^b − 1), error Δ²/12.
  // 4 bits: (4.8/15)²/12 ≈ 0.0085; measured within a factor 1.5 of it.
  const double e2 = codec_gaussian_error(codec(2, 64), 192);
  const double e3 = codec_gaussian_error(codec(3, 64), 192);
  const double e4 = codec_gaussian_error(codec(4, 64), 192);
  const double e8 = codec_gaussian_error(codec(8, 64), 192);
  const double e16 = codec_gaussian_error(codec(16, 64), 192);
  EXPECT_GT(e2, e3);
  EXPECT_GT(e3, e4);
  EXPECT_GT(e4, e8);
  EXPECT_GT(e8, e16);
  EXPECT_GT(e4, 0.0085 / 1.5);
  EXPECT_LT(e4, 0.0085 * 1.5);
  EXPECT_LT(e16, 1e-6);
  EXPECT_EQ(codec_gaussian_error(codec(4, 64), 192), e4);  // fixed seed
  // Lloyd-Max beats the uniform grid at 2 bits on Gaussian data (its design point).
  EXPECT_LT(codec_gaussian_error(codec(2, 64, QuantAxis::kPerToken, QuantGrid::kLloydMax), 192),
            e2);
}

TEST(LatentCodec, RejectsUnsupportedCodecsNamingTheField) {
  expect_invalid([] { QuantizedLatents(8, codec(7, 64)); },
                 "bits = 7, expected 2, 3, 4, 5, 6, 8 or 16");
  expect_invalid([] { QuantizedLatents(8, codec(1, 64)); }, "bits = 1");
  expect_invalid([] { QuantizedLatents(8, codec(4, 4)); }, "group_size = 4, expected 8..4096");
  expect_invalid([] { QuantizedLatents(8, codec(4, 8192)); }, "group_size = 8192");
  expect_invalid(
      [] { QuantizedLatents(8, codec(8, 64, QuantAxis::kPerToken, QuantGrid::kLloydMax)); },
      "bits = 8 with the Lloyd-Max grid");
  expect_invalid(
      [] { QuantizedLatents(8, codec(4, 64, QuantAxis::kPerToken, QuantGrid::kUniform, -1)); },
      "sinks = -1");
  expect_invalid([] { QuantizedLatents(0, codec(4, 64)); }, "width = 0");
  expect_invalid([] { (void)latent_bytes_per_token(64, codec(4, 64), 0); }, "context = 0");
  QuantizedLatents q(8, codec(4, 8));
  expect_invalid([&] { q.append(RowMatrix<float>::Zero(2, 9)); }, "9 columns, expected width = 8");
}

}  // namespace
}  // namespace latentkv
