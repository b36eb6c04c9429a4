#include "shard_worker/kernels/vector_ops.h"

// GCC 12's own AVX-512 intrinsics self-initialise `__Y` (GCC PR 105593) and warn once inlined;
// the warnings are about the header, not this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "shard_worker/kernels/absmax_quantize.h"
#include "shard_worker/kernels/dtype.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "shard_worker/kernels/avx512_common.h"
#include "shard_worker/kernels/matmul_avx2.h"
#include "shard_worker/kernels/vector_ops_avx2.h"
#include "shard_worker/kernels/matmul_avx512.h"
#endif

namespace glm::kernels {

float DotReference(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

void AxpyReference(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void ReluAccumulateReference(const float* x, float scale, float alpha, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float d = x[i] * scale;
    if (d > 0.0f) y[i] = y[i] + d * alpha;
  }
}

void AddScaleReference(const float* a, const float* b, float s, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = (a[i] + b[i]) * s;
}

int64_t ArgMaxReference(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

void DotRowsF64Reference(const float* x, const float* m, int64_t n_rows, int64_t n, float* out) {
  for (int64_t r = 0; r < n_rows; ++r) {
    double acc = 0;
    for (int64_t c = 0; c < n; ++c) acc += static_cast<double>(x[c]) * m[r * n + c];
    out[r] = static_cast<float>(acc);
  }
}

namespace {

// Portable double dot: 8 lanes, then the same tree as the AVX-512 path's reduction.
void DotRowsF64Portable(const float* x, const float* m, int64_t n_rows, int64_t n, float* out) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* row = m + r * n;
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t c = 0;
    for (; c + 8 <= n; c += 8)
      for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(x[c + k]) * row[c + k];
    for (int k = 0; c + k < n; ++k) acc[k] += static_cast<double>(x[c + k]) * row[c + k];
    out[r] = static_cast<float>(((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7])));
  }
}

// Portable: 8 partial sums the compiler can keep in a vector register.
float DotPortable(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) float DotAvx512(const float* a, const float* b, int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

__attribute__((target("avx512f"))) void AddScaleAvx512(const float* a, const float* b, float s, float* out, int64_t n) {
  const __m512 vs = _mm512_set1_ps(s);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_add_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)), vs));
  if (i < n) {
    const __mmask16 m = TailMask16(n - i);
    _mm512_mask_storeu_ps(out + i, m,
                          _mm512_mul_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)), vs));
  }
}

// Multiply, multiply, then add (never a fused multiply-add): the scalar twin's roundings.
__attribute__((target("avx512f"))) void ReluAccumulateAvx512(const float* x, float scale, float alpha, float* y,
                                                             int64_t n) {
  const __m512 vs = _mm512_set1_ps(scale), va = _mm512_set1_ps(alpha), zero = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask16(n - i);
    const __m512 d = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs);
    const __mmask16 pos = _mm512_mask_cmp_ps_mask(m, d, zero, _CMP_GT_OQ);
    const __m512 yv = _mm512_maskz_loadu_ps(m, y + i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mask_add_ps(yv, pos, yv, _mm512_mul_ps(d, va)));
  }
}

__attribute__((target("avx512f"))) void AxpyAvx512(float alpha, const float* x, float* y, int64_t n) {
  const __m512 va = _mm512_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

// 16 row elements as f32: loaded, or BF16 widened (exactly: a BF16 value is the f32 with its low
// 16 bits zero), so a BF16 row gives the f32 kernel's result on its widened values bit for bit.
GLM_AVX512_INLINE __m512 LoadRow16(const float* p) { return _mm512_loadu_ps(p); }
GLM_AVX512_INLINE __m512 LoadRow16(__mmask16 m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
GLM_AVX512_INLINE __m512 WidenBf16x16(__m256i v) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}
GLM_AVX512_INLINE __m512 LoadRow16(const uint16_t* p) {
  return WidenBf16x16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
GLM_AVX512_INLINE __m512 LoadRow16(__mmask16 m, const uint16_t* p) { return WidenBf16x16(_mm256_maskz_loadu_epi16(m, p)); }
// 16 e4m3 bytes as f32, exactly Fp8E4M3ToF32's values: a byte's 7 magnitude bits placed at bit 20
// of an f32 (its 4 exponent bits low in the f32 exponent, its 3 mantissa bits on top of the f32
// mantissa) read as a float are the value · 2^-120 — subnormal codes included, as f32 subnormals —
// so one exact multiply by 2^120 gives the value (with MXCSR's denormals-are-zero off, the default
// nothing here changes); the sign bit goes to bit 31 by a bit select.
// The NaN codes (0x7f, 0xff) come out as ±480 (Widen's reading of them): WriteFp8Row never writes
// them — a row holding a NaN gets a NaN scale instead, which every score and weight of the row
// carries (checking the codes here cost 12% of a step's attention on FP8 rows).
GLM_AVX512_INLINE __m512 WidenFp8x16(__m128i bytes) {
  const __m512i x = _mm512_cvtepu8_epi32(bytes);
  const __m512i magnitude = _mm512_srli_epi32(_mm512_slli_epi32(x, 25), 5);  // bits 20..26, sign dropped
  // 0xe4: bit select, (C & A) | (~C & B) with A = the sign at bit 31, B = the magnitude, C = bit 31.
  const __m512i bits =
      _mm512_ternarylogic_epi32(_mm512_slli_epi32(x, 24), magnitude, _mm512_set1_epi32(INT32_MIN), 0xe4);
  return _mm512_mul_ps(_mm512_castsi512_ps(bits), _mm512_set1_ps(0x1p120f));
}
GLM_AVX512_INLINE __m512 LoadRow16(const uint8_t* p) {
  return WidenFp8x16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
GLM_AVX512_INLINE __m512 LoadRow16(__mmask16 m, const uint8_t* p) { return WidenFp8x16(_mm_maskz_loadu_epi8(m, p)); }
// 16 int8 values as f32 (exact).
GLM_AVX512_INLINE __m512 LoadRow16(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
GLM_AVX512_INLINE __m512 LoadRow16(__mmask16 m, const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p)));
}

// A tile of NQ queries x NK rows (NQ·NK <= 16 accumulators, one per pair): per 16-column chunk,
// the NQ query chunks and the NK row chunks are loaded (BF16 rows widened) once and meet in NQ·NK
// FMAs; then the 16 lane trees at once (ReduceLanes16). A pair's accumulator sees the same FMAs in
// the same order whatever the tile (chunks ascending, the tail chunk masked to zeros) and
// ReduceLanes16 gives each accumulator Reduce()'s tree, so a score depends only on q, the row and
// n — never on the tile shape, the query count, or where the row sits in the list. Tiles rather
// than one query against 16 rows: a row chunk is loaded (and widened) once for NQ queries, not
// once per query (with BF16 rows the widening made the per-query loop 10% slower in prefill).
template <int NQ, int NK, typename Row>
GLM_AVX512_INLINE void DotRowsTile(const float* q, int64_t q_stride, const Row* const* rows, int64_t n, float* out,
                                   int64_t out_stride) {
  static_assert(NQ * NK <= 16, "a tile holds at most 16 accumulators");
  __m512 acc[16];
#pragma GCC unroll 16
  for (int a = 0; a < 16; ++a) acc[a] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    __m512 qv[NQ], rv[NK];
#pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j) qv[j] = _mm512_loadu_ps(q + j * q_stride + c);
#pragma GCC unroll 16
    for (int k = 0; k < NK; ++k) rv[k] = LoadRow16(rows[k] + c);
#pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j)
#pragma GCC unroll 16
      for (int k = 0; k < NK; ++k) acc[j * NK + k] = _mm512_fmadd_ps(qv[j], rv[k], acc[j * NK + k]);
  }
  if (c < n) {
    const __mmask16 m = TailMask16(n - c);
    __m512 qv[NQ], rv[NK];
#pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j) qv[j] = _mm512_maskz_loadu_ps(m, q + j * q_stride + c);
#pragma GCC unroll 16
    for (int k = 0; k < NK; ++k) rv[k] = LoadRow16(m, rows[k] + c);
#pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j)
#pragma GCC unroll 16
      for (int k = 0; k < NK; ++k) acc[j * NK + k] = _mm512_fmadd_ps(qv[j], rv[k], acc[j * NK + k]);
  }
  alignas(64) float sums[16];
  _mm512_store_ps(sums, ReduceLanes16(acc));
#pragma GCC unroll 4
  for (int j = 0; j < NQ; ++j)
#pragma GCC unroll 16
    for (int k = 0; k < NK; ++k) out[j * out_stride + k] = sums[j * NK + k];
}

// NQ queries over every row: tiles of NK = 16 / NQ rows, the last 1..NK-1 rows in a narrower tile.
template <int NQ, typename Row, int... NKs>
GLM_AVX512_INLINE void DotRowsQueries(const float* q, int64_t q_stride, const Row* const* rows, int64_t n_rows,
                                      int64_t n, float* out, int64_t out_stride, std::integer_sequence<int, NKs...>) {
  constexpr int kNk = 16 / NQ;
  int64_t k0 = 0;
  for (; k0 + kNk <= n_rows; k0 += kNk) DotRowsTile<NQ, kNk>(q, q_stride, rows + k0, n, out + k0, out_stride);
  const int left = static_cast<int>(n_rows - k0);
  ((left == NKs + 1 ? DotRowsTile<NQ, NKs + 1>(q, q_stride, rows + k0, n, out + k0, out_stride) : void()), ...);
}

template <typename Row>
GLM_AVX512 void DotRowsAvx512(const float* q, int64_t q_stride, int nq, const Row* const* rows, int64_t n_rows,
                              int64_t n, float* out, int64_t out_stride) {
  // Queries 4 at a time (tiles of 4 x 4), the last 1-3 in tiles of 16 / count rows.
  int j = 0;
  for (; j + 4 <= nq; j += 4)
    DotRowsQueries<4>(q + j * q_stride, q_stride, rows, n_rows, n, out + j * out_stride, out_stride,
                      std::make_integer_sequence<int, 3>());
  switch (nq - j) {
    case 3:
      DotRowsQueries<3>(q + j * q_stride, q_stride, rows, n_rows, n, out + j * out_stride, out_stride,
                        std::make_integer_sequence<int, 4>());
      break;
    case 2:
      DotRowsQueries<2>(q + j * q_stride, q_stride, rows, n_rows, n, out + j * out_stride, out_stride,
                        std::make_integer_sequence<int, 7>());
      break;
    case 1:
      DotRowsQueries<1>(q + j * q_stride, q_stride, rows, n_rows, n, out + j * out_stride, out_stride,
                        std::make_integer_sequence<int, 15>());
      break;
    default:
      break;
  }
}

// Columns in 16-lane chunks, CH chunks at a time, rows inner: each query's CH chunks stay in
// registers across the rows and each weight broadcast serves CH chunks (one FMA per row per
// element, k ascending: exactly Axpy's per-element arithmetic).
template <int NQ, int CH, typename Row>
GLM_AVX512_INLINE void WeightedRowSumCols(const float* w, int64_t w_stride, const Row* const* rows, int64_t n_rows,
                                          int64_t i0, int64_t n, float* y, int64_t y_stride) {
  __mmask16 m[CH];
#pragma GCC unroll 4
  for (int c = 0; c < CH; ++c) {
    m[c] = TailMask16(n - i0 - 16 * c);
  }
  __m512 acc[NQ][CH];
#pragma GCC unroll 8
  for (int j = 0; j < NQ; ++j)
#pragma GCC unroll 4
    for (int c = 0; c < CH; ++c) acc[j][c] = _mm512_maskz_loadu_ps(m[c], y + j * y_stride + i0 + 16 * c);
  for (int64_t k = 0; k < n_rows; ++k) {
    __m512 v[CH];
#pragma GCC unroll 4
    for (int c = 0; c < CH; ++c) v[c] = LoadRow16(m[c], rows[k] + i0 + 16 * c);
#pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j) {
      const __m512 wj = _mm512_set1_ps(w[j * w_stride + k]);
#pragma GCC unroll 4
      for (int c = 0; c < CH; ++c) acc[j][c] = _mm512_fmadd_ps(wj, v[c], acc[j][c]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NQ; ++j)
#pragma GCC unroll 4
    for (int c = 0; c < CH; ++c) _mm512_mask_storeu_ps(y + j * y_stride + i0 + 16 * c, m[c], acc[j][c]);
}

// Up to 24 accumulators: 8 queries x 3 chunks, 4 x 4 (and 1-2 queries 4 chunks).
template <int NQ, typename Row>
GLM_AVX512 void WeightedRowSumAvx512N(const float* w, int64_t w_stride, const Row* const* rows, int64_t n_rows,
                                      int64_t n, float* y, int64_t y_stride) {
  constexpr int kCh = NQ <= 4 ? 4 : 3;
  for (int64_t i0 = 0; i0 < n; i0 += 16 * kCh)
    WeightedRowSumCols<NQ, kCh>(w, w_stride, rows, n_rows, i0, n, y, y_stride);
}

template <typename Row>
GLM_AVX512 void WeightedRowSumAvx512(const float* w, int64_t w_stride, int nq, const Row* const* rows,
                                     int64_t n_rows, int64_t n, float* y, int64_t y_stride) {
  using Fn = void (*)(const float*, int64_t, const Row* const*, int64_t, int64_t, float*, int64_t);
  static constexpr Fn kFns[kMaxQueries + 1] = {
      nullptr, &WeightedRowSumAvx512N<1, Row>, &WeightedRowSumAvx512N<2, Row>, &WeightedRowSumAvx512N<3, Row>,
      &WeightedRowSumAvx512N<4, Row>, &WeightedRowSumAvx512N<5, Row>, &WeightedRowSumAvx512N<6, Row>,
      &WeightedRowSumAvx512N<7, Row>, &WeightedRowSumAvx512N<8, Row>};
  kFns[nq](w, w_stride, rows, n_rows, n, y, y_stride);
}

// Scaled 8-bit rows (FP8 e4m3: Row = uint8_t, int8: Row = int8_t): the codes' values through the
// f32 tile kernels (rows widened in registers), then each row's scale: on its scores, or folded
// into its weights (ScaleRowScores / ScaledRowWeights).
template <typename Row>
void ScaleRowScores(int nq, const Row* const* rows, int64_t n_rows, int64_t n, float* out, int64_t out_stride);
template <typename Row>
const float* ScaledRowWeights(const float* w, int64_t w_stride, int nq, const Row* const* rows, int64_t n_rows,
                              int64_t n);
template <typename Row>
GLM_AVX512 void DotRowsScaledAvx512(const float* q, int64_t q_stride, int nq, const Row* const* rows, int64_t n_rows,
                                    int64_t n, float* out, int64_t out_stride) {
  DotRowsAvx512<Row>(q, q_stride, nq, rows, n_rows, n, out, out_stride);
  ScaleRowScores(nq, rows, n_rows, n, out, out_stride);
}
template <typename Row>
GLM_AVX512 void WeightedRowSumScaledAvx512(const float* w, int64_t w_stride, int nq, const Row* const* rows,
                                           int64_t n_rows, int64_t n, float* y, int64_t y_stride) {
  WeightedRowSumAvx512<Row>(ScaledRowWeights(w, w_stride, nq, rows, n_rows, n), n_rows, nq, rows, n_rows, n, y,
                            y_stride);
}

// Two passes: the maximum (vmaxps keeps its first operand's lanes out of NaN comparisons: NaN
// never wins), then the first index holding it — what the scalar loop returns.
GLM_AVX512 int64_t ArgMaxAvx512(const float* x, int64_t n) {
  if (n <= 1 || std::isnan(x[0])) return ArgMaxReference(x, n);
  __m512 vmax = _mm512_set1_ps(x[0]);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = TailMask16(n - i);
    const __m512 v = _mm512_mask_loadu_ps(vmax, k, x + i);  // lanes past the end: the running max
    vmax = _mm512_max_ps(v, vmax);                           // NaN in v: vmax's lane is kept
  }
  const float m = _mm512_reduce_max_ps(vmax);
  const __m512 vm = _mm512_set1_ps(m);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = TailMask16(n - i);
    const __mmask16 hit = _mm512_mask_cmp_ps_mask(k, _mm512_maskz_loadu_ps(k, x + i), vm, _CMP_EQ_OQ);
    if (hit != 0) return i + __builtin_ctz(hit);
  }
  return 0;  // unreachable: m came from x
}

// 8 double lanes per row; the tail masked into the same lanes; the lanes summed in the portable
// twin's tree ((0+4)+(2+6))+((1+5)+(3+7)).
__attribute__((target("avx512f"))) void DotRowsF64Avx512(const float* x, const float* m, int64_t n_rows, int64_t n,
                                                         float* out) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* row = m + r * n;
    __m512d acc = _mm512_setzero_pd();
    int64_t c = 0;
    for (; c + 8 <= n; c += 8)
      acc = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + c)), _mm512_cvtps_pd(_mm256_loadu_ps(row + c)), acc);
    if (c < n) {
      const __mmask16 k = static_cast<__mmask16>((1u << (n - c)) - 1);
      acc = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_maskz_loadu_ps(k, x + c))),
                            _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_maskz_loadu_ps(k, row + c))), acc);
    }
    alignas(64) double l[8];
    _mm512_store_pd(l, acc);
    out[r] = static_cast<float>(((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])));
  }
}

#endif

// Generic row loops over whatever Dot / Axpy the machine has (bit-identical to calling them).
template <float (*kDot)(const float*, const float*, int64_t)>
void DotRowsLoop(const float* q, int64_t q_stride, int nq, const float* const* rows, int64_t n_rows, int64_t n,
                 float* out, int64_t out_stride) {
  for (int64_t k = 0; k < n_rows; ++k)
    for (int j = 0; j < nq; ++j) out[j * out_stride + k] = kDot(q + j * q_stride, rows[k], n);
}

template <void (*kAxpy)(float, const float*, float*, int64_t)>
void WeightedRowSumLoop(const float* w, int64_t w_stride, int nq, const float* const* rows, int64_t n_rows, int64_t n,
                        float* y, int64_t y_stride) {
  for (int64_t k = 0; k < n_rows; ++k)
    for (int j = 0; j < nq; ++j) kAxpy(w[j * w_stride + k], rows[k], y + j * y_stride, n);
}

// A stored row element's value, exactly: BF16 bits, an e4m3 code (unscaled), an int8 code.
inline float Widen(uint16_t v) { return Bf16ToF32(v); }
inline float Widen(uint8_t v) { return Fp8RowCodeToF32(v); }
inline float Widen(int8_t v) { return static_cast<float>(v); }
// Rows widened (exactly) into a per-thread [n_rows, n] float buffer, for the paths without a row
// kernel of their own for the type (AVX2, portable): their f32 kernel on the widened rows.
template <typename Row>
const float* const* WidenRows(const Row* const* rows, int64_t n_rows, int64_t n) {
  thread_local std::vector<float> values;
  thread_local std::vector<const float*> pointers;
  values.resize(n_rows * n);
  pointers.resize(n_rows);
  for (int64_t k = 0; k < n_rows; ++k) {
    float* dst = values.data() + k * n;
    for (int64_t i = 0; i < n; ++i) dst[i] = Widen(rows[k][i]);
    pointers[k] = dst;
  }
  return pointers.data();
}
void DotRowsBf16Widened(const float* q, int64_t q_stride, int nq, const uint16_t* const* rows, int64_t n_rows,
                        int64_t n, float* out, int64_t out_stride);
template <typename Row>
void DotRowsScaledWidened(const float* q, int64_t q_stride, int nq, const Row* const* rows, int64_t n_rows, int64_t n,
                          float* out, int64_t out_stride);
template <typename Row>
void WeightedRowSumScaledWidened(const float* w, int64_t w_stride, int nq, const Row* const* rows, int64_t n_rows,
                                 int64_t n, float* y, int64_t y_stride);
void WeightedRowSumBf16Widened(const float* w, int64_t w_stride, int nq, const uint16_t* const* rows, int64_t n_rows,
                               int64_t n, float* y, int64_t y_stride);

struct VectorOps {
  float (*dot)(const float*, const float*, int64_t);
  void (*axpy)(float, const float*, float*, int64_t);
  void (*dot_rows)(const float*, int64_t, int, const float* const*, int64_t, int64_t, float*, int64_t);
  void (*weighted_row_sum)(const float*, int64_t, int, const float* const*, int64_t, int64_t, float*, int64_t);
  void (*dot_rows_bf16)(const float*, int64_t, int, const uint16_t* const*, int64_t, int64_t, float*, int64_t);
  void (*weighted_row_sum_bf16)(const float*, int64_t, int, const uint16_t* const*, int64_t, int64_t, float*, int64_t);
  void (*dot_rows_fp8)(const float*, int64_t, int, const uint8_t* const*, int64_t, int64_t, float*, int64_t);
  void (*weighted_row_sum_fp8)(const float*, int64_t, int, const uint8_t* const*, int64_t, int64_t, float*, int64_t);
  void (*dot_rows_int8)(const float*, int64_t, int, const int8_t* const*, int64_t, int64_t, float*, int64_t);
  void (*weighted_row_sum_int8)(const float*, int64_t, int, const int8_t* const*, int64_t, int64_t, float*, int64_t);
  void (*dot_rows_f64)(const float*, const float*, int64_t, int64_t, float*);
  int64_t (*arg_max)(const float*, int64_t);
  void (*add_scale)(const float*, const float*, float, float*, int64_t);
  void (*relu_accumulate)(const float*, float, float, float*, int64_t);
};

VectorOps Select() {
#if defined(__x86_64__)
  if (CpuSupportsAvx512MatMul())
    return {&DotAvx512,
            &AxpyAvx512,
            &DotRowsAvx512<float>,
            &WeightedRowSumAvx512<float>,
            &DotRowsAvx512<uint16_t>,
            &WeightedRowSumAvx512<uint16_t>,
            &DotRowsScaledAvx512<uint8_t>,
            &WeightedRowSumScaledAvx512<uint8_t>,
            &DotRowsScaledAvx512<int8_t>,
            &WeightedRowSumScaledAvx512<int8_t>,
            &DotRowsF64Avx512,
            &ArgMaxAvx512,
            &AddScaleAvx512,
            &ReluAccumulateAvx512};
  if (CpuSupportsAvx2MatMul())
    return {&DotAvx2,
            &AxpyAvx2,
            &DotRowsLoop<&DotAvx2>,
            &WeightedRowSumLoop<&AxpyAvx2>,
            &DotRowsBf16Widened,
            &WeightedRowSumBf16Widened,
            &DotRowsScaledWidened<uint8_t>,
            &WeightedRowSumScaledWidened<uint8_t>,
            &DotRowsScaledWidened<int8_t>,
            &WeightedRowSumScaledWidened<int8_t>,
            &DotRowsF64Avx2,
            &ArgMaxAvx2,
            &AddScaleAvx2,
            &ReluAccumulateAvx2};
#endif
  return {&DotPortable,
          &AxpyReference,
          &DotRowsLoop<&DotPortable>,
          &WeightedRowSumLoop<&AxpyReference>,
          &DotRowsBf16Widened,
          &WeightedRowSumBf16Widened,
          &DotRowsScaledWidened<uint8_t>,
          &WeightedRowSumScaledWidened<uint8_t>,
          &DotRowsScaledWidened<int8_t>,
          &WeightedRowSumScaledWidened<int8_t>,
          &DotRowsF64Portable,
          &ArgMaxReference,
          &AddScaleReference,
          &ReluAccumulateReference};
}

const VectorOps& Ops() {
  static const VectorOps ops = Select();
  return ops;
}

void DotRowsBf16Widened(const float* q, int64_t q_stride, int nq, const uint16_t* const* rows, int64_t n_rows,
                        int64_t n, float* out, int64_t out_stride) {
  Ops().dot_rows(q, q_stride, nq, WidenRows(rows, n_rows, n), n_rows, n, out, out_stride);
}
void WeightedRowSumBf16Widened(const float* w, int64_t w_stride, int nq, const uint16_t* const* rows, int64_t n_rows,
                               int64_t n, float* y, int64_t y_stride) {
  Ops().weighted_row_sum(w, w_stride, nq, WidenRows(rows, n_rows, n), n_rows, n, y, y_stride);
}

template <typename Row>
void ScaleRowScores(int nq, const Row* const* rows, int64_t n_rows, int64_t n, float* out, int64_t out_stride) {
  for (int64_t k = 0; k < n_rows; ++k) {
    const float s = ScaledRowScale(rows[k], n);
    for (int j = 0; j < nq; ++j) out[j * out_stride + k] *= s;
  }
}
// [nq, n_rows] weights w[j][k] · s_k in a per-thread buffer.
template <typename Row>
const float* ScaledRowWeights(const float* w, int64_t w_stride, int nq, const Row* const* rows, int64_t n_rows,
                              int64_t n) {
  thread_local std::vector<float> scaled;
  scaled.resize(static_cast<size_t>(nq) * n_rows);
  for (int64_t k = 0; k < n_rows; ++k) {
    const float s = ScaledRowScale(rows[k], n);
    for (int j = 0; j < nq; ++j) scaled[j * n_rows + k] = w[j * w_stride + k] * s;
  }
  return scaled.data();
}
template <typename Row>
void DotRowsScaledWidened(const float* q, int64_t q_stride, int nq, const Row* const* rows, int64_t n_rows, int64_t n,
                          float* out, int64_t out_stride) {
  Ops().dot_rows(q, q_stride, nq, WidenRows(rows, n_rows, n), n_rows, n, out, out_stride);
  ScaleRowScores(nq, rows, n_rows, n, out, out_stride);
}
template <typename Row>
void WeightedRowSumScaledWidened(const float* w, int64_t w_stride, int nq, const Row* const* rows, int64_t n_rows,
                                 int64_t n, float* y, int64_t y_stride) {
  const float* scaled = ScaledRowWeights(w, w_stride, nq, rows, n_rows, n);
  Ops().weighted_row_sum(scaled, n_rows, nq, WidenRows(rows, n_rows, n), n_rows, n, y, y_stride);
}

}  // namespace

int64_t ScaledRowScaleOffset(int64_t n) { return (n + 3) / 4 * 4; }
int64_t ScaledRowBytes(int64_t n) { return ScaledRowScaleOffset(n) + static_cast<int64_t>(sizeof(float)); }
float ScaledRowScale(const void* row, int64_t n) {
  float s;
  std::memcpy(&s, static_cast<const uint8_t*>(row) + ScaledRowScaleOffset(n), sizeof(s));
  return s;
}

namespace {
float MaxMagnitude(const float* x, int64_t n) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}
void StoreScale(float s, int64_t n, uint8_t* row) {
  const int64_t offset = ScaledRowScaleOffset(n);
  std::fill(row + n, row + offset, uint8_t{0});
  std::memcpy(row + offset, &s, sizeof(s));
}
}  // namespace

void WriteFp8Row(const float* x, int64_t n, uint8_t* row) {
  const float amax = MaxMagnitude(x, n);
  // frexp: amax / 448 = m · 2^e with m in [0.5, 1), so amax / 2^e < 448 <= amax / 2^(e-1) (up to
  // the division's rounding, which can only raise e). Clamped so that s and 1/s stay normal.
  float s = 1.0f;
  if (amax > 0.0f && std::isfinite(amax)) {
    int e = 0;
    std::frexp(amax / 448.0f, &e);
    s = std::ldexp(1.0f, std::clamp(e, -126, 126));
  }
  const float inv = 1.0f / s;  // exact: a power of two
  bool non_finite = false;
  for (int64_t i = 0; i < n; ++i) {
    non_finite |= !std::isfinite(x[i]);
    row[i] = non_finite ? uint8_t{0} : F32ToFp8E4M3(x[i] * inv);
  }
  StoreScale(non_finite ? std::numeric_limits<float>::quiet_NaN() : s, n, row);
}

float Fp8RowCodeToF32(uint8_t code) {
  return (code & 0x7f) == 0x7f ? ((code & 0x80) != 0 ? -480.0f : 480.0f) : Fp8E4M3ToF32(code);
}

void WriteInt8Row(const float* x, int64_t n, int8_t* row) {
  // The activation quantisers' rule (absmax_quantize.h): codes round(x · 127 / max|x|), a NaN scale
  // for a row holding a NaN or an infinity. A row too small for 127 / max|x| to be finite (all
  // zeros included) gets codes 0, read with scale 1 (a normal number: any scale reads 0 as 0).
  float s = 0.0f;
  QuantizeAbsMax<int8_t>(x, static_cast<int>(n), static_cast<int>(n), 127.0f,
                         127.0f / std::numeric_limits<float>::max(), row, &s);
  StoreScale(s == 0.0f ? 1.0f : s, n, reinterpret_cast<uint8_t*>(row));
}

float Dot(const float* a, const float* b, int64_t n) { return Ops().dot(a, b, n); }
void Axpy(float alpha, const float* x, float* y, int64_t n) { Ops().axpy(alpha, x, y, n); }
void DotRows(const float* q, int64_t q_stride, int nq, const float* const* rows, int64_t n_rows, int64_t n,
             float* out, int64_t out_stride) {
  if (nq <= 0 || n_rows <= 0) return;
  Ops().dot_rows(q, q_stride, nq, rows, n_rows, n, out, out_stride);
}
void WeightedRowSum(const float* w, int64_t w_stride, int nq, const float* const* rows, int64_t n_rows, int64_t n,
                    float* y, int64_t y_stride) {
  if (nq <= 0 || n_rows <= 0) return;
  Ops().weighted_row_sum(w, w_stride, nq, rows, n_rows, n, y, y_stride);
}
void DotRows(const float* q, int64_t q_stride, int nq, const uint16_t* const* rows, int64_t n_rows, int64_t n,
             float* out, int64_t out_stride) {
  if (nq <= 0 || n_rows <= 0) return;
  Ops().dot_rows_bf16(q, q_stride, nq, rows, n_rows, n, out, out_stride);
}
void WeightedRowSum(const float* w, int64_t w_stride, int nq, const uint16_t* const* rows, int64_t n_rows, int64_t n,
                    float* y, int64_t y_stride) {
  if (nq <= 0 || n_rows <= 0) return;
  Ops().weighted_row_sum_bf16(w, w_stride, nq, rows, n_rows, n, y, y_stride);
}
void DotRows(const float* q, int64_t q_stride, int nq, const uint8_t* const* rows, int64_t n_rows, int64_t n,
             float* out, int64_t out_stride) {
  if (nq <= 0 || n_rows <= 0) return;
  Ops().dot_rows_fp8(q, q_stride, nq, rows, n_rows, n, out, out_stride);
}
void WeightedRowSum(const float* w, int64_t w_stride, int nq, const uint8_t* const* rows, int64_t n_rows, int64_t n,
                    float* y, int64_t y_stride) {
  if (nq <= 0 || n_rows <= 0) return;
  Ops().weighted_row_sum_fp8(w, w_stride, nq, rows, n_rows, n, y, y_stride);
}
void DotRows(const float* q, int64_t q_stride, int nq, const int8_t* const* rows, int64_t n_rows, int64_t n,
             float* out, int64_t out_stride) {
  if (nq <= 0 || n_rows <= 0) return;
  Ops().dot_rows_int8(q, q_stride, nq, rows, n_rows, n, out, out_stride);
}
void WeightedRowSum(const float* w, int64_t w_stride, int nq, const int8_t* const* rows, int64_t n_rows, int64_t n,
                    float* y, int64_t y_stride) {
  if (nq <= 0 || n_rows <= 0) return;
  Ops().weighted_row_sum_int8(w, w_stride, nq, rows, n_rows, n, y, y_stride);
}
void DotRowsWidened(const float* q, int64_t q_stride, int nq, const uint8_t* const* rows, int64_t n_rows, int64_t n,
                    float* out, int64_t out_stride) {
  if (nq > 0 && n_rows > 0) DotRowsScaledWidened(q, q_stride, nq, rows, n_rows, n, out, out_stride);
}
void DotRowsWidened(const float* q, int64_t q_stride, int nq, const int8_t* const* rows, int64_t n_rows, int64_t n,
                    float* out, int64_t out_stride) {
  if (nq > 0 && n_rows > 0) DotRowsScaledWidened(q, q_stride, nq, rows, n_rows, n, out, out_stride);
}
void WeightedRowSumWidened(const float* w, int64_t w_stride, int nq, const uint8_t* const* rows, int64_t n_rows,
                           int64_t n, float* y, int64_t y_stride) {
  if (nq > 0 && n_rows > 0) WeightedRowSumScaledWidened(w, w_stride, nq, rows, n_rows, n, y, y_stride);
}
void WeightedRowSumWidened(const float* w, int64_t w_stride, int nq, const int8_t* const* rows, int64_t n_rows,
                           int64_t n, float* y, int64_t y_stride) {
  if (nq > 0 && n_rows > 0) WeightedRowSumScaledWidened(w, w_stride, nq, rows, n_rows, n, y, y_stride);
}
void DotRowsF64(const float* x, const float* m, int64_t n_rows, int64_t n, float* out) {
  Ops().dot_rows_f64(x, m, n_rows, n, out);
}
int64_t ArgMax(const float* x, int64_t n) { return n <= 1 ? 0 : Ops().arg_max(x, n); }
int64_t FirstNonFinite(const float* x, int64_t n) {
  // Blocks of 256 tested branch-free (the compiler vectorises the OR), the culprit found after.
  constexpr int64_t kBlock = 256;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    uint32_t any = 0;
    for (int64_t i = b; i < e; ++i) {
      uint32_t bits;
      std::memcpy(&bits, x + i, sizeof(bits));
      any |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    if (any == 0) continue;
    for (int64_t i = b; i < e; ++i) {
      uint32_t bits;
      std::memcpy(&bits, x + i, sizeof(bits));
      if ((bits & 0x7f800000u) == 0x7f800000u) return i;
    }
  }
  return -1;
}
void ReluAccumulate(const float* x, float scale, float alpha, float* y, int64_t n) {
  if (n > 0) Ops().relu_accumulate(x, scale, alpha, y, n);
}
void AddScale(const float* a, const float* b, float s, float* out, int64_t n) {
  if (n > 0) Ops().add_scale(a, b, s, out, n);
}

}  // namespace glm::kernels
