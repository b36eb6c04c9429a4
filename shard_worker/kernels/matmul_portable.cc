#include "shard_worker/kernels/matmul_portable.h"

#include <vector>

#include "shard_worker/kernels/matmul.h"

namespace glm::kernels {
namespace {

// 8 independent partial sums (vectorisable), combined pairwise: an order fixed by cols alone.
float Dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  for (int k = 0; i < n; ++i, ++k) acc[k] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

}  // namespace

void MatMulRowsPortable(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                        int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  if (IsGroupQuantized(w.dtype)) {  // the reference's arithmetic (q8_activations.h)
    MatMulRowsReference(x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
    return;
  }
  thread_local std::vector<float> row, rounded;
  if (w.dtype == DType::kBF16 && Bf16Activations()) {  // the products of BF16-rounded activations
    rounded.resize(n_tokens * w.cols);
    RoundActivationsToBf16(x, n_tokens, x_stride, w.cols, rounded.data());
    x = rounded.data();
    x_stride = w.cols;
  }
  row.resize(w.cols);
  for (int64_t r = row_begin; r < row_end; ++r) {
    w.RowToF32(r, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) y[t * y_stride + r] = Dot(x + t * x_stride, row.data(), w.cols);
  }
}

}  // namespace glm::kernels
