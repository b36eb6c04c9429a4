// The routed experts a rank computes with: either all resident (loaded with the model), or —
// when they outgrow LoadOptions::expert_memory_bytes — streamed from the checkpoint into an LRU
// cache of that many bytes. Recency predicts reuse better than static frequency (DESIGN.md,
// "Streaming active experts"); background I/O threads prefetch the experts the next layer's
// router predicts while the current layer computes.
//
// Threading: Acquire / Release / Prefetch may be called from any thread (the engine runs one
// forward at a time per rank, its I/O threads load concurrently); one mutex guards the cache
// map, reads (pread, O_DIRECT where the file system allows: LoadOptions::expert_direct_io; into
// freshly allocated aligned buffers) run outside it.
#ifndef GLM_SHARD_WORKER_MOE_EXPERT_STORE_H_
#define GLM_SHARD_WORKER_MOE_EXPERT_STORE_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "shard_worker/model/model_weights.h"

namespace glm::moe {

struct ExpertStoreStats {
  int64_t hits = 0;             // Acquire found the expert resident (or already being prefetched)
  int64_t misses = 0;           // Acquire (or the current layer's urgent request) had to read it
  int64_t prefetches = 0;       // speculative loads started by Prefetch
  int64_t prefetches_used = 0;  // of those, acquired before being evicted
  int64_t evictions = 0;
  int64_t loads = 0;            // expert reads completed
  int64_t direct_loads = 0;     // of those, read with O_DIRECT (past the page cache) throughout
  int64_t bytes_read = 0;       // checkpoint bytes read
  double read_seconds = 0;      // wall time during which at least one read was in flight
  double wait_seconds = 0;      // time Acquire callers spent blocked on reads
  int64_t resident_bytes = 0;   // memory held by cached experts now
  int64_t capacity_bytes = 0;
  double hit_rate() const { return hits + misses > 0 ? static_cast<double>(hits) / (hits + misses) : 1.0; }
  // Read bandwidth while the disk was busy (bytes / read_seconds), GB/s.
  double disk_gbps() const { return read_seconds > 0 ? bytes_read / read_seconds / 1e9 : 0.0; }
};

class ExpertStore {
 public:
  // Reads one expert (thread-safe; called by the I/O threads and by Acquire on a miss).
  using Loader = std::function<absl::StatusOr<model::LoadedExpert>(int64_t layer, int64_t expert)>;

  // Resident: `layers[l]` (null for non-MoE / unloaded layers) holds layer l's experts, owned by
  // the model; Acquire is a lookup.
  explicit ExpertStore(std::vector<const model::MoeWeights*> layers);
  // Streaming: `moe_layers` (ascending) are served through an LRU cache of `capacity_bytes`.
  // Capacity is soft: experts pinned or in flight are never evicted, so a cache smaller than one
  // layer's working set overshoots briefly instead of deadlocking. expert_bytes: the memory one
  // expert takes (sizes speculative prefetches before the first read).
  ExpertStore(Loader loader, std::vector<int64_t> moe_layers, int64_t capacity_bytes, int64_t expert_bytes,
              int io_threads = 2);
  ~ExpertStore();
  ExpertStore(const ExpertStore&) = delete;
  ExpertStore& operator=(const ExpertStore&) = delete;

  bool streaming() const { return streaming_; }
  // The next streamed MoE layer after `layer`, or -1.
  int64_t NextLayer(int64_t layer) const;

  // Weights valid until the handle is destroyed (a pin: the expert cannot be evicted meanwhile).
  class Handle {
   public:
    Handle() = default;
    Handle(Handle&& o) noexcept : store_(o.store_), key_(o.key_), weights_(o.weights_) { o.store_ = nullptr; }
    Handle& operator=(Handle&& o) noexcept;
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    ~Handle() { Release(); }
    const model::MlpWeights& weights() const { return *weights_; }
    void Release();

   private:
    friend class ExpertStore;
    ExpertStore* store_ = nullptr;  // null: nothing to release (resident, or released)
    int64_t key_ = 0;
    const model::MlpWeights* weights_ = nullptr;
  };

  // The expert, reading it synchronously on a miss (or waiting for the read already under way).
  absl::StatusOr<Handle> Acquire(int64_t layer, int64_t expert);

  // Queues reads of the experts not resident, returning those (in queue order). urgent: the
  // current layer needs them now — they go to the front of the queue and count as misses when
  // acquired. Otherwise speculative: queued behind, replacing any speculative requests still
  // queued (those predicted a layer already reached), and at most speculative_limit() of them.
  std::vector<int64_t> Prefetch(int64_t layer, const std::vector<int64_t>& experts, bool urgent = false);
  // How many experts a speculative prefetch may ask for: half the cache, so predictions never
  // evict most of what recency says is hot.
  int64_t speculative_limit() const;

  // Whether the expert is resident (ready) now.
  bool Resident(int64_t layer, int64_t expert) const;
  // LRU order of the resident experts, most recent first, as (layer, expert).
  std::vector<std::pair<int64_t, int64_t>> LruOrder() const;

  ExpertStoreStats stats() const;
  void ResetStats();
  // Waits until no read is queued or in flight (tests; benchmarks between phases).
  void Drain();

 private:
  struct Entry {
    model::LoadedExpert data;
    bool ready = false;
    int pins = 0;
    bool demand = false;       // read for an urgent request: its first Acquire is a miss
    bool speculative = false;  // read by a speculative prefetch, not acquired yet
    std::list<int64_t>::iterator lru;  // valid when ready
  };
  struct Request {
    int64_t key;
    bool urgent;
  };
  static constexpr int64_t kKeyStride = int64_t{1} << 24;  // > any expert count
  static int64_t Key(int64_t layer, int64_t expert) { return layer * kKeyStride + expert; }
  using Clock = std::chrono::steady_clock;

  void IoLoop();
  // Reads key into `entry` (inserted, not ready); lock held on entry and exit, released meanwhile.
  absl::Status LoadLocked(std::unique_lock<std::mutex>& lock, int64_t key, Entry* entry);
  void EvictLocked();
  void ReleaseKey(int64_t key);

  const bool streaming_;
  std::vector<const model::MoeWeights*> resident_;  // resident mode, by layer
  Loader loader_;
  std::vector<int64_t> moe_layers_;
  int64_t capacity_bytes_ = 0;

  mutable std::mutex mu_;
  std::condition_variable loaded_cv_;  // an entry became ready or was dropped
  std::condition_variable queue_cv_;   // a request was queued, or stop
  std::unordered_map<int64_t, std::unique_ptr<Entry>> entries_;
  std::list<int64_t> lru_;  // ready entries, front = most recently used
  std::deque<Request> queue_;
  std::unordered_map<int64_t, bool> queued_;  // key -> urgent; absent = stolen / done
  int64_t resident_bytes_ = 0;
  int64_t expert_bytes_ = 0;  // memory of the last expert read (they are all alike)
  int in_flight_ = 0;
  int busy_io_threads_ = 0;
  Clock::time_point busy_since_;
  ExpertStoreStats stats_;
  bool stop_ = false;
  std::vector<std::thread> io_threads_;
};

}  // namespace glm::moe

#endif  // GLM_SHARD_WORKER_MOE_EXPERT_STORE_H_
