// Calibrated (GPTQ) quantisation: valid codes in QuantizeRow's format, exactly QuantizeRow's
// bytes when the inputs are uncorrelated, and a smaller output error than round-to-nearest on
// correlated inputs (what it is for).
#include "shard_worker/kernels/gptq.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "shard_worker/kernels/quantize.h"
#include "shard_worker/kernels/weight_view.h"

namespace glm::kernels {
namespace {

struct Quantized {
  std::vector<uint8_t> data;
  std::vector<uint16_t> scales;
  WeightView view(DType dtype, int64_t rows, int64_t cols, int64_t group) const {
    WeightView v;
    v.dtype = dtype;
    v.rows = rows;
    v.cols = cols;
    v.group_size = group;
    v.data = data.data();
    v.group_scales = scales.data();
    return v;
  }
};

Quantized Allocate(DType dtype, int64_t rows, int64_t cols, int64_t group) {
  Quantized q;
  q.data.assign(static_cast<size_t>(rows * DTypeRowBytes(dtype, cols)), 0);
  q.scales.assign(static_cast<size_t>(rows * QuantGroupsPerRow(cols, group)), 0);
  return q;
}

Quantized RoundToNearest(DType dtype, const std::vector<float>& w, int64_t rows, int64_t cols, int64_t group) {
  Quantized q = Allocate(dtype, rows, cols, group);
  const int64_t rb = DTypeRowBytes(dtype, cols), g = QuantGroupsPerRow(cols, group);
  for (int64_t r = 0; r < rows; ++r)
    QuantizeRow(dtype, w.data() + r * cols, cols, group, q.data.data() + r * rb, q.scales.data() + r * g);
  return q;
}

constexpr int64_t kFactors = 6;

// How kFactors latent factors mix into `cols` input columns: [kFactors, cols].
std::vector<float> FactorMix(int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> mix(kFactors * cols);
  for (float& m : mix) m = normal(rng);
  return mix;
}

// Inputs x [n, cols] with strongly correlated columns (latent factors mixed by `mix`, plus
// noise), as activations are.
std::vector<float> CorrelatedInputs(int64_t n, int64_t cols, const std::vector<float>& mix, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t factors = kFactors;
  std::vector<float> x(n * cols);
  for (int64_t t = 0; t < n; ++t) {
    float f[factors];
    for (float& v : f) v = normal(rng);
    for (int64_t c = 0; c < cols; ++c) {
      float v = 0.2f * normal(rng);
      for (int64_t k = 0; k < factors; ++k) v += f[k] * mix[k * cols + c];
      x[t * cols + c] = v;
    }
  }
  return x;
}

// Σ_t |W x_t - Q x_t|² over the inputs.
double OutputError(const std::vector<float>& w, const WeightView& q, const std::vector<float>& x, int64_t n) {
  double err = 0.0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < q.rows; ++r) {
      double d = 0.0;
      for (int64_t c = 0; c < q.cols; ++c) d += (w[r * q.cols + c] - q.At(r, c)) * double{x[t * q.cols + c]};
      err += d * d;
    }
  return err;
}

TEST(GptqTest, UncorrelatedInputsGiveRoundToNearestExactly) {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (DType dtype : {DType::kI4, DType::kI8}) {
    const int64_t rows = 9, cols = 100, group = dtype == DType::kI4 ? 32 : 64;  // a partial last group
    std::vector<float> w(rows * cols);
    for (float& v : w) v = normal(rng);
    InputGram gram(cols);  // diagonal: every column its own scale of inputs, none correlated
    for (int64_t i = 0; i < cols; ++i) gram.sum[i * cols + i] = 1.0 + i;
    gram.samples = 1;
    Quantized gptq = Allocate(dtype, rows, cols, group);
    ASSERT_TRUE(GptqQuantizeMatrix(dtype, w.data(), rows, cols, group, gram, 0.01, 2, gptq.data.data(),
                                   gptq.scales.data())
                    .ok());
    const Quantized rtn = RoundToNearest(dtype, w, rows, cols, group);
    EXPECT_EQ(gptq.data, rtn.data) << DTypeName(dtype);
    EXPECT_EQ(gptq.scales, rtn.scales) << DTypeName(dtype);
  }
}

TEST(GptqTest, CorrelatedInputsLoseLessOfTheOutputThanRoundToNearest) {
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (DType dtype : {DType::kI4, DType::kI8}) {
    for (int64_t cols : {96, 130}) {  // whole groups, and a row ending in a partial block
      const int64_t rows = 24, n = 600, group = 32;
      std::vector<float> w(rows * cols);
      for (float& v : w) v = normal(rng);
      // Calibration and held-out inputs: different samples of the same distribution.
      const std::vector<float> mix = FactorMix(cols, rng);
      const std::vector<float> calib = CorrelatedInputs(n, cols, mix, rng), held_out = CorrelatedInputs(n, cols, mix, rng);
      InputGram gram(cols);
      gram.Add(calib.data(), n);
      EXPECT_EQ(gram.samples, n);
      Quantized gptq = Allocate(dtype, rows, cols, group);
      ASSERT_TRUE(GptqQuantizeMatrix(dtype, w.data(), rows, cols, group, gram, 0.01, 3, gptq.data.data(),
                                     gptq.scales.data())
                      .ok());
      const Quantized rtn = RoundToNearest(dtype, w, rows, cols, group);
      const WeightView gv = gptq.view(dtype, rows, cols, group), rv = rtn.view(dtype, rows, cols, group);
      // Codes within the format's range, every scale finite (At decodes exactly what kernels read).
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) ASSERT_TRUE(std::isfinite(gv.At(r, c)));
      const double e_gptq = OutputError(w, gv, held_out, n), e_rtn = OutputError(w, rv, held_out, n);
      // On inputs it was not calibrated on: well below round-to-nearest's error.
      EXPECT_LT(e_gptq, 0.5 * e_rtn) << DTypeName(dtype) << " cols " << cols;
    }
  }
}

TEST(GptqTest, ThreadCountChangesNoByte) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  const int64_t rows = 64, cols = 64, n = 200;
  std::vector<float> w(rows * cols);
  for (float& v : w) v = normal(rng);
  const std::vector<float> x = CorrelatedInputs(n, cols, FactorMix(cols, rng), rng);
  InputGram gram(cols);
  gram.Add(x.data(), n);
  Quantized one = Allocate(DType::kI4, rows, cols, 32), four = Allocate(DType::kI4, rows, cols, 32);
  ASSERT_TRUE(GptqQuantizeMatrix(DType::kI4, w.data(), rows, cols, 32, gram, 0.01, 1, one.data.data(), one.scales.data()).ok());
  ASSERT_TRUE(GptqQuantizeMatrix(DType::kI4, w.data(), rows, cols, 32, gram, 0.01, 4, four.data.data(), four.scales.data()).ok());
  EXPECT_EQ(one.data, four.data);
  EXPECT_EQ(one.scales, four.scales);
}

TEST(GptqTest, UnreachedColumnsAndBadArgumentsAreHandled) {
  const int64_t rows = 4, cols = 64;
  std::vector<float> w(rows * cols, 0.01f);
  // No input ever reached column 5: it counts as independent (no NaN from a singular H).
  std::vector<float> x(10 * cols, 1.0f);
  for (int64_t t = 0; t < 10; ++t) x[t * cols + 5] = 0.0f;
  InputGram gram(cols);
  gram.Add(x.data(), 10);  // rank 1 apart from that: damping makes it positive definite
  Quantized q = Allocate(DType::kI4, rows, cols, 32);
  ASSERT_TRUE(GptqQuantizeMatrix(DType::kI4, w.data(), rows, cols, 32, gram, 0.01, 1, q.data.data(), q.scales.data()).ok());
  const WeightView v = q.view(DType::kI4, rows, cols, 32);
  for (int64_t c = 0; c < cols; ++c) EXPECT_TRUE(std::isfinite(v.At(0, c)));
  InputGram wrong(cols - 1);
  EXPECT_EQ(GptqQuantizeMatrix(DType::kI4, w.data(), rows, cols, 32, wrong, 0.01, 1, q.data.data(), q.scales.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GptqQuantizeMatrix(DType::kBF16, w.data(), rows, cols, 32, gram, 0.01, 1, q.data.data(), q.scales.data()).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace glm::kernels
