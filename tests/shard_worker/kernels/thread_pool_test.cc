#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "shard_worker/kernels/thread_pool.h"

namespace glm::kernels {
namespace {

TEST(ThreadPoolTest, ParallelForCoversEachIndexOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {0, 1, 7, 100, 1001}) {
      for (int64_t grain : {1, 4, 64}) {
        std::vector<std::atomic<int>> hits(n);
        std::atomic<int> short_ranges{0};
        pool.ParallelFor(
            n,
            [&](int64_t b, int64_t e) {
              if (e - b < grain && e != n) ++short_ranges;
              for (int64_t i = b; i < e; ++i) hits[i]++;
            },
            grain);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i], 1) << threads << " " << n << " " << i;
        EXPECT_EQ(short_ranges, 0) << "only the last range may be shorter than the grain";
      }
    }
  }
}

// A thread held up in its share leaves the tail of the range to the others instead of making
// them wait at the join: here the caller's first range blocks until its peer has done
// everything else (it would wait forever, here 10 s, under a purely static split).
TEST(ThreadPoolTest, ParallelForLeavesTheTailToAThreadThatIsNotHeldUp) {
  ThreadPool pool(2);
  const int64_t n = 1000;
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<int64_t> by_caller{0}, by_peer{0};
  std::atomic<bool> first_caller_range{true};
  pool.ParallelFor(n, [&](int64_t b, int64_t e) {
    if (std::this_thread::get_id() != caller) {
      by_peer += e - b;
      return;
    }
    if (first_caller_range.exchange(false)) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (by_peer.load() < n - (e - b) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    by_caller += e - b;
  });
  EXPECT_EQ(by_caller + by_peer, n);
  EXPECT_GT(by_peer.load(), n / 2) << "the peer took none of the caller's tail";
  EXPECT_EQ(by_peer.load(), n - by_caller.load());
}

TEST(ThreadPoolTest, RunOnAllAndManyShortLoops) {
  // Two threads: more than the cores would make every loop wait on the scheduler.
  ThreadPool pool(2);
  std::vector<std::atomic<int>> seen(2);
  pool.RunOnAll([&](int t) { seen[t]++; });
  for (auto& s : seen) EXPECT_EQ(s, 1);
  std::atomic<int> workers{0};
  pool.ForEachWorker([&](int t) {
    EXPECT_GE(t, 1);
    workers++;
  });
  EXPECT_EQ(workers, 1);
  // Decode issues thousands of tiny loops: no lost wake-ups or torn generations.
  std::atomic<int64_t> sum{0};
  for (int i = 0; i < 2000; ++i)
    pool.ParallelFor(6, [&](int64_t b, int64_t e) { sum += e - b; });
  EXPECT_EQ(sum, 6 * 2000);
}

TEST(ThreadPoolTest, SleepingWorkersWakeForEveryLoop) {
  // Workers that spun out (or were parked) sleep on the condition variable; every later loop
  // must still reach them (the fork takes no lock unless someone sleeps). Pauses of 0 to 3 ms
  // between loops land on both sides of the spin window, and on the race where a worker is
  // between its last look at the generation and its wait.
  ThreadPool pool(3);
  std::atomic<int64_t> calls{0};
  for (int i = 0; i < 300; ++i) {
    if (i % 3 == 0) pool.Park();
    if (i % 5 != 0) std::this_thread::sleep_for(std::chrono::microseconds((i * 37) % 3000));
    pool.RunOnAll([&](int) { calls++; });
  }
  EXPECT_EQ(calls, 300 * 3);
}

TEST(ThreadPoolTest, WakeRunsNothingAndLosesNoLoop) {
  // Wake() (a step is coming) rouses parked or sleeping workers without work: they must run no
  // task for it, spin, go back to sleep when none comes, and still take every later loop —
  // including a Wake racing a worker on its way to sleep, and Park right after a Wake.
  ThreadPool pool(3);
  std::atomic<int64_t> calls{0};
  pool.Park();
  for (int i = 0; i < 20; ++i) pool.Wake();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(calls, 0);
  for (int i = 0; i < 300; ++i) {
    if (i % 3 == 0) pool.Park();
    if (i % 4 == 0) pool.Wake();
    if (i % 7 == 0) pool.Park();
    if (i % 5 != 0) std::this_thread::sleep_for(std::chrono::microseconds((i * 53) % 2500));
    if (i % 2 == 0) pool.Wake();
    pool.RunOnAll([&](int) { calls++; });
  }
  EXPECT_EQ(calls, 300 * 3);
  ThreadPool single(1);  // no workers: a no-op
  single.Wake();
  single.RunOnAll([&](int) { calls++; });
  EXPECT_EQ(calls, 300 * 3 + 1);
}

// A rank bound to some CPUs (hwloc, taskset, mpirun --bind-to) counts those, not the host's.
TEST(ThreadPoolTest, AvailableCpusFollowsTheAffinityMask) {
  cpu_set_t saved;
  ASSERT_EQ(sched_getaffinity(0, sizeof saved, &saved), 0);
  EXPECT_EQ(AvailableCpus(), CPU_COUNT(&saved));
  int first = 0;
  while (!CPU_ISSET(first, &saved)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  EXPECT_EQ(AvailableCpus(), 1);
  ASSERT_EQ(sched_setaffinity(0, sizeof saved, &saved), 0);
}

}  // namespace
}  // namespace glm::kernels
