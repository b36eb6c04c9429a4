// Rotary position embedding tables and their application.
#ifndef GLM_SHARD_WORKER_KERNELS_ROPE_H_
#define GLM_SHARD_WORKER_KERNELS_ROPE_H_

#include <cstdint>
#include <vector>

namespace glm::kernels {

enum class RopeLayout {
  kSplitHalf,    // pairs (i, i + d/2): the NeoX / Llama `rotate_half` form
  kInterleaved,  // pairs (2i, 2i + 1): the original DeepSeek `apply_rotary_emb` form
};

// cos/sin per position for dim rotary dims: inv_freq[i] for i < dim/2, times `scale` (the
// YaRN attention factor, 1 otherwise). Positions are computed on demand and cached.
class RopeTable {
 public:
  RopeTable(std::vector<float> inv_freq, float attention_scale);
  int dim() const { return static_cast<int>(inv_freq_.size() * 2); }
  // Rotates x[dim] in place for `position`.
  void Apply(float* x, int64_t position, RopeLayout layout) const;

 private:
  std::vector<float> inv_freq_;
  float attention_scale_;
};

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_ROPE_H_
