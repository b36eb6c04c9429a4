#include "shard_worker/kv_cache/kv_cache.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace glm::kv_cache {

KvCache::KvCache(KvCacheShape shape) : shape_(std::move(shape)), layers_(shape_.layer_has_index_keys.size()) {}

absl::Status KvCache::Reserve(int64_t n) {
  if (n <= capacity_) return absl::OkStatus();
  if (n > shape_.max_positions) {
    return absl::OutOfRangeError(absl::StrCat("sequence of ", n, " tokens exceeds the model's context of ",
                                              shape_.max_positions));
  }
  // Geometric growth keeps appends amortised O(1) per token.
  int64_t cap = std::min(shape_.max_positions, std::max<int64_t>(n, std::max<int64_t>(64, capacity_ * 2)));
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i].latent.resize(cap * shape_.kv_lora_rank);
    layers_[i].rope_key.resize(cap * shape_.rope_dim);
    if (shape_.layer_has_index_keys[i]) layers_[i].index_key.resize(cap * shape_.index_head_dim);
  }
  capacity_ = cap;
  return absl::OkStatus();
}

float* KvCache::latent(int64_t layer, int64_t p) {
  return layers_[layer - shape_.first_layer].latent.data() + p * shape_.kv_lora_rank;
}
float* KvCache::rope_key(int64_t layer, int64_t p) {
  return layers_[layer - shape_.first_layer].rope_key.data() + p * shape_.rope_dim;
}
float* KvCache::index_key(int64_t layer, int64_t p) {
  return layers_[layer - shape_.first_layer].index_key.data() + p * shape_.index_head_dim;
}
const float* KvCache::latent(int64_t layer, int64_t p) const {
  return const_cast<KvCache*>(this)->latent(layer, p);
}
const float* KvCache::rope_key(int64_t layer, int64_t p) const {
  return const_cast<KvCache*>(this)->rope_key(layer, p);
}
const float* KvCache::index_key(int64_t layer, int64_t p) const {
  return const_cast<KvCache*>(this)->index_key(layer, p);
}

int64_t KvCache::bytes() const {
  int64_t b = 0;
  for (const auto& l : layers_) b += (l.latent.size() + l.rope_key.size() + l.index_key.size()) * sizeof(float);
  return b;
}

}  // namespace glm::kv_cache
