// A fixed set of compute threads that run one parallel loop at a time. The calling thread takes
// part, so ThreadPool(1) runs everything inline. Workers spin briefly before sleeping: decode
// issues thousands of small loops per second and a condition-variable wake-up per loop costs
// more than the loop itself.
#ifndef GLM_SHARD_WORKER_KERNELS_THREAD_POOL_H_
#define GLM_SHARD_WORKER_KERNELS_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace glm::kernels {

// One iteration of a spin-wait: tells the core it is spinning (frees the sibling hyperthread's
// resources, avoids the memory-order flush on exit).
inline void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// The CPUs this process may run on (its affinity mask: a rank bound to a NUMA node counts that
// node's, not the host's), at least 1. Thread counts that default to "all cores" use this, so a
// bound rank does not start more threads than it has cores.
int AvailableCpus();

class ThreadPool {
 public:
  // n_threads >= 1 (the caller counts as one).
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(begin, end) on disjoint ranges covering [0, n), each at least `grain` long (but the
  // last), spread over the threads (max_threads > 0: at most that many of them). Returns when all
  // calls finished. Not reentrant.
  void ParallelFor(int64_t n, absl::FunctionRef<void(int64_t, int64_t)> fn, int64_t grain = 1, int max_threads = 0);

  // Calls fn(thread_index) once on every thread (0 = the caller). The callables are borrowed
  // (absl::FunctionRef), never copied: a fork allocates nothing.
  void RunOnAll(absl::FunctionRef<void(int)> fn);

  // Runs `fn` on each worker thread once (e.g. to pin it to cores); index 1..size()-1.
  void ForEachWorker(absl::FunctionRef<void(int)> fn);

  // A hint that no work follows for a while (a serving worker between steps): idle threads go
  // to sleep at once instead of spinning first, leaving the cores to the processes that share
  // them (the coordinator, the API threads). The next RunOnAll wakes them.
  void Park();
  // A hint that work follows soon (a serving worker that has just received its next step): wakes
  // sleeping threads now so that they spin, ready, by the first RunOnAll — waking a sleeping
  // thread costs tens of microseconds on a VM, which a step would otherwise wait for.
  void Wake();

 private:
  void WorkerLoop(int index);

  const int n_threads_;
  const int spin_iterations_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  const absl::FunctionRef<void(int)>* task_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> wakes_{0};  // Wake() calls: a sleeping thread also wakes when it changes
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> parked_{false};
  bool stop_ = false;
};

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_THREAD_POOL_H_
