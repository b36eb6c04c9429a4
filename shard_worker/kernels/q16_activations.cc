#include "shard_worker/kernels/q16_activations.h"

#include <algorithm>

#include "shard_worker/kernels/absmax_quantize.h"

namespace glm::kernels {

void QuantizeActivationChunk16(const float* x, int n, int16_t* q, float* scale) {
  QuantizeAbsMax(x, n, static_cast<int>(kQ16ChunkCols), 32767.0f, kQ16MinMagnitude, q, scale);
}

void PrepareQ16Chunks(const float* x, int64_t cols, Q16Chunk* out) {
  for (int64_t ch = 0; ch < Q16ChunksPerRow(cols); ++ch) {
    const int64_t c0 = ch * kQ16ChunkCols;
    float sx = 0.0f;
    QuantizeActivationChunk16(x + c0, static_cast<int>(std::min<int64_t>(kQ16ChunkCols, cols - c0)), out[ch].q, &sx);
    std::fill(out[ch].scale, out[ch].scale + 16, sx);
  }
}

float I8RowDotQ16(const WeightView& w, int64_t r, const Q16Chunk* chunks) {
  const int64_t cols = w.cols;
  const int64_t group = w.group_size <= 0 || w.group_size >= cols ? cols : w.group_size;
  const uint16_t* sw = w.group_scales + r * w.groups_per_row();
  const auto* row = static_cast<const int8_t*>(w.data) + r * w.row_bytes();
  float acc = 0.0f;
  for (int64_t b = 0; b * 32 < cols; ++b) {
    const Q16Chunk& c = chunks[b / 2];
    const int64_t c0 = 32 * b;
    int32_t isum = 0;
    for (int64_t j = 0; j < 32 && c0 + j < cols; ++j) isum += row[c0 + j] * c.q[32 * (b % 2) + j];
    acc += static_cast<float>(isum) * (F16ToF32(sw[c0 / group]) * c.scale[0]);
  }
  return acc;
}

}  // namespace glm::kernels
