// The prefill GEMM (gemm_driver.h; forced from 9 tokens up) of every SIMD path against MatMulRowsReference
// on shapes that do not fit its blocking (rows vs the 4/2-row microkernel and the 64-row panel,
// cols vs chunks and the 512-column K block, tokens vs the 6/5-token tile and the token block),
// and the batch-invariance contract: a token's outputs inside a large batch are bit-identical to
// the same token alone (decode path), for every row, whatever the thread count or row range.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/matmul_dispatch.h"
#include "shard_worker/kernels/matmul_simd_driver.h"
#include "shard_worker/kernels/thread_pool.h"

namespace glm::kernels {
namespace {

struct Weights {
  std::vector<uint8_t> data;
  std::vector<float> scales;
  WeightView view;
};

// Random weights; FP8 with random scales on a block grid (block_rows × block_cols) and, where
// nan_codes, a few NaN bytes.
Weights MakeWeights(DType dtype, int64_t rows, int64_t cols, uint32_t seed, int64_t block_rows,
                    int64_t block_cols, bool nan_codes = false) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  Weights tw;
  const int64_t es = DTypeSize(dtype);
  tw.data.resize(rows * cols * es + 1);
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (dtype == DType::kF32) {
      float v = uni(rng);
      std::memcpy(tw.data.data() + 4 * i, &v, 4);
    } else if (dtype == DType::kBF16) {
      uint16_t v = F32ToBf16(uni(rng));
      std::memcpy(tw.data.data() + 2 * i, &v, 2);
    } else {
      uint8_t v = static_cast<uint8_t>(rng() & 0xff);
      if ((v & 0x7f) == 0x7f && !nan_codes) v ^= 0x01;
      tw.data[i] = v;
    }
  }
  WeightView& w = tw.view;
  w.dtype = dtype;
  w.rows = rows;
  w.cols = cols;
  w.data = tw.data.data();
  if (dtype == DType::kF8E4M3) {
    w.block_rows = block_rows;
    w.block_cols = block_cols;
    w.scale_cols = (cols + block_cols - 1) / block_cols;
    tw.scales.resize(((rows + block_rows - 1) / block_rows) * w.scale_cols);
    std::uniform_real_distribution<float> scale(1e-3f, 4e-3f);
    for (float& s : tw.scales) s = scale(rng);
    w.block_scales = tw.scales.data();
  }
  return tw;
}

std::vector<float> Activations(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  return x;
}

bool BitEqual(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

std::vector<float> RunRows(MatMulRowsFn fn, const float* x, int64_t n, const WeightView& w) {
  std::vector<float> y(n * w.rows, std::numeric_limits<float>::quiet_NaN());
  fn(x, n, w.cols, w, 0, w.rows, y.data(), w.rows);
  return y;
}

const DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kF8E4M3};

// Every n_tokens past the decode tiles goes to the GEMM here (each path's own crossover would send
// most of these shapes to the tiles), so the GEMM's blocking edges are what these tests cover.
class GemmPathTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { SetMinGemmTokensOverride(kMaxTileTokens + 1); }
  void TearDown() override { SetMinGemmTokensOverride(0); }

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

INSTANTIATE_TEST_SUITE_P(AllPaths, GemmPathTest, testing::ValuesIn(PathNames()),
                         [](const auto& info) { return info.param; });

std::string Name(DType d, int64_t rows, int64_t cols, int64_t n) {
  return std::string(DTypeName(d)) + " " + std::to_string(rows) + "x" + std::to_string(cols) +
         " n=" + std::to_string(n);
}

// Large-batch outputs equal the reference within 1e-5 · Σ|x·w|, and every token's outputs equal
// that token alone (n_tokens = 1) bit for bit.
void CheckShape(MatMulRowsFn fn, DType d, int64_t rows, int64_t cols, int64_t n, uint32_t seed) {
  Weights tw = MakeWeights(d, rows, cols, seed, d == DType::kF8E4M3 ? 5 : 128,
                           d == DType::kF8E4M3 ? 48 : 128);
  const WeightView& w = tw.view;
  std::vector<float> x = Activations(n * cols, seed + 1);
  std::vector<float> got = RunRows(fn, x.data(), n, w);
  std::vector<float> want = RunRows(&MatMulRowsReference, x.data(), n, w);
  std::vector<float> wrow(cols);
  int failures = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) wrow[c] = std::fabs(w.At(r, c));
    for (int64_t t = 0; t < n; ++t) {
      double mag = 0;
      for (int64_t c = 0; c < cols; ++c) mag += std::fabs(double{x[t * cols + c]}) * wrow[c];
      const float g = got[t * rows + r], e = want[t * rows + r];
      if (!(std::fabs(double{g} - e) <= 1e-5 * mag + 1e-6) && ++failures <= 3)
        ADD_FAILURE() << Name(d, rows, cols, n) << " t=" << t << " r=" << r << " got " << g
                      << " want " << e;
    }
  }
  for (int64_t t = 0; t < n; ++t) {
    std::vector<float> alone = RunRows(fn, x.data() + t * cols, 1, w);
    for (int64_t r = 0; r < rows; ++r)
      if (!BitEqual(alone[r], got[t * rows + r]) && ++failures <= 6)
        ADD_FAILURE() << Name(d, rows, cols, n) << " not batch invariant at t=" << t
                      << " r=" << r << ": alone " << alone[r] << " batch " << got[t * rows + r];
  }
}

TEST_P(GemmPathTest, MatchesReferenceAndDecodeOnAwkwardShapes) {
  // rows: below/around the microkernel's R and the 64-row panel; cols: around chunks (16/32/64)
  // and the 512-column K block; tokens: around the 5/6-token tiles and the 40/48-token blocks.
  const int64_t kShapes[][2] = {{1, 1},   {3, 7},     {5, 33},   {13, 100}, {67, 130},
                                {66, 513}, {130, 1000}, {9, 1030}, {4, 64},  {63, 2049}};
  const int64_t kTokens[] = {9, 10, 11, 12, 13, 17, 31, 47, 49, 70};
  uint32_t seed = 1;
  for (DType d : kDTypes)
    for (const auto& s : kShapes)
      for (int64_t n : kTokens) CheckShape(fn(), d, s[0], s[1], n, seed++);
}

TEST_P(GemmPathTest, ManyTokensOnASmallMatrix) {
  uint32_t seed = 100;
  for (DType d : kDTypes) {
    CheckShape(fn(), d, 37, 200, 257, seed++);
    CheckShape(fn(), d, 21, 130, 2048, seed++);
  }
}

// Every n_tokens from 1 to 70 (both sides of the decode/GEMM switch) gives each token's outputs
// bit for bit.
TEST_P(GemmPathTest, EveryBatchSizeBitIdentical) {
  for (DType d : kDTypes) {
    Weights tw = MakeWeights(d, 70, 300, 7, 16, 128);
    std::vector<float> x = Activations(70 * 300, 8);
    std::vector<float> full = RunRows(fn(), x.data(), 70, tw.view);
    for (int64_t n = 1; n <= 70; ++n) {
      std::vector<float> y = RunRows(fn(), x.data(), n, tw.view);
      for (int64_t i = 0; i < n * 70; ++i)
        ASSERT_TRUE(BitEqual(y[i], full[i])) << DTypeName(d) << " n=" << n << " i=" << i;
    }
  }
}

// With each path's own tile/GEMM crossovers (per dtype, between 9 and 128 tokens): every batch size
// around them gives each token's outputs bit for bit, as a batch of one does.
TEST_P(GemmPathTest, OwnCrossoverBitIdentical) {
  SetMinGemmTokensOverride(0);
  const int64_t kBatches[] = {1, 8, 9, 31, 32, 33, 47, 48, 49, 63, 64, 65, 127, 128, 129};
  for (DType d : kDTypes) {
    Weights tw = MakeWeights(d, 37, 300, 9, 16, 128);
    std::vector<float> x = Activations(160 * 300, 10);
    std::vector<float> full = RunRows(fn(), x.data(), 160, tw.view);
    for (int64_t t = 0; t < 160; t += 53) {
      std::vector<float> alone = RunRows(fn(), x.data() + t * 300, 1, tw.view);
      for (int64_t r = 0; r < 37; ++r) ASSERT_TRUE(BitEqual(alone[r], full[t * 37 + r])) << DTypeName(d) << " t=" << t;
    }
    for (int64_t n : kBatches) {
      std::vector<float> y = RunRows(fn(), x.data(), n, tw.view);
      for (int64_t i = 0; i < n * 37; ++i)
        ASSERT_TRUE(BitEqual(y[i], full[i])) << DTypeName(d) << " n=" << n << " i=" << i;
    }
  }
}

// Row ranges, Rows() sub-views (FP8 scale grid offsets) and thread counts 1..4 through MatMul.
TEST_P(GemmPathTest, RowRangeSubViewAndThreadCountInvariant) {
  ASSERT_TRUE(ForceMatMulPath(GetParam()));
  for (DType d : kDTypes) {
    Weights tw = MakeWeights(d, 301, 777, 11, 128, 128);
    const WeightView& w = tw.view;
    const int64_t n = 61;
    std::vector<float> x = Activations(n * w.cols, 12);
    std::vector<float> want = RunRows(fn(), x.data(), n, w);
    for (int threads = 1; threads <= 4; ++threads) {
      ThreadPool pool(threads);
      std::vector<float> y(n * w.rows);
      MatMul(x.data(), n, w, y.data(), &pool);
      for (int64_t i = 0; i < n * w.rows; ++i)
        ASSERT_TRUE(BitEqual(y[i], want[i])) << DTypeName(d) << " threads=" << threads;
    }
    for (int64_t b : {0, 3, 129, 200}) {
      const int64_t e = std::min<int64_t>(w.rows, b + 77);
      std::vector<float> y(n * w.rows, -1.0f);
      fn()(x.data(), n, w.cols, w, b, e, y.data(), w.rows);
      WeightView sub = w.Rows(b, e);
      std::vector<float> ys = RunRows(fn(), x.data(), n, sub);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < w.rows; ++r) {
          const float v = y[t * w.rows + r];
          if (r < b || r >= e) {
            ASSERT_EQ(v, -1.0f) << "wrote outside its row range";
            continue;
          }
          ASSERT_TRUE(BitEqual(v, want[t * w.rows + r])) << DTypeName(d) << " range " << b;
          ASSERT_TRUE(BitEqual(ys[t * sub.rows + r - b], v)) << DTypeName(d) << " sub-view " << b;
        }
    }
  }
  ForceMatMulPath(SupportedMatMulPaths().front().name);
}

// Strided x and y, as the model passes them.
TEST_P(GemmPathTest, StridedActivationsAndOutputs) {
  Weights tw = MakeWeights(DType::kBF16, 45, 260, 21, 128, 128);
  const WeightView& w = tw.view;
  const int64_t n = 33, xs = 300, ys = 50;
  std::vector<float> x = Activations(n * xs, 22);
  std::vector<float> y(n * ys, 7.0f);
  fn()(x.data(), n, xs, w, 0, w.rows, y.data(), ys);
  for (int64_t t = 0; t < n; ++t) {
    std::vector<float> alone(w.rows);
    fn()(x.data() + t * xs, 1, xs, w, 0, w.rows, alone.data(), w.rows);
    for (int64_t r = 0; r < w.rows; ++r) ASSERT_TRUE(BitEqual(alone[r], y[t * ys + r]));
    for (int64_t r = w.rows; r < ys; ++r) ASSERT_EQ(y[t * ys + r], 7.0f);
  }
}

// FP8 NaN codes make exactly the outputs of their rows NaN, as in decode.
TEST_P(GemmPathTest, Fp8NanCodesPropagate) {
  Weights tw = MakeWeights(DType::kF8E4M3, 40, 150, 31, 128, 128, /*nan_codes=*/true);
  const WeightView& w = tw.view;
  const int64_t n = 20;
  std::vector<float> x = Activations(n * w.cols, 32);
  std::vector<float> y = RunRows(fn(), x.data(), n, w);
  for (int64_t r = 0; r < w.rows; ++r) {
    bool has_nan = false;
    for (int64_t c = 0; c < w.cols; ++c) has_nan |= std::isnan(w.At(r, c));
    for (int64_t t = 0; t < n; ++t) ASSERT_EQ(std::isnan(y[t * w.rows + r]), has_nan) << r;
  }
}

}  // namespace
}  // namespace glm::kernels
