// The AMX BF16 path (matmul_amx.h) on CPUs that have it: Σ bf16(x)·w within f32 accumulation error
// of a float64 reference, and the batch-invariance contract — a token's result is the same bits
// alone, in any batch (also past a 256-token chunk), for any row range, Rows() view or thread
// count. Skipped elsewhere (this project's CI machines have no AMX); MatMulPathTest's
// BF16-activation tests also run through it there.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <random>
#include <vector>

#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/matmul_amx.h"
#include "shard_worker/kernels/thread_pool.h"

namespace glm::kernels {
namespace {

struct Bf16Matrix {
  std::vector<uint16_t> data;
  WeightView view;
};

Bf16Matrix RandomMatrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  Bf16Matrix m;
  m.data.resize(rows * cols + 1);
  for (int64_t i = 0; i < rows * cols; ++i) m.data[i] = F32ToBf16(uni(rng));
  m.view.dtype = DType::kBF16;
  m.view.rows = rows;
  m.view.cols = cols;
  m.view.data = m.data.data();
  return m;
}

std::vector<float> RandomActivations(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = g(rng);
  return x;
}

// y [n, w.rows], NaN-poisoned first so an unwritten output shows.
std::vector<float> RunMatMul(const float* x, int64_t n, const WeightView& w, ThreadPool* pool) {
  std::vector<float> y(n * w.rows, std::nanf(""));
  MatMul(x, n, w, y.data(), pool);
  return y;
}

bool BitEqual(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

class AmxMatMulTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CpuSupportsAmxBf16()) GTEST_SKIP() << "no AMX-BF16 on this CPU";
    if (MatMulPathName() != "avx512") GTEST_SKIP() << "the AMX tiles belong to the avx512 path";
    SetBf16Activations(true);
    SetAmxTilesEnabled(true);
  }
  void TearDown() override { SetBf16Activations(false); }
};

TEST_F(AmxMatMulTest, NamesItselfInTheStartUpDetails) {
  EXPECT_EQ(Bf16ActivationsDetails(), "AMX tiles: tdpbf16ps");
}

TEST_F(AmxMatMulTest, MatchesFloat64ReferenceAndStaysBatchInvariant) {
  ThreadPool pool(3);
  for (int64_t cols : {1, 7, 31, 32, 33, 100, 257, 1000}) {
    for (int64_t rows : {1, 7, 15, 16, 17, 31, 32, 33, 130}) {
      const Bf16Matrix m = RandomMatrix(rows, cols, static_cast<uint32_t>(rows * 131 + cols));
      const int64_t n_all = 40;
      const std::vector<float> x = RandomActivations(n_all * cols, static_cast<uint32_t>(cols * 7 + rows));
      const std::vector<float> all = RunMatMul(x.data(), n_all, m.view, nullptr);
      for (int64_t t = 0; t < n_all; ++t)
        for (int64_t r = 0; r < rows; ++r) {
          double ref = 0.0, mag = 0.0;
          for (int64_t c = 0; c < cols; ++c) {
            const double p = static_cast<double>(Bf16ToF32(F32ToBf16(x[t * cols + c]))) * Bf16ToF32(m.data[r * cols + c]);
            ref += p;
            mag += std::fabs(p);
          }
          // f32 accumulation of `cols` exact products: at most ~cols roundings of 2^-24.
          ASSERT_NEAR(all[t * rows + r], ref, 1e-7 * static_cast<double>(cols + 8) * mag + 1e-30)
              << rows << "x" << cols << " token " << t << " row " << r;
        }
      for (int64_t n : {1, 2, 3, 15, 16, 17, 31, 32, 33}) {
        const std::vector<float> part = RunMatMul(x.data(), n, m.view, nullptr);
        for (int64_t i = 0; i < n * rows; ++i)
          ASSERT_TRUE(BitEqual(part[i], all[i])) << rows << "x" << cols << " n=" << n << " at " << i;
      }
      const std::vector<float> threaded = RunMatMul(x.data(), n_all, m.view, &pool);
      for (int64_t i = 0; i < n_all * rows; ++i)
        ASSERT_TRUE(BitEqual(threaded[i], all[i])) << rows << "x" << cols << " threads, at " << i;
      if (rows > 5) {
        const WeightView sub = m.view.Rows(3, rows - 2);
        const std::vector<float> part = RunMatMul(x.data(), n_all, sub, nullptr);
        for (int64_t t = 0; t < n_all; ++t)
          for (int64_t r = 0; r < sub.rows; ++r)
            ASSERT_TRUE(BitEqual(part[t * sub.rows + r], all[t * rows + r + 3])) << rows << "x" << cols << " Rows()";
      }
    }
  }
}

// A prefill chunk of 600 tokens spans three of the kernel's 256-token activation chunks; its last
// token still gets the bits it gets alone (a decode step after a prefix-cache hit).
TEST_F(AmxMatMulTest, LongChunksGiveTheBitsOfSingleTokens) {
  const int64_t rows = 70, cols = 300, n = 600;
  const Bf16Matrix m = RandomMatrix(rows, cols, 5);
  const std::vector<float> x = RandomActivations(n * cols, 9);
  const std::vector<float> all = RunMatMul(x.data(), n, m.view, nullptr);
  for (int64_t t : {int64_t{0}, int64_t{255}, int64_t{256}, int64_t{511}, n - 1}) {
    const std::vector<float> one = RunMatMul(x.data() + t * cols, 1, m.view, nullptr);
    for (int64_t r = 0; r < rows; ++r)
      ASSERT_TRUE(BitEqual(one[r], all[t * rows + r])) << "token " << t << " row " << r;
  }
}

// Off: the same BF16-activation matmuls take the vdpbf16ps kernels, within accumulation error.
TEST_F(AmxMatMulTest, SwitchingOffFallsBackToBf16DotProducts) {
  const Bf16Matrix m = RandomMatrix(48, 512, 3);
  const std::vector<float> x = RandomActivations(5 * 512, 4);
  const std::vector<float> amx = RunMatMul(x.data(), 5, m.view, nullptr);
  SetAmxTilesEnabled(false);
  EXPECT_NE(Bf16ActivationsDetails(), "AMX tiles: tdpbf16ps");
  const std::vector<float> dot = RunMatMul(x.data(), 5, m.view, nullptr);
  SetAmxTilesEnabled(true);
  for (size_t i = 0; i < amx.size(); ++i) EXPECT_NEAR(amx[i], dot[i], 1e-3f * (1.0f + std::fabs(dot[i]))) << i;
}

// Detection agrees with what Linux reports: /proc/cpuinfo lists amx_tile and amx_bf16 only where the
// CPU has them and the kernel manages their state (5.16+, which also grants the permission).
TEST(AmxSupportTest, DetectionAgreesWithProcCpuinfo) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  if (!cpuinfo) GTEST_SKIP() << "no /proc/cpuinfo";
  std::string line;
  bool amx_tile = false, amx_bf16 = false, avx512_bf16 = false;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line);
    for (std::string w; words >> w;) {
      amx_tile |= w == "amx_tile";
      amx_bf16 |= w == "amx_bf16";
      avx512_bf16 |= w == "avx512_bf16";
    }
    break;
  }
  EXPECT_EQ(CpuSupportsAmxBf16(), amx_tile && amx_bf16 && avx512_bf16);
}

}  // namespace
}  // namespace glm::kernels
