#include "shard_worker/kernels/matmul_simd_driver.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>

#include "shard_worker/kernels/matmul_avx512.h"
#endif

#include "shard_worker/kernels/gemm_driver.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/matmul_amx.h"

namespace glm::kernels {
namespace {

// 1 KiB ahead keeps ~16 lines per stream in flight; measured best-or-equal on Zen 5 for BF16
// and FP8 GEMV (bench/matmul_bench --prefetch). The hardware prefetcher stops at 4 KiB pages,
// software prefetch does not.
std::atomic<int64_t> g_prefetch_bytes{1024};
std::atomic<int> g_min_gemm_tokens_override{0};

// With several token tiles, each tile re-reads a block of rows; keep that block in L2.
constexpr int64_t kRowBlockBytes = 256 * 1024;

// fn(rb0, rb1, t0, tt) for every block of rows [rb0, rb1) and token tile [t0, t0 + tt), tiles
// inside blocks. One tile (decode): one block, so each weight byte streams once. Several: blocks
// that stay in L2 while every tile passes over them.
template <typename Fn>
void ForEachBlockAndTile(int64_t n_tokens, int tile, int64_t row_begin, int64_t row_end, int64_t row_bytes, Fn&& fn) {
  const int64_t n_tiles = (n_tokens + tile - 1) / tile;
  const int64_t block_rows = n_tiles == 1 ? row_end - row_begin : std::max<int64_t>(8, kRowBlockBytes / row_bytes);
  for (int64_t rb0 = row_begin; rb0 < row_end; rb0 += block_rows) {
    const int64_t rb1 = std::min(row_end, rb0 + block_rows);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += tile)
      fn(rb0, rb1, t0, static_cast<int>(std::min<int64_t>(tile, n_tokens - t0)));
  }
}

}  // namespace

float* AlignedScratch(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n + 16) v.resize(n + 16);
  auto p = reinterpret_cast<uintptr_t>(v.data());
  return reinterpret_cast<float*>((p + 63) & ~uintptr_t{63});
}

namespace {

enum class OrderKind { kIdentity, kEvenOdd, kOther };

// The common orders, recognised by value: identity (F32) and "even columns, then odd" (BF16's
// unpack order, FillInterleavedOrder with interleave 2 over chunk/2 lanes).
OrderKind Classify(int chunk, const int16_t* order) {
  bool identity = true, even_odd = chunk % 2 == 0;
  const int half = chunk / 2;
  for (int i = 0; i < chunk; ++i) {
    identity = identity && order[i] == i;
    even_odd = even_odd && order[i] == (i < half ? 2 * i : 2 * (i - half) + 1);
  }
  return identity ? OrderKind::kIdentity : even_odd ? OrderKind::kEvenOdd : OrderKind::kOther;
}

#if defined(__x86_64__)
// Even/odd de-interleave of whole 32-column chunks: two loads, two vpermt2ps, two stores.
__attribute__((target("avx512f"))) void EvenOddChunks32Avx512(const float* src, int64_t full, float* dst) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (int64_t c0 = 0; c0 < full; c0 += 32) {
    const __m512 a = _mm512_loadu_ps(src + c0), b = _mm512_loadu_ps(src + c0 + 16);
    _mm512_storeu_ps(dst + c0, _mm512_permutex2var_ps(a, even, b));
    _mm512_storeu_ps(dst + c0 + 16, _mm512_permutex2var_ps(a, odd, b));
  }
}

bool HasAvx512() {
  static const bool has = CpuSupportsAvx512MatMul();
  return has;
}
#endif

}  // namespace

void PermuteRow(const float* src, int64_t cols, int64_t pitch, int chunk, const int16_t* order,
                float* dst) {
  // Whole chunks take a branch-free loop the compiler vectorises (this runs for every token of
  // every matmul call, on every thread that shares the call); the last partial chunk, and any
  // other order, the general gather.
  const int64_t full = cols / chunk * chunk;
  int64_t c0 = 0;
  switch (Classify(chunk, order)) {
    case OrderKind::kIdentity:
      std::memcpy(dst, src, full * sizeof(float));
      c0 = full;
      break;
    case OrderKind::kEvenOdd: {
#if defined(__x86_64__)
      if (chunk == 32 && HasAvx512()) {
        EvenOddChunks32Avx512(src, full, dst);
        c0 = full;
        break;
      }
#endif
      const int half = chunk / 2;
      for (; c0 < full; c0 += chunk) {
        const float* s = src + c0;
        float* d = dst + c0;
        for (int j = 0; j < half; ++j) {
          d[j] = s[2 * j];
          d[half + j] = s[2 * j + 1];
        }
      }
      break;
    }
    case OrderKind::kOther:
      break;
  }
  for (; c0 < pitch; c0 += chunk)
    for (int i = 0; i < chunk; ++i) {
      int64_t c = c0 + order[i];
      dst[c0 + i] = c < cols ? src[c] : 0.0f;
    }
}

void ExpandScales(const WeightView& w, int64_t sb, float factor, float* out) {
  const float* row = w.block_scales + sb * w.scale_cols;
  for (int64_t c0 = 0, b = 0; c0 < w.cols; c0 += w.block_cols, ++b)
    std::fill(out + c0, out + std::min(w.cols, c0 + w.block_cols), row[b] * factor);
}

void FillInterleavedOrder(int lanes, int interleave, int chunk_cols, int16_t* order) {
  for (int i = 0; i < chunk_cols; ++i) {
    int k = i / lanes, j = i % lanes;
    order[i] = static_cast<int16_t>(interleave == 1 ? i : interleave * j + k);
  }
}

void SetMinGemmTokensOverride(int n_tokens) { g_min_gemm_tokens_override.store(std::max(0, n_tokens)); }

void SetMatMulPrefetchBytes(int64_t bytes) { g_prefetch_bytes.store(std::max<int64_t>(0, bytes)); }
int64_t MatMulPrefetchBytes() { return g_prefetch_bytes.load(std::memory_order_relaxed); }

namespace {

// The BF16-dot path of RunSimdMatMul: activations to BF16 once per call, then row groups × token
// tiles as below (rows blocked to stay in L2 while several tiles pass over them). No GEMM: with no
// weight conversion to amortise, the tiles run near the dot-product peak at any token count, and
// one kernel family for every batch size keeps a token's result independent of its batch.
void RunBf16DotMatMul(const SimdKernelSet& k, const float* x, int64_t n_tokens, int64_t x_stride,
                      const WeightView& w, int64_t row_begin, int64_t row_end, float* y,
                      int64_t y_stride) {
  const int64_t cols = w.cols;
  const int chunk = k.bf16dot_chunk_cols;
  const int64_t pitch = (cols + chunk - 1) / chunk * chunk;  // bf16 elements per token
  const int64_t row_bytes = cols * 2;
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int64_t pf = MatMulPrefetchBytes();
  thread_local std::vector<float> x_buf;
  auto* xb = reinterpret_cast<uint16_t*>(AlignedScratch(x_buf, (n_tokens * pitch + 1) / 2));
  for (int64_t t = 0; t < n_tokens; ++t) {
    uint16_t* dst = xb + t * pitch;
    const float* src = x + t * x_stride;
    k.bf16dot_convert(src, cols, dst);
    std::fill(dst + cols, dst + pitch, uint16_t{0});
  }
  ForEachBlockAndTile(n_tokens, k.max_tile_tokens, row_begin, row_end, row_bytes,
                      [&](int64_t rb0, int64_t rb1, int64_t t0, int tt) {
    const int group = k.bf16dot_rows_per_group[tt];
    SimdBlockFn grouped = k.bf16dot_grouped[tt], single = k.bf16dot_single[tt];
    const float* xt = reinterpret_cast<const float*>(xb + t0 * pitch);
    float* yt = y + t0 * y_stride;
    int64_t r = rb0;
    for (; r + group <= rb1; r += group)
      grouped(base + r * row_bytes, row_bytes, cols, xt, pitch, nullptr, pf, yt + r, y_stride);
    for (; r < rb1; ++r) single(base + r * row_bytes, row_bytes, cols, xt, pitch, nullptr, pf, yt + r, y_stride);
  });
}

}  // namespace

void RunSimdMatMul(const SimdKernelSet& k, const float* x, int64_t n_tokens, int64_t x_stride,
                   const WeightView& w, int64_t row_begin, int64_t row_end, float* y,
                   int64_t y_stride) {
  if (n_tokens <= 0 || row_end <= row_begin) return;
  const int64_t cols = w.cols;
  if (cols == 0) {
    for (int64_t t = 0; t < n_tokens; ++t)
      std::fill(y + t * y_stride + row_begin, y + t * y_stride + row_end, 0.0f);
    return;
  }
  if (w.dtype == DType::kBF16 && Bf16Activations()) {
    if (k.amx_bf16 != nullptr && AmxTilesEnabled())
      return k.amx_bf16(x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
    if (k.bf16dot_grouped[1] != nullptr)
      return RunBf16DotMatMul(k, x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
    // No BF16 dot products on this path: the same products from activations rounded to BF16,
    // through the f32 kernels (decode tiles and prefill GEMM alike, so batches still agree).
    thread_local std::vector<float> rounded_buf;
    float* rounded = AlignedScratch(rounded_buf, n_tokens * cols);
    RoundActivationsToBf16(x, n_tokens, x_stride, cols, rounded);
    x = rounded;
    x_stride = cols;
  }
  const int d = static_cast<int>(w.dtype);
  const int forced_gemm = g_min_gemm_tokens_override.load(std::memory_order_relaxed);
  const int min_gemm = forced_gemm > 0 ? std::max(forced_gemm, kMaxTileTokens + 1) : k.min_gemm_tokens[d];
  if (n_tokens >= min_gemm && k.gemm != nullptr &&
      RunSimdGemm(k, *k.gemm, x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride))
    return;
  const int chunk = k.chunk_cols[d];
  const int16_t* order = k.order[d];
  const int64_t pitch = (cols + chunk - 1) / chunk * chunk;
  const int64_t row_bytes = cols * DTypeSize(w.dtype);
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int64_t pf = MatMulPrefetchBytes();

  thread_local std::vector<float> x_buf, scale_buf, natural_buf;
  float* xp = AlignedScratch(x_buf, n_tokens * pitch);
  for (int64_t t = 0; t < n_tokens; ++t)
    PermuteRow(x + t * x_stride, cols, pitch, chunk, order, xp + t * pitch);
  const bool fp8 = w.dtype == DType::kF8E4M3;
  float* scales = fp8 ? AlignedScratch(scale_buf, pitch) : nullptr;
  float* natural = fp8 ? AlignedScratch(natural_buf, cols) : nullptr;
  int64_t scale_block = -1;  // which scale row `scales` holds (never reused across calls)

  ForEachBlockAndTile(n_tokens, k.max_tile_tokens, row_begin, row_end, row_bytes,
                      [&](int64_t rb0, int64_t rb1, int64_t t0, int tt) {
    const int group = k.rows_per_group[d][tt];
    SimdBlockFn grouped = k.grouped[d][tt], single = k.single[d][tt];
    if (fp8 && w.fp8_nan_free && k.fp8_nan_free_grouped[tt] != nullptr) {
      grouped = k.fp8_nan_free_grouped[tt];
      single = k.fp8_nan_free_single[tt];
    }
    const float* xt = xp + t0 * pitch;
    float* yt = y + t0 * y_stride;
    for (int64_t r = rb0; r < rb1;) {
      int64_t limit = rb1;  // a group must not straddle FP8 scale blocks
      if (fp8) {
        int64_t sb = (r + w.row_offset) / w.block_rows;
        if (sb != scale_block) {
          ExpandScales(w, sb, k.fp8_scale_factor, natural);
          PermuteRow(natural, cols, pitch, chunk, order, scales);
          scale_block = sb;
        }
        limit = std::min(limit, (sb + 1) * w.block_rows - w.row_offset);
      }
      const uint8_t* wr = base + r * row_bytes;
      if (r + group <= limit) {
        grouped(wr, row_bytes, cols, xt, pitch, scales, pf, yt + r, y_stride);
        r += group;
      } else {
        single(wr, row_bytes, cols, xt, pitch, scales, pf, yt + r, y_stride);
        r += 1;
      }
    }
  });
}

}  // namespace glm::kernels
