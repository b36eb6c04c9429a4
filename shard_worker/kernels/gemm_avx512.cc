#include "shard_worker/kernels/gemm_avx512.h"

// GCC 12's AVX-512 intrinsics self-initialise `__Y` (GCC PR 105593); see matmul_avx512.cc.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <limits>
#include <utility>

#include "shard_worker/kernels/avx512_common.h"
#include "shard_worker/kernels/gemm_driver.h"

namespace glm::kernels {
namespace {

constexpr int kLanes = 16;
// 4 rows × 6 tokens: 24 accumulators + 4 weight vectors + 1 activation = 29 of 32 zmm; per
// vector step 10 loads (4 from the L2 panel, 6 from L1) feed 24 FMAs.
constexpr int kRows = 4;
constexpr int kTokens = 6;
static_assert(kTokens <= kMaxGemmTokens);

// F32: natural order, 32-column chunks; pitch is a multiple of 32.
GLM_AVX512 void PackF32(const uint8_t* row, int64_t cols, const float*, int64_t pitch,
                        float* dst) {
  const float* p = reinterpret_cast<const float*>(row);
  for (int64_t c = 0; c < pitch; c += kLanes) {
    const int64_t n = cols - c;
    const __mmask16 m = n >= kLanes ? __mmask16(0xffff) : n <= 0 ? __mmask16(0)
                                                                 : __mmask16((1u << n) - 1);
    _mm512_store_ps(dst + c, _mm512_maskz_loadu_ps(m, p + c));
  }
}

// BF16: 32-column chunks, even columns (lane << 16) then odd ones (lane & 0xffff0000).
GLM_AVX512 void PackBf16(const uint8_t* row, int64_t cols, const float*, int64_t pitch,
                         float* dst) {
  const uint16_t* p = reinterpret_cast<const uint16_t*>(row);
  const __m512i hi_mask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t c = 0; c < pitch; c += 32) {
    const int64_t n = cols - c;
    const __mmask32 m = n >= 32 ? ~__mmask32(0) : n <= 0 ? __mmask32(0)
                                                          : __mmask32((uint64_t{1} << n) - 1);
    const __m512i raw = _mm512_maskz_loadu_epi16(m, p + c);
    _mm512_store_ps(dst + c, _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16)));
    _mm512_store_ps(dst + c + kLanes, _mm512_castsi512_ps(_mm512_and_si512(raw, hi_mask)));
  }
}

// FP8 packers' pieces: bytes [c, c + 64) of a row of `cols` (zeros past its end), and four
// vectors of scales or outputs at p.
GLM_AVX512_INLINE __m512i LoadFp8Chunk(const uint8_t* row, int64_t cols, int64_t c) {
  const int64_t n = cols - c;
  const __mmask64 m = n >= 64 ? ~__mmask64(0) : n <= 0 ? __mmask64(0) : __mmask64((uint64_t{1} << n) - 1);
  return _mm512_maskz_loadu_epi8(m, row + c);
}
GLM_AVX512_INLINE void Load4(const float* p, __m512 (&v)[4]) {
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) v[q] = _mm512_load_ps(p + q * kLanes);
}
GLM_AVX512_INLINE void Store4(const __m512 (&v)[4], float* p) {
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) _mm512_store_ps(p + q * kLanes, v[q]);
}

// FP8: 64-column chunks (one cache line) in DecodeFp8's order; `scales` in the same order.
GLM_AVX512 void PackFp8(const uint8_t* row, int64_t cols, const float* scales, int64_t pitch,
                        float* dst) {
  for (int64_t c = 0; c < pitch; c += 64) {
    __m512 s[4], v[4];
    Load4(scales + c, s);
    DecodeFp8(LoadFp8Chunk(row, cols, c), s, v);
    Store4(v, dst + c);
  }
}

// PackFp8 in DecodeFp8ByTable's order (VBMI).
GLM_AVX512_VBMI void PackFp8ByTable(const uint8_t* row, int64_t cols, const float* scales, int64_t pitch,
                                    float* dst) {
  for (int64_t c = 0; c < pitch; c += 64) {
    __m512 s[4], v[4];
    Load4(scales + c, s);
    DecodeFp8ByTable(LoadFp8Chunk(row, cols, c), s, v);
    Store4(v, dst + c);
  }
}

// GemmMicroFn for kRows × T.
template <int T>
GLM_AVX512 void Micro(const float* w, int64_t w_stride, const float* x, int64_t x_stride,
                      int64_t n_vec, float* acc_mem, bool load_acc, bool finish, float* y,
                      int64_t y_stride, int n_rows) {
  __m512 acc[kRows][T];
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
      acc[r][t] = load_acc ? _mm512_load_ps(acc_mem + (r * T + t) * kLanes) : _mm512_setzero_ps();

  for (int64_t s = 0; s < n_vec; ++s) {
    __m512 wv[kRows];
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) wv[r] = _mm512_load_ps(w + r * w_stride + s * kLanes);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_load_ps(x + t * x_stride + s * kLanes);
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }

  if (finish) {
    StoreReduced<kRows, T>(acc, n_rows, y, y_stride);
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) _mm512_store_ps(acc_mem + (r * T + t) * kLanes, acc[r][t]);
  }
}

template <int... Ts>
void FillMicro(GemmKernelSet& g, std::integer_sequence<int, Ts...>) {
  ((g.micro[Ts + 1] = &Micro<Ts + 1>), ...);
}

GemmKernelSet MakeGemmKernelSet(bool fp8_by_table) {
  GemmKernelSet g;
  g.lanes = kLanes;
  g.rows = kRows;
  g.max_tokens = kTokens;
  g.pack[static_cast<int>(DType::kF32)] = &PackF32;
  g.pack[static_cast<int>(DType::kBF16)] = &PackBf16;
  g.pack[static_cast<int>(DType::kF8E4M3)] = fp8_by_table ? &PackFp8ByTable : &PackFp8;
  FillMicro(g, std::make_integer_sequence<int, kTokens>());
  return g;
}

}  // namespace

const GemmKernelSet* Avx512GemmKernels(bool fp8_by_table) {
  static const GemmKernelSet by_table = MakeGemmKernelSet(true), f16c = MakeGemmKernelSet(false);
  return fp8_by_table ? &by_table : &f16c;
}

}  // namespace glm::kernels
