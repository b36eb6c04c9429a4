// The scalar rule both activation quantisers share (q8_activations.h: int8 per 32 columns,
// q16_activations.h: int16 per 64): symmetric, one scale for the run, no zero point.
#ifndef GLM_SHARD_WORKER_KERNELS_ABSMAX_QUANTIZE_H_
#define GLM_SHARD_WORKER_KERNELS_ABSMAX_QUANTIZE_H_

#include <algorithm>
#include <cmath>
#include <limits>

namespace glm::kernels {

// Quantises x[0..n) into q[0..width) (zero past n): a = max|x|, *scale = a / qmax and
// q = round-to-nearest-even(x · (qmax / a)) in [−qmax, qmax]. a below min_magnitude (0 included):
// *scale = 0, q = 0 (qmax / a would overflow). A non-finite value: *scale = NaN, q = 0, so the
// dots give NaN as f32 products would.
template <typename Int>
void QuantizeAbsMax(const float* x, int n, int width, float qmax, float min_magnitude, Int* q, float* scale) {
  float amax = 0.0f;
  bool finite = true;
  for (int j = 0; j < n; ++j) {
    const float a = std::fabs(x[j]);
    if (!(a <= std::numeric_limits<float>::max())) finite = false;
    amax = std::max(amax, a);
  }
  std::fill(q, q + width, Int{0});
  if (!finite) {
    *scale = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  if (amax < min_magnitude) {
    *scale = 0.0f;
    return;
  }
  const float inv = qmax / amax;
  for (int j = 0; j < n; ++j) q[j] = static_cast<Int>(std::clamp(std::nearbyint(x[j] * inv), -qmax, qmax));
  *scale = amax / qmax;
}

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_ABSMAX_QUANTIZE_H_
