#include "shard_worker/kernels/weight_view.h"

#include <algorithm>

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
    case DType::kI8:
    case DType::kI4: {
      const int64_t g = group_size <= 0 || group_size >= cols ? 0 : c / group_size;
      const float scale = F16ToF32(group_scales[r * groups_per_row() + g]);
      const uint8_t* row = static_cast<const uint8_t*>(data) + r * row_bytes();
      int q;
      if (dtype == DType::kI8) {
        q = static_cast<int8_t>(row[c]);
      } else {
        const uint8_t byte = row[c / 32 * 16 + c % 16];
        q = ((c % 32) < 16 ? (byte & 0xf) : (byte >> 4)) - 8;
      }
      return static_cast<float>(q) * scale;
    }
  }
  return 0.0f;
}

void WeightView::RowToF32(int64_t r, float* out) const {
  switch (dtype) {
    case DType::kF32: {
      const float* src = static_cast<const float*>(data) + r * cols;
      std::copy(src, src + cols, out);
      return;
    }
    case DType::kBF16: {
      // Blocks of 16 (a constant trip count): GCC vectorises them at -O2 with the baseline ISA
      // (unpack with zeros). Re-quantising a BF16 checkpoint at load converts every weight here.
      const uint16_t* src = static_cast<const uint16_t*>(data) + r * cols;
      int64_t c = 0;
      for (; c + 16 <= cols; c += 16)
        for (int j = 0; j < 16; ++j) out[c + j] = Bf16ToF32(src[c + j]);
      for (; c < cols; ++c) out[c] = Bf16ToF32(src[c]);
      return;
    }
    case DType::kF8E4M3: {  // a block row's scales, the table's values
      const uint8_t* src = static_cast<const uint8_t*>(data) + r * cols;
      const float* table = Fp8E4M3Table();
      const float* scales = block_scales + ((r + row_offset) / block_rows) * scale_cols;
      // Block by block (not a division per column: FP8 checkpoints re-quantised at load convert
      // every weight here).
      for (int64_t c0 = 0, b = 0; c0 < cols; c0 += block_cols, ++b) {
        const float scale = scales[b];
        const int64_t c1 = std::min(cols, c0 + block_cols);
        for (int64_t c = c0; c < c1; ++c) out[c] = table[src[c]] * scale;
      }
      return;
    }
    case DType::kI8: {  // q · scale, one scale conversion a group
      const int8_t* src = reinterpret_cast<const int8_t*>(static_cast<const uint8_t*>(data) + r * row_bytes());
      const int64_t groups = groups_per_row(), group = groups == 1 ? cols : group_size;
      const uint16_t* scales = group_scales + r * groups;
      for (int64_t g = 0, c0 = 0; g < groups; ++g, c0 += group) {
        const float scale = F16ToF32(scales[g]);
        for (int64_t c = c0; c < std::min(cols, c0 + group); ++c) out[c] = static_cast<float>(src[c]) * scale;
      }
      return;
    }
    case DType::kI4: {  // (n - 8) · scale, one scale conversion a group (At's nibble layout)
      const uint8_t* src = static_cast<const uint8_t*>(data) + r * row_bytes();
      const int64_t groups = groups_per_row(), group = groups == 1 ? cols : group_size;
      const uint16_t* scales = group_scales + r * groups;
      for (int64_t g = 0, c0 = 0; g < groups; ++g, c0 += group) {
        const float scale = F16ToF32(scales[g]);
        for (int64_t c = c0; c < std::min(cols, c0 + group); ++c) {
          const uint8_t byte = src[c / 32 * 16 + c % 16];
          out[c] = static_cast<float>(((c % 32) < 16 ? (byte & 0xf) : (byte >> 4)) - 8) * scale;
        }
      }
      return;
    }
  }
}

WeightView WeightView::Rows(int64_t begin, int64_t end) const {
  WeightView v = *this;
  v.rows = end - begin;
  v.data = static_cast<const uint8_t*>(data) + begin * row_bytes();
  if (group_scales != nullptr) v.group_scales = group_scales + begin * groups_per_row();
  v.row_offset = row_offset + begin;
  return v;
}

}  // namespace glm::kernels
