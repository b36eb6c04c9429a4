#include "shard_worker/kernels/weight_view.h"

namespace glm::kernels {

float WeightView::At(int64_t r, int64_t c) const {
  int64_t i = r * cols + c;
  switch (dtype) {
    case DType::kF32: return static_cast<const float*>(data)[i];
    case DType::kBF16: return Bf16ToF32(static_cast<const uint16_t*>(data)[i]);
    case DType::kF8E4M3: {
      int64_t global_row = r + row_offset;
      float scale = block_scales[(global_row / block_rows) * scale_cols + c / block_cols];
      return Fp8E4M3ToF32(static_cast<const uint8_t*>(data)[i]) * scale;
    }
  }
  return 0.0f;
}

WeightView WeightView::Rows(int64_t begin, int64_t end) const {
  WeightView v = *this;
  v.rows = end - begin;
  v.data = static_cast<const uint8_t*>(data) + begin * cols * DTypeSize(dtype);
  v.row_offset = row_offset + begin;
  return v;
}

}  // namespace glm::kernels
