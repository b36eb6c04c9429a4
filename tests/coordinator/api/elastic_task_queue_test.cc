// The HTTP connection pool: it grows when every thread is busy (up to its most), runs every job,
// and joins its threads on shutdown.
#include "coordinator/api/elastic_task_queue.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace glm::api {
namespace {

TEST(ElasticTaskQueueTest, GrowsWhenBusyUpToItsMost) {
  ElasticTaskQueue queue(2, 5);
  EXPECT_EQ(queue.threads(), 2);
  absl::Notification release;
  std::atomic<int> running{0}, done{0};
  for (int i = 0; i < 7; ++i)
    queue.enqueue([&] {
      ++running;
      release.WaitForNotification();
      ++done;
    });
  // Five run at once (two threads to start with, three added); the other two wait for a thread.
  for (int i = 0; i < 200 && running.load() < 5; ++i) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(running.load(), 5);
  EXPECT_EQ(queue.threads(), 5);
  release.Notify();
  for (int i = 0; i < 200 && done.load() < 7; ++i) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(done.load(), 7);
  // Idle threads take new jobs: no more are started.
  absl::Notification ran;
  queue.enqueue([&] { ran.Notify(); });
  EXPECT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_EQ(queue.threads(), 5);
  queue.shutdown();
  EXPECT_EQ(queue.threads(), 0);
}

}  // namespace
}  // namespace glm::api
