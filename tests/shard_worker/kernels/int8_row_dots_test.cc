// Int8RowDots (the DSA indexer's scores over int8 keys) against its scalar reference, bit for bit on
// every path this CPU has, over awkward shapes (query counts around the 8- and 16-lane groups,
// lengths that are not multiples of 4 or 64), scattered key rows and rows of very different
// magnitudes; and against the real-valued dot of the dequantised rows.
#include <gtest/gtest.h>

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
        q.Quantize(qf.data(), nq, d);
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

}  // namespace
}  // namespace glm::kernels
