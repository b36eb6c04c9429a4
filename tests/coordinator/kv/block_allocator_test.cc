// BlockAllocator on its own: prefix reuse, LRU eviction of cached free blocks, and the counts
// the engine reports every step (num_free, num_cached_free) against a brute-force recount over
// a long random sequence of allocations, matches, registrations and releases.
#include "coordinator/kv/block_allocator.h"

#include <algorithm>
#include <map>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace glm::kv {
namespace {

std::vector<int32_t> Tokens(int32_t n, int32_t seed) {
  std::vector<int32_t> t(n);
  for (int32_t i = 0; i < n; ++i) t[i] = (seed * 7919 + i * 31) % 1000;
  return t;
}

// Registers the full blocks of `tokens` held in `blocks`, as the engine does after prefill.
void RegisterAll(BlockAllocator& a, const std::vector<int32_t>& tokens, const std::vector<int32_t>& blocks) {
  uint64_t h = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (static_cast<int64_t>(i + 1) * a.block_size() > static_cast<int64_t>(tokens.size())) break;
    h = BlockAllocator::ChainHash(h, tokens.data() + i * a.block_size(), a.block_size());
    a.Register(blocks[i], h);
  }
}

TEST(BlockAllocatorTest, ReleasedPrefixIsReusedUntilEvicted) {
  BlockAllocator a(4, 4);
  const auto prompt = Tokens(8, 1);
  std::vector<int32_t> blocks = {*a.Allocate(), *a.Allocate()};
  RegisterAll(a, prompt, blocks);
  EXPECT_EQ(a.num_cached_free(), 0);  // still referenced
  for (int32_t b : blocks) a.Release(b);
  EXPECT_EQ(a.num_free(), 4);
  EXPECT_EQ(a.num_cached_free(), 2);

  EXPECT_EQ(a.MatchPrefix(prompt, 8), blocks);
  EXPECT_EQ(a.num_cached_free(), 0);
  for (int32_t b : blocks) a.Release(b);

  // The two never-used blocks go first; then the cached ones, least recently freed first.
  std::vector<int32_t> taken;
  for (int i = 0; i < 3; ++i) taken.push_back(*a.Allocate());
  EXPECT_EQ(a.num_cached_free(), 1);
  EXPECT_EQ(taken[2], blocks[0]);
  EXPECT_TRUE(a.MatchPrefix(prompt, 8).empty()) << "block 0 of the chain was evicted";
  EXPECT_EQ(*a.Allocate(), blocks[1]);
  EXPECT_FALSE(a.Allocate().has_value());
  EXPECT_EQ(a.num_cached_free(), 0);
}

// PeekPrefix names the blocks MatchPrefix would take, and takes nothing.
TEST(BlockAllocatorTest, PeekPrefixTakesNothing) {
  BlockAllocator a(4, 4);
  const auto prompt = Tokens(12, 3);
  std::vector<int32_t> blocks = {*a.Allocate(), *a.Allocate(), *a.Allocate()};
  RegisterAll(a, prompt, blocks);
  a.Release(blocks[2]);
  a.Release(blocks[1]);  // blocks[0] still referenced
  EXPECT_EQ(a.PeekPrefix(prompt, 2), (std::vector<int32_t>{blocks[0], blocks[1]}));
  EXPECT_EQ(a.PeekPrefix(prompt, 8), blocks);
  EXPECT_EQ(a.num_free(), 3);
  EXPECT_EQ(a.num_cached_free(), 2);
  EXPECT_EQ(a.ref_count(blocks[1]), 0);
  EXPECT_TRUE(a.PeekPrefix(prompt, 8, /*seed=*/5).empty());
  EXPECT_EQ(a.MatchPrefix(prompt, 8), blocks);
  EXPECT_EQ(a.num_free(), 1);
}

TEST(BlockAllocatorTest, CountsMatchARecountOverRandomTraffic) {
  constexpr int32_t kBlocks = 64, kBlockSize = 4;
  BlockAllocator a(kBlocks, kBlockSize);
  std::mt19937 rng(7);
  std::map<int32_t, std::vector<int32_t>> live;  // sequence id -> its blocks
  std::map<int32_t, std::vector<int32_t>> prompts;
  int32_t next_id = 0, seen_cached_free = 0;
  for (int step = 0; step < 5000; ++step) {
    const int op = static_cast<int>(rng() % 3);
    if (op < 2 || live.empty()) {
      // Start a sequence on one of 6 prompts (shared prefixes are common), then allocate the rest.
      const auto tokens = Tokens(4 + static_cast<int32_t>(rng() % 20), static_cast<int32_t>(rng() % 6));
      const int32_t needed = (static_cast<int32_t>(tokens.size()) + kBlockSize - 1) / kBlockSize;
      std::vector<int32_t> blocks = a.MatchPrefix(tokens, needed);
      bool ok = true;
      while (static_cast<int32_t>(blocks.size()) < needed) {
        auto b = a.Allocate();
        if (!b) {
          ok = false;
          break;
        }
        EXPECT_FALSE(a.is_cached(*b)) << "an allocated block starts empty";
        blocks.push_back(*b);
      }
      if (!ok) {
        for (int32_t b : blocks) a.Release(b);
        continue;
      }
      RegisterAll(a, tokens, blocks);
      live[next_id] = blocks;
      prompts[next_id++] = tokens;
    } else {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      for (int32_t b : it->second) a.Release(b);
      prompts.erase(it->first);
      live.erase(it);
    }
    // Recount: a block is free when no live sequence holds it, cached-free when it also still
    // holds a registered prefix.
    std::vector<int32_t> refs(kBlocks, 0);
    for (const auto& [id, blocks] : live)
      for (int32_t b : blocks) refs[b]++;
    int32_t free = 0, cached_free = 0;
    for (int32_t b = 0; b < kBlocks; ++b) {
      ASSERT_EQ(a.ref_count(b), refs[b]) << "step " << step << " block " << b;
      free += refs[b] == 0;
      cached_free += refs[b] == 0 && a.is_cached(b);
    }
    ASSERT_EQ(a.num_free(), free) << "step " << step;
    ASSERT_EQ(a.num_cached_free(), cached_free) << "step " << step;
    seen_cached_free = std::max(seen_cached_free, cached_free);
  }
  EXPECT_GT(seen_cached_free, 4) << "the traffic never left cached blocks free: the check above tested nothing";
}

}  // namespace
}  // namespace glm::kv
