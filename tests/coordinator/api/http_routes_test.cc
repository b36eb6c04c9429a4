// HTTP routing as browsers and clients meet it: CORS (preflights, allow-origin on every reply),
// 405 only for real routes asked with another method, 404 for everything else, and the
// request-id header.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

// Sends `request` on a new connection and returns what it read until `until` arrived, the
// server closed the connection or 15 s passed (the HTTP library answers a POST without a body
// length only once its own 5 s read timeout has passed).
std::string RawExchange(int port, const std::string& request, const std::string& until) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{15, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string got;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    for (ssize_t n; got.find(until) == std::string::npos && (n = recv(fd, buf, sizeof(buf), 0)) > 0;)
      got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return got;
}

class HttpRoutesTest : public ApiTest {
 protected:
  httplib::Result Post(const std::string& path, const json& body) { return PostJson(path, body.dump()); }
};

// Browser clients: a CORS preflight is answered and responses (errors and streams included)
// allow any origin, as vLLM and llama.cpp's server do by default; before, OPTIONS was 404.
TEST_F(HttpRoutesTest, CorsPreflightAndAllowOrigin) {
  httplib::Client client("127.0.0.1", server_->http_port());
  httplib::Headers pre = {{"Origin", "http://example.test"},
                          {"Access-Control-Request-Method", "POST"},
                          {"Access-Control-Request-Headers", "content-type, authorization"}};
  auto opt = client.Options("/v1/chat/completions", pre);
  ASSERT_TRUE(opt);
  EXPECT_EQ(opt->status, 204);
  EXPECT_EQ(opt->get_header_value("Access-Control-Allow-Origin"), "*");
  EXPECT_EQ(opt->get_header_value("Access-Control-Allow-Headers"), "content-type, authorization");
  EXPECT_NE(opt->get_header_value("Access-Control-Allow-Methods").find("POST"), std::string::npos);
  auto ok = Post("/v1/completions", json{{"prompt", {1, 2, 3}}, {"max_tokens", 2}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->get_header_value("Access-Control-Allow-Origin"), "*");
  // The request id the log lines carry, on a whole reply too (it was on streams only).
  EXPECT_EQ(ok->get_header_value("X-Request-Id"), json::parse(ok->body)["id"]) << ok->body;
  auto bad = Post("/v1/completions", json{{"prompt", {1, 2, 3}}, {"max_tokens", -1}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(bad->get_header_value("Access-Control-Allow-Origin"), "*");
  auto stream = Post("/v1/completions", json{{"prompt", {1, 2, 3}}, {"max_tokens", 2}, {"stream", true}});
  ASSERT_TRUE(stream);
  EXPECT_EQ(stream->get_header_value("Access-Control-Allow-Origin"), "*");
  EXPECT_TRUE(absl::StartsWith(stream->get_header_value("X-Request-Id"), "cmpl-"));
}

// A known path with the wrong method is 405 with Allow (it was 404 "no route"); a JSON body sent
// as a form (curl -d without a JSON Content-Type) beyond cpp-httplib's 8 KiB form limit is told so
// (it was told the body exceeded the 64 MiB limit).
TEST_F(HttpRoutesTest, WrongMethodIs405AndAnOversizedFormBodyIsExplained) {
  httplib::Client client("127.0.0.1", server_->http_port());
  auto get = client.Get("/v1/chat/completions");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 405);
  EXPECT_EQ(get->get_header_value("Allow"), "POST, OPTIONS");
  EXPECT_EQ(json::parse(get->body)["error"]["code"], "method_not_allowed");
  auto put = client.Put("/v1/models", "{}", "application/json");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 405);
  auto unknown = client.Get("/v1/nothing");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  // Paths under or next to real routes are no route either (they were 405 allowing the very
  // method used); the exact routes keep their 405.
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"POST", "/v1/messages/xyz"}, {"POST", "/anything/tokenize"}, {"POST", "/v1/foo/detokenize"},
           {"GET", "/v1/modelsfoo"}, {"POST", "/v1/messages/count_tokens/extra"}, {"GET", "/v1/responses/a/b"},
           {"GET", "/v1/models/"}}) {
    auto res = method == "GET" ? client.Get(path) : client.Post(path, "{}", "application/json");
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 404) << method << " " << path;
    EXPECT_EQ(res->get_header_value("Allow"), "") << path;
  }
  for (const auto& [path, allow] : std::vector<std::pair<std::string, std::string>>{
           {"/v1/messages/count_tokens", "POST, OPTIONS"}, {"/v1/detokenize", "POST, OPTIONS"},
           {"/v1/models/some/model", "GET, OPTIONS"}, {"/v1/responses/resp_1", "GET, DELETE, OPTIONS"}}) {
    auto res = client.Put(path, "{}", "application/json");
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 405) << path;
    EXPECT_EQ(res->get_header_value("Allow"), allow) << path;
  }
  const std::string big = json{{"prompt", std::string(9000, 'a')}, {"max_tokens", 1}}.dump();
  auto form = client.Post("/v1/completions", big, "application/x-www-form-urlencoded");
  ASSERT_TRUE(form);
  EXPECT_EQ(form->status, 413);
  EXPECT_THAT(json::parse(form->body)["error"]["message"].get<std::string>(),
              HasSubstr("application/x-www-form-urlencoded is limited to 8 KiB"));
}

// A POST without a body length (curl -X POST with no -d) is refused by the HTTP library; the 400
// says what to send (it said only "HTTP 400"). With a length of 0, /ping answers.
TEST_F(HttpRoutesTest, APostWithoutABodyLengthIsTold) {
  const std::string no_length =
      RawExchange(server_->http_port(), "POST /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "}}");
  EXPECT_THAT(no_length, HasSubstr("HTTP/1.1 400"));
  EXPECT_THAT(no_length, HasSubstr("POST /ping needs a body length: send Content-Length"));
  const std::string empty = RawExchange(
      server_->http_port(), "POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
      "\r\n\r\n");
  EXPECT_THAT(empty, HasSubstr("HTTP/1.1 200"));
}

}  // namespace
}  // namespace glm::testing
