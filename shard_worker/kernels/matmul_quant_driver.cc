#include "shard_worker/kernels/matmul_quant_driver.h"

#include <algorithm>
#include <vector>

#include "shard_worker/kernels/matmul_simd_driver.h"


namespace glm::kernels {
namespace {

// With several token tiles, each tile re-reads a block of rows; keep that block in L2.
constexpr int64_t kRowBlockBytes = 256 * 1024;

// Walks rows [row_begin, row_end) in blocks and the tokens in tiles of max_tile, calling
// run(r, grouped, t0, tt) for the rows from r of tokens [t0, t0 + tt): grouped (rows_per_group(tt)
// rows at once) while that many remain in the block, else one row.
template <typename RowsPerGroup, typename Run>
void WalkTiles(int max_tile, int64_t n_tokens, int64_t row_begin, int64_t row_end, int64_t row_bytes,
               RowsPerGroup rows_per_group, Run run) {
  const int64_t n_tiles = (n_tokens + max_tile - 1) / max_tile;
  // One tile (decode): a single pass streams every weight byte once. Several: blocks of rows that
  // stay in L2 while each token tile passes over them.
  const int64_t block_rows =
      n_tiles == 1 ? row_end - row_begin
                   : std::max<int64_t>(8, kRowBlockBytes / std::max<int64_t>(1, row_bytes));
  for (int64_t rb0 = row_begin; rb0 < row_end; rb0 += block_rows) {
    const int64_t rb1 = std::min(row_end, rb0 + block_rows);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += max_tile) {
      const int tt = static_cast<int>(std::min<int64_t>(max_tile, n_tokens - t0));
      const int group = rows_per_group(tt);
      for (int64_t r = rb0; r < rb1;) {
        const bool grouped = r + group <= rb1;
        run(r, grouped, t0, tt);
        r += grouped ? group : 1;
      }
    }
  }
}

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
  const int64_t row_bytes = w.row_bytes();
  const int64_t sstride = w.groups_per_row();
  const int64_t group = w.group_size <= 0 || w.group_size >= cols ? cols : w.group_size;
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int64_t pf = MatMulPrefetchBytes();

  // Each token's activations quantised once per call, then every tile's kernel meets them.
  auto run = [&](auto& q_buf, auto prepare, int64_t chunks, const int* rows_per_group,
                 const auto* grouped, const auto* single) {
    if (static_cast<int64_t>(q_buf.size()) < n_tokens * chunks) q_buf.resize(n_tokens * chunks);
    for (int64_t t = 0; t < n_tokens; ++t) prepare(x + t * x_stride, cols, q_buf.data() + t * chunks);
    WalkTiles(k.max_tile_tokens, n_tokens, row_begin, row_end, row_bytes,
              [&](int tt) { return rows_per_group[tt]; },
              [&](int64_t r, bool is_grouped, int64_t t0, int tt) {
                (is_grouped ? grouped[tt] : single[tt])(
                    base + r * row_bytes, row_bytes, w.group_scales + r * sstride, sstride, cols, group,
                    q_buf.data() + t0 * chunks, chunks, pf, y + t0 * y_stride + r, y_stride);
              });
  };
  if (w.dtype == DType::kI4) {
    thread_local std::vector<Q8Chunk> q_buf;
    run(q_buf, k.prepare_q8, Q8ChunksPerRow(cols), k.i4_rows_per_group, k.i4_grouped, k.i4_single);
  } else {
    thread_local std::vector<Q16Chunk> q_buf;
    run(q_buf, k.prepare_q16, Q16ChunksPerRow(cols), k.i8_rows_per_group, k.i8_grouped, k.i8_single);
  }
}

}  // namespace glm::kernels
