#include "shard_worker/kernels/q8_activations.h"

#include <algorithm>
#include <cstring>

#include "shard_worker/kernels/absmax_quantize.h"

namespace glm::kernels {

void QuantizeActivationBlock(const float* x, int n, int8_t* q, float* scale) {
  QuantizeAbsMax(x, n, 32, 127.0f, kQ8MinMagnitude, q, scale);
}

void PrepareQ8Chunks(const float* x, int64_t cols, Q8Chunk* out) {
  const int64_t chunks = Q8ChunksPerRow(cols);
  for (int64_t ch = 0; ch < chunks; ++ch) {
    Q8Chunk& c = out[ch];
    for (int k = 0; k < 4; ++k) {
      const int64_t c0 = ch * kQ8ChunkCols + 32 * k;
      int8_t q[32];
      float sx = 0.0f;
      if (c0 < cols) {
        QuantizeActivationBlock(x + c0, static_cast<int>(std::min<int64_t>(32, cols - c0)), q, &sx);
      } else {
        std::memset(q, 0, sizeof q);
      }
      std::memcpy(c.lo + 16 * k, q, 16);
      std::memcpy(c.hi + 16 * k, q + 16, 16);
      for (int i = 0; i < 4; ++i) {
        const int l = 4 * k + i;
        int32_t sum = 0;
        for (int b = 0; b < 4; ++b) sum += c.lo[4 * l + b] + c.hi[4 * l + b];
        c.scale[l] = sx;
        c.neg_offset[l] = -8 * sum;
      }
    }
  }
}

float I4RowDotQ8(const WeightView& w, int64_t r, const Q8Chunk* chunks) {
  const int64_t cols = w.cols;
  const int64_t group = w.group_size <= 0 || w.group_size >= cols ? cols : w.group_size;
  const uint16_t* sw = w.group_scales + r * w.groups_per_row();
  const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * w.row_bytes();
  float acc = 0.0f;
  for (int64_t b = 0; b * 32 < cols; ++b) {
    const Q8Chunk& c = chunks[b / 4];
    const int k = static_cast<int>(b % 4);
    int32_t isum = 0;
    for (int j = 0; j < 16; ++j) {
      const uint8_t byte = row[16 * b + j];
      isum += ((byte & 0xf) - 8) * c.lo[16 * k + j] + ((byte >> 4) - 8) * c.hi[16 * k + j];
    }
    acc += static_cast<float>(isum) * (F16ToF32(sw[(32 * b) / group]) * c.scale[4 * k]);
  }
  return acc;
}

}  // namespace glm::kernels
