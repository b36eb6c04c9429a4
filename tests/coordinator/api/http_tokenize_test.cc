// The HTTP front end's tokenizer endpoints (vLLM's /tokenize and /detokenize) and OpenAI's
// model retrieval, against a FakeEngine with the bundled tokenizer and a real HTTP client.

#include <httplib.h>

#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

class HttpTokenizeTest : public ApiTest {
 protected:
  // The response's status and body (parsed).
  std::pair<int, json> Post(const std::string& path, const json& body) {
    auto res = PostJson(path, body.dump());
    EXPECT_TRUE(res);
    if (!res) return {0, json()};
    return {res->status, json::parse(res->body, nullptr, false)};
  }
  std::pair<int, json> Get(const std::string& path) {
    httplib::Client client("127.0.0.1", server_->http_port());
    client.set_read_timeout(10, 0);
    auto res = client.Get(path.c_str());
    EXPECT_TRUE(res);
    if (!res) return {0, json()};
    return {res->status, json::parse(res->body, nullptr, false)};
  }
};

TEST_F(HttpTokenizeTest, TokenizeTextMatchesTheTokenizerAndDetokenizeInvertsIt) {
  const std::string text = "def add(a, b):\n    return a + b\n";
  auto [status, j] = Post("/tokenize", {{"model", "anything"}, {"prompt", text}, {"add_special_tokens", false}});
  ASSERT_EQ(status, 200) << j;
  const std::vector<int32_t> expected = Encode(text);
  ASSERT_FALSE(expected.empty());
  EXPECT_EQ(j["tokens"].get<std::vector<int32_t>>(), expected);
  EXPECT_EQ(j["count"], expected.size());
  EXPECT_EQ(j["max_model_len"], 4096);
  EXPECT_TRUE(j["token_strs"].is_null());

  auto [dstatus, d] = Post("/detokenize", {{"tokens", expected}});
  ASSERT_EQ(dstatus, 200) << d;
  EXPECT_EQ(d["prompt"], text);
}

TEST_F(HttpTokenizeTest, TextPromptGetsSpecialTokensByDefaultAsCompletionsDo) {
  // The default is what /v1/completions does with the same text, so a count taken here is the
  // usage.prompt_tokens the completion will report.
  auto [status, j] = Post("/v1/tokenize", {{"prompt", "hello"}});
  ASSERT_EQ(status, 200) << j;
  auto with = tokenizer_->Encode("hello", /*add_special_tokens=*/true);
  ASSERT_TRUE(with.ok());
  EXPECT_EQ(j["tokens"].get<std::vector<int32_t>>(), *with);

  ScriptText("x");
  auto res = PostJson("/v1/completions", json{{"prompt", "hello"}, {"max_tokens", 1}}.dump());
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(engine_->requests().back().prompt, *with);
}

TEST_F(HttpTokenizeTest, MessagesCountEqualsTheChatRequestsPrompt) {
  const json messages = {{{"role", "system"}, {"content", "You write Python."}},
                         {{"role", "user"}, {"content", "Sort a list."}}};
  const json tools = {{{"type", "function"},
                       {"function", {{"name", "run"}, {"parameters", {{"type", "object"}}}}}}};
  auto [status, j] = Post("/tokenize", {{"messages", messages}, {"tools", tools}, {"return_token_strs", true}});
  ASSERT_EQ(status, 200) << j;

  ScriptText("ok");
  auto res = PostJson("/v1/chat/completions", json{{"messages", messages}, {"tools", tools}, {"max_tokens", 1}}.dump());
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const std::vector<int32_t> chat_prompt = engine_->requests().back().prompt;
  EXPECT_EQ(j["tokens"].get<std::vector<int32_t>>(), chat_prompt);
  EXPECT_EQ(json::parse(res->body)["usage"]["prompt_tokens"], j["count"]);
  // token_strs: one string per token, each the token's own text.
  ASSERT_EQ(j["token_strs"].size(), chat_prompt.size());
  std::string joined;
  for (const auto& s : j["token_strs"]) joined += s.get<std::string>();
  auto decoded = tokenizer_->Decode(chat_prompt, /*skip_special_tokens=*/false);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(joined, *decoded);

  // Without the generation prompt the rendering (and so the count) is shorter.
  auto [s2, j2] = Post("/tokenize", {{"messages", messages}, {"add_generation_prompt", false}});
  ASSERT_EQ(s2, 200) << j2;
  EXPECT_LT(j2["count"].get<int64_t>(), j["count"].get<int64_t>());
}

TEST_F(HttpTokenizeTest, APromptLongerThanTheContextIsStillCounted) {
  std::string text;
  for (int i = 0; i < 1500; ++i) text += "x = 1\n";
  auto [status, j] = Post("/tokenize", {{"prompt", text}});
  ASSERT_EQ(status, 200) << j;
  EXPECT_GT(j["count"].get<int64_t>(), j["max_model_len"].get<int64_t>());
}

TEST_F(HttpTokenizeTest, BadRequestsNameTheField) {
  struct Case {
    const char* path;
    json body;
    int status;
    const char* param;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"/tokenize", json::object(), 400, "prompt", "is required"},
      {"/tokenize", {{"prompt", 5}}, 400, "prompt", "must be a string"},
      {"/tokenize", {{"prompt", "a"}, {"messages", {{{"role", "user"}, {"content", "b"}}}}}, 400, "prompt", "not both"},
      {"/tokenize", {{"prompt", "a"}, {"add_special_tokens", "yes"}}, 400, "add_special_tokens", "true or false"},
      {"/tokenize", {{"messages", json::array()}}, 400, "messages", "non-empty"},
      {"/tokenize", {{"prompt", "a"}, {"model", 3}}, 400, "model", "must be a string"},
      {"/tokenize", json::array({1, 2}), 400, "body", "JSON object"},
      {"/detokenize", json::object(), 400, "tokens", "is required"},
      {"/detokenize", {{"tokens", "abc"}}, 400, "tokens", "array"},
      {"/detokenize", {{"tokens", {1, 4096}}}, 400, "tokens[1]", "out of range"},
      {"/detokenize", {{"tokens", {-1}}}, 400, "tokens[0]", "out of range"},
      // Past INT64_MAX: named as sent (it was read wrapped, "-1 is out of range").
      {"/detokenize", {{"tokens", {18446744073709551615ull}}}, 400, "tokens[0]", "18446744073709551615 is out of range"},
      {"/detokenize", {{"tokens", {1.5}}}, 400, "tokens[0]", "integer"},
  };
  for (const Case& c : cases) {
    auto [status, j] = Post(c.path, c.body);
    EXPECT_EQ(status, c.status) << c.path << " " << c.body;
    EXPECT_EQ(j["error"]["param"], c.param) << c.path << " " << c.body << " -> " << j;
    EXPECT_THAT(j["error"]["message"].get<std::string>(), HasSubstr(c.message)) << j;
  }
  auto res = PostJson("/tokenize", "{not json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_THAT(res->body, HasSubstr("not valid JSON"));
  // GET on a POST-only path is 405 with Allow.
  httplib::Client client("127.0.0.1", server_->http_port());
  auto get = client.Get("/tokenize");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 405);
  EXPECT_EQ(get->get_header_value("Allow"), "POST, OPTIONS");
  // And the server still serves.
  auto [ok, j] = Post("/tokenize", {{"prompt", "still here"}});
  EXPECT_EQ(ok, 200) << j;
}

TEST_F(HttpTokenizeTest, StrictModelNamesApplyToTokenizerEndpointsToo) {
  model_.accept_any_name = false;
  auto [status, j] = Post("/tokenize", {{"model", "other"}, {"prompt", "a"}});
  EXPECT_EQ(status, 404) << j;
  EXPECT_EQ(j["error"]["code"], "model_not_found");
  auto [alias_status, alias] = Post("/detokenize", {{"model", "glm-tiny"}, {"tokens", {1, 2}}});
  EXPECT_EQ(alias_status, 200) << alias;
}

TEST_F(HttpTokenizeTest, RetrieveModel) {
  const int64_t before = absl::ToUnixSeconds(absl::Now());
  auto [status, j] = Get("/v1/models/glm5-tiny-code");
  ASSERT_EQ(status, 200) << j;
  EXPECT_EQ(j["id"], "glm5-tiny-code");
  EXPECT_EQ(j["object"], "model");
  EXPECT_EQ(j["max_model_len"], 4096);
  // "created" is when the server started (Unix seconds), as in the list.
  EXPECT_GT(j["created"].get<int64_t>(), before - 3600);
  EXPECT_LE(j["created"].get<int64_t>(), before + 1);
  auto [list_status, list] = Get("/v1/models");
  ASSERT_EQ(list_status, 200);
  EXPECT_EQ(list["data"][0]["created"], j["created"]);
  // Anthropic's model-list shape rides along: type, display_name, an RFC 3339 created_at, and
  // the page fields.
  EXPECT_EQ(j["type"], "model");
  EXPECT_EQ(j["display_name"], "glm5-tiny-code");
  EXPECT_EQ(j["created_at"].get<std::string>().size(), 20u) << j;
  EXPECT_EQ(j["created_at"].get<std::string>().back(), 'Z');
  EXPECT_EQ(list["has_more"], false);
  EXPECT_EQ(list["first_id"], "glm5-tiny-code");
  EXPECT_EQ(list["last_id"], "glm-tiny");

  // Lenient names (the default): any name, echoed with the served model as its root. A name
  // with a slash (Hugging Face style) works too.
  auto [any_status, any] = Get("/v1/models/zai-org/GLM-5");
  ASSERT_EQ(any_status, 200) << any;
  EXPECT_EQ(any["id"], "zai-org/GLM-5");
  EXPECT_EQ(any["root"], "glm5-tiny-code");

  model_.accept_any_name = false;
  auto [alias_status, alias] = Get("/v1/models/glm-tiny");
  EXPECT_EQ(alias_status, 200) << alias;
  auto [missing_status, missing] = Get("/v1/models/other");
  EXPECT_EQ(missing_status, 404);
  EXPECT_EQ(missing["error"]["code"], "model_not_found");
}

}  // namespace
}  // namespace glm::testing
