#include "shard_worker/kv_cache/kv_block_pool.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"

namespace glm::kv_cache {

KvBlockPool::KvBlockPool(KvCacheShape shape, int64_t block_size, int64_t num_blocks, bool growable)
    : shape_(std::move(shape)), block_size_(block_size), growable_(growable),
      layers_(shape_.layer_has_index_keys.size()) {
  Grow(num_blocks);
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

namespace {

// A new array of `new_count` floats holding the first `old_count` of `old` (throws
// std::bad_alloc when memory runs out, as operator new would).
model::AlignedBuffer Regrow(model::AlignedBuffer old, int64_t old_count, int64_t new_count) {
  model::AlignedBuffer fresh(new_count * static_cast<int64_t>(sizeof(float)));
  if (!fresh.valid()) throw std::bad_alloc();
  if (old_count > 0) std::memcpy(fresh.data(), old.data(), old_count * sizeof(float));
  return fresh;
}

}  // namespace

void KvBlockPool::Grow(int64_t blocks) {
  if (blocks <= num_blocks_) return;
  const int64_t old_pos = num_blocks_ * block_size_, new_pos = blocks * block_size_;
  for (size_t i = 0; i < layers_.size(); ++i) {
    LayerStore& l = layers_[i];
    l.latent = Regrow(std::move(l.latent), old_pos * shape_.kv_lora_rank, new_pos * shape_.kv_lora_rank);
    l.rope_key = Regrow(std::move(l.rope_key), old_pos * shape_.rope_dim, new_pos * shape_.rope_dim);
    if (shape_.layer_has_index_keys[i])
      l.index_key = Regrow(std::move(l.index_key), old_pos * shape_.index_head_dim, new_pos * shape_.index_head_dim);
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
