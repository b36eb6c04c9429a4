// Group-quantised weights (kI8, kI4): quantisation error bounds and layout, every matmul path
// against MatMulRowsReference on awkward shapes (column tails inside and across groups, odd row
// counts, 1..10 and 33 tokens, per-row and per-group scales), and the matmul.h contract — a
// result is bit-identical whatever n_tokens, the row range, the thread count or a Rows() view.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/matmul_avx2.h"
#include "shard_worker/kernels/matmul_avx512.h"
#include "shard_worker/kernels/matmul_dispatch.h"
#include "shard_worker/kernels/matmul_quant_avx2.h"
#include "shard_worker/kernels/matmul_quant_avx512.h"
#include "shard_worker/kernels/q16_activations.h"
#include "shard_worker/kernels/q8_activations.h"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/kernels/thread_pool.h"

namespace glm::kernels {
namespace {

struct QuantWeights {
  std::vector<float> source;  // [rows, cols] the f32 values quantised
  std::vector<uint8_t> data;
  std::vector<uint16_t> scales;  // f16 bits
  WeightView view;
};

// group_size -1: one scale per row.
QuantWeights MakeQuant(DType dtype, int64_t rows, int64_t cols, int64_t group_size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  QuantWeights q;
  q.source.resize(rows * cols);
  for (float& v : q.source) v = normal(rng);
  WeightView& w = q.view;
  w.dtype = dtype;
  w.rows = rows;
  w.cols = cols;
  w.group_size = group_size < 0 ? std::max<int64_t>(1, cols) : group_size;
  q.data.assign(rows * w.row_bytes() + 1, 0xee);  // garbage padding must never matter
  q.scales.assign(rows * w.groups_per_row() + 1, uint16_t{0x7e00});  // NaN past the end
  for (int64_t r = 0; r < rows; ++r)
    QuantizeRow(dtype, q.source.data() + r * cols, cols, w.group_size,
                q.data.data() + r * w.row_bytes(), q.scales.data() + r * w.groups_per_row());
  w.data = q.data.data();
  w.group_scales = q.scales.data();
  return q;
}

std::vector<float> RandomActivations(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  return x;
}

bool BitEqual(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

std::vector<float> RunAll(MatMulRowsFn fn, const std::vector<float>& x, int64_t n_tokens,
                          const WeightView& w) {
  std::vector<float> y(n_tokens * w.rows, std::numeric_limits<float>::quiet_NaN());
  fn(x.data(), n_tokens, w.cols, w, 0, w.rows, y.data(), w.rows);
  return y;
}

// |simd - reference| <= 1e-5 · Σ|x·w| + 1e-7 (f32 reordering only: both decode the same weights).
void ExpectClose(const std::vector<float>& got, const std::vector<float>& want,
                 const std::vector<float>& x, int64_t n_tokens, const WeightView& w,
                 const std::string& what) {
  int failures = 0;
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t r = 0; r < w.rows; ++r) {
      double mag = 0.0;
      for (int64_t c = 0; c < w.cols; ++c) mag += std::fabs(double{x[t * w.cols + c]} * w.At(r, c));
      const int64_t i = t * w.rows + r;
      if (!(std::fabs(double{got[i]} - want[i]) <= 1e-5 * mag + 1e-7) && ++failures <= 3)
        ADD_FAILURE() << what << " t=" << t << " r=" << r << " got " << got[i] << " want " << want[i];
    }
}

std::string Name(DType d, int64_t rows, int64_t cols, int64_t group) {
  return std::string(DTypeName(d)) + " " + std::to_string(rows) + "x" + std::to_string(cols) +
         " g" + std::to_string(group);
}

TEST(QuantizeTest, Int8ErrorWithinHalfStep) {
  for (int64_t group : {32, 64, 128, -1}) {
    QuantWeights q = MakeQuant(DType::kI8, 5, 300, group, 1);
    const WeightView& w = q.view;
    double err2 = 0.0, ref2 = 0.0;
    for (int64_t r = 0; r < w.rows; ++r)
      for (int64_t c = 0; c < w.cols; ++c) {
        const int64_t g = group < 0 ? 0 : c / group;
        const float s = F16ToF32(q.scales[r * w.groups_per_row() + g]);
        const float src = q.source[r * w.cols + c];
        // Half a step, or the clipping of a value beyond 127 steps (the scale may clip a little).
        const float bound = std::max(0.5f * s, std::fabs(src) - 127 * s);
        ASSERT_LE(std::fabs(src - w.At(r, c)), bound * (1 + 1e-5f) + 1e-12f) << "g" << group << " " << r << "," << c;
        err2 += (src - w.At(r, c)) * double{src - w.At(r, c)};
        ref2 += double{src} * src;
      }
    EXPECT_LT(std::sqrt(err2 / ref2), 0.01) << "group " << group;  // ~0.006 for gaussian weights
  }
}

TEST(QuantizeTest, Int4ErrorBounded) {
  for (int64_t group : {32, 64, -1}) {
    QuantWeights q = MakeQuant(DType::kI4, 5, 300, group, 2);
    const WeightView& w = q.view;
    const int64_t g = group < 0 ? w.cols : group;
    double err2 = 0.0, ref2 = 0.0;
    for (int64_t r = 0; r < w.rows; ++r)
      for (int64_t c0 = 0; c0 < w.cols; c0 += g) {
        float amax = 0.0f;
        for (int64_t c = c0; c < std::min(w.cols, c0 + g); ++c) amax = std::max(amax, std::fabs(q.source[r * w.cols + c]));
        for (int64_t c = c0; c < std::min(w.cols, c0 + g); ++c) {
          const float src = q.source[r * w.cols + c], got = w.At(r, c);
          // Worst case: the value opposite the extreme clamped at +7 with scale max/8 — rounded
          // to f16 (relative 2^-11), which moves 7 steps by up to 7 · 2^-11 of one.
          ASSERT_LE(std::fabs(src - got), amax / 8 * (1 + 8.0f / 2048)) << "g" << group << " " << r << "," << c;
          err2 += (src - got) * double{src - got};
          ref2 += double{src} * src;
        }
      }
    // ~0.08 (g32) to ~0.12 (a whole row) for gaussian weights.
    EXPECT_LT(std::sqrt(err2 / ref2), group == 32 ? 0.1 : 0.15) << "group " << group;
  }
}

// A one-row view of QuantizeRow's output.
WeightView OneRow(DType d, int64_t cols, int64_t group, const std::vector<uint8_t>& data, const uint16_t* scales) {
  WeightView w;
  w.dtype = d;
  w.rows = 1;
  w.cols = cols;
  w.data = data.data();
  w.group_scales = scales;
  w.group_size = group;
  return w;
}

TEST(QuantizeTest, Int4LayoutMatchesWeightView) {
  // One row of 40 columns whose values are exactly q · 0.5 for q cycling -8..7: every code is
  // hit and the stored nibbles must follow weight_view.h's layout.
  std::vector<float> src(40);
  for (int c = 0; c < 40; ++c) src[c] = 0.5f * static_cast<float>((c % 16) - 8);
  src[0] = -4.0f;  // the extreme, -8 · 0.5
  std::vector<uint8_t> data(DTypeRowBytes(DType::kI4, 40));
  ASSERT_EQ(data.size(), 32u);
  uint16_t scale = 0;
  QuantizeRow(DType::kI4, src.data(), 40, 64, data.data(), &scale);
  EXPECT_EQ(F16ToF32(scale), 0.5f);
  for (int c = 0; c < 40; ++c) {
    const int nib = (c % 32) < 16 ? data[c / 32 * 16 + c % 16] & 0xf : data[c / 32 * 16 + c % 16] >> 4;
    EXPECT_EQ(nib, (c % 16)) << "column " << c;
  }
  for (int c = 40; c < 64; ++c) {  // padding decodes to zero
    const int nib = (c % 32) < 16 ? data[c / 32 * 16 + c % 16] & 0xf : data[c / 32 * 16 + c % 16] >> 4;
    EXPECT_EQ(nib, 8) << "padding column " << c;
  }
  const WeightView w = OneRow(DType::kI4, 40, 64, data, &scale);
  for (int c = 0; c < 40; ++c) EXPECT_EQ(w.At(0, c), src[c]) << "column " << c;
}

TEST(QuantizeTest, RowToF32IsAtForEveryColumn) {
  // The row decoder (embedding lookups, W_uk^T, re-quantisation sources) against At, bit for bit:
  // column tails inside a chunk and a group, groups of 32/64/96, one scale a row, a Rows() view.
  for (DType d : {DType::kI8, DType::kI4}) {
    for (auto [cols, group] : std::vector<std::pair<int64_t, int64_t>>{{40, 32}, {96, 32}, {200, 64}, {77, -1}, {192, 96}}) {
      const QuantWeights q = MakeQuant(d, 5, cols, group, static_cast<uint32_t>(cols * 7 + group));
      for (const WeightView& w : {q.view, q.view.Rows(2, 5)}) {
        std::vector<float> row(cols);
        for (int64_t r = 0; r < w.rows; ++r) {
          w.RowToF32(r, row.data());
          for (int64_t c = 0; c < cols; ++c)
            ASSERT_TRUE(BitEqual(row[c], w.At(r, c))) << DTypeName(d) << " cols " << cols << " group " << group << " row " << r << " col " << c;
        }
      }
    }
  }
}

TEST(QuantizeTest, Bf16RowToF32IsAtForEveryColumn) {
  // BF16 rows (re-quantisation reads every stored weight through it): lengths around its blocks
  // of 16, every bit pattern class (NaN, infinities, subnormals, signed zeros) kept bit for bit.
  std::mt19937 rng(11);
  for (int64_t cols : {1, 15, 16, 17, 31, 32, 33, 100, 4097}) {
    std::vector<uint16_t> data(static_cast<size_t>(3 * cols));
    for (auto& v : data) v = static_cast<uint16_t>(rng());
    data[0] = 0x7fc1;  // NaN with a payload
    if (data.size() > 2) data[1] = 0x8000, data[2] = 0xff80;
    WeightView w;
    w.dtype = DType::kBF16;
    w.rows = 3;
    w.cols = cols;
    w.data = data.data();
    std::vector<float> row(static_cast<size_t>(cols) + 1, 7.0f);
    for (int64_t r = 0; r < 3; ++r) {
      w.RowToF32(r, row.data());
      for (int64_t c = 0; c < cols; ++c)
        ASSERT_TRUE(BitEqual(row[c], Bf16ToF32(data[static_cast<size_t>(r * cols + c)]))) << "cols " << cols << " row " << r << " col " << c;
      EXPECT_EQ(row[cols], 7.0f) << "wrote past the row, cols " << cols;
    }
  }
}

TEST(QuantizeTest, Fp8RowToF32IsAtForEveryColumn) {
  // Block-FP8 rows (re-quantising GLM-5's FP8 checkpoint reads every weight through it): column
  // counts inside and across scale blocks, narrow blocks, a view starting mid-block-row.
  std::mt19937 rng(17);
  for (auto [cols, block_cols] : std::vector<std::pair<int64_t, int64_t>>{{300, 128}, {128, 128}, {77, 32}, {5, 128}}) {
    const int64_t rows = 5, scale_cols = (cols + block_cols - 1) / block_cols;
    std::vector<uint8_t> data(static_cast<size_t>(rows * cols));
    for (auto& v : data) v = static_cast<uint8_t>(rng());
    data[0] = 0x7f;  // a NaN code
    std::vector<float> scales(static_cast<size_t>(4 * scale_cols));
    for (auto& v : scales) v = std::ldexp(1.0f + static_cast<float>(rng() % 1000) / 1000.0f, static_cast<int>(rng() % 20) - 10);
    WeightView w;
    w.dtype = DType::kF8E4M3;
    w.rows = rows;
    w.cols = cols;
    w.data = data.data();
    w.block_scales = scales.data();
    w.block_rows = 2;
    w.block_cols = block_cols;
    w.scale_cols = scale_cols;
    w.row_offset = 1;  // rows 1..5 of the tensor: block rows 0, 1, 1, 2, 2
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      w.RowToF32(r, row.data());
      for (int64_t c = 0; c < cols; ++c)
        ASSERT_TRUE(BitEqual(row[c], w.At(r, c))) << "cols " << cols << " block " << block_cols << " row " << r << " col " << c;
    }
  }
}

TEST(QuantizeTest, PackI4RowMatchesItsLayoutForEveryLength) {
  // Byte 16b + j holds column 32b + j + 8 in its low nibble and 32b + 16 + j + 8 in its high one;
  // past the row's end, code 0 (nibble 8). Whole blocks and the partial last one.
  std::mt19937 rng(13);
  for (int64_t cols : {1, 15, 16, 17, 31, 32, 33, 64, 100, 4097}) {
    std::vector<int8_t> q(static_cast<size_t>(cols));
    for (auto& v : q) v = static_cast<int8_t>(static_cast<int>(rng() % 16) - 8);
    const int64_t bytes = DTypeRowBytes(DType::kI4, cols);
    std::vector<uint8_t> out(static_cast<size_t>(bytes) + 1, 0xee);
    PackI4Row(q.data(), cols, out.data());
    for (int64_t i = 0; i < bytes; ++i) {
      const int64_t lo = 32 * (i / 16) + i % 16, hi = lo + 16;
      const int want = ((lo < cols ? q[lo] : 0) + 8) | (((hi < cols ? q[hi] : 0) + 8) << 4);
      ASSERT_EQ(out[i], want) << "cols " << cols << " byte " << i;
    }
    EXPECT_EQ(out[bytes], 0xee) << "wrote past the row, cols " << cols;
  }
}

TEST(QuantizeTest, ZeroGroupsAndRowsViews) {
  std::vector<float> src(128, 0.0f);
  src[100] = 1.0f;
  for (DType d : {DType::kI8, DType::kI4}) {
    std::vector<uint8_t> data(DTypeRowBytes(d, 128));
    uint16_t scales[2];
    QuantizeRow(d, src.data(), 128, 64, data.data(), scales);
    EXPECT_EQ(F16ToF32(scales[0]), 0.0f);
    const WeightView w = OneRow(d, 128, 64, data, scales);
    // Zeros stay exact; the lone 1.0 is q · scale with the scale rounded to f16 (int8: 127 ·
    // f16(1/127) = 0.99994; int4: -8 · -0.125 exactly).
    for (int c = 0; c < 128; ++c) {
      if (src[c] == 0.0f) EXPECT_EQ(w.At(0, c), 0.0f) << DTypeName(d) << " " << c;
      else EXPECT_NEAR(w.At(0, c), src[c], src[c] / 1024) << DTypeName(d) << " " << c;
    }
    EXPECT_EQ(w.bytes(), DTypeRowBytes(d, 128) + 4);  // two f16 scales
  }
}

// f16 scales have a range: groups beyond it must not turn into inf or NaN (huge values saturate
// at the code range's ends, values too small for any f16 scale become 0), while a NaN weight still
// makes its group NaN (never a plausible number).
TEST(QuantizeTest, ScalesOutsideF16RangeDegradeGracefully) {
  for (DType d : {DType::kI8, DType::kI4}) {
    std::vector<uint8_t> data(DTypeRowBytes(d, 96));
    uint16_t scales[3];
    std::vector<float> src(96);
    for (int c = 0; c < 96; ++c) {
      const float sign = c % 2 ? -1.0f : 1.0f;
      src[c] = c < 32 ? sign * 1e9f * (1 + c) : c < 64 ? sign * 1e-12f * (1 + c) : 0.01f * sign;
    }
    src[80] = std::numeric_limits<float>::quiet_NaN();
    QuantizeRow(d, src.data(), 96, 32, data.data(), scales);
    const WeightView w = OneRow(d, 96, 32, data, scales);
    for (int c = 0; c < 32; ++c) {  // saturated: finite, right sign, at the largest scale
      const float v = w.At(0, c);
      ASSERT_TRUE(std::isfinite(v)) << DTypeName(d) << " " << c;
      EXPECT_EQ(std::signbit(v), std::signbit(src[c])) << DTypeName(d) << " " << c;
      EXPECT_GE(std::fabs(v), 65504.0f * 7) << DTypeName(d) << " " << c;
    }
    for (int c = 32; c < 64; ++c) EXPECT_LE(std::fabs(w.At(0, c) - src[c]), 1e-7f) << DTypeName(d) << " " << c;
    for (int c = 64; c < 96; ++c) EXPECT_TRUE(std::isnan(w.At(0, c))) << DTypeName(d) << " " << c;
  }
}

TEST(QuantizeTest, FormatNames) {
  DType d;
  int64_t g;
  ASSERT_TRUE(ParseQuantFormatName("int8", &d, &g));
  EXPECT_TRUE(d == DType::kI8 && g == kDefaultI8GroupSize);
  ASSERT_TRUE(ParseQuantFormatName("int8-row", &d, &g));
  EXPECT_EQ(g, -1);
  ASSERT_TRUE(ParseQuantFormatName("int4-g64", &d, &g));
  EXPECT_TRUE(d == DType::kI4 && g == 64);
  EXPECT_FALSE(ParseQuantFormatName("int4-g", &d, &g));
  EXPECT_FALSE(ParseQuantFormatName("int3", &d, &g));
  EXPECT_FALSE(CheckQuantGroupSize(DType::kI8, 48, 1024).empty());
  EXPECT_TRUE(CheckQuantGroupSize(DType::kI8, 48, 40).empty());  // one group per row
  EXPECT_TRUE(CheckQuantGroupSize(DType::kI4, 96, 1024).empty());
}

class QuantMatMulPathTest : public testing::TestWithParam<std::string> {
 protected:
  MatMulRowsFn fn() const {
    for (const auto& p : SupportedMatMulPaths())
      if (p.name == GetParam()) return p.fn;
    return nullptr;
  }
};

std::vector<std::string> PathNames() {
  std::vector<std::string> names;
  for (const auto& p : SupportedMatMulPaths()) names.push_back(p.name);
  return names;
}

struct Shape {
  DType dtype;
  int64_t group;
  std::vector<int64_t> cols;
};

const Shape kShapes[] = {
    {DType::kI8, 32, {1, 5, 31, 32, 33, 95, 200}},
    {DType::kI8, 64, {1, 5, 63, 64, 65, 130, 200, 257}},
    {DType::kI8, 128, {31, 127, 128, 129, 300, 1000}},
    {DType::kI8, -1, {1, 33, 64, 100, 511}},
    {DType::kI8, 96, {96, 97, 160, 300}},  // 64-column chunks across two groups
    {DType::kI8, 192, {191, 193, 500}},
    // Rows of several 128-column lines with partial last lines and groups, and group sizes
    // that are multiples of 32 but not powers of two.
    {DType::kI4, 32, {1, 7, 31, 32, 33, 95, 128, 200, 257, 384, 1000}},
    {DType::kI4, 64, {63, 64, 65, 130, 192, 300, 512}},
    {DType::kI4, 128, {100, 128, 129, 300, 1024}},
    {DType::kI4, 256, {255, 300, 700}},
    {DType::kI4, 96, {96, 97, 300}},
    {DType::kI4, -1, {1, 17, 96, 250, 600}},
};

TEST_P(QuantMatMulPathTest, MatchesReference) {
  MatMulRowsFn f = fn();
  ASSERT_NE(f, nullptr);
  uint32_t seed = 10;
  for (const Shape& s : kShapes)
    for (int64_t cols : s.cols)
      for (int64_t rows : {1, 3, 9, 17}) {
        QuantWeights q = MakeQuant(s.dtype, rows, cols, s.group, ++seed);
        for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 33}) {
          auto x = RandomActivations(n * cols, seed * 7 + n);
          auto want = RunAll(&MatMulRowsReference, x, n, q.view);
          auto got = RunAll(f, x, n, q.view);
          ExpectClose(got, want, x, n, q.view, GetParam() + " " + Name(s.dtype, rows, cols, s.group) + " n=" + std::to_string(n));
          if (HasFailure()) return;
        }
      }
}

// The contract: each token's output is the same alone or in a batch of any size, over any row
// range, from any Rows() view, with any thread count.
TEST_P(QuantMatMulPathTest, BatchInvariantBitForBit) {
  MatMulRowsFn f = fn();
  ASSERT_NE(f, nullptr);
  ASSERT_TRUE(ForceMatMulPath(GetParam()));
  for (DType d : {DType::kI8, DType::kI4})
    for (int64_t cols : {100, 257, 1024})
      for (int64_t group : {int64_t{-1}, int64_t{32}, int64_t{64}, int64_t{96}, int64_t{128}}) {
        const int64_t rows = 37;
        QuantWeights q = MakeQuant(d, rows, cols, group, static_cast<uint32_t>(cols + group));
        const WeightView& w = q.view;
        const std::string what = GetParam() + " " + Name(d, rows, cols, group);
        const int64_t n_max = 33;
        auto x = RandomActivations(n_max * cols, 5);
        // Each token alone.
        std::vector<float> alone(n_max * rows);
        for (int64_t t = 0; t < n_max; ++t)
          f(x.data() + t * cols, 1, cols, w, 0, rows, alone.data() + t * rows, rows);
        for (int64_t n : {2, 3, 4, 5, 8, 9, 10, 33}) {
          auto y = RunAll(f, x, n, w);
          for (int64_t i = 0; i < n * rows; ++i)
            ASSERT_TRUE(BitEqual(y[i], alone[i])) << what << " n=" << n << " i=" << i;
        }
        // Odd row ranges and Rows() views.
        std::vector<float> pieces(3 * rows), views(3 * rows);
        for (int64_t b = 0; b < rows;) {
          const int64_t e = std::min(rows, b + 1 + (b * 7) % 6);
          f(x.data(), 3, cols, w, b, e, pieces.data(), rows);
          WeightView sub = w.Rows(b, e);
          f(x.data(), 3, cols, sub, 0, e - b, views.data() + b, rows);
          b = e;
        }
        for (int64_t i = 0; i < 3 * rows; ++i) {
          ASSERT_TRUE(BitEqual(pieces[i], alone[i])) << what << " range i=" << i;
          ASSERT_TRUE(BitEqual(views[i], alone[i])) << what << " view i=" << i;
        }
        // Threads, through MatMul (which uses the selected path).
        for (int threads : {1, 2, 3}) {
          ThreadPool pool(threads);
          std::vector<float> y(n_max * rows);
          MatMul(x.data(), n_max, w, y.data(), &pool);
          for (int64_t i = 0; i < n_max * rows; ++i)
            ASSERT_TRUE(BitEqual(y[i], alone[i])) << what << " threads=" << threads << " i=" << i;
        }
      }
  ForceMatMulPath(SupportedMatMulPaths().front().name);
}

// ---- int8 activations of the kI4 path (q8_activations.h), int16 ones of kI8 (q16_activations.h) ----

// The rules of an activation quantiser of runs of `width` values into [-qmax, qmax]
// (q8_activations.h: int8 per 32 columns, q16_activations.h: int16 per 64).
template <typename Int, int kWidth>
void ExpectQuantisationRules(void (*quantize)(const float*, int, Int*, float*), float qmax) {
  Int q[kWidth];
  float scale = -1.0f;
  const float zeros[kWidth] = {};
  quantize(zeros, kWidth, q, &scale);
  EXPECT_EQ(scale, 0.0f);
  for (Int v : q) EXPECT_EQ(v, 0);

  auto x = RandomActivations(kWidth, 3);
  x[7] = -5.0f;  // the largest magnitude maps to -qmax
  const int n = kWidth - 12;  // a partial run: 12 zeros at the end
  quantize(x.data(), n, q, &scale);
  EXPECT_FLOAT_EQ(scale, 5.0f / qmax);
  EXPECT_EQ(q[7], -qmax);
  for (int j = 0; j < n; ++j) EXPECT_LE(std::fabs(q[j] * scale - x[j]), 0.5f * scale * 1.0001f) << j;
  for (int j = n; j < kWidth; ++j) EXPECT_EQ(q[j], 0) << j;

  // Vanishing magnitudes (qmax / max would overflow to inf, and 0 · inf is NaN): zero.
  float tiny[kWidth];
  for (int j = 0; j < kWidth; ++j) tiny[j] = (j % 3 - 1) * 1e-38f;
  quantize(tiny, kWidth, q, &scale);
  EXPECT_EQ(scale, 0.0f);
  for (Int v : q) EXPECT_EQ(v, 0);

  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    x[3] = bad;
    quantize(x.data(), kWidth, q, &scale);
    EXPECT_TRUE(std::isnan(scale));
    for (Int v : q) EXPECT_EQ(v, 0);
  }
}

TEST(Q8ActivationsTest, BlockQuantisationRules) {
  ExpectQuantisationRules<int8_t, 32>(&QuantizeActivationBlock, 127.0f);
}

TEST(Q16ActivationsTest, ChunkQuantisationRules) {
  ExpectQuantisationRules<int16_t, 64>(&QuantizeActivationChunk16, 32767.0f);
}

TEST(Q8ActivationsTest, ChunkLayoutAndOffsets) {
  const int64_t cols = 300;  // three chunks, the last with one partial block and two empty ones
  auto x = RandomActivations(cols, 4);
  std::vector<Q8Chunk> chunks(Q8ChunksPerRow(cols));
  PrepareQ8Chunks(x.data(), cols, chunks.data());
  for (int64_t b = 0; b < 12; ++b) {
    const Q8Chunk& c = chunks[b / 4];
    const int k = static_cast<int>(b % 4);
    int8_t q[32];
    float scale = 0.0f;
    if (32 * b < cols) {
      QuantizeActivationBlock(x.data() + 32 * b, static_cast<int>(std::min<int64_t>(32, cols - 32 * b)), q, &scale);
    } else {
      std::fill(q, q + 32, 0);
    }
    for (int j = 0; j < 16; ++j) {
      EXPECT_EQ(c.lo[16 * k + j], q[j]) << b;
      EXPECT_EQ(c.hi[16 * k + j], q[16 + j]) << b;
    }
    for (int i = 0; i < 4; ++i) {
      const int l = 4 * k + i;
      EXPECT_EQ(c.scale[l], scale);
      int sum = 0;
      for (int j = 0; j < 4; ++j) sum += q[4 * i + j] + q[16 + 4 * i + j];
      EXPECT_EQ(c.neg_offset[l], -8 * sum);
    }
  }
}

TEST(Q16ActivationsTest, ChunkLayout) {
  const int64_t cols = 150;  // three chunks, the last partial
  auto x = RandomActivations(cols, 6);
  std::vector<Q16Chunk> chunks(Q16ChunksPerRow(cols));
  PrepareQ16Chunks(x.data(), cols, chunks.data());
  ASSERT_EQ(chunks.size(), 3u);
  for (int64_t ch = 0; ch < 3; ++ch) {
    int16_t q[64];
    float scale = 0.0f;
    QuantizeActivationChunk16(x.data() + 64 * ch, static_cast<int>(std::min<int64_t>(64, cols - 64 * ch)), q, &scale);
    EXPECT_EQ(std::memcmp(chunks[ch].q, q, sizeof q), 0) << ch;
    for (float s : chunks[ch].scale) EXPECT_EQ(s, scale) << ch;
  }
}

// Activations with the cases the packers must agree on, for `cols` columns.
std::vector<float> AwkwardActivations(int64_t cols) {
  auto x = RandomActivations(cols, static_cast<uint32_t>(cols));
  if (cols > 40) {
    x[33] = 0.0f;
    for (int64_t c = 64; c < std::min<int64_t>(cols, 96); ++c) x[c] = 0.0f;  // an all-zero block
    x[cols - 1] = 2.5f;  // ties at .5 after scaling appear in random data too
  }
  if (cols > 200) x[150] = std::numeric_limits<float>::quiet_NaN();
  if (cols > 250) {
    for (int64_t c = 224; c < 256; ++c) x[c] = (c % 2 ? 1e-38f : -3e-39f);  // a vanishing block
  }
  return x;
}

const int64_t kPrepareCols[] = {1, 7, 8, 9, 17, 31, 32, 33, 63, 64, 65, 100, 128, 129, 257, 1000};

bool SameScale(float a, float b) { return BitEqual(a, b) || (std::isnan(a) && std::isnan(b)); }

// The SIMD activation packers give the scalar ones' bytes.
void ExpectQ16PrepareMatchesScalar(void (*prepare)(const float*, int64_t, Q16Chunk*)) {
  for (int64_t cols : kPrepareCols) {
    auto x = AwkwardActivations(cols);
    std::vector<Q16Chunk> want(Q16ChunksPerRow(cols)), got(Q16ChunksPerRow(cols));
    std::memset(got.data(), 0x5a, got.size() * sizeof(Q16Chunk));
    PrepareQ16Chunks(x.data(), cols, want.data());
    prepare(x.data(), cols, got.data());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(std::memcmp(want[i].q, got[i].q, sizeof want[i].q), 0) << cols << " chunk " << i;
      for (int l = 0; l < 16; ++l)
        EXPECT_TRUE(SameScale(want[i].scale[l], got[i].scale[l])) << cols << " chunk " << i << " lane " << l;
    }
  }
}

void ExpectPrepareMatchesScalar(void (*prepare)(const float*, int64_t, Q8Chunk*)) {
  for (int64_t cols : kPrepareCols) {
    auto x = AwkwardActivations(cols);
    std::vector<Q8Chunk> want(Q8ChunksPerRow(cols)), got(Q8ChunksPerRow(cols));
    std::memset(got.data(), 0x5a, got.size() * sizeof(Q8Chunk));
    PrepareQ8Chunks(x.data(), cols, want.data());
    prepare(x.data(), cols, got.data());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(std::memcmp(want[i].lo, got[i].lo, 64), 0) << cols << " chunk " << i;
      EXPECT_EQ(std::memcmp(want[i].hi, got[i].hi, 64), 0) << cols << " chunk " << i;
      EXPECT_EQ(std::memcmp(want[i].neg_offset, got[i].neg_offset, 64), 0) << cols << " chunk " << i;
      for (int l = 0; l < 16; ++l)
        EXPECT_TRUE(SameScale(want[i].scale[l], got[i].scale[l])) << cols << " chunk " << i << " lane " << l;
    }
  }
}

TEST(Q8ActivationsTest, Avx512PrepareGivesTheSameBytes) {
  if (!CpuSupportsAvx512MatMul()) GTEST_SKIP() << "no AVX-512 here";
  ExpectPrepareMatchesScalar(&PrepareQ8ChunksAvx512);
  ExpectQ16PrepareMatchesScalar(&PrepareQ16ChunksAvx512);
}

TEST(Q8ActivationsTest, Avx2PrepareGivesTheSameBytes) {
  if (!CpuSupportsAvx2MatMul()) GTEST_SKIP() << "no AVX2 here";
  ExpectPrepareMatchesScalar(&PrepareQ8ChunksAvx2);
  ExpectQ16PrepareMatchesScalar(&PrepareQ16ChunksAvx2);
}

// The AVX-512 kI8 / kI4 kernels give the same bits with and without VNNI (the same integers).
TEST(Q8ActivationsTest, Avx512VnniAndByteDotsAgreeBitForBit) {
  if (!CpuSupportsAvx512MatMul()) GTEST_SKIP() << "no AVX-512 here";
  if (!UseAvx512VnniForInt4(true)) GTEST_SKIP() << "no AVX512_VNNI here";
  for (DType d : {DType::kI8, DType::kI4})
  for (int64_t group : {int64_t{32}, int64_t{64}, int64_t{96}, int64_t{-1}})
    for (int64_t cols : {33, 200, 1000}) {
      QuantWeights q = MakeQuant(d, 19, cols, group, static_cast<uint32_t>(cols * 3 + group));
      for (int64_t n : {1, 2, 5}) {
        auto x = RandomActivations(n * cols, static_cast<uint32_t>(n));
        UseAvx512VnniForInt4(true);
        auto with = RunAll(&MatMulRowsAvx512, x, n, q.view);
        UseAvx512VnniForInt4(false);
        auto without = RunAll(&MatMulRowsAvx512, x, n, q.view);
        for (size_t i = 0; i < with.size(); ++i)
          ASSERT_TRUE(BitEqual(with[i], without[i])) << Name(d, 19, cols, group) << " n=" << n << " i=" << i;
        // And both within the reference's tolerance.
        ExpectClose(without, RunAll(&MatMulRowsReference, x, n, q.view), x, n, q.view, "no vnni");
      }
    }
  UseAvx512VnniForInt4(true);
}

// A non-finite activation makes that token's outputs NaN (as f32 products would) and leaves the
// other tokens of the batch alone.
TEST_P(QuantMatMulPathTest, NonFiniteActivationGivesNaNForItsTokenOnly) {
  MatMulRowsFn f = fn();
  ASSERT_NE(f, nullptr);
  for (DType d : {DType::kI8, DType::kI4}) {
    QuantWeights q = MakeQuant(d, 9, 100, 32, 77);
    auto x = RandomActivations(3 * 100, 8);
    auto clean = RunAll(f, x, 3, q.view);
    x[100 + 40] = std::numeric_limits<float>::infinity() * (d == DType::kI4 ? 0.0f : 1.0f);  // NaN / inf
    auto y = RunAll(f, x, 3, q.view);
    for (int64_t r = 0; r < 9; ++r) {
      EXPECT_TRUE(BitEqual(y[r], clean[r]));
      EXPECT_FALSE(std::isfinite(y[9 + r])) << DTypeName(d) << " r=" << r;
      EXPECT_TRUE(BitEqual(y[18 + r], clean[18 + r]));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, QuantMatMulPathTest, testing::ValuesIn(PathNames()),
                         [](const testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace glm::kernels
