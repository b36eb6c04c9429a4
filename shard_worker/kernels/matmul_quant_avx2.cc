#include "shard_worker/kernels/matmul_quant_avx2.h"

#include <immintrin.h>

#include <cfloat>
#include <cstring>
#include <utility>

#include "shard_worker/kernels/avx2_common.h"
#include "shard_worker/kernels/matmul_quant_driver.h"
#include "shard_worker/kernels/q8_activations.h"

// Internal linkage and no std templates inside the target region (see matmul_avx2.cc).
// The avx2 target plus F16C (vcvtph2ps for the f16 group scales; every AVX2 CPU has it, and
// CpuSupportsAvx2MatMul checks).
#define GLM_Q256 __attribute__((target("avx2,fma,f16c")))
#define GLM_Q256_INLINE GLM_Q256 __attribute__((always_inline)) static inline

namespace glm::kernels {
namespace {

constexpr int kLanes = 8;
constexpr int kChunk = 32;  // kI8: 32 columns, four vectors, per step

// 16 ymm registers: R·T accumulators plus the rows' scales and one chunk's decoded vectors.
constexpr int kTileTokens = 4;
constexpr int kGroupRows[kQuantMaxTileTokens + 1] = {0, 4, 4, 2, 2};

template <int T>
GLM_Q256_INLINE void FmaTokens(__m256 v, const float* x, int64_t pitch, __m256 (&acc)[T]) {
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) acc[t] = _mm256_fmadd_ps(v, _mm256_load_ps(x + t * pitch), acc[t]);
}

// One 32-column kI8 chunk of R rows (row i's chunk bytes at rows[i], all readable), vector 0 first.
template <int R, int T>
GLM_Q256_INLINE void StepI8(const uint8_t* const (&rows)[R], int64_t c, const float* xp,
                            int64_t pitch, const __m256 (&s)[R], __m256 (&acc)[R][T]) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    __m256 v[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(rows[r] + 8 * k));
      v[k] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(raw)), s[r]);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) FmaTokens<T>(v[k], xp + c + k * kLanes, pitch, acc[r]);
  }
}

// QuantBlockFn for R rows × T tokens (see matmul_quant_driver.h).
template <int R, int T>
GLM_Q256 void BlockI8(const uint8_t* w, int64_t row_bytes, const uint16_t* scales, int64_t sstride,
                    int64_t cols, int64_t group, const float* xp, int64_t pitch, int64_t pf_bytes,
                    float* y, int64_t y_stride) {
  __m256 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();

  const int64_t pf_wrap = (R - 1) * row_bytes;
  const uint8_t* rows[R];
  const int64_t scale_pf = ScalePrefetchDistance(pf_bytes, group);
  int64_t gi = 0;
  for (int64_t g0 = 0; g0 < cols; g0 += group, ++gi) {
    if ((gi & 15) == 0) PrefetchScales<R>(scales, sstride, gi, scale_pf);
    __m256 s[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) s[r] = _mm256_set1_ps(F16ToF32(scales[r * sstride + gi]));
    const int64_t g1 = g0 + group < cols ? g0 + group : cols;
    int64_t c = g0;
    for (; c + kChunk <= g1; c += kChunk) {
      const int64_t boff = c;
      if (pf_bytes != 0 && (boff & 63) == 0) {
        int64_t off = boff + pf_bytes;
        if (off >= row_bytes) off += pf_wrap;
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
          _mm_prefetch(reinterpret_cast<const char*>(w + r * row_bytes + off), _MM_HINT_T0);
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) rows[r] = w + r * row_bytes + boff;
      StepI8<R, T>(rows, c, xp, pitch, s, acc);
    }
    if (c < g1) {
      // The tail: copy the row's remaining bytes into zeroed chunks (never read past the row).
      alignas(32) uint8_t tail[R][kChunk];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        std::memset(tail[r], 0, kChunk);
        std::memcpy(tail[r], w + r * row_bytes + c, g1 - c);
        rows[r] = tail[r];
      }
      StepI8<R, T>(rows, c, xp, pitch, s, acc);
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
  const int64_t pf_wrap = (R - 1) * row_bytes;
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
      int64_t off = 16 * b0 + pf_bytes;
      if (off >= row_bytes) off += pf_wrap;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(w + r * row_bytes + off), _MM_HINT_T0);
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
          const __m256i s = _mm256_sub_epi32(_mm256_madd_epi16(pairs, ones16),
                                             _mm256_load_si256(reinterpret_cast<const __m256i*>(a.offset + 8 * h)));
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

// PrepareQ8Chunks with AVX2: the same bytes (the same products x · (127 / a), rounded to nearest
// even by vcvtps2dq and packed with saturation, which cannot bind within ±127).
GLM_Q256 void PrepareQ8Avx2(const float* x, int64_t cols, Q8Chunk* out) {
  const int64_t chunks = Q8ChunksPerRow(cols);
  const __m256 finite_max = _mm256_set1_ps(FLT_MAX);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i unscramble = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // after the two packs
  for (int64_t ch = 0; ch < chunks; ++ch) {
    Q8Chunk& c = out[ch];
    for (int k = 0; k < 4; ++k) {
      const int64_t c0 = ch * kQ8ChunkCols + 32 * k;
      const int64_t n = c0 < cols ? (cols - c0 < 32 ? cols - c0 : 32) : 0;
      __m256 v[4], amax8 = _mm256_setzero_ps();
      int finite_bits = 0xf;
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        const int64_t left = n - 8 * i;
        v[i] = left >= 8 ? _mm256_loadu_ps(x + c0 + 8 * i)
               : left > 0 ? _mm256_maskload_ps(x + c0 + 8 * i, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left)), lane))
                          : _mm256_setzero_ps();
        const __m256 a = _mm256_and_ps(v[i], abs_mask);
        if (_mm256_movemask_ps(_mm256_cmp_ps(a, finite_max, _CMP_LE_OQ)) != 0xff) finite_bits = 0;
        amax8 = _mm256_max_ps(amax8, a);
      }
      __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax8), _mm256_extractf128_ps(amax8, 1));
      m = _mm_max_ps(m, _mm_movehl_ps(m, m));
      m = _mm_max_ss(m, _mm_movehdup_ps(m));
      const float amax = _mm_cvtss_f32(m);
      __m256i q = _mm256_setzero_si256();
      float sx = 0.0f;
      if (finite_bits == 0) {
        sx = __builtin_nanf("");
      } else if (amax >= kQ8MinMagnitude) {
        const __m256 inv = _mm256_set1_ps(127.0f / amax);
        __m256i i32[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) i32[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], inv));
        q = _mm256_permutevar8x32_epi32(
            _mm256_packs_epi16(_mm256_packs_epi32(i32[0], i32[1]), _mm256_packs_epi32(i32[2], i32[3])), unscramble);
        sx = amax / 127.0f;
      }
      _mm_store_si128(reinterpret_cast<__m128i*>(c.lo + 16 * k), _mm256_castsi256_si128(q));
      _mm_store_si128(reinterpret_cast<__m128i*>(c.hi + 16 * k), _mm256_extracti128_si256(q, 1));
      _mm_store_ps(c.scale + 4 * k, _mm_set1_ps(sx));
    }
    // offset lane l = 8 · Σ of lo and hi bytes 4l..4l+3 (vpmaddubsw with ones: exact).
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256i pairs =
          _mm256_add_epi16(_mm256_maddubs_epi16(ones8, _mm256_load_si256(reinterpret_cast<const __m256i*>(c.lo + 32 * h))),
                           _mm256_maddubs_epi16(ones8, _mm256_load_si256(reinterpret_cast<const __m256i*>(c.hi + 32 * h))));
      _mm256_store_si256(reinterpret_cast<__m256i*>(c.offset + 8 * h), _mm256_slli_epi32(_mm256_madd_epi16(pairs, ones16), 3));
    }
  }
}

template <int... Ts>
QuantKernelSet MakeKernelSet(std::integer_sequence<int, Ts...>) {
  QuantKernelSet k;
  k.i8_chunk_cols = kChunk;
  k.max_tile_tokens = kTileTokens;
  ((k.i8_rows_per_group[Ts + 1] = kGroupRows[Ts + 1]), ...);
  ((k.i8_grouped[Ts + 1] = &BlockI8<kGroupRows[Ts + 1], Ts + 1>), ...);
  ((k.i8_single[Ts + 1] = &BlockI8<1, Ts + 1>), ...);
  ((k.i4_rows_per_group[Ts + 1] = kGroupRows[Ts + 1]), ...);
  ((k.i4_grouped[Ts + 1] = &BlockI4<kGroupRows[Ts + 1], Ts + 1>), ...);
  ((k.i4_single[Ts + 1] = &BlockI4<1, Ts + 1>), ...);
  k.prepare_q8 = &PrepareQ8Avx2;
  return k;
}

}  // namespace

void PrepareQ8ChunksAvx2(const float* x, int64_t cols, Q8Chunk* out) { PrepareQ8Avx2(x, cols, out); }

void MatMulRowsQuantAvx2(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                         int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  static const QuantKernelSet kernels = MakeKernelSet(std::make_integer_sequence<int, kTileTokens>());
  RunQuantMatMul(kernels, x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
}

}  // namespace glm::kernels
