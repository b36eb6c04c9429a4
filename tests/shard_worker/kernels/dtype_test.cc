#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "shard_worker/kernels/dtype.h"

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

}  // namespace
}  // namespace glm::kernels
