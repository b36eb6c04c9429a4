#include "shard_worker/kernels/matmul_portable.h"

#include <algorithm>
#include <vector>

#include "shard_worker/kernels/matmul.h"

namespace glm::kernels {
namespace {

// Converts W row r to f32 into out[cols].
void ConvertRow(const WeightView& w, int64_t r, float* out) {
  const int64_t cols = w.cols;
  switch (w.dtype) {
    case DType::kF32: {
      const float* src = static_cast<const float*>(w.data) + r * cols;
      for (int64_t c = 0; c < cols; ++c) out[c] = src[c];
      break;
    }
    case DType::kBF16: {
      const uint16_t* src = static_cast<const uint16_t*>(w.data) + r * cols;
      for (int64_t c = 0; c < cols; ++c) out[c] = Bf16ToF32(src[c]);
      break;
    }
    case DType::kF8E4M3: {
      const uint8_t* src = static_cast<const uint8_t*>(w.data) + r * cols;
      const float* table = Fp8E4M3Table();
      const float* scales = w.block_scales + ((r + w.row_offset) / w.block_rows) * w.scale_cols;
      for (int64_t c = 0; c < cols; ++c) out[c] = table[src[c]] * scales[c / w.block_cols];
      break;
    }
    case DType::kI8: {  // exact q · scale, as the reference (At) decodes it, a group at a time
      const int8_t* src = reinterpret_cast<const int8_t*>(static_cast<const uint8_t*>(w.data) + r * w.row_bytes());
      const int64_t groups = w.groups_per_row();
      const int64_t group = groups == 1 ? cols : w.group_size;
      const uint16_t* scales = w.group_scales + r * groups;
      for (int64_t g = 0, c0 = 0; g < groups; ++g, c0 += group) {
        const float scale = F16ToF32(scales[g]);
        const int64_t c1 = std::min(cols, c0 + group);
        for (int64_t c = c0; c < c1; ++c) out[c] = static_cast<float>(src[c]) * scale;
      }
      break;
    }
    case DType::kI4:  // not reached: kI4 takes the int8-activation path below
      for (int64_t c = 0; c < cols; ++c) out[c] = w.At(r, c);
      break;
  }
}

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
  if (w.dtype == DType::kI4) {  // the reference's arithmetic (q8_activations.h)
    MatMulRowsReference(x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
    return;
  }
  thread_local std::vector<float> row;
  row.resize(w.cols);
  for (int64_t r = row_begin; r < row_end; ++r) {
    ConvertRow(w, r, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) y[t * y_stride + r] = Dot(x + t * x_stride, row.data(), w.cols);
  }
}

}  // namespace glm::kernels
