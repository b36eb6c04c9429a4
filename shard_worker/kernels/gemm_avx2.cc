#include "shard_worker/kernels/gemm_avx2.h"

#include <immintrin.h>

#include <cstring>
#include <utility>

#include "shard_worker/kernels/avx2_common.h"
#include "shard_worker/kernels/gemm_driver.h"

namespace glm::kernels {
namespace {

constexpr int kLanes = 8;
// 16 ymm: 2 rows × 5 tokens = 10 accumulators + 2 weight vectors + 1 activation; per vector
// step 7 loads feed 10 FMAs.
constexpr int kRows = 2;
constexpr int kTokens = 5;
static_assert(kTokens <= kMaxGemmTokens);

// Bytes of chunk c (chunk_bytes long) of a row of row_bytes: the row itself, or (for the last,
// partial chunk or padding) a zeroed copy — never read past the row.
inline const uint8_t* ChunkBytes(const uint8_t* row, int64_t row_bytes, int64_t off,
                                 int64_t chunk_bytes, uint8_t* tmp) {
  if (off + chunk_bytes <= row_bytes) return row + off;
  std::memset(tmp, 0, chunk_bytes);
  if (off < row_bytes) std::memcpy(tmp, row + off, row_bytes - off);
  return tmp;
}

// F32: natural order.
GLM_AVX2 void PackF32(const uint8_t* row, int64_t cols, const float*, int64_t pitch, float* dst) {
  std::memcpy(dst, row, cols * 4);
  std::memset(dst + cols, 0, (pitch - cols) * 4);
}

// BF16: 16-column chunks, even columns (lane << 16) then odd ones (lane & 0xffff0000).
GLM_AVX2 void PackBf16(const uint8_t* row, int64_t cols, const float*, int64_t pitch,
                       float* dst) {
  alignas(32) uint8_t tmp[32];
  const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t c = 0; c < pitch; c += 16) {
    const __m256i raw = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(ChunkBytes(row, cols * 2, c * 2, 32, tmp)));
    _mm256_store_ps(dst + c, _mm256_castsi256_ps(_mm256_slli_epi32(raw, 16)));
    _mm256_store_ps(dst + c + kLanes, _mm256_castsi256_ps(_mm256_and_si256(raw, hi_mask)));
  }
}

// FP8: 32-column chunks in DecodeFp8's order; `scales` in the same order.
GLM_AVX2_F16C void PackFp8(const uint8_t* row, int64_t cols, const float* scales, int64_t pitch,
                      float* dst) {
  alignas(32) uint8_t tmp[32];
  for (int64_t c = 0; c < pitch; c += 32) {
    const __m256i raw =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ChunkBytes(row, cols, c, 32, tmp)));
    __m256 v[4];
    DecodeFp8(raw, scales + c, v);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) _mm256_store_ps(dst + c + k * 8, v[k]);
  }
}

// GemmMicroFn for kRows × T.
template <int T>
GLM_AVX2 void Micro(const float* w, int64_t w_stride, const float* x, int64_t x_stride,
                    int64_t n_vec, float* acc_mem, bool load_acc, bool finish, float* y,
                    int64_t y_stride, int n_rows) {
  __m256 acc[kRows][T];
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
      acc[r][t] = load_acc ? _mm256_load_ps(acc_mem + (r * T + t) * kLanes) : _mm256_setzero_ps();

  for (int64_t s = 0; s < n_vec; ++s) {
    __m256 wv[kRows];
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) wv[r] = _mm256_load_ps(w + r * w_stride + s * kLanes);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m256 xv = _mm256_load_ps(x + t * x_stride + s * kLanes);
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }

  if (finish) {
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r)
        if (r < n_rows) y[t * y_stride + r] = Reduce(acc[r][t]);
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) _mm256_store_ps(acc_mem + (r * T + t) * kLanes, acc[r][t]);
  }
}

template <int... Ts>
void FillMicro(GemmKernelSet& g, std::integer_sequence<int, Ts...>) {
  ((g.micro[Ts + 1] = &Micro<Ts + 1>), ...);
}

GemmKernelSet MakeGemmKernelSet() {
  GemmKernelSet g;
  g.lanes = kLanes;
  g.rows = kRows;
  g.max_tokens = kTokens;
  g.pack[static_cast<int>(DType::kF32)] = &PackF32;
  g.pack[static_cast<int>(DType::kBF16)] = &PackBf16;
  g.pack[static_cast<int>(DType::kF8E4M3)] = &PackFp8;
  FillMicro(g, std::make_integer_sequence<int, kTokens>());
  return g;
}

}  // namespace

const GemmKernelSet* Avx2GemmKernels() {
  static const GemmKernelSet kernels = MakeGemmKernelSet();
  return &kernels;
}

}  // namespace glm::kernels
