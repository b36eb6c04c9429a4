// ExpertStore with a fake loader: LRU order and eviction, pins, hit/miss accounting, prefetch,
// failed reads, and a concurrent smoke test.
#include "shard_worker/moe/expert_store.h"

#include <atomic>
#include <cstring>
#include <random>
#include <thread>

#include "gtest/gtest.h"

namespace glm::moe {
namespace {

constexpr int64_t kExpertBytes = 4096;

// Each expert: one buffer filled with a byte derived from (layer, expert), viewed as gate_proj.
model::LoadedExpert FakeExpert(int64_t layer, int64_t expert) {
  model::LoadedExpert out;
  out.buffers.emplace_back(kExpertBytes);
  std::memset(out.buffers[0].data(), static_cast<int>((layer * 31 + expert) & 0xff), kExpertBytes);
  out.weights.gate_proj.dtype = kernels::DType::kF32;
  out.weights.gate_proj.rows = 1;
  out.weights.gate_proj.cols = kExpertBytes / 4;
  out.weights.gate_proj.data = out.buffers[0].data();
  out.file_bytes = kExpertBytes;
  return out;
}

ExpertStore::Loader CountingLoader(std::atomic<int>* reads) {
  return [reads](int64_t layer, int64_t expert) -> absl::StatusOr<model::LoadedExpert> {
    reads->fetch_add(1);
    return FakeExpert(layer, expert);
  };
}

uint8_t FirstByte(const ExpertStore::Handle& h) { return *static_cast<const uint8_t*>(h.weights().gate_proj.data); }

TEST(ExpertStoreTest, LruEvictsLeastRecentlyUsed) {
  std::atomic<int> reads{0};
  ExpertStore store(CountingLoader(&reads), {0, 1}, 3 * kExpertBytes, kExpertBytes, /*io_threads=*/1);
  for (int64_t e : {1, 2, 3}) ASSERT_TRUE(store.Acquire(0, e).ok());  // handles released at once
  using P = std::pair<int64_t, int64_t>;
  EXPECT_EQ(store.LruOrder(), (std::vector<P>{{0, 3}, {0, 2}, {0, 1}}));
  ASSERT_TRUE(store.Acquire(0, 1).ok());  // hit: becomes most recent
  EXPECT_EQ(store.LruOrder(), (std::vector<P>{{0, 1}, {0, 3}, {0, 2}}));
  ASSERT_TRUE(store.Acquire(1, 5).ok());  // evicts (0, 2)
  EXPECT_EQ(store.LruOrder(), (std::vector<P>{{1, 5}, {0, 1}, {0, 3}}));
  EXPECT_FALSE(store.Resident(0, 2));
  EXPECT_TRUE(store.Resident(0, 3));
  const ExpertStoreStats s = store.stats();
  EXPECT_EQ(s.hits, 1);
  EXPECT_EQ(s.misses, 4);
  EXPECT_EQ(s.evictions, 1);
  EXPECT_EQ(s.bytes_read, 4 * kExpertBytes);
  EXPECT_EQ(s.resident_bytes, 3 * kExpertBytes);
  EXPECT_DOUBLE_EQ(s.hit_rate(), 0.2);
  EXPECT_EQ(reads.load(), 4);
}

TEST(ExpertStoreTest, PinnedExpertsAreNotEvicted) {
  std::atomic<int> reads{0};
  ExpertStore store(CountingLoader(&reads), {0}, 2 * kExpertBytes, kExpertBytes, 1);
  auto a = store.Acquire(0, 0);
  auto b = store.Acquire(0, 1);
  ASSERT_TRUE(a.ok() && b.ok());
  // Over capacity while both are pinned: the third overshoots instead of evicting them.
  auto c = store.Acquire(0, 2);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(FirstByte(*a), 0);
  EXPECT_EQ(FirstByte(*b), 1);
  EXPECT_EQ(FirstByte(*c), 2);
  EXPECT_EQ(store.stats().resident_bytes, 3 * kExpertBytes);
  a->Release();  // now (0, 0) is the unpinned least recent: evicted
  EXPECT_FALSE(store.Resident(0, 0));
  EXPECT_EQ(store.stats().resident_bytes, 2 * kExpertBytes);
}

TEST(ExpertStoreTest, SpeculativePrefetchHitsUrgentPrefetchMisses) {
  std::atomic<int> reads{0};
  ExpertStore store(CountingLoader(&reads), {0, 1}, 8 * kExpertBytes, kExpertBytes, 2);
  // speculative_limit is half the cache: 4 experts.
  EXPECT_EQ(store.Prefetch(1, {0, 1, 2, 3, 4, 5}).size(), 4u);
  store.Drain();
  for (int64_t e : {0, 1, 2, 3}) EXPECT_TRUE(store.Resident(1, e));
  EXPECT_FALSE(store.Resident(1, 4));
  ASSERT_TRUE(store.Acquire(1, 0).ok());
  EXPECT_EQ(store.Prefetch(0, {7, 8}, /*urgent=*/true), (std::vector<int64_t>{7, 8}));
  store.Drain();
  ASSERT_TRUE(store.Acquire(0, 7).ok());
  ASSERT_TRUE(store.Acquire(0, 7).ok());  // second use: a hit
  const ExpertStoreStats s = store.stats();
  EXPECT_EQ(s.prefetches, 4);
  EXPECT_EQ(s.prefetches_used, 1);
  EXPECT_EQ(s.hits, 2);    // (1, 0) prefetched; (0, 7) the second time
  EXPECT_EQ(s.misses, 1);  // (0, 7) was read for an urgent request
  EXPECT_EQ(reads.load(), 6);
  EXPECT_TRUE(store.Prefetch(1, {0, 1}).empty());  // resident already
}

TEST(ExpertStoreTest, FailedReadIsReturnedAndNotCached) {
  std::atomic<int> calls{0};
  ExpertStore store(
      [&](int64_t layer, int64_t expert) -> absl::StatusOr<model::LoadedExpert> {
        if (calls.fetch_add(1) == 0) return absl::DataLossError("disk on fire");
        return FakeExpert(layer, expert);
      },
      {0}, 4 * kExpertBytes, kExpertBytes, 1);
  auto h = store.Acquire(0, 3);
  EXPECT_EQ(h.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(store.Resident(0, 3));
  auto again = store.Acquire(0, 3);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(FirstByte(*again), 3);
}

TEST(ExpertStoreTest, ResidentModeIsALookup) {
  model::MoeWeights moe;
  moe.experts.resize(4);
  moe.expert_loaded = {true, false, true, true};
  ExpertStore store(std::vector<const model::MoeWeights*>{nullptr, &moe, nullptr, &moe});
  EXPECT_FALSE(store.streaming());
  auto h = store.Acquire(1, 2);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(&h->weights(), &moe.experts[2]);
  EXPECT_EQ(store.Acquire(1, 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.Acquire(0, 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.NextLayer(1), 3);
  EXPECT_EQ(store.NextLayer(3), -1);
  EXPECT_TRUE(store.Prefetch(1, {0}).empty());
}

// Several threads acquire, check and release random experts of a cache far smaller than the set
// while another prefetches: every pinned expert holds its own bytes throughout.
TEST(ExpertStoreTest, ConcurrentSmoke) {
  std::atomic<int> reads{0};
  ExpertStore store(CountingLoader(&reads), {0, 1, 2}, 6 * kExpertBytes, kExpertBytes, 2);
  std::atomic<bool> bad{false}, stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 2000; ++i) {
        const int64_t layer = rng() % 3, expert = rng() % 16;
        auto h = store.Acquire(layer, expert);
        if (!h.ok()) {
          bad = true;
          continue;
        }
        const auto* p = static_cast<const uint8_t*>(h->weights().gate_proj.data);
        const uint8_t want = static_cast<uint8_t>((layer * 31 + expert) & 0xff);
        if (p[0] != want || p[kExpertBytes - 1] != want) bad = true;
      }
    });
  std::thread prefetcher([&] {
    std::mt19937 rng(99);
    while (!stop) {
      store.Prefetch(rng() % 3, {static_cast<int64_t>(rng() % 16), static_cast<int64_t>(rng() % 16)});
      std::this_thread::yield();
    }
  });
  for (auto& t : threads) t.join();
  stop = true;
  prefetcher.join();
  store.Drain();
  EXPECT_FALSE(bad);
  const ExpertStoreStats s = store.stats();
  EXPECT_EQ(s.hits + s.misses, 4 * 2000);
  EXPECT_LE(s.resident_bytes, 6 * kExpertBytes);
  EXPECT_GT(s.evictions, 0);
}

}  // namespace
}  // namespace glm::moe
