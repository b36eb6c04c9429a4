#include "shard_worker/kernels/rope.h"

#include <cmath>

namespace glm::kernels {

RopeTable::RopeTable(std::vector<float> inv_freq, float attention_scale)
    : inv_freq_(std::move(inv_freq)), attention_scale_(attention_scale) {}

void RopeTable::Apply(float* x, int64_t position, RopeLayout layout) const {
  const int half = static_cast<int>(inv_freq_.size());
  for (int i = 0; i < half; ++i) {
    // Like the reference: the angle is formed in f32 (freq · position), then cos/sin.
    float angle = inv_freq_[i] * static_cast<float>(position);
    float c = std::cos(angle) * attention_scale_;
    float s = std::sin(angle) * attention_scale_;
    int a = layout == RopeLayout::kSplitHalf ? i : 2 * i;
    int b = layout == RopeLayout::kSplitHalf ? i + half : 2 * i + 1;
    float xa = x[a], xb = x[b];
    x[a] = xa * c - xb * s;
    x[b] = xb * c + xa * s;
  }
}

}  // namespace glm::kernels
