// The chat template sees request JSON in the client's key order on every entry point (OpenAI chat,
// /tokenize, Responses, Anthropic messages, gRPC Generate and Tokenize), as transformers'
// apply_chat_template does with the client's dicts: tools and their parameter schemas, tool-call
// arguments given as objects, Anthropic tool_use inputs and input_schemas, extra message fields.
// nlohmann::json sorts object keys, and every object used to reach the template sorted.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

namespace pb = glm::inference::v1;
using json = nlohmann::json;
using ::testing::HasSubstr;

// Prints the tools, each message's role, the first tool call's arguments (a dict for both the
// object and the text form) and a message's extra `meta` field, each in the order it holds them.
constexpr char kOrderTemplate[] =
    "{{ tools | tojson }}"
    "{% for m in messages %}|{{ m.role }}"
    "{% if m.tool_calls %} args:{% for k, v in m.tool_calls[0].function.arguments.items() %}{{ k }}={{ v }};"
    "{% endfor %}{% endif %}"
    "{% if m.meta is defined %} meta:{{ m.meta | tojson }}{% endif %}{% endfor %}";

// A tool as OpenAI clients send it, keys deliberately not in alphabetical order.
constexpr char kTools[] = R"([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
    "properties": {"unit": {"type": "string"}, "city": {"type": "string"}}, "required": ["city"]},
    "description": "Weather now"}}])";
constexpr char kToolsRendered[] =
    R"([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", )"
    R"("properties": {"unit": {"type": "string"}, "city": {"type": "string"}}, "required": ["city"]}, )"
    R"("description": "Weather now"}}])";
// The same tool translated from Anthropic's or the Responses API's spelling: name, description,
// parameters (vLLM's order), the schema as the client wrote it.
constexpr char kTranslatedToolsRendered[] =
    R"([{"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": )"
    R"({"type": "object", "properties": {"unit": {"type": "string"}, "city": {"type": "string"}}, )"
    R"("required": ["city"]}}}])";
constexpr char kMessages[] = R"([
    {"role": "user", "content": "Weather?", "meta": {"zeta": 1, "alpha": 2}},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function",
      "function": {"name": "get_weather", "arguments": {"zeta": "Oslo", "alpha": "C"}}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"}])";
constexpr char kMessagesRendered[] =
    "|user meta:{\"zeta\": 1, \"alpha\": 2}|assistant args:zeta=Oslo;alpha=C;|tool";

class ChatKeyOrderTest : public ApiTest {
 protected:
  void SetUp() override {
    ApiTest::SetUp();
    auto tmpl = tokenizer::ChatTemplate::FromString(kOrderTemplate);
    ASSERT_TRUE(tmpl.ok()) << tmpl.status();
    order_template_ = *std::move(tmpl);
    model_.chat_template = order_template_.get();  // the server reads model_ per request
    ScriptText("ok");
  }

  std::string Decode(const std::vector<int32_t>& ids) const {
    auto text = tokenizer_->Decode(ids, /*skip_special_tokens=*/false);
    EXPECT_TRUE(text.ok()) << text.status();
    return text.ok() ? *text : "";
  }
  // The text of the prompt the engine was last given, after a POST of `body` to `path`.
  std::string PromptAfter(const std::string& path, const std::string& body) {
    auto res = PostJson(path, body);
    EXPECT_TRUE(res);
    if (!res) return "";
    EXPECT_EQ(res->status, 200) << res->body;
    return Decode(engine_->last_request().prompt);
  }

  std::unique_ptr<tokenizer::ChatTemplate> order_template_;
};

TEST_F(ChatKeyOrderTest, OpenAiChatAndTokenizeKeepTheClientsOrder) {
  const std::string body = std::string(R"({"model": "glm5-tiny-code", "messages": )") + kMessages +
                           R"(, "tools": )" + kTools + R"(, "temperature": 0})";
  EXPECT_EQ(PromptAfter("/v1/chat/completions", body), std::string(kToolsRendered) + kMessagesRendered);

  auto res = PostJson("/tokenize", std::string(R"({"messages": )") + kMessages + R"(, "tools": )" + kTools + "}");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(Decode(json::parse(res->body)["tokens"].get<std::vector<int32_t>>()),
            std::string(kToolsRendered) + kMessagesRendered);
}

// Arguments sent back as text (what OpenAI clients do) were in order already; they stay so.
TEST_F(ChatKeyOrderTest, ArgumentsAsTextKeepTheirOrder) {
  const std::string body = R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "",
      "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"b\": 1, \"a\": 2}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "x"}]})";
  EXPECT_THAT(PromptAfter("/v1/chat/completions", body), HasSubstr("assistant args:b=1;a=2;"));
}

TEST_F(ChatKeyOrderTest, AnthropicToolUseInputAndInputSchemaKeepTheClientsOrder) {
  const std::string body = R"({"model": "m", "max_tokens": 8, "messages": [
      {"role": "user", "content": "Weather?"},
      {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather",
                                         "input": {"zeta": "Oslo", "alpha": "C"}}]},
      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]}],
    "tools": [{"name": "get_weather", "input_schema": {"type": "object",
      "properties": {"unit": {"type": "string"}, "city": {"type": "string"}}, "required": ["city"]},
      "description": "Weather now"}]})";
  EXPECT_EQ(PromptAfter("/v1/messages", body),
            std::string(kTranslatedToolsRendered) + "|user|assistant args:zeta=Oslo;alpha=C;|tool");
}

TEST_F(ChatKeyOrderTest, ResponsesToolParametersKeepTheClientsOrder) {
  const std::string body = R"({"input": "Weather?", "store": false, "tools": [{"type": "function",
      "name": "get_weather", "parameters": {"type": "object", "properties": {"unit": {"type": "string"},
      "city": {"type": "string"}}, "required": ["city"]}, "description": "Weather now"}]})";
  EXPECT_EQ(PromptAfter("/v1/responses", body), std::string(kTranslatedToolsRendered) + "|user");
}

TEST_F(ChatKeyOrderTest, GrpcChatKeepsTheClientsOrder) {
  pb::GenerateRequest request;
  pb::ChatInput* chat = request.mutable_chat();
  chat->set_tools_json(kTools);
  for (const char* role : {"user", "assistant"}) {
    pb::ChatMessage* m = chat->add_messages();
    m->set_role(role);
  }
  chat->mutable_messages(1)->set_tool_calls_json(
      R"([{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"zeta": "Oslo", "alpha": "C"}}}])");
  const std::string expected = std::string(kToolsRendered) + "|user|assistant args:zeta=Oslo;alpha=C;";
  request.mutable_sampling()->set_max_tokens(4);
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto reader = stub_->Generate(&ctx, request);
    pb::GenerateResponse response;
    while (reader->Read(&response)) {
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(Decode(engine_->last_request().prompt), expected);
  }
  grpc::ClientContext ctx;
  pb::TokenizeRequest tokenize;
  *tokenize.mutable_chat() = *chat;
  pb::TokenizeResponse ids;
  ASSERT_TRUE(stub_->Tokenize(&ctx, tokenize, &ids).ok());
  EXPECT_EQ(Decode(std::vector<int32_t>(ids.ids().begin(), ids.ids().end())), expected);
}

}  // namespace
}  // namespace glm::testing
