// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// fp16 / bf16 conversions against a reference computed another way: decoding with std::ldexp on the
// (sign, exponent, mantissa) fields, narrowing by scaling to an integer multiple of the target ulp
// in double and rounding with std::nearbyint (ties to even in the default rounding mode); where g++
// provides _Float16, also against the compiler's own conversions.
#include "latentkv/core/half.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace latentkv {
namespace {

static_assert(fp16_bits_to_float(0x3c00) == 1.0f);
static_assert(fp16_bits_to_float(0x7bff) == 65504.0f);
static_assert(fp16_bits_to_float(0x0001) == 0x1p-24f);
static_assert(float_to_fp16_bits(65519.0f) == 0x7bff);
static_assert(float_to_fp16_bits(65520.0f) == 0x7c00);
static_assert(float_to_bf16_bits(1.0f) == 0x3f80);
static_assert(bf16_bits_to_float(0xc000) == -2.0f);

struct Format {
  int precision;      // significand bits including the implicit one
  int min_exponent;   // exponent of the smallest normal
  int exponent_bits;  // width of the exponent field
  double max_finite;  // largest finite value
};
constexpr Format kFp16{11, -14, 5, 65504.0};
constexpr Format kBf16{8, -126, 8, 0x1.fep127};

/// Decodes a 16-bit pattern of `format` from its fields with ldexp (NaN for NaN patterns).
double decode(std::uint16_t bits, const Format& format) {
  const int mantissa_bits = format.precision - 1;
  const int bias = (1 << (format.exponent_bits - 1)) - 1;
  const int exponent = (bits >> mantissa_bits) & ((1 << format.exponent_bits) - 1);
  const int mantissa = bits & ((1 << mantissa_bits) - 1);
  const double sign = (bits & 0x8000) != 0 ? -1.0 : 1.0;
  if (exponent == (1 << format.exponent_bits) - 1) {
    return mantissa == 0 ? sign * std::numeric_limits<double>::infinity()
                         : std::numeric_limits<double>::quiet_NaN();
  }
  if (exponent == 0) return sign * std::ldexp(mantissa, format.min_exponent - mantissa_bits);
  return sign * std::ldexp((1 << mantissa_bits) + mantissa, exponent - bias - mantissa_bits);
}

/// Rounds a finite x to the nearest value of `format` (ties to even; beyond the range -> ±inf).
double round_to(double x, const Format& format) {
  if (x == 0.0) return x;
  int e = 0;
  std::frexp(x, &e);  // |x| = f·2^e, f in [0.5, 1): the leading bit has weight 2^(e-1)
  const int lead = std::max(e - 1, format.min_exponent);
  const double ulp = std::ldexp(1.0, lead - (format.precision - 1));
  const double r = std::nearbyint(x / ulp) * ulp;
  if (std::abs(r) > format.max_finite)
    return std::copysign(std::numeric_limits<double>::infinity(), x);
  return r;
}

void expect_same_value(double expected, float actual, float input) {
  ASSERT_FALSE(std::isnan(actual)) << "input " << input;
  EXPECT_EQ(static_cast<double>(actual), expected) << "input " << std::hexfloat << input;
  EXPECT_EQ(std::signbit(actual), std::signbit(expected)) << "input " << std::hexfloat << input;
}

/// Inputs that exercise every rounding decision of `format`: each representable value, each
/// midpoint between neighbours, and the floats just beside each midpoint (both signs; the overflow
/// boundary too).
std::vector<float> rounding_probes(const Format& format) {
  std::vector<double> values;
  for (std::uint32_t bits = 0; bits < 0x8000; ++bits) {
    const double v = decode(static_cast<std::uint16_t>(bits), format);
    if (std::isfinite(v)) values.push_back(v);
  }
  values.push_back(
      format.max_finite +
      std::ldexp(1.0, static_cast<int>(std::log2(format.max_finite)) - (format.precision - 1)));
  std::vector<float> probes;
  for (std::size_t i = 0; i + 1 < values.size(); ++i) {
    const auto mid = static_cast<float>((values[i] + values[i + 1]) / 2);  // exact: < 24 bits
    for (const float p : {static_cast<float>(values[i]), mid, std::nextafter(mid, 0.0f),
                          std::nextafter(mid, 1e38f)}) {
      probes.push_back(p);
      probes.push_back(-p);
    }
  }
  return probes;
}

TEST(Half, Fp16ToFloatMatchesTheFieldDecodingForAllPatterns) {
  for (std::uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto h = static_cast<std::uint16_t>(bits);
    const float f = fp16_bits_to_float(h);
    const double expected = decode(h, kFp16);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << bits;
      EXPECT_EQ(std::signbit(f), (bits & 0x8000) != 0) << std::hex << bits;
    } else {
      EXPECT_EQ(static_cast<double>(f), expected) << std::hex << bits;
      EXPECT_EQ(std::signbit(f), (bits & 0x8000) != 0) << std::hex << bits;
    }
  }
}

TEST(Half, Fp16RoundTripsEveryPatternExceptNanPayloadsExactly) {
  for (std::uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto h = static_cast<std::uint16_t>(bits);
    const std::uint16_t back = float_to_fp16_bits(fp16_bits_to_float(h));
    if ((bits & 0x7c00) == 0x7c00 && (bits & 0x03ff) != 0) {  // NaN: stays NaN, made quiet
      EXPECT_EQ(back & 0x7e00, 0x7e00) << std::hex << bits;
      EXPECT_EQ(back & 0x8000, bits & 0x8000) << std::hex << bits;
    } else {
      EXPECT_EQ(back, h) << std::hex << bits;
    }
  }
}

TEST(Half, FloatToFp16RoundsToNearestEvenAtEveryMidpoint) {
  ASSERT_EQ(std::fegetround(), FE_TONEAREST);
  for (const float x : rounding_probes(kFp16)) {
    expect_same_value(round_to(x, kFp16), fp16_bits_to_float(float_to_fp16_bits(x)), x);
  }
}

TEST(Half, FloatToFp16MatchesTheReferenceOnASweepOfAllFloatExponents) {
  // Stride 509 (prime) visits every exponent, sign and many mantissa bit mixes: ~8.4M inputs.
  for (std::uint64_t bits = 0; bits <= 0xffffffffu; bits += 509) {
    const float x = std::bit_cast<float>(static_cast<std::uint32_t>(bits));
    const std::uint16_t h = float_to_fp16_bits(x);
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(fp16_bits_to_float(h)));
      EXPECT_EQ(h & 0x0200, 0x0200) << "NaN must come out quiet";
      EXPECT_EQ((h & 0x8000) != 0, std::signbit(x));
      continue;
    }
    const double expected = std::isinf(x) ? static_cast<double>(x) : round_to(x, kFp16);
    const float got = fp16_bits_to_float(h);
    if (static_cast<double>(got) != expected || std::signbit(got) != std::signbit(expected)) {
      FAIL() << "input " << std::hexfloat << x << " gave " << got << ", expected " << expected;
    }
  }
}

TEST(Half, InfinitiesAndNansConvertToTheirFp16Counterparts) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(float_to_fp16_bits(inf), 0x7c00);
  EXPECT_EQ(float_to_fp16_bits(-inf), 0xfc00);
  EXPECT_EQ(float_to_fp16_bits(1e6f), 0x7c00);
  EXPECT_EQ(float_to_fp16_bits(-1e6f), 0xfc00);
  EXPECT_EQ(float_to_fp16_bits(std::numeric_limits<float>::quiet_NaN()) & 0x7e00, 0x7e00);
  // A signalling NaN whose payload lives only in the low 13 bits must not become an infinity.
  EXPECT_NE(float_to_fp16_bits(std::bit_cast<float>(0x7f800001u)), 0x7c00);
  EXPECT_TRUE(
      std::isnan(fp16_bits_to_float(float_to_fp16_bits(std::bit_cast<float>(0x7f800001u)))));
  EXPECT_TRUE(std::isinf(fp16_bits_to_float(0x7c00)));
  EXPECT_EQ(float_to_fp16_bits(-0.0f), 0x8000);
  EXPECT_EQ(float_to_fp16_bits(0x1p-25f), 0x0000);         // tie between 0 and 2^-24 -> even 0
  EXPECT_EQ(float_to_fp16_bits(0x1.000002p-25f), 0x0001);  // just above the tie
  EXPECT_EQ(float_to_fp16_bits(0x1.ff8p-15f), 0x03ff);     // the largest subnormal, exactly
  EXPECT_EQ(float_to_fp16_bits(0x1.ffcp-15f), 0x0400);     // its tie with 2^-14 -> the even normal
}

#if defined(__FLT16_MANT_DIG__)
TEST(Half, AgreesWithTheCompilersFloat16) {
  for (std::uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto h = static_cast<std::uint16_t>(bits);
    const auto native = static_cast<float>(std::bit_cast<_Float16>(h));
    const float ours = fp16_bits_to_float(h);
    if (std::isnan(native)) {
      EXPECT_TRUE(std::isnan(ours)) << std::hex << bits;
    } else {
      EXPECT_EQ(std::bit_cast<std::uint32_t>(ours), std::bit_cast<std::uint32_t>(native))
          << std::hex << bits;
    }
  }
  for (const float x : rounding_probes(kFp16)) {
    EXPECT_EQ(float_to_fp16_bits(x), std::bit_cast<std::uint16_t>(static_cast<_Float16>(x)))
        << std::hexfloat << x;
  }
}
#endif

TEST(Half, Bf16ToFloatMatchesTheFieldDecodingForAllPatterns) {
  for (std::uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto b = static_cast<std::uint16_t>(bits);
    const float f = bf16_bits_to_float(b);
    const double expected = decode(b, kBf16);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << bits;
    } else {
      EXPECT_EQ(static_cast<double>(f), expected) << std::hex << bits;
      EXPECT_EQ(std::signbit(f), (bits & 0x8000) != 0) << std::hex << bits;
    }
  }
}

TEST(Half, FloatToBf16RoundsToNearestEvenAtEveryMidpoint) {
  for (const float x : rounding_probes(kBf16)) {
    expect_same_value(round_to(x, kBf16), bf16_bits_to_float(float_to_bf16_bits(x)), x);
  }
}

TEST(Half, FloatToBf16KeepsNansNanAndOverflowsToInfinity) {
  // 0x7f80'0001 is a NaN whose payload would round away: it must stay a (quiet) NaN.
  const std::uint16_t nan = float_to_bf16_bits(std::bit_cast<float>(0x7f800001u));
  EXPECT_TRUE(std::isnan(bf16_bits_to_float(nan)));
  EXPECT_EQ(nan & 0x0040, 0x0040);
  EXPECT_EQ(float_to_bf16_bits(std::bit_cast<float>(0xff800001u)) & 0x8000, 0x8000);
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(float_to_bf16_bits(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::denorm_min()), 0x0000);  // tie -> even
}

}  // namespace
}  // namespace latentkv
