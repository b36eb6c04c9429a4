// The re-quantiser's AVX2 pieces (quantize_avx2.h) against the portable reference: the same scale
// errors to the bit, so QuantizeRow writes the bytes QuantizeRowReference writes on every CPU
// (replicas of a matrix quantised on different machines hold the same codes).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "shard_worker/kernels/dtype.h"
#include "shard_worker/kernels/matmul_avx2.h"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/kernels/quantize_avx2.h"

namespace glm::kernels {
namespace {

// A row with what checkpoints hold and what breaks quantisers: a Gaussian bulk with heavy tails,
// exact zeros, values at f16's edges, and (when asked) NaN / inf.
std::vector<float> AwkwardRow(std::mt19937& rng, int64_t cols, bool non_finite) {
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::uniform_int_distribution<int> pick(0, 99);
  std::vector<float> row(cols);
  for (int64_t c = 0; c < cols; ++c) {
    const int p = pick(rng);
    row[c] = p < 3 ? 0.0f : p < 6 ? normal(rng) * 40.0f : p < 8 ? normal(rng) * 1e-6f : normal(rng);
  }
  if (cols > 40 && pick(rng) < 30) {  // a group of only tiny or only huge values
    for (int64_t c = 0; c < 32; ++c) row[c] = pick(rng) < 50 ? normal(rng) * 1e-9f : normal(rng) * 1e8f;
  }
  if (non_finite && cols > 3) {
    row[cols / 2] = pick(rng) < 50 ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  }
  return row;
}

TEST(QuantizeSimdTest, ScaleErrorsMatchTheReferenceBitForBit) {
  if (!CpuSupportsAvx2MatMul()) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  std::mt19937 rng(7);
  for (int64_t n : {1, 5, 8, 13, 31, 32, 33, 64, 96, 100, 128, 1000}) {
    for (int trial = 0; trial < 20; ++trial) {
      const std::vector<float> w = AwkwardRow(rng, n, false);
      const float scales[] = {0.003f, 0.0029f, 1e-4f, 0.5f, 7.0f, 1e-8f};
      float ref[6], simd[6];
      for (auto [lo, hi] : {std::pair{-127.0f, 127.0f}, std::pair{-8.0f, 7.0f}}) {
        ScaleSearchErrorsReference(w.data(), n, scales, 6, lo, hi, ref);
        ScaleSearchErrorsAvx2(w.data(), n, scales, 6, lo, hi, simd);
        for (int j = 0; j < 6; ++j) ASSERT_EQ(ref[j], simd[j]) << "n " << n << " trial " << trial << " scale " << j;
      }
    }
  }
}

TEST(QuantizeSimdTest, QuantizeRowWritesTheReferenceBytes) {
  std::mt19937 rng(11);
  for (DType d : {DType::kI8, DType::kI4}) {
    for (int64_t cols : {1, 7, 31, 32, 33, 95, 96, 200, 1000}) {
      for (int64_t group : {int64_t{-1}, int64_t{32}, int64_t{64}, int64_t{96}}) {
        if (!CheckQuantGroupSize(d, group > 0 ? group : cols, cols).empty()) continue;
        for (int trial = 0; trial < 8; ++trial) {
          const std::vector<float> row = AwkwardRow(rng, cols, trial % 4 == 3);
          const int64_t groups = QuantGroupsPerRow(cols, group);
          std::vector<uint8_t> a(DTypeRowBytes(d, cols)), b(a.size());
          std::vector<uint16_t> sa(groups), sb(groups);
          QuantizeRow(d, row.data(), cols, group, a.data(), sa.data());
          QuantizeRowReference(d, row.data(), cols, group, b.data(), sb.data());
          ASSERT_EQ(sa, sb) << DTypeName(d) << " cols " << cols << " group " << group << " trial " << trial;
          ASSERT_EQ(a, b) << DTypeName(d) << " cols " << cols << " group " << group << " trial " << trial;
        }
      }
    }
  }
}

TEST(QuantizeSimdTest, F16CandidateScalesMatchF32ToF16) {
  if (!CpuSupportsAvx2MatMul()) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  // Finite bases across f32's range, and f16's edges: the largest finite value, the rounding
  // boundary to inf (65520), the smallest normal and subnormal, ties.
  std::vector<float> bases = {65504.0f, 65519.0f, 65520.0f, 65536.0f, 1e30f, 6.1035156e-05f, 6.0975552e-05f,
                              5.9604645e-08f, 2.9802322e-08f, 2.98023259e-08f, 1e-30f, 1.00048828125f, 0.0f, -0.0f};
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> exponent(-30.0f, 20.0f);
  for (int i = 0; i < 20000; ++i) bases.push_back((i % 2 ? -1.0f : 1.0f) * std::exp2(exponent(rng)));
  const float multipliers[] = {1.0f, 0.97f, 0.94f, -1 / 8.0f, -1 / 7.75f, -1 / 7.5f, -1 / 7.25f, 1 / 7.0f, 0.85f};
  for (float base : bases) {
    uint16_t ref16[9], simd16[9];
    float ref[9], simd[9];
    for (int n : {9, 8, 6}) {
      CandidateScalesAvx2(base, multipliers, n, simd16, simd);
      for (int j = 0; j < n; ++j) {
        ref16[j] = F32ToF16(base * multipliers[j]);
        ref[j] = F16ToF32(ref16[j]);
        ASSERT_EQ(simd16[j], ref16[j]) << base << " x " << multipliers[j];
        ASSERT_TRUE(simd[j] == ref[j] || (std::isnan(simd[j]) && std::isnan(ref[j]))) << base;
      }
    }
  }
}

TEST(QuantizeSimdTest, AbsMaxAndRoundingMatchTheReference) {
  if (!CpuSupportsAvx2MatMul()) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  std::mt19937 rng(3);
  for (int64_t n : {1, 7, 8, 9, 32, 45}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> w = AwkwardRow(rng, n, false);
      if (trial % 5 == 4) {  // ties: the first value of the largest magnitude counts
        float m = 0.0f;
        for (float v : w) m = std::max(m, std::fabs(v));
        w.back() = -m;
        w[n / 3] = m;
      }
      bool nan = true;
      float amax_ref = 0.0f, extreme_ref = 0.0f, extreme = 1.0f;
      for (float v : w)
        if (std::fabs(v) > amax_ref) {
          amax_ref = std::fabs(v);
          extreme_ref = v;
        }
      EXPECT_EQ(AbsMaxAvx2(w.data(), n, &nan, &extreme), amax_ref);
      EXPECT_EQ(extreme, extreme_ref);
      EXPECT_FALSE(nan);
      w[n / 2] = std::numeric_limits<float>::quiet_NaN();
      AbsMaxAvx2(w.data(), n, &nan, &extreme);
      EXPECT_TRUE(nan);
      w[n / 2] = 0.5f;
      // Halfway values round to even, as the reference's round-to-nearest does.
      std::vector<int8_t> q(n);
      const float s = 0.25f;
      for (int64_t i = 0; i < n; ++i) w[i] = (static_cast<float>(i % 17) - 8.5f) * s;
      RoundGroupAvx2(w.data(), n, s, -8.0f, 7.0f, q.data());
      for (int64_t i = 0; i < n; ++i) {
        const float x = std::clamp(w[i] / s, -8.0f, 7.0f);
        EXPECT_EQ(q[i], static_cast<int8_t>(std::nearbyint(x))) << i;
      }
    }
  }
}

// The one-pass group (QuantizeGroupFastAvx2) takes the common groups and gives the general path's
// scale and codes; the groups it declines are exactly the ones that need that path's care.
TEST(QuantizeSimdTest, OnePassGroupsMatchTheReferenceOrDecline) {
  if (!CpuSupportsAvx2MatMul()) GTEST_SKIP() << "no AVX2 + FMA + F16C on this CPU";
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (DType d : {DType::kI8, DType::kI4}) {
    for (int64_t n : {32, 64}) {
      int taken = 0;
      for (int trial = 0; trial < 400; ++trial) {
        std::vector<float> w(n);
        for (float& v : w) v = normal(rng);
        const int kind = trial % 8;
        if (kind == 1) w[trial % n] *= 60.0f;                                  // one heavy tail
        if (kind == 2) w[n - 1] = -std::fabs(w[0]) * 1.5f - 0.1f;              // the extreme last
        if (kind == 3) std::fill(w.begin(), w.end(), 0.0f);                    // all zero: declined
        if (kind == 4) w[n / 2] = std::numeric_limits<float>::quiet_NaN();     // NaN: declined
        if (kind == 5) w[n / 3] = -std::numeric_limits<float>::infinity();     // inf: declined
        if (kind == 6) for (float& v : w) v *= 1e-9f;                          // scales f16 flushes to 0
        if (kind == 7) for (float& v : w) v *= 1e8f;                           // scales over f16's range
        std::vector<uint8_t> ref(DTypeRowBytes(d, n));
        uint16_t ref_scale = 0;
        QuantizeRowReference(d, w.data(), n, n, ref.data(), &ref_scale);
        std::vector<int8_t> q(n, 99);
        uint16_t scale = 0xdead;
        const bool fast = QuantizeGroupFastAvx2(d, w.data(), n, q.data(), &scale);
        if (kind >= 3 && kind <= 5) EXPECT_FALSE(fast) << DTypeName(d) << " kind " << kind;
        if (kind <= 2) EXPECT_TRUE(fast) << DTypeName(d) << " kind " << kind;
        if (!fast) {
          EXPECT_EQ(scale, 0xdead);
          EXPECT_EQ(q, std::vector<int8_t>(n, 99));
          continue;
        }
        ++taken;
        std::vector<uint8_t> bytes(ref.size());
        if (d == DType::kI8) std::memcpy(bytes.data(), q.data(), n);
        else PackI4Row(q.data(), n, bytes.data());
        ASSERT_EQ(scale, ref_scale) << DTypeName(d) << " n " << n << " trial " << trial;
        ASSERT_EQ(bytes, ref) << DTypeName(d) << " n " << n << " trial " << trial;
      }
      EXPECT_GE(taken, 150) << DTypeName(d) << " n " << n;
    }
    // Other sizes always take the general path.
    std::vector<float> w(48, 0.01f);
    std::vector<int8_t> q(48);
    uint16_t scale = 0;
    EXPECT_FALSE(QuantizeGroupFastAvx2(d, w.data(), 48, q.data(), &scale));
  }
}

}  // namespace
}  // namespace glm::kernels
