#include "shard_worker/kernels/matmul_quant_avx512.h"

// GCC 12's own AVX-512 intrinsics self-initialise `__Y` (GCC PR 105593) and warn once inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <utility>

#include "shard_worker/kernels/avx512_common.h"
#include "shard_worker/kernels/matmul_quant_driver.h"
#include "shard_worker/kernels/prefetch.h"
#include "shard_worker/kernels/q8_activations.h"

// The same target and lane reduction as the BF16/FP8 kernels (avx512_common.h).
#define GLM_Q512 GLM_AVX512
#define GLM_Q512_INLINE GLM_AVX512_INLINE

namespace glm::kernels {
namespace {

// Token tiles of at most 4; R rows per group so that R·T ≥ 8 accumulator chains hide the FMA
// latency and each activation load serves R rows (as in matmul_avx512.cc).
constexpr int kTileTokens = 4;
constexpr int kGroupRows[kQuantMaxTileTokens + 1] = {0, 8, 4, 4, 4};

// Int32 lane l += w[2l] · x[2l] + w[2l + 1] · x[2l + 1] over 32 int16 pairs: vpdpwssd where the
// CPU has AVX512_VNNI, else vpmaddwd and an add — the same integers (|products| ≤ 128 · 32767,
// far from int32's range).
template <bool kVnni>
GLM_Q512_INLINE __m512i PairDot(__m512i s, __m512i w, __m512i x) {
  if constexpr (kVnni) {
    asm("vpdpwssd %2, %1, %0" : "+v"(s) : "v"(w), "v"(x));  // no target attribute needed (see NibbleDot)
    return s;
  } else {
    return _mm512_add_epi32(s, _mm512_madd_epi16(w, x));
  }
}

// I8BlockFn for R rows × T tokens (see matmul_quant_driver.h). Per 64-column chunk (one 64-byte
// line of each row): two sign-extending loads per row (columns 0-31 and 32-63 as int16), and per
// token two pair dots against the int16 activations, a convert and an FMA with sw · sx.
// kUniform: every chunk lies in one weight group (group a multiple of 64, or the whole row): both
// halves share the int32 lanes, and the group's scale is broadcast from 16 groups' scales widened
// at once. Else (groups of 32 · odd columns) each half has its own lanes, convert and FMA.
template <int R, int T, bool kVnni, bool kUniform>
GLM_Q512_INLINE void BlockI8Body(const uint8_t* w, int64_t row_bytes, const uint16_t* scales, int64_t sstride,
                                 int64_t cols, int64_t group, const Q16Chunk* xq, int64_t chunks,
                                 int64_t pf_bytes, float* y, int64_t y_stride) {
  __m512 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();

  const int64_t scale_pf = ScalePrefetchDistance(pf_bytes, group);
  const int64_t n_groups = (cols + group - 1) / group;
  const int64_t blocks_per_group = group / 32;
  __m512 scale16[R];
  int64_t g = 0, g_cols = 0, widened = -1;  // kUniform: the chunk's group, its columns so far
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t c0 = ch * kQ16ChunkCols;
    const int64_t n = cols - c0 < kQ16ChunkCols ? cols - c0 : kQ16ChunkCols;
    __m512 sw[R][kUniform ? 1 : 2];
    if constexpr (kUniform) {
      if ((g >> 4) != widened) {
        widened = g >> 4;
        const int64_t g16 = g & ~int64_t{15};
        PrefetchScales<R>(scales, sstride, g16, scale_pf);
        const __mmask16 m = TailMask16(n_groups - g16);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
          scale16[r] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, scales + r * sstride + g16));
      }
      const __m512i lane = _mm512_set1_epi32(static_cast<int>(g & 15));
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) sw[r][0] = _mm512_permutexvar_ps(lane, scale16[r]);
      g_cols += kQ16ChunkCols;
      if (g_cols >= group) ++g, g_cols = 0;
    } else {
      const int64_t g0 = 2 * ch / blocks_per_group, g1 = (2 * ch + 1) / blocks_per_group;
      const bool second = n > 32;  // the chunk's second block holds columns
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const uint16_t* sr = scales + r * sstride;
        sw[r][0] = _mm512_set1_ps(F16ToF32(sr[g0]));
        sw[r][1] = _mm512_set1_ps(second ? F16ToF32(sr[g1]) : 0.0f);
      }
    }
    if (pf_bytes != 0) PrefetchRowsAhead<R>(w, row_bytes, c0, pf_bytes);
    // Bytes past the row are loaded as zeros; the activations there are zero too.
    const __mmask64 byte_mask = n == kQ16ChunkCols ? ~__mmask64{0} : (__mmask64{1} << n) - 1;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = w + r * row_bytes + c0;
      __m512i lo, hi;
      if (n == kQ16ChunkCols) {
        lo = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        hi = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)));
      } else {
        lo = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(static_cast<__mmask32>(byte_mask), p));
        hi = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(static_cast<__mmask32>(byte_mask >> 32), p + 32));
      }
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) {
        const Q16Chunk& a = xq[t * chunks + ch];
        const __m512i xlo = _mm512_load_si512(a.q), xhi = _mm512_load_si512(a.q + 32);
        const __m512 sx = _mm512_load_ps(a.scale);
        if constexpr (kUniform) {
          const __m512i s = PairDot<kVnni>(PairDot<kVnni>(_mm512_setzero_si512(), lo, xlo), hi, xhi);
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(sw[r][0], sx), acc[r][t]);
        } else {
          const __m512i s0 = PairDot<kVnni>(_mm512_setzero_si512(), lo, xlo);
          const __m512i s1 = PairDot<kVnni>(_mm512_setzero_si512(), hi, xhi);
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_mul_ps(sw[r][0], sx), acc[r][t]);
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_mul_ps(sw[r][1], sx), acc[r][t]);
        }
      }
    }
  }

  StoreReduced<R, T>(acc, R, y, y_stride);
}

template <int R, int T, bool kVnni>
GLM_Q512 void BlockI8(const uint8_t* w, int64_t row_bytes, const uint16_t* scales, int64_t sstride,
                      int64_t cols, int64_t group, const Q16Chunk* xq, int64_t chunks,
                      int64_t pf_bytes, float* y, int64_t y_stride) {
  // The driver passes cols for a whole-row group.
  if (group >= cols || group % kQ16ChunkCols == 0)
    BlockI8Body<R, T, kVnni, true>(w, row_bytes, scales, sstride, cols, group, xq, chunks, pf_bytes, y, y_stride);
  else
    BlockI8Body<R, T, kVnni, false>(w, row_bytes, scales, sstride, cols, group, xq, chunks, pf_bytes, y, y_stride);
}

// ---- kI4: integer dots with int8 activations (q8_activations.h) ----

// Lane l of a 128-column chunk belongs to block l / 4.
GLM_Q512_INLINE __m512i BlockOfLane() { return _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3); }

// Int32 lane l = s + Σ over bytes 4l..4l+3 of lo·alo + hi·ahi (nibbles unsigned, activations
// signed), exact either way: vpdpbusd, or vpmaddubsw (pair sums ≤ 15·127·2, no saturation) +
// vpmaddwd and an add.
template <bool kVnni>
GLM_Q512_INLINE __m512i NibbleDot(__m512i s, __m512i lo, __m512i hi, __m512i alo, __m512i ahi) {
  if constexpr (kVnni) {
    // Inline assembly: the instruction needs no target attribute, so this variant shares the
    // kernel body and is chosen at run time only where the CPU has AVX512_VNNI.
    asm("vpdpbusd %2, %1, %0" : "+v"(s) : "v"(lo), "v"(alo));
    asm("vpdpbusd %2, %1, %0" : "+v"(s) : "v"(hi), "v"(ahi));
    return s;
  } else {
    const __m512i pairs = _mm512_add_epi16(_mm512_maddubs_epi16(lo, alo), _mm512_maddubs_epi16(hi, ahi));
    return _mm512_add_epi32(s, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)));
  }
}

// I4BlockFn for R rows × T tokens (see matmul_quant_driver.h). Per 128-column chunk (64 bytes of
// each row): one load, two masks for the nibbles, and per token two dots started from the
// offset, a convert and one FMA with the lanes' scales sw · sx.
// kGroup32: 32-column groups (the default), where chunk ch's blocks are groups 4ch..4ch+3 and the
// per-chunk group walk, spread and masks are constants; the arithmetic is the general path's.
template <int R, int T, bool kVnni, bool kGroup32>
GLM_Q512_INLINE void BlockI4Body(const uint8_t* w, int64_t row_bytes, const uint16_t* scales, int64_t sstride,
                                 int64_t cols, int64_t group, const Q8Chunk* xq, int64_t chunks,
                                 int64_t pf_bytes, float* y, int64_t y_stride) {
  __m512 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();

  const int64_t n_blocks = (cols + 31) / 32;
  const __m512i nibble = _mm512_set1_epi8(0x0f);
  ChunkGroups groups(cols, group);
  const int64_t scale_pf = ScalePrefetchDistance(pf_bytes, group / 2);
  // kGroup32: each row's scales of 16 groups (4 chunks) widened at once; a chunk's four are then
  // spread over its lanes by one permute (a load, convert and permute per chunk before).
  __m512 scale16[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) scale16[r] = _mm512_setzero_ps();
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t b0 = 4 * ch;
    const int nb = static_cast<int>(n_blocks - b0 < 4 ? n_blocks - b0 : 4);
    // The chunk's scales: 1..4 f16 from its first block's group g, widened, spread over the lanes.
    int64_t g;
    __m512i spread;
    __mmask8 scale_mask = 0;
    if constexpr (kGroup32) {
      g = b0;
      if ((ch & 3) == 0) {
        const __mmask16 m = TailMask16(n_blocks - b0);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
          scale16[r] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, scales + r * sstride + b0));
      }
      spread = _mm512_add_epi32(BlockOfLane(), _mm512_set1_epi32(static_cast<int>(4 * (ch & 3))));
    } else {
      int64_t block_group[4];
      groups.Next(block_group);
      g = block_group[0];
      int rel[4];
      for (int k = 0; k < 4; ++k) rel[k] = static_cast<int>(block_group[k] - g);
      spread = _mm512_permutexvar_epi32(BlockOfLane(),
                                        _mm512_castsi128_si512(_mm_setr_epi32(rel[0], rel[1], rel[2], rel[3])));
      scale_mask = static_cast<__mmask8>((1u << (rel[nb - 1] + 1)) - 1);
    }
    const __mmask16 lane_mask = static_cast<__mmask16>(nb == 4 ? 0xffff : (1u << (4 * nb)) - 1);
    const __mmask64 byte_mask = nb == 4 ? ~__mmask64{0} : (__mmask64{1} << (16 * nb)) - 1;
    const int64_t boff = 16 * b0;
    if (pf_bytes != 0) {
      PrefetchRowsAhead<R>(w, row_bytes, boff, pf_bytes);
      if ((ch & 3) == 0) PrefetchScales<R>(scales, sstride, g, scale_pf);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = w + r * row_bytes + boff;
      const __m512i raw = nb == 4 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(byte_mask, p);
      const __m512i lo = _mm512_and_si512(raw, nibble);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), nibble);
      const __m512 sw =
          kGroup32 ? _mm512_maskz_permutexvar_ps(lane_mask, spread, scale16[r])
                   : _mm512_maskz_permutexvar_ps(lane_mask, spread,
                                                 _mm512_castps128_ps512(_mm_cvtph_ps(
                                                     _mm_maskz_loadu_epi16(scale_mask, scales + r * sstride + g))));
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) {
        const Q8Chunk& a = xq[t * chunks + ch];
        const __m512i s =
            NibbleDot<kVnni>(_mm512_load_si512(a.neg_offset), lo, hi, _mm512_load_si512(a.lo), _mm512_load_si512(a.hi));
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(sw, _mm512_load_ps(a.scale)), acc[r][t]);
      }
    }
  }

  StoreReduced<R, T>(acc, R, y, y_stride);
}

template <int R, int T, bool kVnni>
GLM_Q512 void BlockI4(const uint8_t* w, int64_t row_bytes, const uint16_t* scales, int64_t sstride,
                      int64_t cols, int64_t group, const Q8Chunk* xq, int64_t chunks,
                      int64_t pf_bytes, float* y, int64_t y_stride) {
  if (group == 32)  // the driver passes cols for a whole-row group, so this is 32-column groups
    BlockI4Body<R, T, kVnni, true>(w, row_bytes, scales, sstride, cols, group, xq, chunks, pf_bytes, y, y_stride);
  else
    BlockI4Body<R, T, kVnni, false>(w, row_bytes, scales, sstride, cols, group, xq, chunks, pf_bytes, y, y_stride);
}

// QuantizeActivationBlock with AVX-512 for the n ≤ 32 values at x: the same bytes (the same
// products x · (127 / a), rounded to nearest even by vcvtps2dq, which cannot exceed ±127 here).
// Columns 0-15 go to *q0, 16-31 to *q1; returns the block's scale.
GLM_Q512_INLINE float QuantizeBlock32(const float* x, int64_t n, __m128i* q0, __m128i* q1) {
  const __mmask16 m0 = static_cast<__mmask16>(n >= 16 ? 0xffff : (1u << n) - 1);
  const __mmask16 m1 = static_cast<__mmask16>(n >= 32 ? 0xffff : n > 16 ? (1u << (n - 16)) - 1 : 0);
  const __m512 v0 = _mm512_maskz_loadu_ps(m0, x), v1 = _mm512_maskz_loadu_ps(m1, x + 16);
  const __m512 a0 = _mm512_abs_ps(v0), a1 = _mm512_abs_ps(v1);
  const __m512 finite_max = _mm512_set1_ps(FLT_MAX);
  const bool finite = _mm512_cmp_ps_mask(a0, finite_max, _CMP_LE_OQ) == 0xffff &&
                      _mm512_cmp_ps_mask(a1, finite_max, _CMP_LE_OQ) == 0xffff;
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
  *q0 = *q1 = _mm_setzero_si128();
  if (!finite) return __builtin_nanf("");
  if (!(amax >= kQ8MinMagnitude)) return 0.0f;
  const __m512 inv = _mm512_set1_ps(127.0f / amax);
  *q0 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, inv)));
  *q1 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, inv)));
  return amax / 127.0f;
}

// Int32 lane l = Σ of bytes 4l..4l+3 of v (vpmaddubsw with ones, then vpmaddwd: exact).
GLM_Q512_INLINE __m512i LaneSums(__m512i v) {
  return _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_set1_epi8(1), v), _mm512_set1_epi16(1));
}

// PrepareQ8Chunks with AVX-512: the same bytes.
GLM_Q512 void PrepareQ8Avx512(const float* x, int64_t cols, Q8Chunk* out) {
  const int64_t chunks = Q8ChunksPerRow(cols);
  for (int64_t ch = 0; ch < chunks; ++ch) {
    Q8Chunk& c = out[ch];
    for (int k = 0; k < 4; ++k) {
      const int64_t c0 = ch * kQ8ChunkCols + 32 * k;
      __m128i q0, q1;
      const float sx = QuantizeBlock32(x + c0, c0 >= cols ? 0 : cols - c0 < 32 ? cols - c0 : 32, &q0, &q1);
      _mm_store_si128(reinterpret_cast<__m128i*>(c.lo + 16 * k), q0);
      _mm_store_si128(reinterpret_cast<__m128i*>(c.hi + 16 * k), q1);
      _mm_store_ps(c.scale + 4 * k, _mm_set1_ps(sx));
    }
    // neg_offset lane l = −8 · Σ of lo and hi bytes 4l..4l+3.
    const __m512i sums = _mm512_add_epi32(LaneSums(_mm512_load_si512(c.lo)), LaneSums(_mm512_load_si512(c.hi)));
    _mm512_store_si512(c.neg_offset, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sums, 3)));
  }
}

// PrepareQ16Chunks with AVX-512: the same bytes (the same products x · (32767 / a), rounded to
// nearest even by vcvtps2dq, which cannot exceed ±32767 here).
GLM_Q512 void PrepareQ16Avx512(const float* x, int64_t cols, Q16Chunk* out) {
  const __m512 finite_max = _mm512_set1_ps(FLT_MAX);
  for (int64_t ch = 0; ch < Q16ChunksPerRow(cols); ++ch) {
    const int64_t c0 = ch * kQ16ChunkCols;
    const int64_t n = cols - c0 < kQ16ChunkCols ? cols - c0 : kQ16ChunkCols;
    __m512 v[4];
    __m512 amax16 = _mm512_setzero_ps();
    bool finite = true;
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm512_maskz_loadu_ps(TailMask16(n - 16 * i), x + c0 + 16 * i);
      const __m512 a = _mm512_abs_ps(v[i]);
      finite = finite && _mm512_cmp_ps_mask(a, finite_max, _CMP_LE_OQ) == 0xffff;
      amax16 = _mm512_max_ps(amax16, a);
    }
    const float amax = _mm512_reduce_max_ps(amax16);
    Q16Chunk& c = out[ch];
    float sx = 0.0f;
    __m256i q[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    if (!finite) {
      sx = __builtin_nanf("");
    } else if (amax >= kQ16MinMagnitude) {
      const __m512 inv = _mm512_set1_ps(32767.0f / amax);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) q[i] = _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(v[i], inv)));
      sx = amax / 32767.0f;
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) _mm256_store_si256(reinterpret_cast<__m256i*>(c.q + 16 * i), q[i]);
    _mm512_store_ps(c.scale, _mm512_set1_ps(sx));
  }
}

template <bool kVnni, int... Ts>
QuantKernelSet MakeKernelSet(std::integer_sequence<int, Ts...>) {
  QuantKernelSet k;
  k.max_tile_tokens = kTileTokens;
  ((k.i8_rows_per_group[Ts + 1] = kGroupRows[Ts + 1]), ...);
  ((k.i8_grouped[Ts + 1] = &BlockI8<kGroupRows[Ts + 1], Ts + 1, kVnni>), ...);
  ((k.i8_single[Ts + 1] = &BlockI8<1, Ts + 1, kVnni>), ...);
  ((k.i4_rows_per_group[Ts + 1] = kGroupRows[Ts + 1]), ...);
  ((k.i4_grouped[Ts + 1] = &BlockI4<kGroupRows[Ts + 1], Ts + 1, kVnni>), ...);
  ((k.i4_single[Ts + 1] = &BlockI4<1, Ts + 1, kVnni>), ...);
  k.prepare_q8 = &PrepareQ8Avx512;
  k.prepare_q16 = &PrepareQ16Avx512;
  return k;
}

bool CpuHasAvx512Vnni() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni");
}

std::atomic<bool> g_use_vnni{CpuHasAvx512Vnni()};

}  // namespace

bool Avx512Int4UsesVnni() { return g_use_vnni.load(std::memory_order_relaxed); }

bool UseAvx512VnniForInt4(bool use) {
  if (use && !CpuHasAvx512Vnni()) return false;
  g_use_vnni.store(use);
  return true;
}

void PrepareQ8ChunksAvx512(const float* x, int64_t cols, Q8Chunk* out) { PrepareQ8Avx512(x, cols, out); }
void PrepareQ16ChunksAvx512(const float* x, int64_t cols, Q16Chunk* out) { PrepareQ16Avx512(x, cols, out); }

void MatMulRowsQuantAvx512(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                           int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  static const QuantKernelSet with_vnni = MakeKernelSet<true>(std::make_integer_sequence<int, kTileTokens>());
  static const QuantKernelSet without_vnni = MakeKernelSet<false>(std::make_integer_sequence<int, kTileTokens>());
  RunQuantMatMul(Avx512Int4UsesVnni() ? with_vnni : without_vnni, x, n_tokens, x_stride, w, row_begin,
                 row_end, y, y_stride);
}

}  // namespace glm::kernels
