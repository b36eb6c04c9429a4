#include "shard_worker/kernels/matmul_quant_driver.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "shard_worker/kernels/matmul_simd_driver.h"

namespace glm::kernels {
namespace {

// With several token tiles, each tile re-reads a block of rows; keep that block in L2.
constexpr int64_t kRowBlockBytes = 256 * 1024;

}  // namespace

void RunQuantMatMul(const QuantKernelSet& k, const float* x, int64_t n_tokens, int64_t x_stride,
                    const WeightView& w, int64_t row_begin, int64_t row_end, float* y,
                    int64_t y_stride) {
  if (n_tokens <= 0 || row_end <= row_begin) return;
  const int64_t cols = w.cols;
  if (cols == 0) {
    for (int64_t t = 0; t < n_tokens; ++t)
      std::fill(y + t * y_stride + row_begin, y + t * y_stride + row_end, 0.0f);
    return;
  }
  const int d = w.dtype == DType::kI8 ? 0 : 1;
  const int chunk = k.chunk_cols[d];
  const int64_t pitch = (cols + chunk - 1) / chunk * chunk;
  const int64_t row_bytes = w.row_bytes();
  const int64_t sstride = w.groups_per_row();
  const int64_t group = w.group_size <= 0 || w.group_size >= cols ? cols : w.group_size;
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int64_t pf = MatMulPrefetchBytes();

  thread_local std::vector<float> x_buf;
  float* xp = AlignedScratch(x_buf, n_tokens * pitch);
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::memcpy(xp + t * pitch, x + t * x_stride, cols * sizeof(float));
    std::fill(xp + t * pitch + cols, xp + (t + 1) * pitch, 0.0f);
  }

  const int tile = k.max_tile_tokens;
  const int64_t n_tiles = (n_tokens + tile - 1) / tile;
  // One tile (decode): a single pass streams every weight byte once. Several: blocks of rows that
  // stay in L2 while each token tile passes over them.
  const int64_t block_rows =
      n_tiles == 1 ? row_end - row_begin
                   : std::max<int64_t>(8, kRowBlockBytes / std::max<int64_t>(1, row_bytes));
  for (int64_t rb0 = row_begin; rb0 < row_end; rb0 += block_rows) {
    const int64_t rb1 = std::min(row_end, rb0 + block_rows);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += tile) {
      const int tt = static_cast<int>(std::min<int64_t>(tile, n_tokens - t0));
      const int rows_per_group = k.rows_per_group[d][tt];
      QuantBlockFn grouped = k.grouped[d][tt], single = k.single[d][tt];
      const float* xt = xp + t0 * pitch;
      float* yt = y + t0 * y_stride;
      for (int64_t r = rb0; r < rb1;) {
        const uint8_t* wr = base + r * row_bytes;
        const float* sr = w.group_scales + r * sstride;
        if (r + rows_per_group <= rb1) {
          grouped(wr, row_bytes, sr, sstride, cols, group, xt, pitch, pf, yt + r, y_stride);
          r += rows_per_group;
        } else {
          single(wr, row_bytes, sr, sstride, cols, group, xt, pitch, pf, yt + r, y_stride);
          r += 1;
        }
      }
    }
  }
}

}  // namespace glm::kernels
