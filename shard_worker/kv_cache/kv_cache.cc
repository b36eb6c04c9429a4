#include "shard_worker/kv_cache/kv_cache.h"

#include "absl/strings/str_cat.h"

namespace glm::kv_cache {

KvCache::KvCache(KvCacheShape shape, int64_t block_size)
    : owned_pool_(std::make_unique<KvBlockPool>(std::move(shape), block_size, 0, /*growable=*/true)),
      pool_(owned_pool_.get()), bs_(block_size), self_managed_(true) {}

KvCache::KvCache(KvBlockPool* pool, std::vector<int32_t> block_table, int64_t length)
    : pool_(pool), table_(std::move(block_table)), bs_(pool->block_size()), length_(length), self_managed_(false) {}

KvCache::~KvCache() = default;

absl::Status KvCache::Reserve(int64_t n) {
  if (n > pool_->shape().max_positions)
    return absl::OutOfRangeError(absl::StrCat("sequence of ", n, " tokens exceeds the model's context of ",
                                              pool_->shape().max_positions));
  const int64_t blocks = (n + bs_ - 1) / bs_;
  if (!self_managed_) {
    if (static_cast<int64_t>(table_.size()) < blocks)
      return absl::InvalidArgumentError(absl::StrCat("block table of ", table_.size(), " blocks cannot hold ", n,
                                                     " positions"));
    for (int32_t b : table_)
      if (b < 0 || b >= pool_->num_blocks())
        return absl::InvalidArgumentError(absl::StrCat("KV block ", b, " is outside the pool of ", pool_->num_blocks()));
    return absl::OkStatus();
  }
  while (static_cast<int64_t>(table_.size()) < blocks) {
    auto b = pool_->AllocateBlock();
    if (!b.ok()) return b.status();
    table_.push_back(*b);
  }
  return absl::OkStatus();
}

}  // namespace glm::kv_cache
