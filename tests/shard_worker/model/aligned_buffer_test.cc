// AlignedBuffer: small buffers come from shared huge-page chunks; they must be aligned, never
// overlap, survive moves, and the space of released ones must be reused (the loader's pattern:
// a stored copy, its converted copy, then the stored copy released).
#include "shard_worker/model/aligned_buffer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace glm::model {
namespace {

uintptr_t Address(const AlignedBuffer& b) { return reinterpret_cast<uintptr_t>(b.data()); }

TEST(AlignedBufferTest, AlignedDistinctAndWritable) {
  std::vector<AlignedBuffer> buffers;
  for (int64_t bytes : {1, 63, 64, 100, 4096, 1 << 20, (3 << 20) + 5, 4 << 20, (5 << 20) + 1})
    buffers.emplace_back(bytes);
  for (size_t i = 0; i < buffers.size(); ++i) {
    ASSERT_TRUE(buffers[i].valid());
    EXPECT_EQ(Address(buffers[i]) % 64, 0u) << i;
    std::memset(buffers[i].data(), static_cast<int>(i + 1), static_cast<size_t>(buffers[i].size()));
  }
  EXPECT_EQ(Address(buffers[7]) % (2 << 20), 0u);  // 4 MiB and up: 2 MiB aligned on its own
  for (size_t i = 0; i < buffers.size(); ++i) {
    const auto* p = static_cast<const unsigned char*>(buffers[i].data());
    for (int64_t j = 0; j < buffers[i].size(); j += 997) ASSERT_EQ(p[j], i + 1) << i;
    for (size_t k = 0; k < buffers.size(); ++k) {
      if (k == i) continue;
      const bool apart = Address(buffers[i]) + buffers[i].size() <= Address(buffers[k]) ||
                         Address(buffers[k]) + buffers[k].size() <= Address(buffers[i]);
      EXPECT_TRUE(apart) << i << " overlaps " << k;
    }
  }
}

// A request the system cannot satisfy is invalid (the loaders turn that into an out-of-memory
// status); it used to report valid with size 0.
TEST(AlignedBufferTest, FailedAllocationIsInvalid) {
  AlignedBuffer impossible(int64_t{1} << 62);
  EXPECT_FALSE(impossible.valid());
  EXPECT_EQ(impossible.data(), nullptr);
}

TEST(AlignedBufferTest, MovesKeepOwnership) {
  AlignedBuffer a(1000);
  void* p = a.data();
  AlignedBuffer b(std::move(a));
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(a.data(), nullptr);
  AlignedBuffer c(10);
  c = std::move(b);
  EXPECT_EQ(c.data(), p);
  EXPECT_EQ(c.size(), 1000);
  AlignedBuffer empty(0);
  EXPECT_TRUE(empty.valid());
  EXPECT_EQ(empty.size(), 0);
}

TEST(AlignedBufferTest, ReleasedSpaceIsReused) {
  // Rounds of: a stored copy (1 MiB), its converted copy (0.5 MiB, kept), the stored copy
  // released. Each stored copy should land in the hole the previous one left (until a chunk
  // fills up), instead of leaving 1 MiB of dead space per round.
  std::vector<AlignedBuffer> kept;
  uintptr_t previous_stored = 0;
  int reused = 0;
  for (int i = 0; i < 200; ++i) {
    AlignedBuffer stored(1 << 20);
    kept.emplace_back(1 << 19);
    ASSERT_TRUE(stored.valid() && kept.back().valid());
    if (Address(stored) == previous_stored) ++reused;
    previous_stored = Address(stored);
  }
  EXPECT_GE(reused, 150);
  // Everything released: the space is handed out again.
  const uintptr_t first_kept = Address(kept.back());
  kept.clear();
  AlignedBuffer again(1 << 19);
  EXPECT_NE(again.data(), nullptr);
  EXPECT_LE(Address(again), first_kept);  // the current chunk was reset, not a new one taken
}

// An LRU cache of streamed experts: same-size buffers freed in a scattered order while new ones
// arrive. The space they leave in older chunks must be reused, or a few survivors would pin
// whole chunks and the memory held would grow without bound.
TEST(AlignedBufferTest, ChurnDoesNotGrowTheArena) {
  constexpr int kLive = 100;
  constexpr int64_t kBytes = (1 << 20) + 4096;  // ~1 MiB, not a power of two
  std::vector<AlignedBuffer> cache;
  for (int i = 0; i < kLive; ++i) cache.emplace_back(kBytes);
  const int64_t held_after_fill = SmallBufferArenaBytes();
  uint32_t state = 12345;
  for (int step = 0; step < 5000; ++step) {
    state = state * 1664525u + 1013904223u;
    const size_t victim = (state >> 8) % cache.size();
    cache[victim] = AlignedBuffer(kBytes);  // frees one, allocates another
    ASSERT_TRUE(cache[victim].valid());
  }
  // At most the fill's chunks plus one more (a new chunk may start before an old hole fits).
  EXPECT_LE(SmallBufferArenaBytes(), held_after_fill + (int64_t{32} << 20));
}

TEST(AlignedBufferTest, HugePageStatusNamesTheMode) {
  const std::string status = HugePageStatus();
  EXPECT_EQ(status.rfind("transparent huge pages: ", 0), 0u) << status;
  EXPECT_EQ(status.find('['), std::string::npos) << status;  // the bracketed mode is extracted
}

}  // namespace
}  // namespace glm::model
