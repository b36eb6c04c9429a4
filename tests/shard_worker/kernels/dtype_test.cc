#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "shard_worker/kernels/dtype.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace glm::kernels {
namespace {

TEST(DTypeTest, SizesAndNames) {
  EXPECT_EQ(DTypeSize(DType::kF32), 4);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2);
  EXPECT_EQ(DTypeSize(DType::kF8E4M3), 1);
  EXPECT_EQ(DTypeName(DType::kBF16), "BF16");
}

TEST(DTypeTest, Fp8TableKnownValues) {
  EXPECT_EQ(Fp8E4M3ToF32(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(Fp8E4M3ToF32(0x80)));
  EXPECT_EQ(Fp8E4M3ToF32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(Fp8E4M3ToF32(0x07), 7.0f * std::ldexp(1.0f, -9));
  EXPECT_EQ(Fp8E4M3ToF32(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(Fp8E4M3ToF32(0x38), 1.0f);
  EXPECT_EQ(Fp8E4M3ToF32(0x7e), 448.0f);
  EXPECT_EQ(Fp8E4M3ToF32(0xfe), -448.0f);
  EXPECT_TRUE(std::isnan(Fp8E4M3ToF32(0x7f)));
  EXPECT_TRUE(std::isnan(Fp8E4M3ToF32(0xff)));
  // Positive codes are strictly increasing, negative ones mirror them.
  for (int i = 1; i < 0x7f; ++i) EXPECT_LT(Fp8E4M3ToF32(i - 1), Fp8E4M3ToF32(i)) << i;
  for (int i = 0; i < 0x7f; ++i) EXPECT_EQ(Fp8E4M3ToF32(i | 0x80), -Fp8E4M3ToF32(i)) << i;
}

TEST(DTypeTest, Fp8RoundTripsEveryCode) {
  for (int i = 0; i < 256; ++i) {
    if ((i & 0x7f) == 0x7f) continue;
    EXPECT_EQ(F32ToFp8E4M3(Fp8E4M3ToF32(static_cast<uint8_t>(i))), i) << i;
  }
}

TEST(DTypeTest, Fp8RoundsToNearestEvenAndSaturates) {
  // 1.0 (0x38) and 1.125 (0x39): the midpoint goes to the even code.
  EXPECT_EQ(F32ToFp8E4M3(1.0625f), 0x38);
  EXPECT_EQ(F32ToFp8E4M3(1.07f), 0x39);
  // 1.125 (0x39) and 1.25 (0x3a): midpoint to even 0x3a.
  EXPECT_EQ(F32ToFp8E4M3(1.1875f), 0x3a);
  EXPECT_EQ(F32ToFp8E4M3(1000.0f), 0x7e);
  EXPECT_EQ(F32ToFp8E4M3(-1000.0f), 0xfe);
  EXPECT_EQ(F32ToFp8E4M3(1e-9f), 0x00);
  EXPECT_EQ(F32ToFp8E4M3(-0.0f), 0x80);
  EXPECT_EQ(F32ToFp8E4M3(NAN) & 0x7f, 0x7f);
}

TEST(DTypeTest, Bf16RoundTripAndRounding) {
  EXPECT_EQ(Bf16ToF32(0x3f80), 1.0f);
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (down).
  EXPECT_EQ(F32ToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up to even.
  EXPECT_EQ(F32ToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(F32ToBf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 0x3f81);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(NAN))));
  EXPECT_EQ(Bf16ToF32(F32ToBf16(INFINITY)), INFINITY);
  for (uint32_t v = 0; v < 0x10000; v += 7) {
    float f = Bf16ToF32(static_cast<uint16_t>(v));
    if (!std::isnan(f)) {
      EXPECT_EQ(F32ToBf16(f), v);
    }
  }
}

TEST(DTypeTest, F16EveryCodeRoundTrips) {
  for (uint32_t v = 0; v < 0x10000; ++v) {
    const uint16_t h = static_cast<uint16_t>(v);
    const float f = F16ToF32(h);
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << v;
      ASSERT_TRUE(std::isnan(F16ToF32(F32ToF16(f)))) << std::hex << v;
      continue;
    }
    ASSERT_EQ(F32ToF16(f), h) << std::hex << v;
  }
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(F16ToF32(0x7bff), 65504.0f);
  EXPECT_EQ(F16ToF32(0xfc00), -INFINITY);
}

TEST(DTypeTest, F16RoundsToNearestEven) {
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie: down to even
  EXPECT_EQ(F32ToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie: up to even
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  EXPECT_EQ(F32ToF16(65519.0f), 0x7bff);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);  // the tie above the largest finite goes to inf
  EXPECT_EQ(F32ToF16(-1e30f), 0xfc00);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);         // tie between 0 and 2^-24: 0
  EXPECT_EQ(F32ToF16(1.5f * std::ldexp(1.0f, -25)), 0x0001);
  EXPECT_EQ(F32ToF16(3 * std::ldexp(1.0f, -25)), 0x0002);     // tie 1.5 · 2^-24: up to even
  EXPECT_EQ(F32ToF16(-std::ldexp(1.0f, -30)), 0x8000);        // underflow keeps the sign
  EXPECT_EQ(F32ToF16(std::ldexp(1023.5f, -24)), 0x0400);      // rounds up into the normals
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(NAN))));
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) uint16_t HardwareF16(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// F32ToF16 is what vcvtps2ph gives, on every exponent (random bit patterns) — NaN payloads aside.
TEST(DTypeTest, F16MatchesTheHardwareConversion) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "no F16C here";
  uint32_t state = 12345;
  for (int i = 0; i < 2000000; ++i) {
    state = state * 1664525u + 1013904223u;
    float f;
    std::memcpy(&f, &state, sizeof f);
    if (std::isnan(f)) continue;
    ASSERT_EQ(F32ToF16(f), HardwareF16(f)) << std::hexfloat << f;
  }
}
#endif

}  // namespace
}  // namespace glm::kernels
