#include "shard_worker/kernels/int8_row_dots.h"

// GCC 12's own AVX-512 intrinsics self-initialise `__Y` (GCC PR 105593) and warn once inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "shard_worker/kernels/absmax_quantize.h"
#include "shard_worker/kernels/matmul_avx2.h"
#include "shard_worker/kernels/matmul_avx512.h"
#include "shard_worker/kernels/vector_ops.h"

namespace glm::kernels {
namespace {

int32_t LoadWord(const int8_t* p) {
  int32_t w;
  std::memcpy(&w, p, sizeof(w));
  return w;
}

// Four bytes into one little-endian word, each through f.
template <typename F>
int32_t PackWord(const int8_t* bytes, F f) {
  uint32_t w = 0;
  for (int b = 0; b < 4; ++b) w |= static_cast<uint32_t>(static_cast<uint8_t>(f(bytes[b]))) << (8 * b);
  return static_cast<int32_t>(w);
}

// What this CPU has (the matmul kernels' checks plus AVX512_VNNI), read once: the SIMD entry
// points check it on every call, in the hot path. And the path Int8RowDots and Int8RowWeightedSum take.
bool CpuHasAvx512Vnni() {
  __builtin_cpu_init();  // (this runs as a static initialiser)
  return CpuSupportsAvx512MatMul() && __builtin_cpu_supports("avx512vnni");
}
const bool kCpuHasVnni = CpuHasAvx512Vnni(), kCpuHasAvx2 = CpuSupportsAvx2MatMul();
enum class Path { kVnni, kAvx2, kPortable };
const Path kPath = kCpuHasVnni ? Path::kVnni : kCpuHasAvx2 ? Path::kAvx2 : Path::kPortable;

}  // namespace

void Int8QueryRows::Quantize(const float* q, int nq, int64_t d, bool every_layout) {
  nq_ = nq;
  d_ = d;
  words_ = (d + 3) / 4;
  const int64_t width = words_ * 4;
  codes_.assign(static_cast<size_t>(nq) * width, 0);
  scales_.assign(nq, 0.0f);
  for (int h = 0; h < nq; ++h)
    QuantizeAbsMax<int8_t>(q + h * d, static_cast<int>(d), static_cast<int>(width), 127.0f,
                           127.0f / std::numeric_limits<float>::max(), codes_.data() + h * width, &scales_[h]);
  const bool lanes16 = every_layout || kPath == Path::kVnni, lanes8 = every_layout || kPath == Path::kAvx2;
  const int g16 = lanes16 ? (nq + 15) / 16 : 0, g8 = lanes8 ? (nq + 7) / 8 : 0;
  biased16_.assign(static_cast<size_t>(g16) * words_ * 16, static_cast<int32_t>(0x80808080u));
  biased_rows_.resize(lanes16 ? codes_.size() : 0);
  for (size_t i = 0; i < biased_rows_.size(); ++i) biased_rows_[i] = static_cast<uint8_t>(codes_[i] + 128);
  abs8_.assign(static_cast<size_t>(g8) * words_ * 8, 0);
  signed8_.assign(static_cast<size_t>(g8) * words_ * 8, 0);
  for (int h = 0; h < nq; ++h) {
    for (int64_t j = 0; j < words_; ++j) {
      const int8_t* b = codes(h) + 4 * j;
      if (lanes16) biased16_[(h / 16 * words_ + j) * 16 + h % 16] = PackWord(b, [](int8_t c) { return c + 128; });
      if (!lanes8) continue;
      abs8_[(h / 8 * words_ + j) * 8 + h % 8] = PackWord(b, [](int8_t c) { return c < 0 ? -c : c; });
      signed8_[(h / 8 * words_ + j) * 8 + h % 8] = PackWord(b, [](int8_t c) { return c; });
    }
  }
}

void Int8RowDotsReference(const Int8QueryRows& q, const int8_t* const* rows, int64_t n_rows, float* out,
                          int64_t out_stride) {
  const int64_t width = q.words() * 4;
  for (int h = 0; h < q.nq(); ++h) {
    const int8_t* qc = q.codes(h);
    for (int64_t s = 0; s < n_rows; ++s) {
      int32_t isum = 0;
      for (int64_t i = 0; i < width; ++i) isum += static_cast<int32_t>(qc[i]) * rows[s][i];
      out[h * out_stride + s] = (static_cast<float>(isum) * q.scale(h)) * ScaledRowScale(rows[s], q.d());
    }
  }
}

#define GLM_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))

// o[l] = column l of the 16 x 16 floats m[k][l] (three rounds of unpacks and 128-bit shuffles).
GLM_VNNI __attribute__((always_inline)) static inline void Transpose16(const float (*m)[16], __m512 (&o)[16]) {
  __m512 t[16], u[16], v[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(_mm512_load_ps(m[2 * i]), _mm512_load_ps(m[2 * i + 1]));
    t[2 * i + 1] = _mm512_unpackhi_ps(_mm512_load_ps(m[2 * i]), _mm512_load_ps(m[2 * i + 1]));
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int h = 0; h < 2; ++h) {
    for (int i = 0; i < 4; ++i) {
      v[8 * h + i] = _mm512_shuffle_f32x4(u[8 * h + i], u[8 * h + 4 + i], 0x88);
      v[8 * h + 4 + i] = _mm512_shuffle_f32x4(u[8 * h + i], u[8 * h + 4 + i], 0xdd);
    }
  }
  for (int i = 0; i < 8; ++i) {
    o[i] = _mm512_shuffle_f32x4(v[i], v[8 + i], 0x88);
    o[8 + i] = _mm512_shuffle_f32x4(v[i], v[8 + i], 0xdd);
  }
}

// Rows in the lanes of a register, keys one at a time: per key s and word j one vpdpbusd of the
// 16 rows' biased words with key word j broadcast — no transposition of the keys, which are
// scattered rows. Σ (q + 128) · k = Σ q · k + 128 · Σ k, so each key's byte sum (one vpdpbusd
// with ones per 64 bytes) is taken off.
// The four sums of the int32 lanes of a, b, c and d (an unpack-and-add tree: 13 instructions, not
// four reductions of 8).
GLM_VNNI __attribute__((always_inline)) static inline __m128i Sum4(__m512i a, __m512i b, __m512i c, __m512i d) {
  const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
  const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
  // Per 128-bit lane: a, b, c, d partial sums.
  __m512i x = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
  x = _mm512_add_epi32(x, _mm512_shuffle_i32x4(x, x, 0x4e));
  x = _mm512_add_epi32(x, _mm512_shuffle_i32x4(x, x, 0xb1));
  return _mm512_castsi512_si128(x);
}

// Fewer than 8 rows would leave most of the 16 lanes idle: the values in the lanes instead, 64
// bytes a vpdpbusd, four keys by two rows a pass (eight accumulators), each sum reduced at the
// end. The integers are the same, so the outputs are the same bits.
GLM_VNNI static void Int8RowDotsFewRowsVnni(const Int8QueryRows& q, const int8_t* const* rows, int64_t n_rows,
                                            float* out, int64_t out_stride) {
  const int64_t width = q.words() * 4;
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t s0 = 0; s0 < n_rows; s0 += 4) {
    const int64_t ns = std::min<int64_t>(4, n_rows - s0);
    const int8_t* r[4];
    for (int k = 0; k < 4; ++k) r[k] = rows[s0 + std::min<int64_t>(k, ns - 1)];  // past ns: a repeat, not stored
    __m512i k0 = _mm512_setzero_si512(), k1 = k0, k2 = k0, k3 = k0;  // the keys' byte sums
    for (int64_t b = 0; b < width; b += 64) {
      const __mmask64 m = width - b >= 64 ? ~__mmask64{0} : (__mmask64{1} << (width - b)) - 1;
      k0 = _mm512_dpbusd_epi32(k0, ones, _mm512_maskz_loadu_epi8(m, r[0] + b));
      k1 = _mm512_dpbusd_epi32(k1, ones, _mm512_maskz_loadu_epi8(m, r[1] + b));
      k2 = _mm512_dpbusd_epi32(k2, ones, _mm512_maskz_loadu_epi8(m, r[2] + b));
      k3 = _mm512_dpbusd_epi32(k3, ones, _mm512_maskz_loadu_epi8(m, r[3] + b));
    }
    alignas(16) int32_t ksum[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(ksum), Sum4(k0, k1, k2, k3));
    float sk[4];
    for (int k = 0; k < 4; ++k) sk[k] = ScaledRowScale(r[k], q.d());
    for (int h = 0; h < q.nq(); h += 2) {
      const int h1 = std::min(h + 1, q.nq() - 1);  // an odd last row: computed twice, stored once
      const uint8_t* qa = q.biased_row(h);
      const uint8_t* qb = q.biased_row(h1);
      __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
      for (int64_t b = 0; b < width; b += 64) {
        const __mmask64 m = width - b >= 64 ? ~__mmask64{0} : (__mmask64{1} << (width - b)) - 1;
        const __m512i x = _mm512_maskz_loadu_epi8(m, qa + b), y = _mm512_maskz_loadu_epi8(m, qb + b);
        const __m512i c0 = _mm512_maskz_loadu_epi8(m, r[0] + b), c1 = _mm512_maskz_loadu_epi8(m, r[1] + b);
        const __m512i c2 = _mm512_maskz_loadu_epi8(m, r[2] + b), c3 = _mm512_maskz_loadu_epi8(m, r[3] + b);
        a0 = _mm512_dpbusd_epi32(a0, x, c0), a1 = _mm512_dpbusd_epi32(a1, x, c1);
        a2 = _mm512_dpbusd_epi32(a2, x, c2), a3 = _mm512_dpbusd_epi32(a3, x, c3);
        b0 = _mm512_dpbusd_epi32(b0, y, c0), b1 = _mm512_dpbusd_epi32(b1, y, c1);
        b2 = _mm512_dpbusd_epi32(b2, y, c2), b3 = _mm512_dpbusd_epi32(b3, y, c3);
      }
      alignas(16) int32_t sums[2][4];
      _mm_store_si128(reinterpret_cast<__m128i*>(sums[0]), Sum4(a0, a1, a2, a3));
      _mm_store_si128(reinterpret_cast<__m128i*>(sums[1]), Sum4(b0, b1, b2, b3));
      for (int u = 0; u < (h1 > h ? 2 : 1); ++u)
        for (int k = 0; k < ns; ++k) {
          const int32_t isum = sums[u][k] - 128 * ksum[k];
          out[(h + u) * out_stride + s0 + k] = (static_cast<float>(isum) * q.scale(h + u)) * sk[k];
        }
    }
  }
}

GLM_VNNI bool Int8RowDotsAvx512Vnni(const Int8QueryRows& q, const int8_t* const* rows, int64_t n_rows, float* out,
                                    int64_t out_stride) {
  if (!kCpuHasVnni || (q.nq() > 0 && q.biased16_empty())) return false;
  if (q.nq() < 8) {
    Int8RowDotsFewRowsVnni(q, rows, n_rows, out, out_stride);
    return true;
  }
  const int64_t words = q.words(), width = words * 4;
  constexpr int64_t kKeys = 16;
  int32_t ksum[kKeys];
  float sk[kKeys];
  alignas(64) float tmp[kKeys][16] = {};
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t s0 = 0; s0 < n_rows; s0 += kKeys) {
    const int64_t ns = std::min(kKeys, n_rows - s0);
    for (int64_t k = 0; k < ns; ++k) {
      const int8_t* row = rows[s0 + k];
      __m512i acc = _mm512_setzero_si512();
      for (int64_t b = 0; b < width; b += 64) {
        const __mmask64 m = width - b >= 64 ? ~__mmask64{0} : (__mmask64{1} << (width - b)) - 1;
        acc = _mm512_dpbusd_epi32(acc, ones, _mm512_maskz_loadu_epi8(m, row + b));
      }
      ksum[k] = _mm512_reduce_add_epi32(acc);
      sk[k] = ScaledRowScale(row, q.d());
    }
    for (int g = 0; g * 16 < q.nq(); ++g) {
      const int32_t* qb = q.biased16(g);
      const int lanes = std::min(16, q.nq() - 16 * g);
      const __m512 sq = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << lanes) - 1), q.scales() + 16 * g);
      // Eight keys at a time: eight independent accumulator chains (a vpdpbusd's latency is
      // several cycles) sharing each load of the rows' words.
      for (int64_t k0 = 0; k0 < ns; k0 += 8) {
        auto key = [&](int u) { return std::min<int64_t>(k0 + u, ns - 1); };  // past ns: a repeat, not stored
        const int8_t *r0 = rows[s0 + key(0)], *r1 = rows[s0 + key(1)], *r2 = rows[s0 + key(2)], *r3 = rows[s0 + key(3)];
        const int8_t *r4 = rows[s0 + key(4)], *r5 = rows[s0 + key(5)], *r6 = rows[s0 + key(6)], *r7 = rows[s0 + key(7)];
        __m512i a0 = _mm512_set1_epi32(-128 * ksum[key(0)]), a1 = _mm512_set1_epi32(-128 * ksum[key(1)]);
        __m512i a2 = _mm512_set1_epi32(-128 * ksum[key(2)]), a3 = _mm512_set1_epi32(-128 * ksum[key(3)]);
        __m512i a4 = _mm512_set1_epi32(-128 * ksum[key(4)]), a5 = _mm512_set1_epi32(-128 * ksum[key(5)]);
        __m512i a6 = _mm512_set1_epi32(-128 * ksum[key(6)]), a7 = _mm512_set1_epi32(-128 * ksum[key(7)]);
        for (int64_t j = 0; j < words; ++j) {
          const __m512i w = _mm512_loadu_si512(qb + 16 * j);
          a0 = _mm512_dpbusd_epi32(a0, w, _mm512_set1_epi32(LoadWord(r0 + 4 * j)));
          a1 = _mm512_dpbusd_epi32(a1, w, _mm512_set1_epi32(LoadWord(r1 + 4 * j)));
          a2 = _mm512_dpbusd_epi32(a2, w, _mm512_set1_epi32(LoadWord(r2 + 4 * j)));
          a3 = _mm512_dpbusd_epi32(a3, w, _mm512_set1_epi32(LoadWord(r3 + 4 * j)));
          a4 = _mm512_dpbusd_epi32(a4, w, _mm512_set1_epi32(LoadWord(r4 + 4 * j)));
          a5 = _mm512_dpbusd_epi32(a5, w, _mm512_set1_epi32(LoadWord(r5 + 4 * j)));
          a6 = _mm512_dpbusd_epi32(a6, w, _mm512_set1_epi32(LoadWord(r6 + 4 * j)));
          a7 = _mm512_dpbusd_epi32(a7, w, _mm512_set1_epi32(LoadWord(r7 + 4 * j)));
        }
        const __m512i acc[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
        for (int u = 0; u < 8 && k0 + u < ns; ++u)
          _mm512_store_ps(tmp[k0 + u],
                          _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[u]), sq), _mm512_set1_ps(sk[k0 + u])));
      }
      // tmp [key][row] to out [row][key]: rows of tmp past ns go to masked-off lanes.
      __m512 cols[16];
      Transpose16(tmp, cols);
      const __mmask16 keys = static_cast<__mmask16>((1u << ns) - 1);
      for (int l = 0; l < lanes; ++l) _mm512_mask_storeu_ps(out + (16 * g + l) * out_stride + s0, keys, cols[l]);
    }
  }
  return true;
}

#define GLM_AVX2_DOTS __attribute__((target("avx2,fma")))

// 8 rows in the lanes; vpmaddubsw multiplies |q| (unsigned) by k with q's sign applied (vpsignb),
// so a pair sums to at most 2 · 127 · 127 and never saturates; vpmaddwd with ones adds the pairs.
GLM_AVX2_DOTS bool Int8RowDotsAvx2(const Int8QueryRows& q, const int8_t* const* rows, int64_t n_rows, float* out,
                                   int64_t out_stride) {
  if (!kCpuHasAvx2 || (q.nq() > 0 && q.lanes8_empty())) return false;
  const int64_t words = q.words();
  const __m256i ones16 = _mm256_set1_epi16(1);
  alignas(32) float tmp[8];
  for (int g = 0; g * 8 < q.nq(); ++g) {
    const int32_t* qa = q.abs8(g);
    const int32_t* qs = q.signed8(g);
    const int lanes = std::min(8, q.nq() - 8 * g);
    alignas(32) float scales[8] = {};
    std::copy_n(q.scales() + 8 * g, lanes, scales);
    const __m256 sq = _mm256_load_ps(scales);
    for (int64_t s = 0; s < n_rows; ++s) {
      const int8_t* row = rows[s];
      __m256i acc = _mm256_setzero_si256();
      for (int64_t j = 0; j < words; ++j) {
        const __m256i k = _mm256_sign_epi8(_mm256_set1_epi32(LoadWord(row + 4 * j)),
                                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 8 * j)));
        const __m256i pairs =
            _mm256_maddubs_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa + 8 * j)), k);
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones16));
      }
      _mm256_store_ps(tmp, _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc), sq),
                                         _mm256_set1_ps(ScaledRowScale(row, q.d()))));
      for (int l = 0; l < lanes; ++l) out[(8 * g + l) * out_stride + s] = tmp[l];
    }
  }
  return true;
}

namespace {

// Block [b0, b0 + nb) of head h's weights folded with the rows' scales and quantised to int16:
// c[0, kInt8SumBlock) (zero past nb) and *sw (Int8RowWeightedSum's arithmetic).
void QuantizeBlockWeights(const float* w, const int8_t* const* rows, int64_t nb, int64_t d, int16_t* c, float* sw) {
  float folded[kInt8SumBlock];
  for (int64_t k = 0; k < nb; ++k) folded[k] = w[k] * ScaledRowScale(rows[k], d);
  QuantizeAbsMax<int16_t>(folded, static_cast<int>(nb), static_cast<int>(kInt8SumBlock), 32767.0f,
                          32767.0f / std::numeric_limits<float>::max(), c, sw);
}

// QuantizeAbsMax's two cases without codes, for the vectorised roundings: a block holding a NaN or
// an infinity (`unordered`, or a largest magnitude `a` past the finite range) gets scale NaN, one
// too small for 32767 / a to be finite scale 0, and zero codes both (out [kInt8SumBlock / 2] pair
// words). False: an ordinary block, for the caller to round.
bool RoundSpecialBlock(bool unordered, float a, int32_t* out, float* scale) {
  if (!unordered && a <= std::numeric_limits<float>::max() && a >= 32767.0f / std::numeric_limits<float>::max())
    return false;
  std::fill_n(out, kInt8SumBlock / 2, 0);
  *scale = unordered || !(a <= std::numeric_limits<float>::max()) ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
  return true;
}

}  // namespace

void Int8RowWeightedSumReference(const float* w, int64_t w_stride, int nq, const int8_t* const* rows, int64_t n_rows,
                                 int64_t d, float* out, int64_t out_stride) {
  int16_t c[kInt8SumBlock];
  for (int64_t b0 = 0; b0 < n_rows; b0 += kInt8SumBlock) {
    const int64_t nb = std::min(kInt8SumBlock, n_rows - b0);
    for (int h = 0; h < nq; ++h) {
      float sw = 0;
      QuantizeBlockWeights(w + h * w_stride + b0, rows + b0, nb, d, c, &sw);
      for (int64_t i = 0; i < d; ++i) {
        int32_t isum = 0;
        for (int64_t k = 0; k < nb; ++k) isum += static_cast<int32_t>(c[k]) * rows[b0 + k][i];
        out[h * out_stride + i] = std::fma(static_cast<float>(isum), sw, out[h * out_stride + i]);
      }
    }
  }
}

// QuantizeBlockWeights for all heads of a block at once, vectorised (the same codes and scales:
// the same IEEE products and quotients; vcvtps2dq rounds to nearest even as nearbyint does): the
// scalar rule took ~15 cycles a weight, a quarter of a GLM-5 decode step's attention.
// words[h * kInt8SumBlock / 2 + p] = the pair word of keys 2p, 2p + 1 (zero past nb).
GLM_VNNI static void QuantizeBlockWeightsAvx512(const float* w, int64_t w_stride, int nq,
                                                const int8_t* const* rows, int64_t nb, int64_t d, int32_t* words,
                                                float* scales) {
  alignas(64) float row_scales[kInt8SumBlock] = {};
  for (int64_t k = 0; k < nb; ++k) row_scales[k] = ScaledRowScale(rows[k], d);
  const __mmask16 m[4] = {
      static_cast<__mmask16>(nb >= 16 ? 0xffff : (1u << nb) - 1),
      static_cast<__mmask16>(nb >= 32 ? 0xffff : nb <= 16 ? 0 : (1u << (nb - 16)) - 1),
      static_cast<__mmask16>(nb >= 48 ? 0xffff : nb <= 32 ? 0 : (1u << (nb - 32)) - 1),
      static_cast<__mmask16>(nb >= 64 ? 0xffff : nb <= 48 ? 0 : (1u << (nb - 48)) - 1)};
  for (int h = 0; h < nq; ++h) {
    __m512 x[4];
    __m512 amax = _mm512_setzero_ps();
    bool nan = false;
    for (int v = 0; v < 4; ++v) {
      x[v] = _mm512_mul_ps(_mm512_maskz_loadu_ps(m[v], w + h * w_stride + 16 * v), _mm512_load_ps(row_scales + 16 * v));
      nan |= _mm512_cmp_ps_mask(x[v], x[v], _CMP_UNORD_Q) != 0;
      amax = _mm512_max_ps(amax, _mm512_abs_ps(x[v]));
    }
    const float a = _mm512_reduce_max_ps(amax);
    int32_t* out = words + h * (kInt8SumBlock / 2);
    if (RoundSpecialBlock(nan, a, out, &scales[h])) continue;
    const __m512 inv = _mm512_set1_ps(32767.0f / a), lim = _mm512_set1_ps(32767.0f);
    for (int v = 0; v < 4; ++v) {
      const __m512 y = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(x[v], inv), _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8 * v), _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(y)));
    }
    scales[h] = a / 32767.0f;
  }
}

// One pass of kN heads (1..8) over a block's 32-value chunk: interleaved[p] holds rows 2p, 2p + 1
// (Int8RowWeightedSumAvx512Vnni), words[u * 32 + p] head u's pair codes, scales[u] its scale; adds
// into out[u * out_stride + 0..31] (lo_dims / hi_dims: the chunk's values 0-15 / 16-31 present).
template <int kN>
GLM_VNNI __attribute__((always_inline)) static inline void WeightedSumPass(const __m512i (*interleaved)[2],
                                                                          int64_t pairs, const int32_t* words,
                                                                          const float* scales, float* out,
                                                                          int64_t out_stride, __mmask16 lo_dims,
                                                                          __mmask16 hi_dims) {
  constexpr int64_t kPairs = kInt8SumBlock / 2;
  // Named accumulators (an array indexed in a loop was kept in memory by GCC).
  __m512i l0 = _mm512_setzero_si512(), l1 = l0, l2 = l0, l3 = l0, l4 = l0, l5 = l0, l6 = l0, l7 = l0;
  __m512i g0 = l0, g1 = l0, g2 = l0, g3 = l0, g4 = l0, g5 = l0, g6 = l0, g7 = l0;
  for (int64_t p = 0; p < pairs; ++p) {
    const __m512i x0 = interleaved[p][0], x1 = interleaved[p][1];
#define GLM_PAIR(u, l, g)                                        \
  if constexpr (kN > (u)) {                                      \
    const __m512i c = _mm512_set1_epi32(words[(u) * kPairs + p]); \
    l = _mm512_dpwssd_epi32(l, x0, c);                           \
    g = _mm512_dpwssd_epi32(g, x1, c);                           \
  }
    GLM_PAIR(0, l0, g0) GLM_PAIR(1, l1, g1) GLM_PAIR(2, l2, g2) GLM_PAIR(3, l3, g3)
    GLM_PAIR(4, l4, g4) GLM_PAIR(5, l5, g5) GLM_PAIR(6, l6, g6) GLM_PAIR(7, l7, g7)
#undef GLM_PAIR
  }
  const __m512i lo[8] = {l0, l1, l2, l3, l4, l5, l6, l7}, hi[8] = {g0, g1, g2, g3, g4, g5, g6, g7};
  // The chunk's values back in dimension order: lo holds 0-3, 8-11, 16-19, 24-27; hi the others.
  const __m512i first_half = _mm512_set_epi32(23, 22, 21, 20, 7, 6, 5, 4, 19, 18, 17, 16, 3, 2, 1, 0);
  const __m512i second_half = _mm512_set_epi32(31, 30, 29, 28, 15, 14, 13, 12, 27, 26, 25, 24, 11, 10, 9, 8);
  for (int u = 0; u < kN; ++u) {
    const __m512 flo = _mm512_cvtepi32_ps(lo[u]), fhi = _mm512_cvtepi32_ps(hi[u]);
    const __m512 sw = _mm512_set1_ps(scales[u]);
    float* o = out + u * out_stride;
    const __m512 v0 = _mm512_permutex2var_ps(flo, first_half, fhi);
    const __m512 v1 = _mm512_permutex2var_ps(flo, second_half, fhi);
    _mm512_mask_storeu_ps(o, lo_dims, _mm512_fmadd_ps(v0, sw, _mm512_maskz_loadu_ps(lo_dims, o)));
    if (hi_dims) _mm512_mask_storeu_ps(o + 16, hi_dims, _mm512_fmadd_ps(v1, sw, _mm512_maskz_loadu_ps(hi_dims, o + 16)));
  }
}

// Per block: each pair of rows' 32-value chunks widened to 16 bits and interleaved (vpunpck{l,h}wd:
// dims 8l..8l+3 of lane l in the low register, 8l+4..8l+7 in the high one) once, then for every
// head one vpdpwssd per pair and register with the pair's codes broadcast; the sums are put back
// in dimension order by one two-source permute per 16 values.
GLM_VNNI bool Int8RowWeightedSumAvx512Vnni(const float* w, int64_t w_stride, int nq, const int8_t* const* rows,
                                          int64_t n_rows, int64_t d, float* out, int64_t out_stride) {
  if (!kCpuHasVnni) return false;
  constexpr int64_t kPairs = kInt8SumBlock / 2;
  thread_local std::vector<int32_t> words;
  thread_local std::vector<float> scales;
  words.resize(static_cast<size_t>(nq) * kPairs);
  scales.resize(nq);
  alignas(64) __m512i interleaved[kPairs][2];
  for (int64_t b0 = 0; b0 < n_rows; b0 += kInt8SumBlock) {
    const int64_t nb = std::min(kInt8SumBlock, n_rows - b0), pairs = (nb + 1) / 2;
    QuantizeBlockWeightsAvx512(w + b0, w_stride, nq, rows + b0, nb, d, words.data(), scales.data());
    for (int64_t i0 = 0; i0 < d; i0 += 32) {
      const __mmask32 bytes = d - i0 >= 32 ? ~__mmask32{0} : (__mmask32{1} << (d - i0)) - 1;
      for (int64_t p = 0; p < pairs; ++p) {
        const int8_t* r0 = rows[b0 + 2 * p];
        const int8_t* r1 = 2 * p + 1 < nb ? rows[b0 + 2 * p + 1] : r0;  // past nb: code 0 weighs it
        const __m512i a = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(bytes, r0 + i0));
        const __m512i b = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(bytes, r1 + i0));
        interleaved[p][0] = _mm512_unpacklo_epi16(a, b);
        interleaved[p][1] = _mm512_unpackhi_epi16(a, b);
      }
      const __mmask16 lo_dims = static_cast<__mmask16>(d - i0 >= 16 ? 0xffff : (1u << (d - i0)) - 1);
      const __mmask16 hi_dims = static_cast<__mmask16>(d - i0 >= 32 ? 0xffff : d - i0 <= 16 ? 0 : (1u << (d - i0 - 16)) - 1);
      // Passes of 8 heads, then of 4, 2 and 1 (no accumulator wasted on a head that is not there).
      for (int h0 = 0; h0 < nq;) {
        const int left = nq - h0;
        const int nh = left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
        const int32_t* wp = words.data() + h0 * kPairs;
        const float* sw = scales.data() + h0;
        float* o = out + h0 * out_stride + i0;
        if (nh == 8) WeightedSumPass<8>(interleaved, pairs, wp, sw, o, out_stride, lo_dims, hi_dims);
        else if (nh == 4) WeightedSumPass<4>(interleaved, pairs, wp, sw, o, out_stride, lo_dims, hi_dims);
        else if (nh == 2) WeightedSumPass<2>(interleaved, pairs, wp, sw, o, out_stride, lo_dims, hi_dims);
        else WeightedSumPass<1>(interleaved, pairs, wp, sw, o, out_stride, lo_dims, hi_dims);
        h0 += nh;
      }
    }
  }
  return true;
}

// QuantizeBlockWeightsAvx512's rounding in ymm registers (the same codes and scales).
GLM_AVX2_DOTS static void QuantizeBlockWeightsAvx2(const float* w, int64_t w_stride, int nq,
                                                  const int8_t* const* rows, int64_t nb, int64_t d, int32_t* words,
                                                  float* scales) {
  alignas(32) float row_scales[kInt8SumBlock] = {};
  for (int64_t k = 0; k < nb; ++k) row_scales[k] = ScaledRowScale(rows[k], d);
  const __m256 sign = _mm256_set1_ps(-0.0f), lim = _mm256_set1_ps(32767.0f), neg_lim = _mm256_set1_ps(-32767.0f);
  for (int h = 0; h < nq; ++h) {
    alignas(32) float folded[kInt8SumBlock] = {};
    for (int64_t k = 0; k < nb; ++k) folded[k] = w[h * w_stride + k];
    __m256 x[8];
    __m256 amax = _mm256_setzero_ps(), unordered = _mm256_setzero_ps();
    for (int v = 0; v < 8; ++v) {
      x[v] = _mm256_mul_ps(_mm256_load_ps(folded + 8 * v), _mm256_load_ps(row_scales + 8 * v));
      unordered = _mm256_or_ps(unordered, _mm256_cmp_ps(x[v], x[v], _CMP_UNORD_Q));
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, x[v]));
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, amax);
    const float a = *std::max_element(lanes, lanes + 8);
    int32_t* out = words + h * (kInt8SumBlock / 2);
    if (RoundSpecialBlock(_mm256_movemask_ps(unordered) != 0, a, out, &scales[h])) continue;
    const __m256 inv = _mm256_set1_ps(32767.0f / a);
    for (int v = 0; v < 8; v += 2) {
      const __m256i c0 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(x[v], inv), neg_lim), lim));
      const __m256i c1 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(x[v + 1], inv), neg_lim), lim));
      // vpackssdw packs within 128-bit lanes: [c0 0-3, c1 0-3, c0 4-7, c1 4-7] -> put back in order.
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 4 * v),
                          _mm256_permute4x64_epi64(_mm256_packs_epi32(c0, c1), 0xd8));
    }
    scales[h] = a / 32767.0f;
  }
}

// The same with 16 values a chunk in ymm registers (vpmaddwd + vpaddd: the same integers).
GLM_AVX2_DOTS bool Int8RowWeightedSumAvx2(const float* w, int64_t w_stride, int nq, const int8_t* const* rows,
                                          int64_t n_rows, int64_t d, float* out, int64_t out_stride) {
  if (!kCpuHasAvx2) return false;
  constexpr int64_t kPairs = kInt8SumBlock / 2;
  thread_local std::vector<int32_t> words;
  thread_local std::vector<float> scales;
  words.resize(static_cast<size_t>(nq) * kPairs);
  scales.resize(nq);
  __m256i interleaved[kPairs][2];
  for (int64_t b0 = 0; b0 < n_rows; b0 += kInt8SumBlock) {
    const int64_t nb = std::min(kInt8SumBlock, n_rows - b0), pairs = (nb + 1) / 2;
    QuantizeBlockWeightsAvx2(w + b0, w_stride, nq, rows + b0, nb, d, words.data(), scales.data());
    for (int64_t i0 = 0; i0 < d; i0 += 16) {
      const int64_t n = std::min<int64_t>(16, d - i0);
      for (int64_t p = 0; p < pairs; ++p) {
        const int8_t* r0 = rows[b0 + 2 * p];
        const int8_t* r1 = 2 * p + 1 < nb ? rows[b0 + 2 * p + 1] : r0;
        alignas(16) int8_t t0[16] = {}, t1[16] = {};
        std::memcpy(t0, r0 + i0, n);
        std::memcpy(t1, r1 + i0, n);
        const __m256i a = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(t0)));
        const __m256i b = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(t1)));
        interleaved[p][0] = _mm256_unpacklo_epi16(a, b);
        interleaved[p][1] = _mm256_unpackhi_epi16(a, b);
      }
      for (int h = 0; h < nq; ++h) {
        __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
        for (int64_t p = 0; p < pairs; ++p) {
          const __m256i c = _mm256_set1_epi32(words[h * kPairs + p]);
          lo = _mm256_add_epi32(lo, _mm256_madd_epi16(interleaved[p][0], c));
          hi = _mm256_add_epi32(hi, _mm256_madd_epi16(interleaved[p][1], c));
        }
        const __m256 flo = _mm256_cvtepi32_ps(lo), fhi = _mm256_cvtepi32_ps(hi);
        // lo: dims 0-3 | 8-11, hi: dims 4-7 | 12-15.
        alignas(32) float v[16];
        _mm256_store_ps(v, _mm256_permute2f128_ps(flo, fhi, 0x20));
        _mm256_store_ps(v + 8, _mm256_permute2f128_ps(flo, fhi, 0x31));
        const __m256 sw = _mm256_set1_ps(scales[h]);
        float* o = out + h * out_stride + i0;
        alignas(32) float cur[16] = {};
        std::memcpy(cur, o, n * sizeof(float));
        _mm256_store_ps(cur, _mm256_fmadd_ps(_mm256_load_ps(v), sw, _mm256_load_ps(cur)));
        _mm256_store_ps(cur + 8, _mm256_fmadd_ps(_mm256_load_ps(v + 8), sw, _mm256_load_ps(cur + 8)));
        std::memcpy(o, cur, n * sizeof(float));
      }
    }
  }
  return true;
}


void Int8RowDots(const Int8QueryRows& q, const int8_t* const* rows, int64_t n_rows, float* out, int64_t out_stride) {
  switch (kPath) {
    case Path::kVnni:
      Int8RowDotsAvx512Vnni(q, rows, n_rows, out, out_stride);
      return;
    case Path::kAvx2:
      Int8RowDotsAvx2(q, rows, n_rows, out, out_stride);
      return;
    case Path::kPortable:
      break;
  }
  Int8RowDotsReference(q, rows, n_rows, out, out_stride);
}

void Int8RowWeightedSum(const float* w, int64_t w_stride, int nq, const int8_t* const* rows, int64_t n_rows, int64_t d,
                        float* out, int64_t out_stride) {
  switch (kPath) {
    case Path::kVnni:
      Int8RowWeightedSumAvx512Vnni(w, w_stride, nq, rows, n_rows, d, out, out_stride);
      return;
    case Path::kAvx2:
      Int8RowWeightedSumAvx2(w, w_stride, nq, rows, n_rows, d, out, out_stride);
      return;
    case Path::kPortable:
      break;
  }
  Int8RowWeightedSumReference(w, w_stride, nq, rows, n_rows, d, out, out_stride);
}

const char* Int8RowDotsPath() {
  switch (kPath) {
    case Path::kVnni: return "avx512-vnni";
    case Path::kAvx2: return "avx2";
    case Path::kPortable: break;
  }
  return "portable";
}

}  // namespace glm::kernels
