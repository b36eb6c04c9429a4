// OpenAI's predicted outputs over HTTP: `prediction` reaches the engine as the tokens of its text
// (a string or text parts), usage reports accepted_prediction_tokens and
// rejected_prediction_tokens (whole, streamed, summed over choices), and a malformed prediction
// is a 400 naming the field; gRPC's GenerateRequest.prediction and Usage likewise, and glmctl's
// --prediction (RemoteGenerate / RemoteChat).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "coordinator/api/grpc_client.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

using json = nlohmann::json;

class PredictionApiTest : public ApiTest {
 protected:
  httplib::Result Post(const std::string& path, const json& body) { return PostJson(path, body.dump()); }
};

TEST_F(PredictionApiTest, ThePredictionsTextReachesTheEngineAsTokens) {
  ScriptText("Hello world");
  auto res = Post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                                           {"max_tokens", 20},
                                           {"prediction", {{"type", "content"}, {"content", "Hello there"}}}});
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(engine_->last_request().prediction, Encode("Hello there"));
  // Text parts are joined; no prediction leaves none.
  res = Post("/v1/completions", {{"prompt", "x"},
                                 {"max_tokens", 5},
                                 {"prediction",
                                  {{"type", "content"},
                                   {"content", {{{"type", "text"}, {"text", "def f"}}, {{"type", "text"}, {"text", "(x):"}}}}}}});
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(engine_->last_request().prediction, Encode("def f(x):"));
  res = Post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 5}});
  ASSERT_TRUE(res);
  EXPECT_TRUE(engine_->last_request().prediction.empty());
}

TEST_F(PredictionApiTest, UsageCountsAcceptedAndRejectedPredictionTokens) {
  ScriptText("Hello world");
  const size_t n = Encode("Hello world").size();
  ASSERT_GE(n, 2u);
  // The fake engine counts an output token equal to the prediction's at its place as accepted.
  const json body = {{"prompt", "x"},
                     {"max_tokens", 20},
                     {"prediction", {{"type", "content"}, {"content", "Hello there"}}}};
  auto res = Post("/v1/completions", body);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const json usage = json::parse(res->body)["usage"];
  const std::vector<int32_t> out = Encode("Hello world"), predicted = Encode("Hello there");
  int accepted = 0, rejected = 0;
  for (size_t i = 0; i < predicted.size() && i < out.size(); ++i) ++(out[i] == predicted[i] ? accepted : rejected);
  ASSERT_GT(accepted, 0);
  EXPECT_EQ(usage["completion_tokens_details"]["accepted_prediction_tokens"], accepted) << usage;
  EXPECT_EQ(usage["completion_tokens_details"]["rejected_prediction_tokens"], rejected) << usage;
  // Two choices: summed.
  json two = body;
  two["n"] = 2;
  res = Post("/v1/completions", two);
  ASSERT_TRUE(res);
  EXPECT_EQ(json::parse(res->body)["usage"]["completion_tokens_details"]["accepted_prediction_tokens"], 2 * accepted);
  // Streamed: the usage chunk has them too.
  json streamed = body;
  streamed["stream"] = true;
  streamed["stream_options"] = {{"include_usage", true}};
  res = Post("/v1/completions", streamed);
  ASSERT_TRUE(res);
  json last_usage;
  for (absl::string_view block : absl::StrSplit(res->body, "\n\n", absl::SkipEmpty())) {
    if (block == "data: [DONE]" || !absl::StartsWith(block, "data: ")) continue;
    const json chunk = json::parse(block.substr(6));
    if (chunk.contains("usage") && !chunk["usage"].is_null()) last_usage = chunk["usage"];
  }
  EXPECT_EQ(last_usage["completion_tokens_details"]["accepted_prediction_tokens"], accepted) << res->body;
  // Without a prediction: zeros, as OpenAI reports them.
  res = Post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 20}});
  ASSERT_TRUE(res);
  EXPECT_EQ(json::parse(res->body)["usage"]["completion_tokens_details"]["accepted_prediction_tokens"], 0);
}

TEST_F(PredictionApiTest, MalformedPredictionsAreRefusedNamingTheField) {
  const std::vector<std::pair<json, std::string>> cases = {
      {"text", "prediction"},
      {{{"type", "file"}, {"content", "x"}}, "prediction.type"},
      {{{"type", "content"}}, "prediction.content"},
      {{{"type", "content"}, {"content", 5}}, "prediction.content"},
      {{{"type", "content"}, {"content", {"plain string part"}}}, "prediction.content[0]"},
      {{{"type", "content"}, {"content", {{{"type", "image_url"}, {"image_url", "u"}}}}}, "prediction.content[0]"},
      {{{"type", "content"}, {"content", std::string((1 << 20) + 1, 'a')}}, "prediction.content"},
  };
  for (const auto& [prediction, param] : cases) {
    auto res = Post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 2}, {"prediction", prediction}});
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << prediction.dump().substr(0, 80) << ": " << res->body.substr(0, 300);
    EXPECT_EQ(json::parse(res->body)["error"]["param"], param) << res->body.substr(0, 300);
  }
  // The server keeps serving.
  auto res = Post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 2}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(PredictionApiTest, GrpcTakesAPredictionAndReportsItsTokens) {
  ScriptText("Hello world");
  glm::inference::v1::GenerateRequest r;
  r.set_text("x");
  r.mutable_sampling()->set_max_tokens(20);
  r.set_prediction("Hello there");
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto reader = stub_->Generate(&ctx, r);
  glm::inference::v1::GenerateResponse message, last;
  while (reader->Read(&message)) last = message;
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(engine_->last_request().prediction, Encode("Hello there"));
  EXPECT_GT(last.usage().accepted_prediction_tokens(), 0);
  EXPECT_EQ(last.usage().accepted_prediction_tokens() + last.usage().rejected_prediction_tokens(),
            static_cast<int32_t>(std::min(Encode("Hello there").size(), Encode("Hello world").size() + 1)));
  // Too long: INVALID_ARGUMENT naming the field.
  r.set_prediction(std::string((1 << 20) + 1, 'a'));
  grpc::ClientContext ctx2;
  auto refused = stub_->Generate(&ctx2, r);
  while (refused->Read(&message)) {
  }
  const grpc::Status status = refused->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("prediction"));
}

// glmctl --server generate|chat --prediction: the text travels in the request; --json reports the counts.
TEST_F(PredictionApiTest, GlmctlClientSendsThePredictionAndReportsItsTokens) {
  ScriptText("Hello world");
  api::RemoteGenerateOptions g;
  g.prompt = "x";
  g.max_new_tokens = 20;
  g.prediction = "Hello there";
  g.json = true;
  auto out = api::RemoteGenerate(grpc_address_, g);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(engine_->last_request().prediction, Encode("Hello there"));
  const json j = json::parse(*out);
  EXPECT_GT(j["accepted_prediction_tokens"].get<int>(), 0) << *out;
  api::RemoteChatOptions c;
  c.message = "hi";
  c.max_new_tokens = 20;
  c.prediction = "Hello there";
  c.json = true;
  out = api::RemoteChat(grpc_address_, c);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(engine_->last_request().prediction, Encode("Hello there"));
  EXPECT_GT(json::parse(*out)["usage"]["accepted_prediction_tokens"].get<int>(), 0) << *out;
}

}  // namespace
}  // namespace glm::testing
