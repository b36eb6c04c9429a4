// Int8RowDots (the DSA indexer's scores over int8 keys) against its scalar reference, bit for bit on
// every path this CPU has, over awkward shapes (query counts around the 8- and 16-lane groups,
// lengths that are not multiples of 4 or 64), scattered key rows and rows of very different
// magnitudes; and against the real-valued dot of the dequantised rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "shard_worker/kernels/int8_row_dots.h"
#include "shard_worker/kernels/vector_ops.h"

namespace glm::kernels {
namespace {

struct Keys {
  std::vector<std::vector<int8_t>> storage;
  std::vector<const int8_t*> rows;  // shuffled: the indexer lists scattered rows
};

Keys MakeKeys(int64_t n, int64_t d, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  Keys k;
  k.storage.resize(n);
  std::vector<float> x(d);
  for (int64_t s = 0; s < n; ++s) {
    const float magnitude = std::ldexp(1.0f, static_cast<int>(rng() % 40) - 20);
    for (float& v : x) v = nd(rng) * magnitude;
    if (s % 17 == 5) std::fill(x.begin(), x.end(), 0.0f);  // an all-zero key
    k.storage[s].resize(ScaledRowBytes(d));
    WriteInt8Row(x.data(), d, k.storage[s].data());
  }
  for (int64_t s = n - 1; s >= 0; --s) k.rows.push_back(k.storage[(s * 7) % n].data());
  return k;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Int8RowDotsTest, EveryPathGivesTheReferenceBits) {
  std::printf("Int8RowDots path here: %s\n", Int8RowDotsPath());
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  for (int64_t d : {1, 5, 24, 32, 64, 100, 128, 260}) {
    for (int nq : {1, 3, 4, 8, 9, 16, 17, 32, 33}) {
      for (int64_t n : {1, 7, 16, 31, 70}) {
        SCOPED_TRACE(::testing::Message() << "d " << d << " queries " << nq << " keys " << n);
        std::vector<float> qf(nq * d);
        for (int h = 0; h < nq; ++h)
          for (int64_t i = 0; i < d; ++i) qf[h * d + i] = h == 2 ? 0.0f : nd(rng) * static_cast<float>(1 + h);
        Int8QueryRows q;
        q.Quantize(qf.data(), nq, d, /*every_layout=*/true);
        const Keys keys = MakeKeys(n, d, rng);
        const int64_t stride = n + 3;
        std::vector<float> want(nq * stride, -1.0f), got = want;
        Int8RowDotsReference(q, keys.rows.data(), n, want.data(), stride);
        if (Int8RowDotsAvx512Vnni(q, keys.rows.data(), n, got.data(), stride)) {
          ASSERT_TRUE(SameBits(got, want)) << "avx512-vnni";
        }
        std::fill(got.begin(), got.end(), -1.0f);
        if (Int8RowDotsAvx2(q, keys.rows.data(), n, got.data(), stride)) {
          ASSERT_TRUE(SameBits(got, want)) << "avx2";
        }
        std::fill(got.begin(), got.end(), -1.0f);
        Int8RowDots(q, keys.rows.data(), n, got.data(), stride);
        ASSERT_TRUE(SameBits(got, want)) << Int8RowDotsPath();
        // The scores are the dequantised rows' dots: the integer sum is exact and the two scale
        // products round twice.
        for (int h = 0; h < nq; ++h) {
          for (int64_t s = 0; s < n; ++s) {
            double exact = 0, magnitude = 0;  // the terms' rounding in double: ~1e-16 of their sum
            for (int64_t i = 0; i < d; ++i) {
              const double term = static_cast<double>(q.codes(h)[i]) * q.scale(h) * keys.rows[s][i] *
                                  ScaledRowScale(keys.rows[s], d);
              exact += term;
              magnitude += std::fabs(term);
            }
            ASSERT_NEAR(want[h * stride + s], exact, std::fabs(exact) * 3e-7 + magnitude * 1e-12) << h << " " << s;
          }
          ASSERT_EQ(want[h * stride + n], -1.0f);  // nothing past n_rows written
        }
      }
    }
  }
}

// The query rows are QuantizeAbsMax's codes (max|q| / 127 scales, round to nearest even), zero rows
// score 0 and a row holding a NaN or an infinity scores NaN against every key (never a finite
// value), as does a key row written from one.
TEST(Int8RowDotsTest, QuantisedQueriesZeroAndNonFiniteRows) {
  const int64_t d = 6;
  std::vector<float> qf = {127, -63.5f, 0.5f, 1.5f, -127, 2,  // scale 1: codes round to even
                           0, 0, 0, 0, 0, 0,
                           1, std::numeric_limits<float>::infinity(), 0, 0, 0, 0};
  Int8QueryRows q;
  q.Quantize(qf.data(), 3, d);
  EXPECT_EQ(q.scale(0), 1.0f);
  const std::vector<int8_t> want_codes = {127, -64, 0, 2, -127, 2, 0, 0};  // padded to 8 with zeros
  EXPECT_EQ(std::vector<int8_t>(q.codes(0), q.codes(0) + 8), want_codes);
  EXPECT_EQ(q.scale(1), 0.0f);
  EXPECT_TRUE(std::isnan(q.scale(2)));
  std::vector<float> key = {1, 2, 3, 4, 5, 6}, bad = {1, std::numeric_limits<float>::quiet_NaN(), 0, 0, 0, 0};
  std::vector<int8_t> k0(ScaledRowBytes(d)), k1(ScaledRowBytes(d));
  WriteInt8Row(key.data(), d, k0.data());
  WriteInt8Row(bad.data(), d, k1.data());
  const int8_t* rows[2] = {k0.data(), k1.data()};
  std::vector<float> out(6);
  Int8RowDots(q, rows, 2, out.data(), 2);
  EXPECT_TRUE(std::isfinite(out[0]));
  EXPECT_TRUE(std::isnan(out[1]));
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_TRUE(std::isnan(out[3]));
  EXPECT_TRUE(std::isnan(out[4]));
  EXPECT_TRUE(std::isnan(out[5]));
}

// Int8RowWeightedSum: bit for bit the reference on every path, over head counts around the 8-head
// passes, lengths around the 32- and 16-value chunks, key counts around the 64-key blocks (odd ones
// included); calls over parts of the list that start at multiples of 64 give one call's bits; and
// the sums are the real-valued weighted sums of the dequantised rows to the weights' 16-bit rounding.
TEST(Int8RowDotsTest, WeightedSumEveryPathGivesTheReferenceBits) {
  std::mt19937 rng(12);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  for (int64_t d : {1, 7, 16, 24, 33, 64, 100, 512}) {
    for (int nq : {1, 3, 6, 7, 8, 9, 17}) {  // passes of 8, 4, 2 and 1 heads
      for (int64_t n : {1, 2, 63, 64, 65, 130}) {
        SCOPED_TRACE(::testing::Message() << "d " << d << " heads " << nq << " keys " << n);
        const Keys keys = MakeKeys(n, d, rng);
        const int64_t w_stride = n + 5, out_stride = d + 3;
        std::vector<float> w(nq * w_stride);
        for (float& v : w) v = uniform(rng) * uniform(rng);  // softmax-like: many small weights
        std::vector<float> start(nq * out_stride);
        for (float& v : start) v = uniform(rng) - 0.5f;
        std::vector<float> want = start, got = start;
        Int8RowWeightedSumReference(w.data(), w_stride, nq, keys.rows.data(), n, d, want.data(), out_stride);
        if (Int8RowWeightedSumAvx512Vnni(w.data(), w_stride, nq, keys.rows.data(), n, d, got.data(), out_stride)) {
          ASSERT_TRUE(SameBits(got, want)) << "avx512-vnni";
        }
        got = start;
        if (Int8RowWeightedSumAvx2(w.data(), w_stride, nq, keys.rows.data(), n, d, got.data(), out_stride)) {
          ASSERT_TRUE(SameBits(got, want)) << "avx2";
        }
        got = start;
        for (int64_t k0 = 0; k0 < n; k0 += 64)  // as MlaAttention calls it, a block of keys at a time
          Int8RowWeightedSum(w.data() + k0, w_stride, nq, keys.rows.data() + k0, std::min<int64_t>(64, n - k0), d,
                             got.data(), out_stride);
        ASSERT_TRUE(SameBits(got, want)) << "in blocks";
        for (int h = 0; h < nq; ++h) {
          for (int64_t i = 0; i < d; ++i) {
            // The weights' rounding moves a term by at most (its block's max |w'| / 65534) · |code|;
            // the f32 arithmetic by ~1e-7 of the terms' magnitudes.
            double exact = start[h * out_stride + i], magnitude = std::fabs(exact), rounding = 0;
            for (int64_t b0 = 0; b0 < n; b0 += 64) {
              double block_max = 0, codes = 0;
              for (int64_t k = b0; k < std::min<int64_t>(n, b0 + 64); ++k) {
                const double folded = static_cast<double>(w[h * w_stride + k]) * ScaledRowScale(keys.rows[k], d);
                block_max = std::max(block_max, std::fabs(folded));
                codes += std::abs(keys.rows[k][i]);
                exact += folded * keys.rows[k][i];
                magnitude += std::fabs(folded * keys.rows[k][i]);
              }
              rounding += block_max / 65534 * codes;
            }
            ASSERT_NEAR(want[h * out_stride + i], exact, rounding * 1.01 + magnitude * 1e-6) << h << " " << i;
          }
          ASSERT_EQ(want[h * out_stride + d], start[h * out_stride + d]);  // nothing past d written
        }
      }
    }
  }
}

// A NaN weight, or a row written from a NaN (its scale is NaN), makes the head's sums NaN; zero
// weights leave the output as it was — on every path.
TEST(Int8RowDotsTest, WeightedSumNonFiniteAndZeroWeights) {
  using Path = bool (*)(const float*, int64_t, int, const int8_t* const*, int64_t, int64_t, float*, int64_t);
  const Path paths[] = {
      [](const float* w, int64_t ws, int nq, const int8_t* const* r, int64_t n, int64_t d, float* o, int64_t os) {
        Int8RowWeightedSumReference(w, ws, nq, r, n, d, o, os);
        return true;
      },
      &Int8RowWeightedSumAvx512Vnni, &Int8RowWeightedSumAvx2};
  for (Path path : paths) {
    std::mt19937 rng(13);
    const int64_t d = 40, n = 70;
    Keys keys = MakeKeys(n, d, rng);
    std::vector<float> w(3 * n, 0.25f);
    w[n + 5] = std::numeric_limits<float>::quiet_NaN();  // head 1
    std::fill(w.begin() + 2 * n, w.end(), 0.0f);          // head 2
    std::vector<float> out(3 * d, 1.5f);
    if (!path(w.data(), n, 3, keys.rows.data(), n, d, out.data(), d)) continue;  // not on this CPU
    for (int64_t i = 0; i < d; ++i) {
      EXPECT_TRUE(std::isfinite(out[i])) << i;
      EXPECT_TRUE(std::isnan(out[d + i])) << i;
      EXPECT_EQ(out[2 * d + i], 1.5f) << i;
    }
    std::vector<float> bad(d, 1.0f);
    bad[3] = std::numeric_limits<float>::infinity();
    std::vector<int8_t> bad_row(ScaledRowBytes(d));
    WriteInt8Row(bad.data(), d, bad_row.data());
    keys.rows[10] = bad_row.data();
    std::vector<float> one(d, 0.0f);
    path(w.data(), n, 1, keys.rows.data(), n, d, one.data(), d);
    for (int64_t i = 0; i < d; ++i) EXPECT_TRUE(std::isnan(one[i])) << i;
  }
}

}  // namespace
}  // namespace glm::kernels
