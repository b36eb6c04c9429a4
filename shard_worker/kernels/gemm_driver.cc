#include "shard_worker/kernels/gemm_driver.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "shard_worker/kernels/matmul_simd_driver.h"

namespace glm::kernels {
namespace {

// Blocking (Zen 5: 48 KiB L1D, 1 MiB L2 per core). A micro call reads T tokens × kKBlock columns
// of activations (6 × 512 × 4 = 12 KiB, L1, reused by every row group of the panel) and streams
// R rows × kKBlock of the packed panel (64 rows × 512 × 4 = 128 KiB per K block, L2). The
// accumulator scratch (token block × panel rows × one vector: 48 × 64 × 64 B = 192 KiB) stays in
// L2; its load/store costs R·T vector moves per R·T·kKBlock/lanes FMAs (1/32 at AVX-512).
constexpr int64_t kPanelRows = 64;
constexpr int64_t kTokenTiles = 8;  // token block = kTokenTiles × T
constexpr int64_t kKBlock = 512;    // columns per K block (a multiple of every lane count)

}  // namespace

bool RunSimdGemm(const SimdKernelSet& k, const GemmKernelSet& g, const float* x, int64_t n_tokens,
                 int64_t x_stride, const WeightView& w, int64_t row_begin, int64_t row_end,
                 float* y, int64_t y_stride) {
  const int d = static_cast<int>(w.dtype);
  if (d < 0 || d >= 3 || g.pack[d] == nullptr || w.cols == 0) return false;
  if (n_tokens <= 0 || row_end <= row_begin) return true;
  const int64_t cols = w.cols;
  const int chunk = k.chunk_cols[d];
  const int16_t* order = k.order[d];
  const int64_t pitch = (cols + chunk - 1) / chunk * chunk;
  const int64_t row_bytes = cols * DTypeSize(w.dtype);
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int R = g.rows, T = g.max_tokens, L = g.lanes;
  const int64_t token_block = kTokenTiles * T;
  const int64_t max_groups = (kPanelRows + R - 1) / R;

  thread_local std::vector<float> x_buf, panel_buf, acc_buf, scale_buf, natural_buf;
  float* xp = AlignedScratch(x_buf, n_tokens * pitch);
  for (int64_t t = 0; t < n_tokens; ++t)
    PermuteRow(x + t * x_stride, cols, pitch, chunk, order, xp + t * pitch);
  float* panel = AlignedScratch(panel_buf, max_groups * R * pitch);
  float* acc = AlignedScratch(acc_buf, kTokenTiles * max_groups * R * T * L);
  const bool fp8 = w.dtype == DType::kF8E4M3;
  float* scales = fp8 ? AlignedScratch(scale_buf, pitch) : nullptr;
  float* natural = fp8 ? AlignedScratch(natural_buf, cols) : nullptr;
  int64_t scale_block = -1;

  for (int64_t r0 = row_begin; r0 < row_end; r0 += kPanelRows) {
    const int64_t mb = std::min(kPanelRows, row_end - r0);
    const int64_t groups = (mb + R - 1) / R;
    // Convert the panel once; rows past the range are zero (computed, never stored).
    for (int64_t i = 0; i < groups * R; ++i) {
      float* dst = panel + i * pitch;
      if (i >= mb) {
        std::fill(dst, dst + pitch, 0.0f);
        continue;
      }
      const int64_t r = r0 + i;
      if (fp8) {
        const int64_t sb = (r + w.row_offset) / w.block_rows;
        if (sb != scale_block) {
          ExpandScales(w, sb, k.fp8_scale_factor, natural);
          PermuteRow(natural, cols, pitch, chunk, order, scales);
          scale_block = sb;
        }
      }
      g.pack[d](base + r * row_bytes, cols, scales, pitch, dst);
    }

    for (int64_t t0 = 0; t0 < n_tokens; t0 += token_block) {
      const int64_t t_end = std::min(n_tokens, t0 + token_block);
      for (int64_t k0 = 0; k0 < pitch; k0 += kKBlock) {
        const int64_t n_vec = std::min(kKBlock, pitch - k0) / L;
        const bool first = k0 == 0, last = k0 + kKBlock >= pitch;
        for (int64_t t1 = t0; t1 < t_end; t1 += T) {
          const int tt = static_cast<int>(std::min<int64_t>(T, t_end - t1));
          GemmMicroFn micro = g.micro[tt];
          float* acc_tile = acc + (t1 - t0) / T * max_groups * R * T * L;
          for (int64_t gi = 0; gi < groups; ++gi) {
            micro(panel + gi * R * pitch + k0, pitch, xp + t1 * pitch + k0, pitch, n_vec,
                  acc_tile + gi * R * T * L, !first, last, y + t1 * y_stride + r0 + gi * R,
                  y_stride, static_cast<int>(std::min<int64_t>(R, mb - gi * R)));
          }
        }
      }
    }
  }
  return true;
}

}  // namespace glm::kernels
