// The HTTP front end and its clients' connections: a client that hangs up (mid-stream, while
// nothing is sent, during a non-streaming request) cancels its generation, and a shutdown ends
// open streams. Raw sockets, so a test controls exactly when the connection closes.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include "nlohmann/json.hpp"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

using json = nlohmann::json;

// A raw connection that sent a streaming request and read up to its first SSE event.
// "Connection: close" keeps an idle keep-alive wait out of the shutdown timing.
int OpenStream(int port, const std::string& body) {
  const std::string request = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                              "Content-Type: application/json\r\n"
                              "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return -1;
  }
  std::string got;
  char buf[4096];
  while (got.find("data: ") == std::string::npos) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      close(fd);
      return -1;
    }
    got.append(buf, static_cast<size_t>(n));
  }
  return fd;
}

const std::string kLongStream =
    json{{"prompt", {1, 2, 3}}, {"max_tokens", 400}, {"ignore_eos", true}, {"stream", true}}.dump();

class HttpConnectionTest : public ApiTest {
 protected:
  // Opens kLongStream (400 tokens, 10 ms each), reads its first event and hangs up; returns the
  // request id whose abort the test waits for ("" when the stream could not be opened).
  std::string OpenLongStreamAndHangUp() {
    engine_->SetTokenDelay(absl::Milliseconds(10));
    const int fd = OpenStream(server_->http_port(), kLongStream);
    EXPECT_GE(fd, 0);
    if (fd < 0) return "";
    close(fd);
    return engine_->last_request().request_id;
  }
};

// More open streams than the pool's base threads (8): the pool grows, so /health still answers at
// once and the streams all run (a fixed pool left health waiting behind the generations, 20 s
// under 120 streams).
TEST_F(HttpConnectionTest, HealthAnswersWhileMoreStreamsThanThreadsRun) {
  server_->Shutdown();
  http_max_threads_ = 64;
  StartServer(/*serving=*/true);
  engine_->SetTokenDelay(absl::Milliseconds(10));
  std::vector<int> streams;
  for (int i = 0; i < 12; ++i) {
    const int fd = OpenStream(server_->http_port(), kLongStream);  // returns once its first event came
    ASSERT_GE(fd, 0) << "stream " << i;
    streams.push_back(fd);
  }
  httplib::Client client("127.0.0.1", server_->http_port());
  client.set_read_timeout(2, 0);
  client.set_connection_timeout(2, 0);
  const absl::Time start = absl::Now();
  auto health = client.Get("/health");
  ASSERT_TRUE(health) << "no answer while 12 streams hold 12 threads";
  EXPECT_EQ(health->status, 200);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  for (int fd : streams) close(fd);
}

// The client hangs up after the first event: the server must abort the generation (400 tokens
// at 10 ms would otherwise run for 4 s).
TEST_F(HttpConnectionTest, ClientDisconnectMidStreamAborts) {
  EXPECT_TRUE(engine_->WaitForAbort(OpenLongStreamAndHangUp(), absl::Seconds(3)));
}

// The client hangs up while the server has nothing to write (here: the tokens after the first
// are held by --stream-interval; in production also a long prefill or a queued request). The
// stream's keep-alive comments find the closed connection within seconds; before, the
// generation ran to its end (4 s) for nobody.
TEST_F(HttpConnectionTest, ClientDisconnectWhileNothingIsSentAborts) {
  scheduler::StreamInterval hold;
  hold.tokens = 1000;
  hold.max_delay = absl::Seconds(30);
  RestartWithStreamInterval(hold);
  EXPECT_TRUE(engine_->WaitForAbort(OpenLongStreamAndHangUp(), absl::Milliseconds(3500)));
}

TEST_F(HttpConnectionTest, ClientDisconnectAbortsEveryChoice) {
  engine_->SetTokenDelay(absl::Milliseconds(10));
  const size_t before = engine_->requests().size();
  int fd = OpenStream(server_->http_port(),
                      json{{"prompt", {1, 2, 3}}, {"max_tokens", 400}, {"ignore_eos", true}, {"stream", true}, {"n", 3}}.dump());
  ASSERT_GE(fd, 0);
  close(fd);
  const auto requests = engine_->requests();
  ASSERT_EQ(requests.size(), before + 3);
  for (size_t i = before; i < requests.size(); ++i)
    EXPECT_TRUE(engine_->WaitForAbort(requests[i].request_id, absl::Seconds(3))) << requests[i].request_id;
}

// A non-streaming request whose client hangs up (an agent harness timing out, say) is aborted:
// the server watches the connection while it waits; before, the generation ran to its end for
// nobody, and a retrying client multiplied it.
TEST_F(HttpConnectionTest, ClientDisconnectAbortsANonStreamingRequest) {
  engine_->SetTokenDelay(absl::Milliseconds(10));
  const size_t before = engine_->requests().size();
  const std::string body = json{{"prompt", {1, 2, 3}}, {"max_tokens", 400}, {"ignore_eos", true}}.dump();
  const std::string request = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                              "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server_->http_port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  for (int i = 0; i < 300 && engine_->requests().size() == before; ++i) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_EQ(engine_->requests().size(), before + 1);
  close(fd);
  EXPECT_TRUE(engine_->WaitForAbort(engine_->last_request().request_id, absl::Seconds(2)));
}

// A non-streaming client that stays connected gets its whole answer (the connection watch does
// not mistake a quiet client for a gone one).
TEST_F(HttpConnectionTest, NonStreamingRequestOfAConnectedClientCompletes) {
  engine_->SetTokenDelay(absl::Milliseconds(5));
  auto r = PostJson("/v1/completions", json{{"prompt", {1, 2, 3}}, {"max_tokens", 40}, {"ignore_eos", true}}.dump());
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["usage"]["completion_tokens"], 40);
}

TEST_F(HttpConnectionTest, ShutdownEndsOpenStreams) {
  engine_->SetTokenDelay(absl::Milliseconds(10));
  int fd = OpenStream(server_->http_port(), kLongStream);
  ASSERT_GE(fd, 0);
  const absl::Time start = absl::Now();
  server_->Shutdown();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_TRUE(engine_->WaitForAbort(engine_->last_request().request_id, absl::Seconds(5)));
  // The stream ends (error event, [DONE], then the connection closes) instead of hanging.
  std::string rest;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) rest.append(buf, static_cast<size_t>(n));
  close(fd);
  EXPECT_EQ(n, 0);
}

}  // namespace
}  // namespace glm::testing

namespace glm::testing {
namespace {

// gRPC and cpp-httplib listen with SO_REUSEPORT by default, so a second server on the same ports
// bound "successfully" and took half the connections. Now it is refused, and the first serves on.
TEST_F(HttpConnectionTest, ASecondServerOnTheSamePortsIsRefused) {
  api::ApiOptions http_only;
  http_only.grpc_listen = "";
  http_only.http_listen = "127.0.0.1:" + std::to_string(server_->http_port());
  auto second = api::ApiServer::Start(http_only, engine_.get(), &model_);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), ::testing::HasSubstr("cannot bind HTTP"));

  api::ApiOptions grpc_only;
  grpc_only.http_listen = "";
  grpc_only.grpc_listen = grpc_address_;
  auto third = api::ApiServer::Start(grpc_only, engine_.get(), &model_);
  ASSERT_FALSE(third.ok());
  EXPECT_THAT(std::string(third.status().message()), ::testing::HasSubstr("cannot listen for gRPC"));

  httplib::Client client("127.0.0.1", server_->http_port());
  auto health = client.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  grpc::ClientContext ctx;
  glm::inference::v1::ModelInfo info;
  EXPECT_TRUE(stub_->GetModelInfo(&ctx, glm::inference::v1::ModelInfoRequest(), &info).ok());
}

}  // namespace
}  // namespace glm::testing
