#include "shard_worker/kernels/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <atomic>

namespace glm::kernels {
namespace {

// About 50-100 µs of spinning before a worker goes to sleep.
constexpr int kSpinIterations = 20000;
// With more threads than cores a spinning worker steals the core its peer needs: no spinning.
int SpinIterationsFor(int n_threads) { return n_threads <= AvailableCpus() ? kSpinIterations : 0; }

}  // namespace

int AvailableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(std::max(1, n_threads)), spin_iterations_(SpinIterationsFor(n_threads_)) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  for (;;) {
    const uint64_t wakes = wakes_.load(std::memory_order_seq_cst);
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int spin = 0; gen == seen && spin < spin_iterations_ && !parked_.load(std::memory_order_relaxed); ++spin) {
      CpuRelax();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      // Announce the sleep before the last look at the generation (both sequentially
      // consistent, as is RunOnAll's bump and its read of sleepers_): either RunOnAll sees a
      // sleeper and notifies under the mutex, or this thread sees the new generation.
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] {
          return generation_.load(std::memory_order_seq_cst) != seen || wakes_.load(std::memory_order_seq_cst) != wakes;
        });
      }
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      gen = generation_.load(std::memory_order_acquire);
      if (gen == seen) continue;  // woken ahead of work (Wake): spin again
    }
    seen = gen;
    if (stop_) return;
    (*task_)(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::RunOnAll(absl::FunctionRef<void(int)> fn) {
  if (n_threads_ == 1) {
    fn(0);
    return;
  }
  task_ = &fn;
  parked_.store(false, std::memory_order_relaxed);
  pending_.store(n_threads_ - 1, std::memory_order_release);
  // No lock on the common path (spinning workers); see WorkerLoop for the handshake with a
  // worker going to sleep. Taking the mutex before notifying means a worker between its last
  // look at the generation and its wait cannot miss the wake-up.
  generation_.fetch_add(1, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(mutex_); }
    wake_.notify_all();
  }
  fn(0);
  while (pending_.load(std::memory_order_acquire) != 0) CpuRelax();
  task_ = nullptr;
}

void ThreadPool::Park() { parked_.store(true, std::memory_order_relaxed); }

void ThreadPool::Wake() {
  if (n_threads_ == 1) return;
  parked_.store(false, std::memory_order_relaxed);
  wakes_.fetch_add(1, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(mutex_); }
    wake_.notify_all();
  }
}

void ThreadPool::ParallelFor(int64_t n, absl::FunctionRef<void(int64_t, int64_t)> fn, int64_t grain,
                             int max_threads) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t chunks = (n + grain - 1) / grain;
  const int threads = max_threads > 0 ? std::min(max_threads, n_threads_) : n_threads_;
  int used = static_cast<int>(std::min<int64_t>(threads, chunks));
  if (used <= 1) {
    fn(0, n);
    return;
  }
  // Each thread first takes a contiguous share of ~7/8 of the grains (one call: the bulk of the
  // work, no shared counter), then the rest is claimed from a shared counter in pieces that
  // shrink as it runs out (half the remainder's fair share, at least one grain). A thread that
  // starts late or runs slower (a busy sibling core, an interrupt) then does less of the tail
  // instead of making the others wait at the join: with a purely static split the caller spent
  // ~15% of a bandwidth-bound decode step waiting for its peer. The ranges are disjoint and each
  // call's rows depend only on their own indices, so the split changes no result.
  const int64_t bulk = chunks * 7 / (8 * used);
  std::atomic<int64_t> next{bulk * used};
  RunOnAll([&](int t) {
    if (t >= used) return;
    if (bulk > 0) fn(t * bulk * grain, std::min(n, (t + 1) * bulk * grain));
    for (int64_t cur = next.load(std::memory_order_relaxed); cur < chunks;) {
      const int64_t take = std::max<int64_t>(1, (chunks - cur) / (2 * used));
      if (next.compare_exchange_weak(cur, cur + take, std::memory_order_relaxed)) {
        fn(cur * grain, std::min(n, (cur + take) * grain));
        cur += take;  // a guess; a failed exchange reloads it
      }
    }
  });
}

void ThreadPool::ForEachWorker(absl::FunctionRef<void(int)> fn) {
  RunOnAll([&](int t) {
    if (t > 0) fn(t);
  });
}

}  // namespace glm::kernels
