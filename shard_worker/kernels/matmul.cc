#include "shard_worker/kernels/matmul.h"

#include <algorithm>
#include <vector>

#include "shard_worker/kernels/matmul_dispatch.h"
#include "shard_worker/kernels/thread_pool.h"

namespace glm::kernels {

void MatMulRowsReference(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                         int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  std::vector<float> row(w.cols);
  for (int64_t r = row_begin; r < row_end; ++r) {
    for (int64_t c = 0; c < w.cols; ++c) row[c] = w.At(r, c);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * x_stride;
      float acc = 0.0f;
      for (int64_t c = 0; c < w.cols; ++c) acc += xt[c] * row[c];
      y[t * y_stride + r] = acc;
    }
  }
}

MatMulRowsFn BestMatMulRows() { return SelectedMatMulPath().fn; }

std::string MatMulPathName() { return SelectedMatMulPath().name; }

void MatMulStrided(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                   float* y, int64_t y_stride, ThreadPool* pool) {
  MatMulRowsFn fn = BestMatMulRows();
  // Grain: enough rows that a task reads at least ~16 KiB of weights.
  int64_t row_bytes = std::max<int64_t>(1, w.row_bytes());
  int64_t grain = std::max<int64_t>(4, (16 * 1024) / row_bytes);
  if (pool == nullptr || pool->size() == 1 || w.rows <= grain) {
    fn(x, n_tokens, x_stride, w, 0, w.rows, y, y_stride);
    return;
  }
  pool->ParallelFor(
      w.rows,
      [&](int64_t begin, int64_t end) { fn(x, n_tokens, x_stride, w, begin, end, y, y_stride); },
      grain);
}

void MatMul(const float* x, int64_t n_tokens, const WeightView& w, float* y, ThreadPool* pool) {
  MatMulStrided(x, n_tokens, w.cols, w, y, w.rows, pool);
}

}  // namespace glm::kernels
