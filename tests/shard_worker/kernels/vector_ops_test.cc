// The attention / router vector primitives against their scalar twins on awkward lengths (not
// multiples of any vector width), and invariance bit for bit: attention must not change when
// heads are grouped differently, or keys come in another batch or block.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "shard_worker/kernels/dtype.h"
#include "shard_worker/kernels/matmul_avx2.h"
#include "shard_worker/kernels/vector_ops.h"
#include "shard_worker/kernels/vector_ops_avx2.h"

namespace glm::kernels {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

constexpr int64_t kLengths[] = {1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 256, 257, 320};

void ExpectDotAndAxpyMatchScalarTwins(float (*dot)(const float*, const float*, int64_t),
                                      void (*axpy)(float, const float*, float*, int64_t)) {
  for (int64_t n : kLengths) {
    auto a = Random(n, 1), b = Random(n, 2);
    EXPECT_NEAR(dot(a.data(), b.data(), n), DotReference(a.data(), b.data(), n), 1e-4 * std::sqrt(n)) << n;
    auto y1 = Random(n, 3), y2 = y1;
    axpy(0.37f, a.data(), y1.data(), n);
    AxpyReference(0.37f, a.data(), y2.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y1[i], y2[i], 1e-5) << n << " " << i;
  }
}

TEST(VectorOpsTest, DotAndAxpyMatchScalarTwins) { ExpectDotAndAxpyMatchScalarTwins(&Dot, &Axpy); }

TEST(VectorOpsTest, AddScaleIsTheScalarLoopBitForBit) {
  for (int64_t n : kLengths) {
    auto a = Random(n, 4), b = Random(n, 5);
    std::vector<float> got(n), want(n);
    AddScale(a.data(), b.data(), 0.125f * 1.37f, got.data(), n);
    AddScaleReference(a.data(), b.data(), 0.125f * 1.37f, want.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], want[i]) << n << " " << i;
    AddScale(a.data(), b.data(), 0.5f, a.data(), n);  // in place, as attention uses it
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(a[i], (Random(n, 4)[i] + b[i]) * 0.5f) << n << " " << i;
  }
}

TEST(VectorOpsTest, ReluAccumulateIsTheScalarLoopBitForBit) {
  for (int64_t n : kLengths) {
    auto x = Random(n, 6), y0 = Random(n, 7);
    for (float& v : y0) v = std::fabs(v);  // sums of ReLU terms: never -0
    for (float alpha : {0.3f, -1.7f}) {
      auto got = y0, want = y0;
      ReluAccumulate(x.data(), 0.17677669f, alpha, got.data(), n);
      ReluAccumulateReference(x.data(), 0.17677669f, alpha, want.data(), n);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], want[i]) << n << " " << i;
    }
  }
}

TEST(VectorOpsTest, DotRowsMatchesScalarTwinAndNeverDependsOnItsCompany) {
  for (int64_t n : kLengths) {
    const int64_t n_rows = 37, q_stride = n + 3;  // 37: two full blocks of 16 and a partial one
    auto q = Random(kMaxQueries * q_stride, 4), data = Random(n_rows * (n + 5), 5);
    std::vector<const float*> rows;
    for (int64_t k = n_rows - 1; k >= 0; --k) rows.push_back(data.data() + k * (n + 5));  // any order, any stride
    std::vector<float> all(kMaxQueries * n_rows);
    DotRows(q.data(), q_stride, kMaxQueries, rows.data(), n_rows, n, all.data(), n_rows);
    for (int j = 0; j < kMaxQueries; ++j)
      for (int64_t k = 0; k < n_rows; ++k)
        ASSERT_NEAR(all[j * n_rows + k], DotReference(q.data() + j * q_stride, rows[k], n), 1e-4 * std::sqrt(n))
            << n << " " << j << " " << k;
    // Each query alone, each row alone, and a row list starting elsewhere: bit-identical.
    for (int nq = 1; nq <= kMaxQueries; ++nq) {
      std::vector<float> out(nq * (n_rows + 2), -1.0f);
      DotRows(q.data(), q_stride, nq, rows.data(), n_rows, n, out.data(), n_rows + 2);
      for (int j = 0; j < nq; ++j)
        for (int64_t k = 0; k < n_rows; ++k) ASSERT_EQ(out[j * (n_rows + 2) + k], all[j * n_rows + k]) << n << " " << nq;
    }
    for (int64_t k = 0; k < n_rows; ++k) {
      float one = 0;
      DotRows(q.data() + 2 * q_stride, q_stride, 1, rows.data() + k, 1, n, &one, 1);
      ASSERT_EQ(one, all[2 * n_rows + k]) << n << " " << k;
    }
    std::vector<float> tail(n_rows - 5);
    DotRows(q.data(), q_stride, 1, rows.data() + 5, n_rows - 5, n, tail.data(), 1);
    for (int64_t k = 5; k < n_rows; ++k) ASSERT_EQ(tail[k - 5], all[k]) << n << " " << k;
  }
}

TEST(VectorOpsTest, WeightedRowSumIsAxpyInRowOrder) {
  for (int64_t n : kLengths) {
    const int64_t n_rows = 11, w_stride = n_rows + 1, y_stride = n + 2;
    auto w = Random(kMaxQueries * w_stride, 6), data = Random(n_rows * n, 7);
    std::vector<const float*> rows;
    for (int64_t k = 0; k < n_rows; ++k) rows.push_back(data.data() + ((k * 5) % n_rows) * n);
    for (int nq = 1; nq <= kMaxQueries; ++nq) {
      auto y = Random(nq * y_stride, 8), want = y, ref = y;
      WeightedRowSum(w.data(), w_stride, nq, rows.data(), n_rows, n, y.data(), y_stride);
      for (int64_t k = 0; k < n_rows; ++k)
        for (int j = 0; j < nq; ++j) {
          Axpy(w[j * w_stride + k], rows[k], want.data() + j * y_stride, n);
          AxpyReference(w[j * w_stride + k], rows[k], ref.data() + j * y_stride, n);
        }
      for (int j = 0; j < nq; ++j)
        for (int64_t i = 0; i < y_stride; ++i) {
          ASSERT_EQ(y[j * y_stride + i], want[j * y_stride + i]) << n << " " << nq << " " << i;  // padding untouched too
          ASSERT_NEAR(y[j * y_stride + i], ref[j * y_stride + i], 1e-4);
        }
    }
  }
}

// BF16 rows (a --kv-cache-dtype bf16 cache): the overloads give exactly what the f32 kernels
// give on the rows widened to f32, on every length and query count, rows in any order and with
// padding past each row that must not be read into the result.
TEST(VectorOpsTest, Bf16RowsGiveTheF32KernelsBitsOnTheWidenedRows) {
  for (int64_t n : kLengths) {
    const int64_t n_rows = 37, stride = n + 5, q_stride = n + 3, y_stride = n + 2;
    auto q = Random(kMaxQueries * q_stride, 14), values = Random(n_rows * stride, 15);
    std::vector<uint16_t> bf16(values.size());
    std::vector<float> widened(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      bf16[i] = F32ToBf16(values[i]);
      widened[i] = Bf16ToF32(bf16[i]);
    }
    std::vector<const uint16_t*> rows;
    std::vector<const float*> f32_rows;
    for (int64_t k = 0; k < n_rows; ++k) {
      const int64_t at = ((k * 11) % n_rows) * stride;  // any order
      rows.push_back(bf16.data() + at);
      f32_rows.push_back(widened.data() + at);
    }
    for (int nq = 1; nq <= kMaxQueries; ++nq) {
      for (int64_t first : {int64_t{0}, int64_t{5}}) {
        const int64_t m = n_rows - first;
        std::vector<float> got(nq * m, -1.0f), want(nq * m, -2.0f);
        DotRows(q.data(), q_stride, nq, rows.data() + first, m, n, got.data(), m);
        DotRows(q.data(), q_stride, nq, f32_rows.data() + first, m, n, want.data(), m);
        for (int64_t i = 0; i < nq * m; ++i) ASSERT_EQ(got[i], want[i]) << n << " " << nq << " " << i;
      }
      auto w = Random(nq * (n_rows + 1), 16), y = Random(nq * y_stride, 17), want = y;
      WeightedRowSum(w.data(), n_rows + 1, nq, rows.data(), n_rows, n, y.data(), y_stride);
      WeightedRowSum(w.data(), n_rows + 1, nq, f32_rows.data(), n_rows, n, want.data(), y_stride);
      for (int64_t i = 0; i < nq * y_stride; ++i) ASSERT_EQ(y[i], want[i]) << n << " " << nq << " " << i;
    }
  }
}

// Scaled 8-bit rows (a --kv-cache-dtype fp8 | int8 cache): one-byte codes and an f32 scale a row.
// The overloads give exactly the f32 kernels' bits on the rows widened to the codes' values, times
// each row's scale (DotRows) or with the scale folded into the weights (WeightedRowSum), on every
// length and query count, rows in any order, bytes past each row's scale that must not be read.
// `code` draws a code, `value` is its value, `scale` draws a row's scale.
template <typename Row, typename Code, typename Value, typename Scale>
void ExpectScaledRowsGiveTheF32KernelsBitsTimesTheirScales(Code code, Value value, Scale scale) {
  std::mt19937 rng(21);
  for (int64_t n : kLengths) {
    const int64_t n_rows = 37, stride = ScaledRowBytes(n) + 3, q_stride = n + 3, y_stride = n + 2;
    auto q = Random(kMaxQueries * q_stride, 14);
    std::vector<uint8_t> bytes(n_rows * stride);
    for (auto& b : bytes) b = code(rng);
    std::vector<float> widened(n_rows * n), scales(n_rows);
    for (int64_t k = 0; k < n_rows; ++k) {
      scales[k] = scale(rng);
      std::memcpy(bytes.data() + k * stride + ScaledRowScaleOffset(n), &scales[k], sizeof(float));
      for (int64_t i = 0; i < n; ++i) widened[k * n + i] = value(bytes[k * stride + i]);
    }
    std::vector<const Row*> rows;
    std::vector<const float*> f32_rows;
    std::vector<float> row_scale;
    for (int64_t k = 0; k < n_rows; ++k) {
      const int64_t r = (k * 11) % n_rows;  // any order
      rows.push_back(reinterpret_cast<const Row*>(bytes.data() + r * stride));
      f32_rows.push_back(widened.data() + r * n);
      row_scale.push_back(scales[r]);
      ASSERT_EQ(ScaledRowScale(rows.back(), n), scales[r]);
    }
    for (int nq = 1; nq <= kMaxQueries; ++nq) {
      for (int64_t first : {int64_t{0}, int64_t{5}}) {
        const int64_t m = n_rows - first;
        std::vector<float> got(nq * m, -1.0f), want(nq * m, -2.0f);
        DotRows(q.data(), q_stride, nq, rows.data() + first, m, n, got.data(), m);
        DotRows(q.data(), q_stride, nq, f32_rows.data() + first, m, n, want.data(), m);
        for (int j = 0; j < nq; ++j)
          for (int64_t k = 0; k < m; ++k)
            ASSERT_EQ(got[j * m + k], want[j * m + k] * row_scale[first + k]) << n << " " << nq << " " << k;
        std::vector<float> widened_path(nq * m, -3.0f);  // the AVX2 / portable paths' way
        DotRowsWidened(q.data(), q_stride, nq, rows.data() + first, m, n, widened_path.data(), m);
        for (int64_t i = 0; i < nq * m; ++i) ASSERT_EQ(widened_path[i], got[i]) << n << " " << nq << " " << i;
      }
      auto w = Random(nq * (n_rows + 1), 16), y = Random(nq * y_stride, 17), want = y;
      std::vector<float> scaled_w(nq * n_rows);
      for (int j = 0; j < nq; ++j)
        for (int64_t k = 0; k < n_rows; ++k) scaled_w[j * n_rows + k] = w[j * (n_rows + 1) + k] * row_scale[k];
      auto widened_path = y;
      WeightedRowSum(w.data(), n_rows + 1, nq, rows.data(), n_rows, n, y.data(), y_stride);
      WeightedRowSum(scaled_w.data(), n_rows, nq, f32_rows.data(), n_rows, n, want.data(), y_stride);
      WeightedRowSumWidened(w.data(), n_rows + 1, nq, rows.data(), n_rows, n, widened_path.data(), y_stride);
      for (int64_t i = 0; i < nq * y_stride; ++i) ASSERT_EQ(y[i], want[i]) << n << " " << nq << " " << i;
      for (int64_t i = 0; i < nq * y_stride; ++i) ASSERT_EQ(widened_path[i], want[i]) << n << " " << nq << " " << i;
    }
  }
}

TEST(VectorOpsTest, Fp8RowsGiveTheF32KernelsBitsOnTheWidenedRowsTimesTheirScales) {
  ExpectScaledRowsGiveTheF32KernelsBitsTimesTheirScales<uint8_t>(
      [](std::mt19937& rng) {
        const auto b = static_cast<uint8_t>(rng());
        return b;  // the NaN codes too (read as ±480 by every path)
      },
      [](uint8_t b) { return Fp8RowCodeToF32(b); },
      [](std::mt19937& rng) { return std::ldexp(1.0f, static_cast<int>(rng() % 41) - 20); });
}

// Int8 rows: any code (-128 included, which WriteInt8Row never writes) and any scale.
TEST(VectorOpsTest, Int8RowsGiveTheF32KernelsBitsOnTheWidenedRowsTimesTheirScales) {
  ExpectScaledRowsGiveTheF32KernelsBitsTimesTheirScales<int8_t>(
      [](std::mt19937& rng) { return static_cast<uint8_t>(rng()); },
      [](uint8_t b) { return static_cast<float>(static_cast<int8_t>(b)); },
      [](std::mt19937& rng) { return std::uniform_real_distribution<float>(1e-4f, 10.0f)(rng); });
}

// WriteInt8Row: s = max|x| / 127, every code the nearest integer to x / s (so within s / 2 of the
// value, and ±127 at the largest), an all-zero row with scale 1, rows of any magnitude.
TEST(VectorOpsTest, Int8RowWritesTheNearestCodesOfItsAbsMaxScale) {
  for (float magnitude : {1e-30f, 1e-6f, 0.01f, 1.0f, 448.0f, 1e20f}) {
    for (int64_t n : {int64_t{1}, int64_t{17}, int64_t{64}, int64_t{513}}) {
      auto x = Random(n, static_cast<uint32_t>(n) + 3);
      for (auto& v : x) v *= magnitude;
      std::vector<int8_t> row(ScaledRowBytes(n), 0x5A);
      WriteInt8Row(x.data(), n, row.data());
      const float s = ScaledRowScale(row.data(), n);
      float amax = 0;
      for (float v : x) amax = std::max(amax, std::fabs(v));
      EXPECT_EQ(s, amax / 127.0f);
      bool reached = false;
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_GE(row[i], -127);
        ASSERT_LE(std::fabs(row[i] * s - x[i]), s * 0.5f * (1 + 1e-5f)) << magnitude << " " << n << " " << i;
        reached |= std::abs(row[i]) == 127;
      }
      EXPECT_TRUE(reached) << "the largest value maps to +-127";
      for (int64_t i = n; i < ScaledRowScaleOffset(n); ++i) EXPECT_EQ(row[i], 0) << "padding";
    }
  }
  std::vector<float> zeros(5, 0.0f);
  std::vector<int8_t> row(ScaledRowBytes(5));
  WriteInt8Row(zeros.data(), 5, row.data());
  EXPECT_EQ(ScaledRowScale(row.data(), 5), 1.0f);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(row[i], 0);
}

// Every one of the 256 codes reads back as Fp8RowCodeToF32 gives it (the table's value: subnormals,
// ±0, ±448; the NaN codes, never written, as ±480) in any lane of a row, including a masked tail.
TEST(VectorOpsTest, Fp8RowsReadEveryCodeAsTheTableDoes) {
  for (int64_t n : {int64_t{16}, int64_t{19}}) {
    std::vector<uint8_t> row(ScaledRowBytes(n), 0);
    const float one = 1.0f;
    std::memcpy(row.data() + ScaledRowScaleOffset(n), &one, sizeof(one));
    const uint8_t* rows[1] = {row.data()};
    for (int64_t lane : {int64_t{0}, int64_t{5}, n - 1}) {
      std::vector<float> q(n, 0.0f);
      q[lane] = 1.0f;
      for (int code = 0; code < 256; ++code) {
        std::fill(row.begin(), row.begin() + n, uint8_t{0});
        row[lane] = static_cast<uint8_t>(code);
        float got = 0;
        DotRows(q.data(), n, 1, rows, 1, n, &got, 1);
        const float want = Fp8RowCodeToF32(static_cast<uint8_t>(code));
        EXPECT_EQ(got, want) << code << " lane " << lane;
        if ((code & 0x7f) != 0x7f) EXPECT_EQ(want, Fp8E4M3ToF32(static_cast<uint8_t>(code))) << code;
      }
    }
  }
}

// WriteFp8Row: the scale is the smallest power of two that brings the row's largest magnitude to
// at most 448 (so it lands in (224, 448]), every value is within e4m3's half step of the original
// (relative 2^-4 for normals, absolute s·2^-10 below them), and rows of zeros, of tiny and of huge
// magnitudes are stored without overflow or flushing everything to zero.
TEST(VectorOpsTest, Fp8RowWritesAPowerOfTwoScaleAndTheNearestCodes) {
  for (float magnitude : {1e-30f, 1e-6f, 0.01f, 1.0f, 3.0f, 448.0f, 1e5f, 1e20f}) {
    for (int64_t n : {int64_t{1}, int64_t{17}, int64_t{64}, int64_t{513}}) {
      auto x = Random(n, static_cast<uint32_t>(n));
      for (auto& v : x) v *= magnitude;
      std::vector<uint8_t> row(ScaledRowBytes(n), 0xAB);
      WriteFp8Row(x.data(), n, row.data());
      const float s = ScaledRowScale(row.data(), n);
      int e = 0;
      ASSERT_EQ(std::frexp(s, &e), 0.5f) << "a power of two: " << s;
      float amax = 0;
      for (float v : x) amax = std::max(amax, std::fabs(v));
      EXPECT_LE(amax / s, 448.0f);
      EXPECT_GT(amax / s, 224.0f * (1 - 1e-6f)) << magnitude << " " << n;
      for (int64_t i = n; i < ScaledRowScaleOffset(n); ++i) EXPECT_EQ(row[i], 0) << "padding";
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_FALSE(std::isnan(Fp8E4M3ToF32(row[i])));
        const float back = Fp8E4M3ToF32(row[i]) * s;
        const float tolerance = std::max(std::fabs(x[i]) * 0.0625f, s * std::ldexp(1.0f, -10));
        ASSERT_LE(std::fabs(back - x[i]), tolerance) << magnitude << " " << n << " " << i;
      }
    }
  }
  std::vector<float> zeros(9, 0.0f);
  std::vector<uint8_t> row(ScaledRowBytes(9));
  WriteFp8Row(zeros.data(), 9, row.data());
  EXPECT_EQ(ScaledRowScale(row.data(), 9), 1.0f);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(Fp8E4M3ToF32(row[i]), 0.0f);
  // Values e4m3 holds exactly come back exactly (the scale keeps 448 = 1.75 * 2^8 in range).
  const float exact[4] = {448.0f, -1.5f, 0.25f, 0.0f};
  std::vector<uint8_t> r4(ScaledRowBytes(4));
  WriteFp8Row(exact, 4, r4.data());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(Fp8E4M3ToF32(r4[i]) * ScaledRowScale(r4.data(), 4), exact[i]);
}

// A NaN (or an infinity) among a row's values is never lost to rounding: the row's scale is NaN, so its scores and
// every weighted sum it enters are NaN on every path (as an f32 row's NaN would make them), and the
// other rows' scores are untouched.
TEST(VectorOpsTest, ScaledRowsWrittenFromANanAreNan) {
  const int64_t n = 19;
  auto x = Random(n, 31), clean = Random(n, 32), q = Random(n, 33);
  x[7] = std::numeric_limits<float>::quiet_NaN();
  for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    auto y = clean;
    y[3] = bad;
    std::vector<uint8_t> f(ScaledRowBytes(n));
    std::vector<int8_t> i8(ScaledRowBytes(n));
    WriteFp8Row(y.data(), n, f.data());
    WriteInt8Row(y.data(), n, i8.data());
    EXPECT_TRUE(std::isnan(ScaledRowScale(f.data(), n))) << bad;
    EXPECT_TRUE(std::isnan(ScaledRowScale(i8.data(), n))) << bad;
  }
  std::vector<uint8_t> fp8(2 * ScaledRowBytes(n));
  std::vector<int8_t> int8(2 * ScaledRowBytes(n));
  WriteFp8Row(x.data(), n, fp8.data());
  WriteFp8Row(clean.data(), n, fp8.data() + ScaledRowBytes(n));
  WriteInt8Row(x.data(), n, int8.data());
  WriteInt8Row(clean.data(), n, int8.data() + ScaledRowBytes(n));
  EXPECT_TRUE(std::isnan(ScaledRowScale(fp8.data(), n)));
  EXPECT_TRUE(std::isnan(ScaledRowScale(int8.data(), n)));
  const uint8_t* fp8_rows[2] = {fp8.data(), fp8.data() + ScaledRowBytes(n)};
  const int8_t* int8_rows[2] = {int8.data(), int8.data() + ScaledRowBytes(n)};
  float scores[2];
  DotRows(q.data(), n, 1, fp8_rows, 2, n, scores, 2);
  EXPECT_TRUE(std::isnan(scores[0]));
  EXPECT_FALSE(std::isnan(scores[1]));
  DotRows(q.data(), n, 1, int8_rows, 2, n, scores, 2);
  EXPECT_TRUE(std::isnan(scores[0]));
  EXPECT_FALSE(std::isnan(scores[1]));
  const float w[2] = {0.25f, 0.75f};
  std::vector<float> y(n, 0.0f), y8(n, 0.0f);
  WeightedRowSum(w, 2, 1, fp8_rows, 2, n, y.data(), n);
  WeightedRowSum(w, 2, 1, int8_rows, 2, n, y8.data(), n);
  for (int64_t i = 0; i < n; ++i) EXPECT_TRUE(std::isnan(y[i]) && std::isnan(y8[i])) << i;
}

TEST(VectorOpsTest, DotRowsF64MatchesDoubleReference) {
  for (int64_t n : kLengths) {
    const int64_t n_rows = 9;
    auto x = Random(n, 9), m = Random(n_rows * n, 10);
    std::vector<float> got(n_rows), want(n_rows);
    DotRowsF64(x.data(), m.data(), n_rows, n, got.data());
    DotRowsF64Reference(x.data(), m.data(), n_rows, n, want.data());
    // Both sums are double; only the order differs, far below float resolution.
    for (int64_t r = 0; r < n_rows; ++r) EXPECT_NEAR(got[r], want[r], 1e-6f * (1 + std::fabs(want[r]))) << n;
    // One row alone gives the same value as inside a batch of rows.
    float one = 0;
    DotRowsF64(x.data(), m.data() + 4 * n, 1, n, &one);
    EXPECT_EQ(one, got[4]);
  }
}

// `arg_max` gives the scalar loop's answer: ties the first, NaNs never win, the maximum in the
// tail, a NaN at 0 never left.
void ExpectArgMaxIsTheScalarLoops(int64_t (*arg_max)(const float*, int64_t)) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (int64_t n : {1, 2, 7, 8, 9, 15, 16, 17, 33, 4096, 4099, 154880}) {
    auto x = Random(n, 14);
    EXPECT_EQ(arg_max(x.data(), n), ArgMaxReference(x.data(), n)) << n;
    if (n > 3) {
      x[n / 2] = x[n - 1] = 100.0f;
      x[1] = nan;
      EXPECT_EQ(arg_max(x.data(), n), n / 2) << n;
      x[n - 1] = 200.0f;
      EXPECT_EQ(arg_max(x.data(), n), n - 1) << n;
      x[0] = nan;  // the scalar loop never moves off a NaN at 0
      EXPECT_EQ(arg_max(x.data(), n), ArgMaxReference(x.data(), n)) << n;
      x[0] = inf;
      EXPECT_EQ(arg_max(x.data(), n), 0) << n;
    }
    std::vector<float> all_nan(n, nan), all_neg_inf(n, -inf);
    EXPECT_EQ(arg_max(all_nan.data(), n), 0);
    EXPECT_EQ(arg_max(all_neg_inf.data(), n), 0);
  }
}

TEST(VectorOpsTest, ArgMaxIsTheScalarLoopsAnswer) { ExpectArgMaxIsTheScalarLoops(&ArgMax); }

// FirstNonFinite is std::isfinite's first failure (or -1), wherever it lies: a NaN, +inf or -inf
// at the start, in a 256-value block's middle, or in the tail; the largest finite values, zeros
// and denormals are finite.
TEST(VectorOpsTest, FirstNonFiniteFindsTheFirstNanOrInfinity) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  auto reference = [](const std::vector<float>& x) -> int64_t {
    for (size_t i = 0; i < x.size(); ++i)
      if (!std::isfinite(x[i])) return static_cast<int64_t>(i);
    return -1;
  };
  EXPECT_EQ(FirstNonFinite(nullptr, 0), -1);
  for (int64_t n : {1, 7, 255, 256, 257, 1000, 4096, 154880}) {
    auto x = Random(n, 21);
    x[0] = std::numeric_limits<float>::max();
    x[n - 1] = -std::numeric_limits<float>::denorm_min();
    EXPECT_EQ(FirstNonFinite(x.data(), n), -1) << n;
    for (float bad : {nan, inf, -inf, -nan}) {
      for (int64_t at : {int64_t{0}, n / 2, n - 1}) {
        auto y = x;
        y[at] = bad;
        if (at + 1 < n) y[n - 1] = nan;  // a later one does not hide the first
        EXPECT_EQ(FirstNonFinite(y.data(), n), reference(y)) << n << " at " << at;
        EXPECT_EQ(FirstNonFinite(y.data(), n), at) << n << " at " << at;
      }
    }
  }
}

// The AVX2 twins (CPUs without AVX-512) against the scalar ones, wherever AVX2 exists.
TEST(VectorOpsTest, Avx2TwinsMatchScalarTwins) {
  if (!CpuSupportsAvx2MatMul()) GTEST_SKIP() << "no AVX2 on this CPU";
  ExpectDotAndAxpyMatchScalarTwins(&DotAvx2, &AxpyAvx2);
  ExpectArgMaxIsTheScalarLoops(&ArgMaxAvx2);
  for (int64_t n : kLengths) {
    auto a = Random(n, 21), b = Random(n, 22);
    std::vector<float> got(n), want(n);
    AddScaleAvx2(a.data(), b.data(), 0.125f, got.data(), n);
    AddScaleReference(a.data(), b.data(), 0.125f, want.data(), n);
    EXPECT_EQ(got, want) << n;
    auto r1 = Random(n, 24), r2 = r1;
    ReluAccumulateAvx2(a.data(), 0.7f, 1.3f, r1.data(), n);
    ReluAccumulateReference(a.data(), 0.7f, 1.3f, r2.data(), n);
    EXPECT_EQ(r1, r2) << n;
    const int64_t n_rows = 5;
    auto m = Random(n_rows * n, 25);
    std::vector<float> f64(n_rows), f64_ref(n_rows);
    DotRowsF64Avx2(a.data(), m.data(), n_rows, n, f64.data());
    DotRowsF64Reference(a.data(), m.data(), n_rows, n, f64_ref.data());
    for (int64_t r = 0; r < n_rows; ++r) EXPECT_NEAR(f64[r], f64_ref[r], 1e-6f * (1 + std::fabs(f64_ref[r]))) << n;
    float one = 0;
    DotRowsF64Avx2(a.data(), m.data() + 3 * n, 1, n, &one);
    EXPECT_EQ(one, f64[3]) << "a row's value depends on the row alone";
  }
}

}  // namespace
}  // namespace glm::kernels
