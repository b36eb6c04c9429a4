// API keys (--api-key): the matching rules, and a server with keys over HTTP (OpenAI and
// Anthropic header styles and error shapes), gRPC metadata and glmctl's remote client; health,
// metrics and CORS preflights stay open.

#include <httplib.h>

#include "coordinator/api/api_keys.h"
#include "coordinator/api/grpc_client.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

namespace pb = glm::inference::v1;
using json = nlohmann::json;
using ::testing::HasSubstr;

TEST(ApiKeysTest, MatchingRules) {
  const api::ApiKeys none;
  EXPECT_FALSE(none.enabled());
  EXPECT_TRUE(none.Accepts("", ""));
  const api::ApiKeys dropped({"", ""});
  EXPECT_FALSE(dropped.enabled());

  const api::ApiKeys keys({"sk-one", "sk-two"});
  EXPECT_TRUE(keys.enabled());
  EXPECT_TRUE(keys.Accepts("Bearer sk-one", ""));
  EXPECT_TRUE(keys.Accepts("bearer sk-two", ""));
  EXPECT_TRUE(keys.Accepts("  BEARER   sk-one  ", ""));
  EXPECT_TRUE(keys.Accepts("", "sk-two"));
  EXPECT_TRUE(keys.Accepts("Bearer wrong", "sk-one"));  // either header may carry it
  for (const char* bad : {"", "sk-one", "Bearer", "Bearer ", "Bearer sk-on", "Bearer sk-one1", "Basic sk-one",
                          "Bearer SK-ONE", "Bearer sk-one sk-two"})
    EXPECT_FALSE(keys.Accepts(bad, "")) << bad;
  for (const char* bad : {"sk-on", "sk-one1", "Bearer sk-one", "SK-TWO"}) EXPECT_FALSE(keys.Accepts("", bad)) << bad;
  // Which key: the stored responses' owner.
  EXPECT_EQ(keys.Holder("Bearer sk-one", ""), "key0");
  EXPECT_EQ(keys.Holder("", "sk-two"), "key1");
  EXPECT_EQ(keys.Holder("Bearer wrong", "sk-two"), "key1");
  EXPECT_EQ(keys.Holder("Bearer wrong", ""), "");
  EXPECT_EQ(none.Holder("Bearer sk-one", ""), "");
}

class ApiKeysServerTest : public ApiTest {
 protected:
  void SetUp() override {
    api_keys_ = {"sk-test", "sk-other"};
    ApiTest::SetUp();
  }
  httplib::Result Send(const std::string& method, const std::string& path, const httplib::Headers& headers,
                       const std::string& body = "") {
    httplib::Client client("127.0.0.1", server_->http_port());
    client.set_read_timeout(10, 0);
    if (method == "GET") return client.Get(path.c_str(), headers);
    if (method == "OPTIONS") return client.Options(path.c_str(), headers);
    if (method == "DELETE") return client.Delete(path.c_str(), headers);
    return client.Post(path.c_str(), headers, body, "application/json");
  }
};

TEST_F(ApiKeysServerTest, HttpNeedsAKeyInEitherHeaderExceptForProbes) {
  ScriptText("ok");
  const std::string chat = json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 2}}.dump();
  const std::string messages = json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 2}}.dump();

  // No key, or a wrong one: 401 in the called API's shape, nothing reaches the engine.
  const size_t before = engine_->requests().size();
  for (const httplib::Headers& h : {httplib::Headers{}, httplib::Headers{{"Authorization", "Bearer nope"}}}) {
    auto res = Send("POST", "/v1/chat/completions", h, chat);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401);
    EXPECT_EQ(res->get_header_value("WWW-Authenticate"), "Bearer");
    // Once: a doubled allow-origin header makes browsers drop the 401 for a CORS error.
    EXPECT_EQ(res->get_header_value_count("Access-Control-Allow-Origin"), 1u);
    EXPECT_EQ(json::parse(res->body)["error"]["code"], "invalid_api_key") << res->body;
    auto anthropic = Send("POST", "/v1/messages", h, messages);
    ASSERT_TRUE(anthropic);
    EXPECT_EQ(anthropic->status, 401);
    EXPECT_EQ(json::parse(anthropic->body)["error"]["type"], "authentication_error") << anthropic->body;
    for (const char* path : {"/v1/models", "/v1/models/x"}) {
      auto get = Send("GET", path, h);
      ASSERT_TRUE(get);
      EXPECT_EQ(get->status, 401) << path;
    }
    for (const char* path : {"/v1/completions", "/v1/responses", "/tokenize", "/v1/messages/count_tokens"}) {
      auto post = Send("POST", path, h, "{}");
      ASSERT_TRUE(post);
      EXPECT_EQ(post->status, 401) << path;
    }
  }
  EXPECT_EQ(engine_->requests().size(), before);

  // The OpenAI SDKs' header, and the Anthropic SDKs'.
  auto openai = Send("POST", "/v1/chat/completions", {{"Authorization", "Bearer sk-test"}}, chat);
  ASSERT_TRUE(openai);
  EXPECT_EQ(openai->status, 200) << openai->body;
  auto anthropic = Send("POST", "/v1/messages", {{"x-api-key", "sk-test"}, {"anthropic-version", "2023-06-01"}}, messages);
  ASSERT_TRUE(anthropic);
  EXPECT_EQ(anthropic->status, 200) << anthropic->body;

  // Probes, scrapers and browsers' preflights carry no key.
  for (const char* path : {"/health", "/metrics"}) {
    auto get = Send("GET", path, {});
    ASSERT_TRUE(get);
    EXPECT_EQ(get->status, 200) << path;
  }
  auto preflight = Send("OPTIONS", "/v1/chat/completions", {{"Origin", "http://ui"}, {"Access-Control-Request-Method", "POST"}});
  ASSERT_TRUE(preflight);
  EXPECT_EQ(preflight->status, 204);
}

// A stored response belongs to the key that made it: another key can neither read, continue
// nor delete it (it reads as absent), the same key through either header can.
TEST_F(ApiKeysServerTest, StoredResponsesBelongToTheirKey) {
  ScriptText("ok");
  auto made = Send("POST", "/v1/responses", {{"Authorization", "Bearer sk-test"}}, R"({"input":"hi"})");
  ASSERT_TRUE(made && made->status == 200) << (made ? made->body : "");
  const std::string id = json::parse(made->body)["id"];
  const std::string path = "/v1/responses/" + id;
  const httplib::Headers other = {{"Authorization", "Bearer sk-other"}};
  EXPECT_EQ(Send("GET", path, other)->status, 404);
  EXPECT_EQ(Send("DELETE", path, other)->status, 404);
  const std::string cont = json{{"previous_response_id", id}, {"input", "more"}}.dump();
  EXPECT_EQ(Send("POST", "/v1/responses", other, cont)->status, 400);
  EXPECT_EQ(Send("GET", path, {{"x-api-key", "sk-test"}})->status, 200);
  EXPECT_EQ(Send("POST", "/v1/responses", {{"Authorization", "Bearer sk-test"}}, cont)->status, 200);
  EXPECT_EQ(Send("DELETE", path, {{"Authorization", "Bearer sk-test"}})->status, 200);
  EXPECT_EQ(Send("GET", path, {{"Authorization", "Bearer sk-test"}})->status, 404);
}

TEST_F(ApiKeysServerTest, GrpcNeedsTheKeyInMetadataHealthDoesNot) {
  {
    grpc::ClientContext ctx;
    pb::ModelInfo info;
    const grpc::Status s = stub_->GetModelInfo(&ctx, pb::ModelInfoRequest(), &info);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_THAT(s.error_message(), HasSubstr("API key"));
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer sk-test");
    pb::ModelInfo info;
    EXPECT_TRUE(stub_->GetModelInfo(&ctx, pb::ModelInfoRequest(), &info).ok());
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("x-api-key", "sk-test");
    pb::TokenizeRequest req;
    req.set_text("hi");
    pb::TokenizeResponse res;
    EXPECT_TRUE(stub_->Tokenize(&ctx, req, &res).ok());
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer wrong");
    auto reader = stub_->Generate(&ctx, pb::GenerateRequest());
    pb::GenerateResponse r;
    while (reader->Read(&r)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  // glmctl --server: health (open) then GetModelInfo, with and without --api-key.
  auto health = api::RemoteHealthServing(grpc_address_, "", absl::Seconds(5));
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_TRUE(*health);
  api::RemoteInfoOptions info;
  EXPECT_EQ(api::RemoteInfo(grpc_address_, info).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(api::RemoteExpertLoad(grpc_address_, info).status().code(), absl::StatusCode::kUnauthenticated);
  info.api_key = "sk-test";
  EXPECT_TRUE(api::RemoteInfo(grpc_address_, info).ok());
  EXPECT_TRUE(api::RemoteExpertLoad(grpc_address_, info).ok());
  ScriptText("hello");
  api::RemoteGenerateOptions gen;
  gen.prompt = "x";
  gen.max_new_tokens = 2;
  gen.api_key = "sk-test";
  EXPECT_TRUE(api::RemoteGenerate(grpc_address_, gen).ok());
}

}  // namespace
}  // namespace glm::testing
