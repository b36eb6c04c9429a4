// Which rotary pairing each part of GLM-5 uses (must match the Hugging Face reference).
#ifndef GLM_SHARD_WORKER_ATTENTION_ROPE_LAYOUTS_H_
#define GLM_SHARD_WORKER_ATTENTION_ROPE_LAYOUTS_H_

#include "shard_worker/kernels/rope.h"

namespace glm::attention {

inline constexpr kernels::RopeLayout kMlaRopeLayout = kernels::RopeLayout::kInterleaved;
inline constexpr kernels::RopeLayout kIndexerRopeLayout = kernels::RopeLayout::kInterleaved;

}  // namespace glm::attention

#endif  // GLM_SHARD_WORKER_ATTENTION_ROPE_LAYOUTS_H_
