// The HTTP connection pool: it grows when every thread is busy (up to its most), runs every job,
// and joins its threads on shutdown; the listen backlog of a socket is raised in place.
#include "coordinator/api/elastic_task_queue.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <vector>

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

// A listener that never accepts, with a backlog of 1: after RaiseListenBacklog, 64 connects all
// complete at once (with 1, the kernel drops the SYNs past the first few and the clients retry
// a second later).
TEST(ElasticTaskQueueTest, RaiseListenBacklogLetsABurstOfConnectsThrough) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 1), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  EXPECT_EQ(RaiseListenBacklog(port, 4096), 1);
  std::vector<pollfd> clients;
  for (int i = 0; i < 64; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ASSERT_GE(fd, 0);
    connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    clients.push_back({fd, POLLOUT, 0});
  }
  int connected = 0;
  const absl::Time deadline = absl::Now() + absl::Milliseconds(700);
  for (pollfd& c : clients) {
    const int wait_ms = std::max<int>(0, absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (poll(&c, 1, wait_ms) == 1 && (c.revents & POLLOUT)) {
      int err = 0;
      socklen_t err_len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &err_len);
      connected += err == 0;
    }
    close(c.fd);
  }
  close(listener);
  EXPECT_EQ(connected, 64);
  EXPECT_EQ(RaiseListenBacklog(port, 4096), 0);  // nothing listens there now
}

}  // namespace
}  // namespace glm::api
