// A read-only view of a 2-D weight matrix [rows, cols] in any stored format.
#ifndef GLM_SHARD_WORKER_KERNELS_WEIGHT_VIEW_H_
#define GLM_SHARD_WORKER_KERNELS_WEIGHT_VIEW_H_

#include <cstdint>

#include "shard_worker/kernels/dtype.h"

namespace glm::kernels {

// Row-major [rows, cols]; element (r, c) is at data + (r * cols + c) * DTypeSize(dtype).
// For kF8E4M3 the real value is fp8(r, c) * block_scales[(r / block_rows) * scale_cols +
// c / block_cols] (the checkpoint's `weight_scale_inv`, already a multiplier despite its name).
// The view does not own memory; the owner (model/weight store) outlives every use.
struct WeightView {
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
  const float* block_scales = nullptr;  // kF8E4M3 only
  int64_t block_rows = 128;
  int64_t block_cols = 128;
  int64_t scale_cols = 0;  // ceil(cols / block_cols)

  int64_t bytes() const { return rows * cols * DTypeSize(dtype); }
  // Value of one element as float (slow path, for tests and reference code).
  float At(int64_t r, int64_t c) const;
  // A view of rows [begin, end) (block scales stay aligned because offsets are kept in rows).
  WeightView Rows(int64_t begin, int64_t end) const;

  int64_t row_offset = 0;  // first row of this view inside the scale grid (set by Rows())
};

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_WEIGHT_VIEW_H_
