// Every matmul path this CPU supports against MatMulRowsReference on awkward shapes, plus the
// matmul.h contract: a result is bit-identical whatever n_tokens, the row range, the thread count
// or a Rows() sub-view.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/matmul_dispatch.h"
#include "shard_worker/kernels/thread_pool.h"

namespace glm::kernels {
namespace {

// A random weight matrix with its storage. FP8 avoids the NaN codes and uses random scales.
struct TestWeights {
  std::vector<uint8_t> data;
  std::vector<float> scales;
  WeightView view;
};

TestWeights MakeWeights(DType dtype, int64_t rows, int64_t cols, uint32_t seed,
                        int64_t block_rows = 128, int64_t block_cols = 128) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  TestWeights tw;
  tw.data.resize(rows * cols * DTypeSize(dtype) + 1);  // +1: never a zero-size vector
  for (int64_t i = 0; i < rows * cols; ++i) {
    switch (dtype) {
      case DType::kF32: {
        float v = uni(rng);
        std::memcpy(tw.data.data() + 4 * i, &v, 4);
        break;
      }
      case DType::kBF16: {
        uint16_t v = F32ToBf16(uni(rng));
        std::memcpy(tw.data.data() + 2 * i, &v, 2);
        break;
      }
      case DType::kF8E4M3: {
        uint8_t v = static_cast<uint8_t>(rng() & 0xff);
        if ((v & 0x7f) == 0x7f) v ^= 0x01;  // not NaN
        tw.data[i] = v;
        break;
      }
      case DType::kI8:
      case DType::kI4:
        ADD_FAILURE() << "group-quantised weights are built by quant_matmul_test";
        return tw;
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
    int64_t scale_rows = (rows + block_rows - 1) / block_rows;
    std::uniform_real_distribution<float> scale(1e-3f, 4e-3f);
    tw.scales.resize(scale_rows * w.scale_cols);
    for (float& s : tw.scales) s = scale(rng);
    w.block_scales = tw.scales.data();
  }
  return tw;
}

std::vector<float> RandomActivations(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  return x;
}

const DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kF8E4M3};

bool BitEqual(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Runs `fn` on all rows and n_tokens tokens of x [n_tokens, cols]; y [n_tokens, rows].
std::vector<float> RunAll(MatMulRowsFn fn, const std::vector<float>& x, int64_t n_tokens,
                       const WeightView& w) {
  std::vector<float> y(n_tokens * w.rows, std::numeric_limits<float>::quiet_NaN());
  fn(x.data(), n_tokens, w.cols, w, 0, w.rows, y.data(), w.rows);
  return y;
}

// Σ|x·w| per output [n_tokens, rows], the scale of the rounding error any order may make.
std::vector<double> Magnitudes(const std::vector<float>& x, int64_t n_tokens, const WeightView& w) {
  std::vector<double> mag(n_tokens * w.rows, 0.0);
  std::vector<float> row(w.cols);
  for (int64_t r = 0; r < w.rows; ++r) {
    for (int64_t c = 0; c < w.cols; ++c) row[c] = std::fabs(w.At(r, c));
    for (int64_t t = 0; t < n_tokens; ++t)
      for (int64_t c = 0; c < w.cols; ++c)
        mag[t * w.rows + r] += std::fabs(double{x[t * w.cols + c]}) * row[c];
  }
  return mag;
}

// |simd - reference| <= 1e-5 · Σ|x·w| + 1e-6 for the first n_tokens tokens.
void ExpectClose(const std::vector<float>& got, const std::vector<float>& want,
                 const std::vector<double>& mag, const WeightView& w, int64_t n_tokens,
                 const std::string& what) {
  int failures = 0;
  for (int64_t i = 0; i < n_tokens * w.rows; ++i) {
    if (!(std::fabs(double{got[i]} - want[i]) <= 1e-5 * mag[i] + 1e-6) && ++failures <= 3)
      ADD_FAILURE() << what << " t=" << i / w.rows << " r=" << i % w.rows << " got " << got[i]
                    << " want " << want[i] << " (sum |xw| " << mag[i] << ")";
  }
}

class MatMulPathTest : public testing::TestWithParam<std::string> {
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

INSTANTIATE_TEST_SUITE_P(AllPaths, MatMulPathTest, testing::ValuesIn(PathNames()),
                         [](const auto& info) { return info.param; });

TEST_P(MatMulPathTest, MatchesReferenceOnAwkwardShapes) {
  const int64_t kCols[] = {1, 7, 15, 17, 100, 130, 257, 1000};
  const int64_t kRows[] = {1, 7, 17, 130, 257};
  const int64_t kTokens[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 33};
  for (DType dtype : kDTypes) {
    for (int64_t cols : kCols) {
      for (int64_t rows : kRows) {
        // FP8 with a block grid that does not divide the shape (the last blocks are partial).
        TestWeights tw = MakeWeights(dtype, rows, cols, static_cast<uint32_t>(rows * 7919 + cols),
                                     dtype == DType::kF8E4M3 ? 5 : 128,
                                     dtype == DType::kF8E4M3 ? 48 : 128);
        std::vector<float> x = RandomActivations(33 * cols, static_cast<uint32_t>(cols));
        std::vector<float> want = RunAll(&MatMulRowsReference, x, 33, tw.view);
        std::vector<double> mag = Magnitudes(x, 33, tw.view);
        for (int64_t n : kTokens) {
          std::vector<float> got = RunAll(fn(), x, n, tw.view);
          ExpectClose(got, want, mag, tw.view, n,
                      std::string(DTypeName(dtype)) + " " + std::to_string(rows) + "x" +
                          std::to_string(cols) + " n=" + std::to_string(n));
        }
      }
    }
  }
}

TEST_P(MatMulPathTest, TallMatrixAndStandardFp8Blocks) {
  for (DType dtype : kDTypes) {
    TestWeights tw = MakeWeights(dtype, 1000, 300, 11);  // 128x128 blocks, partial last ones
    std::vector<float> x = RandomActivations(9 * 300, 12);
    std::vector<float> want = RunAll(&MatMulRowsReference, x, 9, tw.view);
    std::vector<double> mag = Magnitudes(x, 9, tw.view);
    for (int64_t n : {1, 8, 9})
      ExpectClose(RunAll(fn(), x, n, tw.view), want, mag, tw.view, n,
                  std::string(DTypeName(dtype)));
  }
}

TEST_P(MatMulPathTest, BatchInvariantBitForBit) {
  for (DType dtype : kDTypes) {
    for (int64_t cols : {7, 100, 257, 1000}) {
      TestWeights tw = MakeWeights(dtype, 37, cols, 5, 16, 100);
      std::vector<float> x = RandomActivations(33 * cols, 6);
      std::vector<float> all = RunAll(fn(), x, 33, tw.view);
      // Each token alone, and every batch size as a prefix of the same activations.
      for (int64_t n = 1; n <= 33; n += (n < 10 ? 1 : 23)) {
        std::vector<float> part = RunAll(fn(), x, n, tw.view);
        for (int64_t t = 0; t < n; ++t)
          for (int64_t r = 0; r < tw.view.rows; ++r)
            ASSERT_TRUE(BitEqual(part[t * tw.view.rows + r], all[t * tw.view.rows + r]))
                << DTypeName(dtype) << " cols=" << cols << " n=" << n << " t=" << t << " r=" << r;
      }
      for (int64_t t = 0; t < 33; ++t) {
        std::vector<float> one(tw.view.rows);
        fn()(x.data() + t * cols, 1, cols, tw.view, 0, tw.view.rows, one.data(), tw.view.rows);
        for (int64_t r = 0; r < tw.view.rows; ++r)
          ASSERT_TRUE(BitEqual(one[r], all[t * tw.view.rows + r])) << "alone t=" << t;
      }
    }
  }
}

// SetBf16Activations for the duration of a test.
class ScopedBf16Activations {
 public:
  ScopedBf16Activations() { SetBf16Activations(true); }
  ~ScopedBf16Activations() { SetBf16Activations(false); }
};

// BF16 activations: every path computes Σ bf16(x) · w (the reference rounds the same way), and a
// token's result stays the same alone or in any batch — the avx512 path's vdpbf16ps tiles at
// every token count, the others' f32 kernels (GEMM included) on rounded activations.
TEST_P(MatMulPathTest, Bf16ActivationsMatchReferenceAndStayBatchInvariant) {
  ScopedBf16Activations bf16;
  for (int64_t cols : {1, 7, 31, 33, 100, 257, 1000}) {
    for (int64_t rows : {1, 7, 37, 130}) {
      TestWeights tw = MakeWeights(DType::kBF16, rows, cols, static_cast<uint32_t>(rows * 31 + cols));
      std::vector<float> x = RandomActivations(40 * cols, static_cast<uint32_t>(cols + 3));
      std::vector<float> want = RunAll(&MatMulRowsReference, x, 40, tw.view);
      std::vector<double> mag = Magnitudes(x, 40, tw.view);
      std::vector<float> all = RunAll(fn(), x, 40, tw.view);
      ExpectClose(all, want, mag, tw.view, 40, "bf16 activations " + std::to_string(rows) + "x" + std::to_string(cols));
      for (int64_t n : {1, 2, 3, 4, 5, 8, 9, 17}) {
        std::vector<float> part = RunAll(fn(), x, n, tw.view);
        for (int64_t i = 0; i < n * rows; ++i)
          ASSERT_TRUE(BitEqual(part[i], all[i])) << rows << "x" << cols << " n=" << n << " at " << i;
      }
    }
  }
}

// The activations really are rounded: 1 + 2^-10 is 1 in BF16, so with small-integer weights the
// result is exactly Σ w (and with f32 activations it is not).
TEST_P(MatMulPathTest, Bf16ActivationsRoundTheInputs) {
  const int64_t rows = 9, cols = 70;
  std::vector<uint16_t> data(rows * cols);
  std::vector<float> exact(rows, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float v = static_cast<float>((r * 7 + c * 3) % 5) - 1.0f;  // rows sum to 70
      data[r * cols + c] = F32ToBf16(v);
      exact[r] += v;
    }
  WeightView w;
  w.dtype = DType::kBF16;
  w.rows = rows;
  w.cols = cols;
  w.data = data.data();
  const std::vector<float> x(3 * cols, 1.0f + 1.0f / 1024);
  const std::vector<float> f32 = RunAll(fn(), x, 3, w);
  ScopedBf16Activations bf16;
  const std::vector<float> rounded = RunAll(fn(), x, 3, w);
  bool any_differs = false;
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_EQ(rounded[t * rows + r], exact[r]) << "t=" << t << " r=" << r;
      any_differs |= exact[r] != 0.0f && f32[t * rows + r] != exact[r];
    }
  EXPECT_TRUE(any_differs) << "f32 activations should keep the 2^-10";
}

TEST(MatMulDispatchTest, ActivationDTypeNames) {
  bool bf16 = true;
  EXPECT_TRUE(ParseActivationDType("f32", &bf16));
  EXPECT_FALSE(bf16);
  EXPECT_TRUE(ParseActivationDType("", &bf16));
  EXPECT_FALSE(bf16);
  EXPECT_TRUE(ParseActivationDType("bf16", &bf16));
  EXPECT_TRUE(bf16);
  for (const char* bad : {"BF16", "fp32", "f16", "bf16 "}) EXPECT_FALSE(ParseActivationDType(bad, &bf16)) << bad;
}

TEST_P(MatMulPathTest, RowRangeAndSubViewInvariant) {
  for (DType dtype : kDTypes) {
    const int64_t rows = 61, cols = 130, n = 5;
    TestWeights tw = MakeWeights(dtype, rows, cols, 8, 16, 64);
    std::vector<float> x = RandomActivations(n * cols, 9);
    std::vector<float> all = RunAll(fn(), x, n, tw.view);
    // Ragged row ranges: 1, 2, 3, ... rows at a time.
    std::vector<float> pieces(n * rows);
    for (int64_t begin = 0, len = 1; begin < rows; begin += len, ++len) {
      int64_t end = std::min(rows, begin + len);
      fn()(x.data(), n, cols, tw.view, begin, end, pieces.data(), rows);
    }
    // Sub-views (row_offset keeps FP8 scale blocks aligned), written at their place in y.
    std::vector<float> views(n * rows);
    for (int64_t begin = 0; begin < rows; begin += 13) {
      int64_t end = std::min(rows, begin + 13);
      WeightView sub = tw.view.Rows(begin, end);
      fn()(x.data(), n, cols, sub, 0, sub.rows, views.data() + begin, rows);
    }
    for (int64_t i = 0; i < n * rows; ++i) {
      ASSERT_TRUE(BitEqual(pieces[i], all[i])) << DTypeName(dtype) << " range, i=" << i;
      ASSERT_TRUE(BitEqual(views[i], all[i])) << DTypeName(dtype) << " view, i=" << i;
    }
  }
}

TEST_P(MatMulPathTest, ThreadCountInvariantThroughMatMul) {
  ASSERT_TRUE(ForceMatMulPath(GetParam()));
  for (DType dtype : kDTypes) {
    const int64_t rows = 509, cols = 1000, n = 3;
    TestWeights tw = MakeWeights(dtype, rows, cols, 21);
    std::vector<float> x = RandomActivations(n * cols, 22);
    std::vector<float> base(n * rows), y(n * rows);
    MatMul(x.data(), n, tw.view, base.data(), nullptr);
    for (int threads : {1, 2, 3, 4}) {
      ThreadPool pool(threads);
      MatMul(x.data(), n, tw.view, y.data(), &pool);
      for (int64_t i = 0; i < n * rows; ++i)
        ASSERT_TRUE(BitEqual(y[i], base[i])) << DTypeName(dtype) << " threads=" << threads;
    }
  }
  ForceMatMulPath(SupportedMatMulPaths().front().name);
}

// MatMulShared (several matrices over the same activations, one parallel region) gives exactly
// what MatMul gives for each, whatever the thread count; mixed formats included.
TEST_P(MatMulPathTest, SharedActivationsMatchSeparateMatMuls) {
  ASSERT_TRUE(ForceMatMulPath(GetParam()));
  const int64_t cols = 300;
  for (int64_t n : {1, 3, 9}) {
    TestWeights a = MakeWeights(kDTypes[0], 129, cols, 61), b = MakeWeights(kDTypes[1], 40, cols, 62),
                c = MakeWeights(kDTypes[2], 7, cols, 63);
    std::vector<float> x = RandomActivations(n * cols, 64);
    std::vector<float> want_a(n * 129), want_b(n * 40), want_c(n * 7);
    MatMul(x.data(), n, a.view, want_a.data(), nullptr);
    MatMul(x.data(), n, b.view, want_b.data(), nullptr);
    MatMul(x.data(), n, c.view, want_c.data(), nullptr);
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      std::vector<float> ya(n * 129), yb(n * 40), yc(n * 7);
      MatMulShared(x.data(), n, {{&a.view, ya.data()}, {&b.view, yb.data()}, {&c.view, yc.data()}}, &pool);
      for (size_t i = 0; i < ya.size(); ++i) ASSERT_TRUE(BitEqual(ya[i], want_a[i])) << threads << " a " << i;
      for (size_t i = 0; i < yb.size(); ++i) ASSERT_TRUE(BitEqual(yb[i], want_b[i])) << threads << " b " << i;
      for (size_t i = 0; i < yc.size(); ++i) ASSERT_TRUE(BitEqual(yc[i], want_c[i])) << threads << " c " << i;
    }
  }
  ForceMatMulPath(SupportedMatMulPaths().front().name);
}

TEST_P(MatMulPathTest, StridedActivationsAndOutputs) {
  const int64_t rows = 20, cols = 33, n = 4, x_stride = 40, y_stride = 27;
  TestWeights tw = MakeWeights(DType::kBF16, rows, cols, 31);
  std::vector<float> x = RandomActivations(n * x_stride, 32);
  std::vector<float> y(n * y_stride, -7.0f), want(n * y_stride, -7.0f);
  fn()(x.data(), n, x_stride, tw.view, 0, rows, y.data(), y_stride);
  MatMulRowsReference(x.data(), n, x_stride, tw.view, 0, rows, want.data(), y_stride);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = 0; r < y_stride; ++r) {
      float g = y[t * y_stride + r], e = want[t * y_stride + r];
      if (r >= rows) EXPECT_EQ(g, -7.0f) << "wrote outside the row range";
      else EXPECT_NEAR(g, e, 1e-4f * (1 + std::fabs(e)));
    }
  }
}

// One-hot activations make every output one weight exactly: the decode of every FP8 code
// (subnormals, ±448, signed zero) and of BF16 must equal WeightView::At bit for bit.
TEST_P(MatMulPathTest, DecodesEveryWeightExactly) {
  for (DType dtype : kDTypes) {
    const int64_t rows = 256, cols = 70;
    TestWeights tw = MakeWeights(dtype, rows, cols, 41, 64, 32);
    if (dtype == DType::kF8E4M3)
      for (int64_t i = 0; i < rows * cols; ++i) {
        uint8_t v = static_cast<uint8_t>(i % 256);
        tw.data[i] = (v & 0x7f) == 0x7f ? 0x00 : v;
      }
    for (int64_t c : {0, 1, 31, 32, 33, 69}) {
      std::vector<float> x(cols, 0.0f);
      x[c] = 1.0f;
      std::vector<float> y = RunAll(fn(), x, 1, tw.view);
      for (int64_t r = 0; r < rows; ++r) {
        float want = tw.view.At(r, c) + 0.0f;  // the sum starts at +0: -0 weights give +0
        ASSERT_TRUE(BitEqual(y[r], want))
            << DTypeName(dtype) << " r=" << r << " c=" << c << " got " << y[r] << " want " << want;
      }
    }
  }
}

TEST_P(MatMulPathTest, Fp8NanCodesPropagate) {
  TestWeights tw = MakeWeights(DType::kF8E4M3, 4, 40, 51);
  tw.data[0 * 40 + 3] = 0x7f;
  tw.data[2 * 40 + 39] = 0xff;  // in the column tail
  std::vector<float> x = RandomActivations(40, 52);
  std::vector<float> y = RunAll(fn(), x, 1, tw.view);
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_FALSE(std::isnan(y[1]));
  EXPECT_TRUE(std::isnan(y[2]));
  EXPECT_FALSE(std::isnan(y[3]));
}

// FP8 weights known to hold no NaN code (WeightView::fp8_nan_free, set by the loader) take the
// decode without the NaN patch where a path has one: every output bit-identical, at every token
// count (tiles and GEMM) and on awkward shapes.
TEST_P(MatMulPathTest, Fp8NanFreeWeightsGiveTheSameBits) {
  for (int64_t cols : {7, 100, 257, 1000}) {
    TestWeights tw = MakeWeights(DType::kF8E4M3, 37, cols, 61, 16, 100);
    ASSERT_FALSE(Fp8HasNanCode(tw.data.data(), 37 * cols));
    for (int64_t n : {1, 3, 4, 9, 33}) {
      std::vector<float> x = RandomActivations(n * cols, 62);
      tw.view.fp8_nan_free = false;
      const std::vector<float> patched = RunAll(fn(), x, n, tw.view);
      tw.view.fp8_nan_free = true;
      const std::vector<float> nan_free = RunAll(fn(), x, n, tw.view);
      ASSERT_EQ(patched.size(), nan_free.size());
      for (size_t i = 0; i < patched.size(); ++i)
        ASSERT_TRUE(BitEqual(patched[i], nan_free[i])) << "cols " << cols << " tokens " << n << " output " << i;
    }
  }
}

TEST(Fp8NanCodeTest, FindsEitherSign) {
  std::vector<uint8_t> b(1000, 0x7e);
  EXPECT_FALSE(Fp8HasNanCode(b.data(), static_cast<int64_t>(b.size())));
  b[999] = 0xff;
  EXPECT_TRUE(Fp8HasNanCode(b.data(), static_cast<int64_t>(b.size())));
  EXPECT_FALSE(Fp8HasNanCode(b.data(), 999));
  b[5] = 0x7f;
  EXPECT_TRUE(Fp8HasNanCode(b.data(), 6));
}

TEST(MatMulDispatchTest, PortableIsLastAndForceWorks) {
  auto paths = SupportedMatMulPaths();
  ASSERT_FALSE(paths.empty());
  EXPECT_EQ(paths.back().name, "portable");
  EXPECT_EQ(MatMulPathName(), SelectedMatMulPath().name);
  EXPECT_FALSE(ForceMatMulPath("no-such-path"));
  for (const auto& p : paths) {
    ASSERT_TRUE(ForceMatMulPath(p.name));
    EXPECT_EQ(MatMulPathName(), p.name);
    EXPECT_EQ(BestMatMulRows(), p.fn);
  }
  ForceMatMulPath(paths.front().name);
}

TEST(MatMulDispatchTest, SelectByNameExplainsUnsupportedNames) {
  const std::vector<std::string> names = MatMulPathNames();
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(SelectMatMulPath("portable"), "");
  EXPECT_EQ(MatMulPathName(), "portable");
  EXPECT_EQ(SelectMatMulPath("auto"), "");
  EXPECT_EQ(MatMulPathName(), names.front());
  const std::string err = SelectMatMulPath("avx9000");
  EXPECT_NE(err.find("avx9000"), std::string::npos) << err;
  EXPECT_NE(err.find("portable"), std::string::npos) << err;
  EXPECT_EQ(MatMulPathName(), names.front()) << "a rejected name changed the path";
}

}  // namespace
}  // namespace glm::kernels
