#include "shard_worker/kernels/matmul_quant_avx2.h"

#include <immintrin.h>

#include <cfloat>
#include <cstring>
#include <utility>

#include "shard_worker/kernels/avx2_common.h"
#include "shard_worker/kernels/matmul_quant_driver.h"
#include "shard_worker/kernels/prefetch.h"
#include "shard_worker/kernels/q8_activations.h"

// Internal linkage and no std templates inside the target region (see matmul_avx2.cc).
// The avx2 target plus F16C (vcvtph2ps for the f16 group scales; every AVX2 CPU has it, and
// CpuSupportsAvx2MatMul checks).
#define GLM_Q256 __attribute__((target("avx2,fma,f16c")))
#define GLM_Q256_INLINE GLM_Q256 __attribute__((always_inline)) static inline

namespace glm::kernels {
namespace {

// 16 ymm registers: R·T accumulators plus the rows' scales and one block's vectors.
constexpr int kTileTokens = 4;
constexpr int kGroupRows[kQuantMaxTileTokens + 1] = {0, 4, 4, 2, 2};

// I8BlockFn for R rows × T tokens (see matmul_quant_driver.h): one 32-column block (half a
// Q16Chunk) per step; per row two sign-extending loads (16 weights each as int16), and per token
// two vpmaddwd against the int16 activations (exact), an add, a convert and one FMA with sw · sx.
template <int R, int T>
GLM_Q256 void BlockI8(const uint8_t* w, int64_t row_bytes, const uint16_t* scales, int64_t sstride,
                      int64_t cols, int64_t group, const Q16Chunk* xq, int64_t chunks,
                      int64_t pf_bytes, float* y, int64_t y_stride) {
  __m256 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();

  const int64_t scale_pf = ScalePrefetchDistance(pf_bytes, group);
  const int64_t blocks_per_group = group / 32 > 0 ? group / 32 : 1;  // group >= cols: unused
  const int64_t n_blocks = (cols + 31) / 32;
  __m256 sw[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) sw[r] = _mm256_setzero_ps();  // set at block 0
  for (int64_t b = 0, g = -1; b < n_blocks; ++b) {
    const int64_t c0 = 32 * b;
    if (const int64_t gb = group >= cols ? 0 : b / blocks_per_group; gb != g) {
      g = gb;
      if ((g & 15) == 0) PrefetchScales<R>(scales, sstride, g, scale_pf);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) sw[r] = _mm256_set1_ps(F16ToF32(scales[r * sstride + g]));
    }
    if (pf_bytes != 0 && (c0 & 63) == 0) PrefetchRowsAhead<R>(w, row_bytes, c0, pf_bytes);
    const int64_t n = cols - c0 < 32 ? cols - c0 : 32;
    const int64_t ch = b / 2, h = b % 2;
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = w + r * row_bytes + c0;
      alignas(32) uint8_t tail[32];
      if (n < 32) {  // the row's tail, copied into a zeroed block (never read past the row)
        std::memset(tail, 0, sizeof tail);
        std::memcpy(tail, p, n);
        p = tail;
      }
      const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) {
        const Q16Chunk& a = xq[t * chunks + ch];
        const int16_t* x16 = a.q + 32 * h;
        const __m256i s = _mm256_add_epi32(
            _mm256_madd_epi16(w0, _mm256_load_si256(reinterpret_cast<const __m256i*>(x16))),
            _mm256_madd_epi16(w1, _mm256_load_si256(reinterpret_cast<const __m256i*>(x16 + 16))));
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(sw[r], _mm256_load_ps(a.scale)), acc[r][t]);
      }
    }
  }

#pragma GCC unroll 4
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) y[t * y_stride + r] = Reduce(acc[r][t]);
}

// I4BlockFn for R rows × T tokens (see matmul_quant_driver.h): a 128-column chunk as two halves
// of 32 bytes; per half and token two vpmaddubsw (pair sums ≤ 15·127·2: no saturation), a
// vpmaddwd into the int32 lanes of q8_activations.h, the offset, a convert and one FMA.
template <int R, int T>
GLM_Q256 void BlockI4(const uint8_t* w, int64_t row_bytes, const uint16_t* scales, int64_t sstride,
                      int64_t cols, int64_t group, const Q8Chunk* xq, int64_t chunks,
                      int64_t pf_bytes, float* y, int64_t y_stride) {
  __m256 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();

  const int64_t n_blocks = (cols + 31) / 32;
  ChunkGroups groups(cols, group);
  const int64_t scale_pf = ScalePrefetchDistance(pf_bytes, group / 2);
  const __m256i nibble = _mm256_set1_epi8(0x0f), ones16 = _mm256_set1_epi16(1);
  const __m256i half_spread[2] = {_mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3)};
  const bool group32 = group == 32;  // chunk ch's blocks are groups 4ch..4ch+3
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t b0 = 4 * ch;
    const int nb = static_cast<int>(n_blocks - b0 < 4 ? n_blocks - b0 : 4);
    int64_t block_group[4];
    if (group32) {
      for (int k = 0; k < 4; ++k) block_group[k] = b0 + k;
    } else {
      groups.Next(block_group);
    }
    // Per row, the chunk's four block scales as floats (0 past the row's last block): one f16
    // load and vcvtph2ps with 32-column groups, else one conversion per block.
    __m128 s4[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const uint16_t* sr = scales + r * sstride;
      if (group32 && nb == 4) {
        s4[r] = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sr + b0)));
      } else if (group32) {  // the row's last chunk: only its nb scales exist
        uint16_t h4[4] = {0, 0, 0, 0};
        for (int k = 0; k < nb; ++k) h4[k] = sr[b0 + k];
        s4[r] = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(h4)));
      } else {
        s4[r] = _mm_setr_ps(F16ToF32(sr[block_group[0]]), nb > 1 ? F16ToF32(sr[block_group[1]]) : 0.0f,
                            nb > 2 ? F16ToF32(sr[block_group[2]]) : 0.0f, nb > 3 ? F16ToF32(sr[block_group[3]]) : 0.0f);
      }
    }
    if (pf_bytes != 0) {
      PrefetchRowsAhead<R>(w, row_bytes, 16 * b0, pf_bytes);
      if ((ch & 3) == 0) PrefetchScales<R>(scales, sstride, block_group[0], scale_pf);
    }
    for (int h = 0; h < 2 && 2 * h < nb; ++h) {
      const bool both = 2 * h + 1 < nb;  // the half's second block exists
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const uint8_t* p = w + r * row_bytes + 16 * (b0 + 2 * h);
        const __m256i raw = both ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                                 : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        const __m256i lo = _mm256_and_si256(raw, nibble);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), nibble);
        // Lanes 0-3: block 2h's scale, 4-7: block 2h + 1's.
        const __m256 sw = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(s4[r]), half_spread[h]);
#pragma GCC unroll 4
        for (int t = 0; t < T; ++t) {
          const Q8Chunk& a = xq[t * chunks + ch];
          const __m256i pairs = _mm256_add_epi16(
              _mm256_maddubs_epi16(lo, _mm256_load_si256(reinterpret_cast<const __m256i*>(a.lo + 32 * h))),
              _mm256_maddubs_epi16(hi, _mm256_load_si256(reinterpret_cast<const __m256i*>(a.hi + 32 * h))));
          const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(pairs, ones16),
                                             _mm256_load_si256(reinterpret_cast<const __m256i*>(a.neg_offset + 8 * h)));
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(sw, _mm256_load_ps(a.scale + 8 * h)),
                                      acc[r][t]);
        }
      }
    }
  }

#pragma GCC unroll 4
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) y[t * y_stride + r] = Reduce(acc[r][t]);
}

// The largest of the 8 lanes.
GLM_Q256_INLINE float HorizontalMax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

// QuantizeActivationBlock with AVX2 for the n ≤ 32 values at x: the same bytes (the same products
// x · (127 / a), rounded to nearest even by vcvtps2dq and packed with saturation, which cannot
// bind within ±127). *q gets the 32 values in column order; returns the block's scale.
GLM_Q256_INLINE float QuantizeBlock32(const float* x, int64_t n, __m256i* q) {
  const __m256 finite_max = _mm256_set1_ps(FLT_MAX);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i unscramble = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // after the two packs
  __m256 v[4], amax8 = _mm256_setzero_ps();
  int finite_bits = 0xf;
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const int64_t left = n - 8 * i;
    v[i] = left >= 8 ? _mm256_loadu_ps(x + 8 * i)
           : left > 0 ? _mm256_maskload_ps(x + 8 * i, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left)), lane))
                      : _mm256_setzero_ps();
    const __m256 a = _mm256_and_ps(v[i], abs_mask);
    if (_mm256_movemask_ps(_mm256_cmp_ps(a, finite_max, _CMP_LE_OQ)) != 0xff) finite_bits = 0;
    amax8 = _mm256_max_ps(amax8, a);
  }
  const float amax = HorizontalMax(amax8);
  *q = _mm256_setzero_si256();
  if (finite_bits == 0) return __builtin_nanf("");
  if (!(amax >= kQ8MinMagnitude)) return 0.0f;
  const __m256 inv = _mm256_set1_ps(127.0f / amax);
  __m256i i32[4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) i32[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], inv));
  *q = _mm256_permutevar8x32_epi32(
      _mm256_packs_epi16(_mm256_packs_epi32(i32[0], i32[1]), _mm256_packs_epi32(i32[2], i32[3])), unscramble);
  return amax / 127.0f;
}

// Int32 lane l = Σ of bytes 4l..4l+3 of v (vpmaddubsw with ones, then vpmaddwd: exact).
GLM_Q256_INLINE __m256i LaneSums(__m256i v) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), v), _mm256_set1_epi16(1));
}

GLM_Q256_INLINE int64_t BlockColumns(int64_t c0, int64_t cols) { return c0 >= cols ? 0 : cols - c0 < 32 ? cols - c0 : 32; }

// PrepareQ8Chunks with AVX2: the same bytes.
GLM_Q256 void PrepareQ8Avx2(const float* x, int64_t cols, Q8Chunk* out) {
  const int64_t chunks = Q8ChunksPerRow(cols);
  for (int64_t ch = 0; ch < chunks; ++ch) {
    Q8Chunk& c = out[ch];
    for (int k = 0; k < 4; ++k) {
      const int64_t c0 = ch * kQ8ChunkCols + 32 * k;
      __m256i q;
      const float sx = QuantizeBlock32(x + c0, BlockColumns(c0, cols), &q);
      _mm_store_si128(reinterpret_cast<__m128i*>(c.lo + 16 * k), _mm256_castsi256_si128(q));
      _mm_store_si128(reinterpret_cast<__m128i*>(c.hi + 16 * k), _mm256_extracti128_si256(q, 1));
      _mm_store_ps(c.scale + 4 * k, _mm_set1_ps(sx));
    }
    // neg_offset lane l = −8 · Σ of lo and hi bytes 4l..4l+3.
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256i sums = _mm256_add_epi32(LaneSums(_mm256_load_si256(reinterpret_cast<const __m256i*>(c.lo + 32 * h))),
                                            LaneSums(_mm256_load_si256(reinterpret_cast<const __m256i*>(c.hi + 32 * h))));
      _mm256_store_si256(reinterpret_cast<__m256i*>(c.neg_offset + 8 * h),
                         _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sums, 3)));
    }
  }
}

// PrepareQ16Chunks with AVX2: the same bytes (the same products x · (32767 / a), rounded to
// nearest even by vcvtps2dq and packed with saturation, which cannot bind within ±32767).
GLM_Q256 void PrepareQ16Avx2(const float* x, int64_t cols, Q16Chunk* out) {
  const __m256 finite_max = _mm256_set1_ps(FLT_MAX);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t ch = 0; ch < Q16ChunksPerRow(cols); ++ch) {
    const int64_t c0 = ch * kQ16ChunkCols;
    const int64_t n = cols - c0 < kQ16ChunkCols ? cols - c0 : kQ16ChunkCols;
    __m256 v[8], amax8 = _mm256_setzero_ps();
    bool finite = true;
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      const int64_t left = n - 8 * i;
      v[i] = left >= 8 ? _mm256_loadu_ps(x + c0 + 8 * i)
             : left > 0 ? _mm256_maskload_ps(x + c0 + 8 * i, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left)), lane))
                        : _mm256_setzero_ps();
      const __m256 a = _mm256_and_ps(v[i], abs_mask);
      if (_mm256_movemask_ps(_mm256_cmp_ps(a, finite_max, _CMP_LE_OQ)) != 0xff) finite = false;
      amax8 = _mm256_max_ps(amax8, a);
    }
    const float amax = HorizontalMax(amax8);
    Q16Chunk& c = out[ch];
    float sx = 0.0f;
    __m256i q[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    if (!finite) {
      sx = __builtin_nanf("");
    } else if (amax >= kQ16MinMagnitude) {
      const __m256 inv = _mm256_set1_ps(32767.0f / amax);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i)  // vpackssdw interleaves 128-bit lanes; the permute undoes it
        q[i] = _mm256_permute4x64_epi64(_mm256_packs_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v[2 * i], inv)),
                                                           _mm256_cvtps_epi32(_mm256_mul_ps(v[2 * i + 1], inv))),
                                        0xd8);
      sx = amax / 32767.0f;
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) _mm256_store_si256(reinterpret_cast<__m256i*>(c.q + 16 * i), q[i]);
    _mm256_store_ps(c.scale, _mm256_set1_ps(sx));
    _mm256_store_ps(c.scale + 8, _mm256_set1_ps(sx));
  }
}

template <int... Ts>
QuantKernelSet MakeKernelSet(std::integer_sequence<int, Ts...>) {
  QuantKernelSet k;
  k.max_tile_tokens = kTileTokens;
  ((k.i8_rows_per_group[Ts + 1] = kGroupRows[Ts + 1]), ...);
  ((k.i8_grouped[Ts + 1] = &BlockI8<kGroupRows[Ts + 1], Ts + 1>), ...);
  ((k.i8_single[Ts + 1] = &BlockI8<1, Ts + 1>), ...);
  ((k.i4_rows_per_group[Ts + 1] = kGroupRows[Ts + 1]), ...);
  ((k.i4_grouped[Ts + 1] = &BlockI4<kGroupRows[Ts + 1], Ts + 1>), ...);
  ((k.i4_single[Ts + 1] = &BlockI4<1, Ts + 1>), ...);
  k.prepare_q8 = &PrepareQ8Avx2;
  k.prepare_q16 = &PrepareQ16Avx2;
  return k;
}

}  // namespace

void PrepareQ8ChunksAvx2(const float* x, int64_t cols, Q8Chunk* out) { PrepareQ8Avx2(x, cols, out); }
void PrepareQ16ChunksAvx2(const float* x, int64_t cols, Q16Chunk* out) { PrepareQ16Avx2(x, cols, out); }

void MatMulRowsQuantAvx2(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                         int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  static const QuantKernelSet kernels = MakeKernelSet(std::make_integer_sequence<int, kTileTokens>());
  RunQuantMatMul(kernels, x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
}

}  // namespace glm::kernels
