#include "shard_worker/kernels/matmul_avx512.h"

// GCC 12's own AVX-512 intrinsics self-initialise `__Y` (GCC PR 105593) and warn once inlined;
// the warnings are about the header, not this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <limits>
#include <utility>

#include "shard_worker/kernels/avx512_common.h"
#include "shard_worker/kernels/gemm_avx512.h"
#include "shard_worker/kernels/matmul_amx.h"
#include "shard_worker/kernels/matmul_quant_avx512.h"
#include "shard_worker/kernels/matmul_simd_driver.h"
#include "shard_worker/kernels/prefetch.h"

namespace glm::kernels {
namespace {

constexpr int kLanes = 16;
// Columns per step: F32 and BF16 two vectors (64 B of BF16), FP8 four (one 64 B line).
constexpr int ChunkCols(DType d) { return d == DType::kF8E4M3 ? 64 : 32; }
// F32 natural order, BF16 even columns then odd; FP8's unpack order is set in FillDType.
constexpr int Interleave(DType d) { return d == DType::kBF16 ? 2 : 1; }

// Token tiles of at most 4 and rows per group R: at least 8 independent FMA chains (R·T), at
// most ~30 live zmm (R·T accumulators, 2T activations, the row's weights), and each activation
// load shared by R rows. Activations of 8 tokens × 4096+ columns do not fit L1, so R matters: at
// T = 8 one pass of R = 1 would re-read 128 KiB of activations from L2 per row; two tiles of 4
// tokens × R = 5 read 32 KiB per 5 rows (the rows' second pass hits L1/L2). For BF16 the most
// rows that fit won on the Zen 5 machine here (matmul_bench --dtype bf16 8192x4096, interleaved):
// 2 tokens R = 8 vs 4: 51.6-56.0 vs 44.3-47.9 GB/s; 3 tokens R = 6 vs 4: 48.8-53.4 vs 40.9-44.4;
// 4 tokens R = 5 vs 4: 43.8-46.8 vs 41.1-43.1. F32 and FP8 (whose decode needs registers) keep 4:
// there larger groups measured mixed (FP8 3 tokens -5%, F32 3 tokens -15%, F32 2 tokens +20%).
// R never changes a row's sums.
constexpr int kTileTokens = 4;
constexpr int kGroupRows[kMaxTileTokens + 1] = {0, 8, 4, 4, 4, 0, 0, 0, 0};      // F32, FP8, BF16 dot
constexpr int kBf16GroupRows[kMaxTileTokens + 1] = {0, 8, 8, 6, 5, 0, 0, 0, 0};  // BF16 weights, f32 activations
constexpr const int* GroupRows(DType d) { return d == DType::kBF16 ? kBf16GroupRows : kGroupRows; }

// acc[r][t] += v · x[t] for every token.
template <int T>
GLM_AVX512_INLINE void FmaTokens(__m512 v, const __m512 (&x)[T], __m512 (&acc)[T]) {
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm512_fmadd_ps(v, x[t], acc[t]);
}

// One step: the chunk at column c of R rows into the R × T accumulators, vector 0 first. With
// kTail only n < chunk real columns are read (masked loads yield zeros past them).
template <DType D, int R, int T, bool kTail, bool kNanFree = false>
GLM_AVX512_INLINE void Step(const uint8_t* w, int64_t row_bytes, int64_t c, int n,
                            const float* xp, int64_t pitch, const float* scales,
                            __m512 (&acc)[R][T]) {
  const __mmask64 m = kTail ? (uint64_t{1} << n) - 1 : ~uint64_t{0};
  __m512 x[2][T];
  if constexpr (D != DType::kF8E4M3) {
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 2
      for (int k = 0; k < 2; ++k) x[k][t] = _mm512_load_ps(xp + t * pitch + c + k * kLanes);
  }

  if constexpr (D == DType::kF32) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float* p = reinterpret_cast<const float*>(w + r * row_bytes) + c;
      __m512 v0 = kTail ? _mm512_maskz_loadu_ps(static_cast<__mmask16>(m), p) : _mm512_loadu_ps(p);
      __m512 v1 = kTail ? _mm512_maskz_loadu_ps(static_cast<__mmask16>(m >> 16), p + 16)
                        : _mm512_loadu_ps(p + 16);
      FmaTokens<T>(v0, x[0], acc[r]);
      FmaTokens<T>(v1, x[1], acc[r]);
    }
  } else if constexpr (D == DType::kBF16) {
    // 32 bf16 in 16 lanes: lane << 16 is the even column, lane & 0xffff0000 the odd one.
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint16_t* p = reinterpret_cast<const uint16_t*>(w + r * row_bytes) + c;
      __m512i raw = kTail ? _mm512_maskz_loadu_epi16(static_cast<__mmask32>(m), p)
                          : _mm512_loadu_si512(p);
      FmaTokens<T>(_mm512_castsi512_ps(_mm512_slli_epi32(raw, 16)), x[0], acc[r]);
      FmaTokens<T>(_mm512_castsi512_ps(_mm512_and_si512(
                       raw, _mm512_set1_epi32(static_cast<int>(0xffff0000u)))),
                   x[1], acc[r]);
    }
  } else {
    __m512 sc[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) sc[k] = _mm512_load_ps(scales + c + k * kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = w + r * row_bytes + c;
      __m512i raw = kTail ? _mm512_maskz_loadu_epi8(m, p) : _mm512_loadu_si512(p);
      __m512 v[4];
      DecodeFp8<!kNanFree>(raw, sc, v);
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k)
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t)
          acc[r][t] = _mm512_fmadd_ps(v[k], _mm512_load_ps(xp + t * pitch + c + k * kLanes),
                                      acc[r][t]);
    }
  }
}

// SimdBlockFn for R rows × T tokens (see matmul_simd_driver.h).
// kNanFree (kF8E4M3 only): the weights hold no NaN code (WeightView::fp8_nan_free).
template <DType D, int R, int T, bool kNanFree = false>
GLM_AVX512 void Block(const uint8_t* w, int64_t row_bytes, int64_t cols, const float* xp,
                      int64_t pitch, const float* scales, int64_t pf_bytes, float* y,
                      int64_t y_stride) {
  constexpr int64_t kEs = DTypeSize(D);
  constexpr int kChunk = ChunkCols(D);
  __m512 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();

  const int64_t full = cols / kChunk * kChunk;
  for (int64_t c = 0; c < full; c += kChunk) {
    if (pf_bytes != 0) PrefetchRowsAhead<R, kEs == 4 ? 2 : 1>(w, row_bytes, c * kEs, pf_bytes);
    Step<D, R, T, false, kNanFree>(w, row_bytes, c, kChunk, xp, pitch, scales, acc);
  }
  if (full < cols)
    Step<D, R, T, true, kNanFree>(w, row_bytes, full, static_cast<int>(cols - full), xp, pitch, scales,
                                  acc);

  StoreReduced<R, T>(acc, R, y, y_stride);
}

// Block<kF8E4M3, R, T> with DecodeFp8ByTable (VBMI): the same steps, scales and accumulators.
// NaN codes decode to NaN on their own, so NaN-free weights need no other kernel. Its own copy of
// Block's loop: a function's target covers all its instantiations, and Block's must run on
// AVX-512 CPUs without VBMI.
template <int R, int T, bool kTail>
GLM_AVX512_VBMI_INLINE void StepFp8ByTable(const uint8_t* w, int64_t row_bytes, int64_t c, int n,
                                           const float* xp, int64_t pitch, const float* scales,
                                           __m512 (&acc)[R][T]) {
  const __mmask64 m = kTail ? (uint64_t{1} << n) - 1 : ~uint64_t{0};
  __m512 sc[4];
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) sc[k] = _mm512_load_ps(scales + c + k * kLanes);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const uint8_t* p = w + r * row_bytes + c;
    __m512 v[4];
    DecodeFp8ByTable(kTail ? _mm512_maskz_loadu_epi8(m, p) : _mm512_loadu_si512(p), sc, v);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k)
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
        acc[r][t] = _mm512_fmadd_ps(v[k], _mm512_load_ps(xp + t * pitch + c + k * kLanes), acc[r][t]);
  }
}

template <int R, int T>
GLM_AVX512_VBMI void BlockFp8ByTable(const uint8_t* w, int64_t row_bytes, int64_t cols, const float* xp,
                                     int64_t pitch, const float* scales, int64_t pf_bytes, float* y,
                                     int64_t y_stride) {
  constexpr int kChunk = ChunkCols(DType::kF8E4M3);
  __m512 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  const int64_t full = cols / kChunk * kChunk;
  for (int64_t c = 0; c < full; c += kChunk) {
    if (pf_bytes != 0) PrefetchRowsAhead<R>(w, row_bytes, c, pf_bytes);
    StepFp8ByTable<R, T, false>(w, row_bytes, c, kChunk, xp, pitch, scales, acc);
  }
  if (full < cols) StepFp8ByTable<R, T, true>(w, row_bytes, full, static_cast<int>(cols - full), xp, pitch, scales, acc);
  StoreReduced<R, T>(acc, R, y, y_stride);
}

// Block<kBF16, R, 1> computed in 256-bit halves: lanes 0-7 and 8-15 of each row's 16-lane
// accumulator are two ymm registers, fed by the two 32-byte halves of the chunk's 64 bytes. Every
// lane sees the same operations in the same order as in Block (even column, then odd column, per
// chunk; masked zeros past a tail), and the halves meet in one zmm for Reduce's tree (the values
// StoreReduced gives), so the results are Block's bit for bit. Why: on the Zen 5 machine here the single-token BF16 GEMV
// streamed 8-15% more bytes a second this way than with 512-bit loads and FMAs (matmul_bench
// --dtype bf16 --tokens 1, interleaved: 61-69 vs 58-63 GB/s), as fast as the AVX2 kernel. Not
// used for FP8, whose decode is ALU-bound (halves doubled its instructions: 25 vs 38 GB/s), nor
// for 2 tokens, where they measured no faster (47.5-51.5 vs 48.1-50.6 GB/s, 6 interleaved pairs).

// One chunk (32 columns) of Bf16SingleTokenBlock: rows' 64 bytes as two 32-byte halves. kTail:
// only the columns in m are read (masked zeros past them, as Step's masked load).
template <int R, bool kTail>
GLM_AVX512_INLINE void Bf16HalvesStep(const uint8_t* w, int64_t row_bytes, int64_t c, __mmask32 m, const float* xp,
                                      __m256 (&lo)[R], __m256 (&hi)[R]) {
  const __m256i odd_mask = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  // Activations: even columns' lanes 0-7 | 8-15, then odd columns' (PermuteRow's order).
  const __m256 x0l = _mm256_load_ps(xp + c), x0h = _mm256_load_ps(xp + c + 8);
  const __m256 x1l = _mm256_load_ps(xp + c + 16), x1h = _mm256_load_ps(xp + c + 24);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(w + r * row_bytes) + c;
    const __m256i a = kTail ? _mm256_maskz_loadu_epi16(static_cast<__mmask16>(m), p)
                            : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i b = kTail ? _mm256_maskz_loadu_epi16(static_cast<__mmask16>(m >> 16), p + 16)
                            : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16));
    lo[r] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(a, 16)), x0l, lo[r]);
    hi[r] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(b, 16)), x0h, hi[r]);
    lo[r] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(a, odd_mask)), x1l, lo[r]);
    hi[r] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(b, odd_mask)), x1h, hi[r]);
  }
}

template <int R>
GLM_AVX512 void Bf16SingleTokenBlock(const uint8_t* w, int64_t row_bytes, int64_t cols, const float* xp,
                                     int64_t pitch, const float* scales, int64_t pf_bytes, float* y,
                                     int64_t y_stride) {
  constexpr int kChunk = ChunkCols(DType::kBF16);  // 32 columns, 64 bytes
  __m256 lo[R], hi[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
  const int64_t full = cols / kChunk * kChunk;
  for (int64_t c = 0; c < full; c += kChunk) {
    if (pf_bytes != 0) PrefetchRowsAhead<R>(w, row_bytes, c * 2, pf_bytes);
    Bf16HalvesStep<R, false>(w, row_bytes, c, ~__mmask32{0}, xp, lo, hi);
  }
  if (full < cols) Bf16HalvesStep<R, true>(w, row_bytes, full, (__mmask32{1} << (cols - full)) - 1, xp, lo, hi);
  // Reduce gives what StoreReduced's ReduceLanes16 gives (avx512_common.h).
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    y[r] = Reduce(_mm512_castpd_ps(
        _mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo[r])), _mm256_castps_pd(hi[r]), 1)));
}

// BF16 × BF16 dot products (SetBf16Activations; AVX512-BF16 CPUs): R rows × T tokens, 32 columns a
// step in natural order (lane j: columns 2j, 2j+1), xp the BF16 activations [T][pitch] (uint16
// behind the float pointer, zero padded to the chunk). One vdpbf16ps per row, token and chunk; the
// weights are used as stored.
#define GLM_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))
template <int R, int T>
GLM_AVX512_BF16 __attribute__((always_inline)) static inline void Bf16DotStep(
    const uint8_t* w, int64_t row_bytes, const uint16_t* xb, int64_t pitch, int64_t c, __mmask32 m,
    __m512 (&acc)[R][T]) {
  __m512bh x[T];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) x[t] = (__m512bh)_mm512_load_si512(xb + t * pitch + c);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(w + r * row_bytes) + c;
    const __m512bh v = (__m512bh)_mm512_maskz_loadu_epi16(m, p);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], v, x[t]);
  }
}

template <int R, int T>
GLM_AVX512_BF16 void BlockBf16Dot(const uint8_t* w, int64_t row_bytes, int64_t cols, const float* xp,
                                  int64_t pitch, const float*, int64_t pf_bytes, float* y,
                                  int64_t y_stride) {
  const auto* xb = reinterpret_cast<const uint16_t*>(xp);
  __m512 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  const int64_t full = cols / 32 * 32;
  for (int64_t c = 0; c < full; c += 32) {
    if (pf_bytes != 0) PrefetchRowsAhead<R>(w, row_bytes, c * 2, pf_bytes);
    Bf16DotStep<R, T>(w, row_bytes, xb, pitch, c, ~__mmask32{0}, acc);
  }
  if (full < cols) Bf16DotStep<R, T>(w, row_bytes, xb, pitch, full, (__mmask32{1} << (cols - full)) - 1, acc);
  StoreReduced<R, T>(acc, R, y, y_stride);
}

// dst[i] = F32ToBf16(src[i]) (dtype.h: nearest even, NaN kept quiet), 16 at a time.
GLM_AVX512 void ConvertToBf16(const float* src, int64_t n, uint16_t* dst) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
  const __m512i quiet = _mm512_set1_epi32(0x400000);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask16(n - i);
    const __m512i bits = _mm512_maskz_loadu_epi32(m, src + i);
    __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(bits, 16), one)));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(bits, abs_mask), inf);
    rounded = _mm512_mask_or_epi32(rounded, nan, bits, quiet);
    _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded, 16)));
  }
}

template <int... Ts>
void FillBf16Dot(SimdKernelSet& k, std::integer_sequence<int, Ts...>) {
  k.bf16dot_chunk_cols = 32;
  k.bf16dot_convert = &ConvertToBf16;
  ((k.bf16dot_rows_per_group[Ts + 1] = kGroupRows[Ts + 1]), ...);
  ((k.bf16dot_grouped[Ts + 1] = &BlockBf16Dot<kGroupRows[Ts + 1], Ts + 1>), ...);
  ((k.bf16dot_single[Ts + 1] = &BlockBf16Dot<1, Ts + 1>), ...);
}

// FP8 by table (VBMI): its own lane order, no 2^-8 to fold, one kernel for NaN-free weights too.
template <int... Ts>
void FillFp8ByTable(SimdKernelSet& k, std::integer_sequence<int, Ts...>) {
  const int d = static_cast<int>(DType::kF8E4M3);
  FillFp8Order(/*by_table=*/true, k.order[d]);
  k.fp8_scale_factor = 1.0f;
  ((k.grouped[d][Ts + 1] = &BlockFp8ByTable<kGroupRows[Ts + 1], Ts + 1>), ...);
  ((k.single[d][Ts + 1] = &BlockFp8ByTable<1, Ts + 1>), ...);
  ((k.fp8_nan_free_grouped[Ts + 1] = nullptr), ...);
  ((k.fp8_nan_free_single[Ts + 1] = nullptr), ...);
}

template <DType D, int... Ts>
void FillDType(SimdKernelSet& k, std::integer_sequence<int, Ts...>) {
  const int d = static_cast<int>(D);
  k.chunk_cols[d] = ChunkCols(D);
  FillInterleavedOrder(kLanes, Interleave(D), ChunkCols(D), k.order[d]);
  if constexpr (D == DType::kF8E4M3) {
    FillFp8Order(/*by_table=*/false, k.order[d]);
    k.fp8_scale_factor = 256.0f;
    ((k.fp8_nan_free_grouped[Ts + 1] = &Block<D, kGroupRows[Ts + 1], Ts + 1, true>), ...);
    ((k.fp8_nan_free_single[Ts + 1] = &Block<D, 1, Ts + 1, true>), ...);
  }
  ((k.rows_per_group[d][Ts + 1] = GroupRows(D)[Ts + 1]), ...);
  ((k.grouped[d][Ts + 1] = &Block<D, GroupRows(D)[Ts + 1], Ts + 1>), ...);
  ((k.single[d][Ts + 1] = &Block<D, 1, Ts + 1>), ...);
  if constexpr (D == DType::kBF16) {
    k.grouped[d][1] = &Bf16SingleTokenBlock<kBf16GroupRows[1]>;
    k.single[d][1] = &Bf16SingleTokenBlock<1>;
  }
}

SimdKernelSet MakeKernelSet(bool fp8_by_table) {
  SimdKernelSet k;
  k.max_tile_tokens = kTileTokens;
  auto tiles = std::make_integer_sequence<int, kTileTokens>();
  FillDType<DType::kF32>(k, tiles);
  FillDType<DType::kBF16>(k, tiles);
  FillDType<DType::kF8E4M3>(k, tiles);
  if (fp8_by_table) FillFp8ByTable(k, tiles);
  k.gemm = Avx512GemmKernels(fp8_by_table);
  // Token counts at which the GEMM overtook these tiles (matmul_bench --min-gemm-tokens, Zen 5,
  // 128x256 to 2048x4096 matrices): F32 ~64, FP8 ~48 (its decode is the costliest to repeat per
  // tile), BF16 ~128 (its 2-instruction decode makes the tiles' re-conversion cheap).
  k.min_gemm_tokens[static_cast<int>(DType::kF32)] = 64;
  k.min_gemm_tokens[static_cast<int>(DType::kBF16)] = 128;
  k.min_gemm_tokens[static_cast<int>(DType::kF8E4M3)] = 48;
  if (CpuSupportsAvx512Bf16Dot()) FillBf16Dot(k, tiles);
  if (CpuSupportsAmxBf16()) k.amx_bf16 = &MatMulRowsAmxBf16;
  return k;
}

}  // namespace

bool CpuSupportsAvx512MatMul() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2") &&
         __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

bool CpuSupportsAvx512Vbmi() {
  __builtin_cpu_init();
  return CpuSupportsAvx512MatMul() && __builtin_cpu_supports("avx512vbmi");
}

bool CpuSupportsAvx512Bf16Dot() {
  __builtin_cpu_init();
  return CpuSupportsAvx512MatMul() && __builtin_cpu_supports("avx512bf16");
}

void ConvertF32ToBf16Avx512(const float* src, int64_t n, uint16_t* dst) { ConvertToBf16(src, n, dst); }

void MatMulRowsAvx512(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                      int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  if (IsGroupQuantized(w.dtype))
    return MatMulRowsQuantAvx512(x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
  static const SimdKernelSet kernels = MakeKernelSet(CpuSupportsAvx512Vbmi());
  RunSimdMatMul(kernels, x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
}

void MatMulRowsAvx512F16cFp8(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                             int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  if (IsGroupQuantized(w.dtype))
    return MatMulRowsQuantAvx512(x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
  static const SimdKernelSet kernels = MakeKernelSet(false);
  RunSimdMatMul(kernels, x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
}

}  // namespace glm::kernels
