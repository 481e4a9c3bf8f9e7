// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// core/rope.hpp: frequencies, the rotate-half pairing, norm preservation, relative-position
// invariance of q·k, partial rotation, rope_rotate_rows, and equivalence with llama.cpp's
// interleaved pairing on GGUF-permuted channels (DESIGN §9).
#include "latentkv/core/rope.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace latentkv {
namespace {

std::vector<float> random_vector(int n, std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = normal(engine);
  return v;
}

double norm(const std::vector<float>& v) {
  double s = 0.0;
  for (const float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

std::vector<float> rotated(std::vector<float> x, int rope_dim, float base, std::int64_t position) {
  rope_rotate_head(x.data(), rope_dim, base, position);
  return x;
}

TEST(Rope, InverseFrequencyIsBaseToTheMinusTwoIOverD) {
  for (const float base : {10000.0f, 100000.0f}) {
    for (int i = 0; i < 32; ++i) {
      const double expected = std::pow(static_cast<double>(base), -2.0 * i / 64.0);
      EXPECT_NEAR(rope_inverse_frequency(i, 64, base), expected, 2e-7 * expected) << i;
    }
  }
  EXPECT_EQ(rope_inverse_frequency(0, 64, 100000.0f), 1.0f);
}

TEST(Rope, PositionZeroIsTheIdentity) {
  const std::vector<float> x = random_vector(64, 1);
  EXPECT_EQ(rotated(x, 64, 1e4f, 0), x);
}

TEST(Rope, RotatesChannelIWithChannelIPlusHalf) {
  // e_i rotated by φ_i = p·θ_i is cos φ_i·e_i + sin φ_i·e_{i+r/2}; e_{i+r/2} goes to −sin, cos.
  const int r = 16;
  const float base = 1e4f;
  const std::int64_t p = 5;
  for (int i = 0; i < r / 2; ++i) {
    const double angle = static_cast<double>(p) * std::pow(1e4, -2.0 * i / r);
    std::vector<float> e(r, 0.0f);
    e[static_cast<std::size_t>(i)] = 1.0f;
    const std::vector<float> a = rotated(e, r, base, p);
    for (int j = 0; j < r; ++j) {
      const double want = j == i ? std::cos(angle) : j == i + r / 2 ? std::sin(angle) : 0.0;
      EXPECT_NEAR(a[static_cast<std::size_t>(j)], want, 1e-6) << "i " << i << " j " << j;
    }
    std::vector<float> f(r, 0.0f);
    f[static_cast<std::size_t>(i + r / 2)] = 1.0f;
    const std::vector<float> b = rotated(f, r, base, p);
    EXPECT_NEAR(b[static_cast<std::size_t>(i)], -std::sin(angle), 1e-6) << i;
    EXPECT_NEAR(b[static_cast<std::size_t>(i + r / 2)], std::cos(angle), 1e-6) << i;
  }
}

TEST(Rope, PreservesTheNorm) {
  for (const std::int64_t p : {1, 7, 100, 1023, 8191}) {
    const std::vector<float> x = random_vector(64, 10 + static_cast<std::uint64_t>(p));
    EXPECT_NEAR(norm(rotated(x, 64, 1e5f, p)), norm(x), 1e-5 * norm(x)) << p;
  }
}

TEST(Rope, QueryKeyProductDependsOnlyOnTheRelativePosition) {
  const std::vector<float> q = random_vector(64, 2);
  const std::vector<float> k = random_vector(64, 3);
  for (const std::int64_t offset : {-3, 0, 5, 40}) {
    const double reference = dot(rotated(q, 64, 1e5f, 3 + offset), rotated(k, 64, 1e5f, 3));
    for (const std::int64_t shift : {1, 17, 250, 900}) {
      const double shifted =
          dot(rotated(q, 64, 1e5f, 3 + offset + shift), rotated(k, 64, 1e5f, 3 + shift));
      // fp32 angles at positions up to ~1000 are good to ~1e-4 rad.
      EXPECT_NEAR(shifted, reference, 2e-3) << "offset " << offset << " shift " << shift;
    }
  }
  // And it does depend on the relative position.
  EXPECT_GT(std::abs(dot(rotated(q, 64, 1e5f, 9), rotated(k, 64, 1e5f, 3)) -
                     dot(rotated(q, 64, 1e5f, 4), rotated(k, 64, 1e5f, 3))),
            1e-2);
}

TEST(Rope, PartialRotationLeavesTheTailChannels) {
  const std::vector<float> x = random_vector(64, 4);
  const std::vector<float> a = rotated(x, 32, 1e4f, 11);
  for (int j = 32; j < 64; ++j)
    EXPECT_EQ(a[static_cast<std::size_t>(j)], x[static_cast<std::size_t>(j)]);
  EXPECT_NE(a[0], x[0]);
  // The rotated part is the same as rotating a 32-channel head.
  const std::vector<float> head(x.begin(), x.begin() + 32);
  const std::vector<float> b = rotated(head, 32, 1e4f, 11);
  for (int j = 0; j < 32; ++j)
    EXPECT_EQ(a[static_cast<std::size_t>(j)], b[static_cast<std::size_t>(j)]);
}

TEST(Rope, RotateRowsUsesEachRowsPositionForEveryHead) {
  const int heads = 3;
  const int h = 8;
  const std::int64_t stride = heads * h + 5;  // padded rows
  const std::int64_t rows = 4;
  std::vector<float> data = random_vector(static_cast<int>(rows * stride), 5);
  const std::vector<float> original = data;
  rope_rotate_rows(data.data(), rows, stride, heads, h, h, 1e4f, 20);
  for (std::int64_t t = 0; t < rows; ++t) {
    for (int head = 0; head < heads; ++head) {
      const auto begin = original.begin() + t * stride + head * h;
      const std::vector<float> want =
          rotated(std::vector<float>(begin, begin + h), h, 1e4f, 20 + t);
      for (int j = 0; j < h; ++j) {
        EXPECT_EQ(data[static_cast<std::size_t>(t * stride + head * h + j)],
                  want[static_cast<std::size_t>(j)])
            << t << " " << head << " " << j;
      }
    }
    for (std::int64_t j = heads * h; j < stride; ++j) {  // padding untouched
      EXPECT_EQ(data[static_cast<std::size_t>(t * stride + j)],
                original[static_cast<std::size_t>(t * stride + j)]);
    }
  }
}

TEST(Rope, EqualsInterleavedRopeOnGgufPermutedChannels) {
  // llama.cpp: GGUF channel 2i + j holds HF channel j·h/2 + i, rotated as the adjacent pair
  // (2i, 2i + 1) with the same θ_i. Rotating in HF order and then permuting must give the same.
  const int h = 64;
  const std::int64_t p = 37;
  const std::vector<float> hf = random_vector(h, 6);
  std::vector<float> gguf(h);
  for (int i = 0; i < h / 2; ++i) {
    for (int j = 0; j < 2; ++j) {
      gguf[static_cast<std::size_t>(2 * i + j)] = hf[static_cast<std::size_t>(j * h / 2 + i)];
    }
  }
  for (int i = 0; i < h / 2; ++i) {  // interleaved ("normal") RoPE
    rope_rotate_pair(gguf[static_cast<std::size_t>(2 * i)],
                     gguf[static_cast<std::size_t>(2 * i + 1)],
                     rope_cos_sin(p, rope_inverse_frequency(i, h, 1e5f)));
  }
  const std::vector<float> hf_rotated = rotated(hf, h, 1e5f, p);
  for (int i = 0; i < h / 2; ++i) {
    for (int j = 0; j < 2; ++j) {
      EXPECT_EQ(gguf[static_cast<std::size_t>(2 * i + j)],
                hf_rotated[static_cast<std::size_t>(j * h / 2 + i)]);
    }
  }
}

}  // namespace
}  // namespace latentkv
