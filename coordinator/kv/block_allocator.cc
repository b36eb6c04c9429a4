#include "coordinator/kv/block_allocator.h"

namespace glm::kv {

BlockAllocator::BlockAllocator(int32_t num_blocks, int32_t block_size)
    : num_blocks_(num_blocks), block_size_(block_size), blocks_(num_blocks) {
  for (int32_t b = 0; b < num_blocks; ++b) {
    free_list_.push_back(b);
    blocks_[b].free_pos = std::prev(free_list_.end());
    blocks_[b].in_free_list = true;
  }
}

uint64_t BlockAllocator::ChainHash(uint64_t previous, const int32_t* tokens, int32_t count) {
  // FNV-1a over (previous hash, tokens), then a 64-bit finaliser. Collisions would silently
  // reuse wrong KV, so the full 64 bits are kept and mixed well.
  uint64_t h = 1469598103934665603ull ^ (previous * 0x9e3779b97f4a7c15ull);
  for (int32_t i = 0; i < count; ++i) {
    uint32_t t = static_cast<uint32_t>(tokens[i]);
    for (int k = 0; k < 4; ++k) {
      h ^= (t >> (8 * k)) & 0xff;
      h *= 1099511628211ull;
    }
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

void BlockAllocator::TakeFromFreeList(int32_t block) {
  Block& b = blocks_[block];
  if (b.in_free_list) {
    free_list_.erase(b.free_pos);
    b.in_free_list = false;
    cached_free_ -= b.hash.has_value();
  }
}

std::vector<int32_t> BlockAllocator::PeekPrefix(const std::vector<int32_t>& tokens, int32_t max_blocks, uint64_t seed,
                                                int32_t lookahead) const {
  std::vector<int32_t> out;
  uint64_t h = seed;
  for (int32_t i = 0; i < max_blocks; ++i) {
    const int64_t begin = static_cast<int64_t>(i) * block_size_;
    if (begin + block_size_ + lookahead > static_cast<int64_t>(tokens.size())) break;
    h = ChainHash(h, tokens.data() + begin, block_size_ + lookahead);
    auto it = cached_.find(h);
    if (it == cached_.end()) break;
    out.push_back(it->second);
  }
  return out;
}

std::vector<int32_t> BlockAllocator::MatchPrefix(const std::vector<int32_t>& tokens, int32_t max_blocks, uint64_t seed,
                                                 int32_t lookahead) {
  std::vector<int32_t> out = PeekPrefix(tokens, max_blocks, seed, lookahead);
  for (int32_t block : out) {
    TakeFromFreeList(block);
    blocks_[block].refs++;
  }
  return out;
}

std::optional<int32_t> BlockAllocator::Allocate() {
  if (free_list_.empty()) return std::nullopt;
  const int32_t block = free_list_.front();
  TakeFromFreeList(block);
  Block& b = blocks_[block];
  if (b.hash) {  // evict: its contents are about to be overwritten
    auto it = cached_.find(*b.hash);
    if (it != cached_.end() && it->second == block) cached_.erase(it);
    b.hash.reset();
  }
  b.refs = 1;
  return block;
}

void BlockAllocator::Release(int32_t block) {
  Block& b = blocks_[block];
  if (b.refs <= 0) return;
  if (--b.refs == 0) {
    free_list_.push_back(block);
    b.free_pos = std::prev(free_list_.end());
    b.in_free_list = true;
    cached_free_ += b.hash.has_value();
  }
}

void BlockAllocator::Register(int32_t block, uint64_t hash) {
  Block& b = blocks_[block];
  if (b.hash) return;
  if (cached_.count(hash)) return;
  b.hash = hash;
  cached_free_ += b.in_free_list;  // registered blocks are referenced, but keep the count exact
  cached_[hash] = block;
}

}  // namespace glm::kv
