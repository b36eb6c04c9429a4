// One sequence's attention cache for a set of layers: the MLA compressed latent (normalised
// kv_a output, [kv_lora_rank] per position) and the rotated rope key ([qk_rope_head_dim]) — not
// the expanded per-head keys and values — plus the DSA indexer keys ([index_head_dim]) on layers
// that run the indexer. The main model and the MTP layer each have their own cache (the MTP
// sequence is shifted by one token).
#ifndef GLM_SHARD_WORKER_KV_CACHE_KV_CACHE_H_
#define GLM_SHARD_WORKER_KV_CACHE_KV_CACHE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace glm::kv_cache {

struct KvCacheShape {
  int64_t kv_lora_rank = 0;
  int64_t rope_dim = 0;
  int64_t index_head_dim = 0;
  int64_t first_layer = 0;          // weight-layer index of the first cached layer
  std::vector<bool> layer_has_index_keys;  // per cached layer
  int64_t max_positions = 0;        // refuse to grow past this (the model's context)
};

class KvCache {
 public:
  explicit KvCache(KvCacheShape shape);

  // Positions filled (the next token's position).
  int64_t length() const { return length_; }
  const KvCacheShape& shape() const { return shape_; }

  // Makes room for positions [0, n); fails past max_positions.
  absl::Status Reserve(int64_t n);
  // Marks positions [0, n) as filled, after every layer wrote them.
  void SetLength(int64_t n) { length_ = n; }
  // Forgets positions >= n (rollback of rejected speculative tokens).
  void Truncate(int64_t n) { if (n < length_) length_ = n; }

  // Row pointers; `layer` is the weight-layer index, position < reserved capacity.
  float* latent(int64_t layer, int64_t position);
  float* rope_key(int64_t layer, int64_t position);
  float* index_key(int64_t layer, int64_t position);
  const float* latent(int64_t layer, int64_t position) const;
  const float* rope_key(int64_t layer, int64_t position) const;
  const float* index_key(int64_t layer, int64_t position) const;

  int64_t bytes() const;

 private:
  struct LayerStore {
    std::vector<float> latent, rope_key, index_key;
  };
  KvCacheShape shape_;
  std::vector<LayerStore> layers_;
  int64_t capacity_ = 0;
  int64_t length_ = 0;
};

}  // namespace glm::kv_cache

#endif  // GLM_SHARD_WORKER_KV_CACHE_KV_CACHE_H_
