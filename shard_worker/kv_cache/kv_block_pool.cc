#include "shard_worker/kv_cache/kv_block_pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace glm::kv_cache {

KvBlockPool::KvBlockPool(KvCacheShape shape, int64_t block_size, int64_t num_blocks, bool growable)
    : shape_(std::move(shape)), block_size_(block_size), growable_(growable),
      layers_(shape_.layer_has_index_keys.size()) {
  Grow(num_blocks);
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

void KvBlockPool::Grow(int64_t blocks) {
  if (blocks <= num_blocks_) return;
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i].latent.resize(blocks * block_size_ * shape_.kv_lora_rank);
    layers_[i].rope_key.resize(blocks * block_size_ * shape_.rope_dim);
    if (shape_.layer_has_index_keys[i]) layers_[i].index_key.resize(blocks * block_size_ * shape_.index_head_dim);
  }
  num_blocks_ = blocks;
}

absl::StatusOr<int32_t> KvBlockPool::AllocateBlock() {
  if (free_.empty()) {
    if (!growable_) return absl::ResourceExhaustedError(absl::StrCat("all ", num_blocks_, " KV blocks are in use"));
    const int64_t old = num_blocks_;
    Grow(std::max<int64_t>(4, old * 2));
    for (int64_t b = num_blocks_ - 1; b >= old; --b) free_.push_back(static_cast<int32_t>(b));
  }
  int32_t b = free_.back();
  free_.pop_back();
  return b;
}

void KvBlockPool::FreeBlock(int32_t block) { free_.push_back(block); }

int64_t KvBlockPool::block_bytes() const {
  int64_t per_pos = 0;
  for (bool idx : shape_.layer_has_index_keys)
    per_pos += shape_.kv_lora_rank + shape_.rope_dim + (idx ? shape_.index_head_dim : 0);
  return per_pos * block_size_ * static_cast<int64_t>(sizeof(float));
}

}  // namespace glm::kv_cache
