// The HTTP listening socket's backlog: cpp-httplib listens with 5, which reset bursts of
// connects; the socket ListenExclusively records takes a longer queue in place.
#include "coordinator/api/exclusive_listen.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace glm::api {
namespace {

// A server bound but never accepting (its accept loop not started): once its socket's backlog is
// raised, 64 connects all complete at once (with 5, the kernel drops the SYNs past the first few
// and the clients retry a second later).
TEST(ExclusiveListenTest, ARaisedBacklogLetsABurstOfConnectsThrough) {
  httplib::Server server;
  auto sock = std::make_shared<int>(-1);
  ListenExclusively(&server, sock);
  const int port = server.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  ASSERT_GE(*sock, 0);
  EXPECT_TRUE(SetListenBacklog(*sock, 4096));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
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
  EXPECT_EQ(connected, 64);
  // Nothing to raise on a socket that is gone.
  const int gone = socket(AF_INET, SOCK_STREAM, 0);
  close(gone);
  EXPECT_FALSE(SetListenBacklog(gone, 4096));
}

}  // namespace
}  // namespace glm::api
