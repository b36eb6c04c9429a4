// What both front ends refuse or normalize before a request reaches the engine: JSON nested
// deep enough to overflow the stack, mistyped tools, chat roles and content the template would
// drop or print as a Python repr, bad tool_choice / response_format, numbers outside
// the float range. Every refusal names the field, and the server keeps serving afterwards.
#include <string>

#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "coordinator/api/json_depth.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

namespace pb = glm::inference::v1;
using json = nlohmann::json;
using ::testing::HasSubstr;

// `levels` nested arrays: "[[[...]]]" (built as text: dump() of such a value would recurse).
std::string NestedArrays(size_t levels) { return std::string(levels, '[') + std::string(levels, ']'); }
// `levels` nested objects {"x":{"x":...{}}}.
std::string NestedObjects(size_t levels) {
  std::string s;
  for (size_t i = 1; i < levels; ++i) s += "{\"x\":";
  s += "{}";
  return s + std::string(levels - 1, '}');
}

constexpr size_t kMillion = 1000000;

class RequestValidationTest : public ApiTest {
 protected:
  httplib::Result PostRaw(const std::string& path, const std::string& body) {
    httplib::Client client("127.0.0.1", server_->http_port());
    client.set_read_timeout(30, 0);
    client.set_write_timeout(30, 0);
    return client.Post(path.c_str(), body, "application/json");
  }
  httplib::Result Post(const std::string& path, const json& body) { return PostRaw(path, body.dump()); }
  static json ChatBody(json messages) { return {{"messages", std::move(messages)}, {"temperature", 0}}; }
  static json UserChat() { return ChatBody({{{"role", "user"}, {"content", "hi"}}}); }
  static json WeatherTool() {
    return json::parse(R"({"type":"function","function":{"name":"get_weather","description":"the weather",
        "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}})");
  }

  // A 400 in OpenAI's error shape whose param is `param`; returns the message.
  std::string ExpectRejected(const std::string& path, const std::string& body, const std::string& param) {
    auto res = PostRaw(path, body);
    EXPECT_TRUE(res) << "no response (did the server die?) for param " << param;
    if (!res) return "";
    EXPECT_EQ(res->status, 400) << res->body;
    json j = json::parse(res->body, nullptr, false);
    EXPECT_TRUE(j.is_object() && j.contains("error")) << res->body;
    if (!j.is_object() || !j.contains("error")) return "";
    const json& e = j["error"];
    EXPECT_EQ(e["param"], param) << res->body;
    EXPECT_EQ(e["type"], "invalid_request_error");
    EXPECT_TRUE(e.contains("code"));
    EXPECT_THAT(e["message"].get<std::string>(), HasSubstr(param));
    return e["message"].get<std::string>();
  }
  std::string ExpectRejected(const json& body, const std::string& param) {
    return ExpectRejected("/v1/chat/completions", body.dump(), param);
  }
  // The server still answers a plain chat request.
  void ExpectServing() {
    ScriptText("ok");
    auto res = Post("/v1/chat/completions", UserChat());
    ASSERT_TRUE(res) << "the server stopped answering";
    EXPECT_EQ(res->status, 200) << res->body;
  }
  // The prompt the engine got for a chat request rendered from `messages` by the template.
  std::vector<int32_t> Rendered(const json& messages, const json& tools = nullptr) {
    auto text = chat_template_->Render(messages, tools, true);
    EXPECT_TRUE(text.ok()) << text.status();
    return text.ok() ? Encode(*text) : std::vector<int32_t>{};
  }

  grpc::Status GrpcGenerate(const pb::GenerateRequest& r) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto reader = stub_->Generate(&ctx, r);
    pb::GenerateResponse resp;
    while (reader->Read(&resp)) {
    }
    return reader->Finish();
  }
  grpc::Status GrpcTokenize(const pb::ChatInput& chat) {
    grpc::ClientContext ctx;
    pb::TokenizeRequest r;
    *r.mutable_chat() = chat;
    pb::TokenizeResponse resp;
    return stub_->Tokenize(&ctx, r, &resp);
  }
  static pb::ChatInput UserChatInput() {
    pb::ChatInput chat;
    pb::ChatMessage* m = chat.add_messages();
    m->set_role("user");
    m->set_content("hi");
    return chat;
  }
  // Both chat RPCs refuse `chat` with INVALID_ARGUMENT naming `field`.
  void ExpectGrpcRejected(const pb::ChatInput& chat, const std::string& field) {
    pb::GenerateRequest r;
    *r.mutable_chat() = chat;
    grpc::Status g = GrpcGenerate(r);
    EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field << ": " << g.error_message();
    EXPECT_THAT(g.error_message(), HasSubstr(field + ":"));
    grpc::Status t = GrpcTokenize(chat);
    EXPECT_EQ(t.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field << ": " << t.error_message();
    EXPECT_THAT(t.error_message(), HasSubstr(field + ":"));
  }
};

// nlohmann parses and destroys without recursion; the depth check must not recurse either.
TEST(JsonDepthTest, MillionLevelsParseMeasureAndDestroyWithoutRecursion) {
  for (const std::string& text : {NestedArrays(kMillion), NestedObjects(kMillion)}) {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(j.is_discarded());
    EXPECT_EQ(api::JsonDepth(j), api::kMaxJsonDepth + 1);
    EXPECT_EQ(api::JsonDepth(j, static_cast<int>(2 * kMillion)), static_cast<int>(kMillion));
    EXPECT_FALSE(api::CheckJsonDepth(j, "f").ok());
  }  // destroyed here
  EXPECT_EQ(api::JsonDepth(json::parse(NestedArrays(64))), 64);
  EXPECT_TRUE(api::CheckJsonDepth(json::parse(NestedArrays(64)), "f").ok());
  EXPECT_EQ(api::JsonDepth(json::parse("[1,{\"a\":[2,[]]},\"s\"]")), 4);
  EXPECT_EQ(api::JsonDepth(json(5)), 0);
}

// A ~2 MB body of a million nested arrays killed the coordinator (the copy of "messages" and the
// template's dump() recurse per level).
TEST_F(RequestValidationTest, DeeplyNestedBodiesAreRefusedWithoutCrashing) {
  const std::string deep = NestedArrays(kMillion);
  std::string msg = ExpectRejected("/v1/chat/completions", "{\"messages\":" + deep + "}", "messages");
  EXPECT_THAT(msg, HasSubstr("64 levels"));
  ExpectRejected("/v1/chat/completions",
                 R"({"messages":[{"role":"user","content":"hi"}],"tools":)" + deep + "}", "tools");
  ExpectRejected("/v1/chat/completions",
                 R"({"messages":[{"role":"user","content":"hi"}],"chat_template_kwargs":)" + NestedObjects(kMillion) +
                     "}",
                 "chat_template_kwargs");
  ExpectRejected("/v1/completions", "{\"prompt\":" + deep + "}", "prompt");
  ExpectRejected("/v1/completions", deep, "body");
  // The limit counts the body: 63 levels of kwargs under it are fine, 64 are not.
  ScriptText("ok");
  auto ok = PostRaw("/v1/chat/completions",
                    R"({"messages":[{"role":"user","content":"hi"}],"chat_template_kwargs":)" + NestedObjects(63) + "}");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  ExpectRejected("/v1/chat/completions",
                 R"({"messages":[{"role":"user","content":"hi"}],"chat_template_kwargs":)" + NestedObjects(64) + "}",
                 "chat_template_kwargs");
  ExpectServing();
}

TEST_F(RequestValidationTest, GrpcDeeplyNestedJsonFieldsAreRefused) {
  const std::string deep = NestedArrays(kMillion);
  pb::ChatInput chat = UserChatInput();
  chat.set_tools_json(deep);
  ExpectGrpcRejected(chat, "chat.tools_json");
  chat = UserChatInput();
  chat.set_template_kwargs_json(NestedObjects(kMillion));
  ExpectGrpcRejected(chat, "chat.template_kwargs_json");
  chat = UserChatInput();
  chat.mutable_messages(0)->set_role("assistant");
  chat.mutable_messages(0)->set_tool_calls_json(deep);
  ExpectGrpcRejected(chat, "chat.messages[0].tool_calls_json");
  // Still serving.
  pb::GenerateRequest r;
  *r.mutable_chat() = UserChatInput();
  EXPECT_TRUE(GrpcGenerate(r).ok());
}

// A tool whose name is not a string made the tool-call parser throw once the model called a
// tool (HTTP 500 / std::terminate when streaming / gRPC UNKNOWN); now refused up front.
TEST_F(RequestValidationTest, MalformedToolsAreRefusedUpFront) {
  ScriptText("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n</tool_call>");
  json body = UserChat();
  body["tools"] = json::array({json::parse(R"({"type":"function","function":{"name":null}})"), WeatherTool()});
  EXPECT_THAT(ExpectRejected(body, "tools[0].function.name"), HasSubstr("non-empty string"));
  body["stream"] = true;
  ExpectRejected(body, "tools[0].function.name");
  body.erase("stream");
  // Even when tool_choice "none" hides them from the model.
  body["tool_choice"] = "none";
  ExpectRejected(body, "tools[0].function.name");
  body.erase("tool_choice");

  struct Case {
    const char* tool;
    const char* param;
  };
  for (const Case& c : std::initializer_list<Case>{
           {R"("get_weather")", "tools[1]"},
           {R"({"type":"retrieval","function":{"name":"f"}})", "tools[1].type"},
           {R"({"type":5,"function":{"name":"f"}})", "tools[1].type"},
           {R"({"type":"function"})", "tools[1].function"},
           {R"({"type":"function","function":"f"})", "tools[1].function"},
           {R"({"type":"function","function":{"name":""}})", "tools[1].function.name"},
           {R"({"function":{"name":7}})", "tools[1].function.name"},
           {R"({"function":{"name":"f","parameters":"x"}})", "tools[1].function.parameters"},
           {R"({"function":{"name":"f","description":5}})", "tools[1].function.description"},
       }) {
    body["tools"] = json::array({WeatherTool(), json::parse(c.tool)});
    ExpectRejected(body, c.param);
  }
  body["tools"] = "get_weather";
  ExpectRejected(body, "tools");
  EXPECT_TRUE(engine_->requests().empty());

  // Valid tools (type left out, null description) still work.
  body["tools"] = json::array({WeatherTool(), json::parse(R"({"function":{"name":"f","description":null}})")});
  auto res = Post("/v1/chat/completions", body);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body)["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_weather");

  pb::ChatInput chat = UserChatInput();
  chat.set_tools_json(R"([{"type":"function","function":{"name":null}}])");
  ExpectGrpcRejected(chat, "chat.tools_json[0].function.name");
  chat.set_tools_json(R"({"name":"f"})");
  ExpectGrpcRejected(chat, "chat.tools_json");
}

// vLLM's chat extensions: continue_final_message renders as add_generation_prompt: false after
// an assistant message; add_special_tokens is taken; the ones that would be ignored are refused
// (return_token_ids / return_tokens_as_token_ids: response_extras_api_test.cc).
TEST_F(RequestValidationTest, VllmChatExtensionsAreHonouredOrRefused) {
  ScriptText("ok");
  const json messages = {{{"role", "user"}, {"content", "write f"}}, {{"role", "assistant"}, {"content", "def f("}}};
  json prefill = ChatBody(messages);
  prefill["add_generation_prompt"] = false;
  ASSERT_EQ(Post("/v1/chat/completions", prefill)->status, 200);
  const std::vector<int32_t> continued = engine_->last_request().prompt;
  json body = ChatBody(messages);
  body["continue_final_message"] = true;
  auto res = Post("/v1/chat/completions", body);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(engine_->last_request().prompt, continued);
  body["add_special_tokens"] = true;
  EXPECT_EQ(Post("/v1/chat/completions", body)->status, 200);
  const std::vector<std::pair<json, std::string>> bad = {
      {{{"continue_final_message", true}, {"add_generation_prompt", true}}, "continue_final_message"},
      {{{"chat_template", "{{ messages }}"}}, "chat_template"},
      {{{"echo", true}}, "echo"},
      {{{"return_token_ids", 1}}, "return_token_ids"},
  };
  for (const auto& [fields, param] : bad) {
    json b = ChatBody(messages);
    b.update(fields);
    res = Post("/v1/chat/completions", b);
    ASSERT_EQ(res->status, 400) << b.dump();
    EXPECT_EQ(json::parse(res->body)["error"]["param"], param) << res->body;
  }
  for (const json& role : {json("user"), json(7), json::array()}) {  // a role of no string was a 500
    json last = ChatBody({{{"role", "user"}, {"content", "hi"}}, {{"role", role}, {"content", "x"}}});
    last["continue_final_message"] = true;
    res = Post("/v1/chat/completions", last);
    ASSERT_EQ(res->status, 400) << role.dump() << " -> " << res->body;
    EXPECT_EQ(json::parse(res->body)["error"]["param"], "continue_final_message") << res->body;
  }
}

TEST_F(RequestValidationTest, ChatRolesAndContentAreNormalizedOrRefused) {
  ScriptText("ok");
  // "developer" is OpenAI's newer name for "system" (the template dropped it).
  auto res = Post("/v1/chat/completions",
                  ChatBody({{{"role", "developer"}, {"content", "be brief"}}, {{"role", "user"}, {"content", "hi"}}}));
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(engine_->last_request().prompt,
            Rendered({{{"role", "system"}, {"content", "be brief"}}, {{"role", "user"}, {"content", "hi"}}}));

  // This server's own tool-call reply sent back: content null is "" (it rendered as "None").
  json call_reply = {{"role", "assistant"},
                     {"content", nullptr},
                     {"tool_calls", json::parse(R"([{"id":"call_0","type":"function",
                         "function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}])")}};
  json messages = {{{"role", "user"}, {"content", "weather?"}}, call_reply,
                   {{"role", "tool"}, {"tool_call_id", "call_0"}, {"content", "sunny"}}};
  res = Post("/v1/chat/completions", ChatBody(messages));
  ASSERT_EQ(res->status, 200) << res->body;
  json expected = messages;
  expected[1]["content"] = "";
  EXPECT_EQ(engine_->last_request().prompt, Rendered(expected));

  // Text parts are joined (they rendered as a Python list repr).
  res = Post("/v1/chat/completions",
             ChatBody({{{"role", "user"},
                        {"content", json::parse(R"([{"type":"text","text":"first"},{"type":"text","text":"second"}])")}}}));
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(engine_->last_request().prompt, Rendered({{{"role", "user"}, {"content", "first\nsecond"}}}));

  EXPECT_THAT(ExpectRejected(ChatBody({{{"role", "user"}, {"content", "a"}}, {{"role", "robot"}, {"content", "b"}}}),
                             "messages[1].role"),
              HasSubstr("'robot'"));
  ExpectRejected(ChatBody({{{"content", "a"}}}), "messages[0].role");
  ExpectRejected(ChatBody({{{"role", "user"}, {"content", 5}}}), "messages[0].content");
  EXPECT_THAT(ExpectRejected(ChatBody({{{"role", "user"},
                                        {"content", json::parse(R"([{"type":"text","text":"look"},
                                            {"type":"image_url","image_url":{"url":"http://x/y.png"}}])")}}}),
                             "messages[0].content[1].type"),
              HasSubstr("'image_url' is not supported by this model"));
  ExpectRejected(ChatBody({{{"role", "user"}, {"content", json::parse(R"(["text"])")}}}), "messages[0].content[0]");
  ExpectRejected(ChatBody({{{"role", "user"}, {"content", json::parse(R"([{"type":"text","text":5}])")}}}),
                 "messages[0].content[0].text");
  ExpectRejected(ChatBody({{{"role", "assistant"}, {"content", "x"}, {"tool_calls", "f"}}}),
                 "messages[0].tool_calls");

  // gRPC chat follows the same rules.
  pb::ChatInput chat;
  pb::ChatMessage* m = chat.add_messages();
  m->set_role("developer");
  m->set_content("be brief");
  m = chat.add_messages();
  m->set_role("user");
  m->set_content("hi");
  pb::GenerateRequest r;
  *r.mutable_chat() = chat;
  ASSERT_TRUE(GrpcGenerate(r).ok());
  EXPECT_EQ(engine_->last_request().prompt,
            Rendered({{{"role", "system"}, {"content", "be brief"}}, {{"role", "user"}, {"content", "hi"}}}));
  chat.mutable_messages(1)->set_role("robot");
  ExpectGrpcRejected(chat, "chat.messages[1].role");
}

TEST_F(RequestValidationTest, ToolChoiceAndResponseFormat) {
  ScriptText("ok");
  json body = UserChat();
  body["tools"] = json::array({WeatherTool()});
  for (const char* choice : {"auto", "none"}) {
    body["tool_choice"] = choice;
    auto res = Post("/v1/chat/completions", body);
    EXPECT_EQ(res->status, 200) << choice << ": " << res->body;
  }
  // Forced calls are honoured by constrained decoding (structured_output_api_test); a name that
  // is not among the tools, or a forced call without tools, is refused.
  body["tool_choice"] = "required";
  EXPECT_EQ(Post("/v1/chat/completions", body)->status, 200);
  body["tool_choice"] = json::parse(R"({"type":"function","function":{"name":"get_time"}})");
  EXPECT_THAT(ExpectRejected(body, "tool_choice"), HasSubstr("not among the tools"));
  body["tool_choice"] = json::parse(R"({"type":"function"})");
  ExpectRejected(body, "tool_choice.function.name");
  body["tool_choice"] = "sometimes";
  ExpectRejected(body, "tool_choice");
  body["tool_choice"] = 1;
  ExpectRejected(body, "tool_choice");
  body.erase("tool_choice");

  body["response_format"] = {{"type", "text"}};
  EXPECT_EQ(Post("/v1/chat/completions", body)->status, 200);
  // A constrained reply is the JSON value, never a tool call.
  body["response_format"] = {{"type", "json_object"}};
  EXPECT_THAT(ExpectRejected(body, "response_format"), HasSubstr("cannot be combined with tools"));
  body["response_format"] = json::parse(R"({"type":"json_schema","json_schema":{"name":"x"}})");
  ExpectRejected(body, "response_format.json_schema.schema");
  body["response_format"] = json::parse(R"({"type":"json_schema"})");
  ExpectRejected(body, "response_format.json_schema");
  body["response_format"] = {{"type", "yaml"}};
  ExpectRejected(body, "response_format.type");
  body["response_format"] = json::object();
  ExpectRejected(body, "response_format.type");
  body["response_format"] = "json";
  ExpectRejected(body, "response_format");
  ExpectServing();
}

TEST_F(RequestValidationTest, NumbersOutsideTheFloatRangeAndStreamOptions) {
  json body = UserChat();
  body["temperature"] = 1e39;
  EXPECT_THAT(ExpectRejected(body, "temperature"), HasSubstr("is out of range"));
  body = UserChat();
  body["top_p"] = -1e300;
  EXPECT_THAT(ExpectRejected(body, "top_p"), HasSubstr("is out of range"));
  // Integers past INT64_MAX are named as sent, not wrapped to -1 ("must be >= 1").
  body = UserChat();
  body["max_tokens"] = 18446744073709551615ull;
  EXPECT_THAT(ExpectRejected(body, "max_tokens"), HasSubstr("18446744073709551615 is too large"));
  EXPECT_THAT(ExpectRejected("/v1/completions", R"({"prompt":[1,18446744073709551615]})", "prompt[1]"),
              HasSubstr("18446744073709551615 is out of range"));
  body = UserChat();
  body["logit_bias"] = {{"5", 1e39}};
  EXPECT_THAT(ExpectRejected(body, "logit_bias[\"5\"]"), HasSubstr("is out of range"));
  // In range still goes through the range checks of its own.
  body = UserChat();
  body["top_p"] = 3e38;
  EXPECT_THAT(ExpectRejected(body, "top_p"), HasSubstr("must be in (0, 1]"));
  body = UserChat();
  body["temperature"] = -2;
  EXPECT_THAT(ExpectRejected(body, "temperature"), HasSubstr("must be >= 0"));

  // stream_options without stream: true (vLLM refuses it too).
  body = UserChat();
  body["stream_options"] = {{"include_usage", true}};
  EXPECT_THAT(ExpectRejected(body, "stream_options"), HasSubstr("stream"));
  body["stream"] = false;
  ExpectRejected(body, "stream_options");
  ExpectRejected("/v1/completions", R"({"prompt":"x","stream_options":{"include_usage":true}})", "stream_options");

  // Stop strings, searched after every token, are bounded like bad_words (they were not).
  body = UserChat();
  body["stop"] = json::array();
  for (int i = 0; i < 1025; ++i) body["stop"].push_back(absl::StrCat("s", i));
  EXPECT_THAT(ExpectRejected(body, "stop"), HasSubstr("has 1025 strings; at most 1024"));
  body["stop"] = {"ok", std::string(4097, 'x')};
  EXPECT_THAT(ExpectRejected(body, "stop[1]"), HasSubstr("is 4097 bytes; at most 4096"));
  ExpectServing();
}

TEST_F(RequestValidationTest, OversizedBodyGetsAnOpenAiError) {
  const std::string big(65u << 20, ' ');
  auto res = PostRaw("/v1/completions", big);
  ASSERT_TRUE(res) << res.error();
  EXPECT_EQ(res->status, 413);
  json e = json::parse(res->body, nullptr, false);
  ASSERT_TRUE(e.is_object() && e.contains("error")) << res->body;
  EXPECT_EQ(e["error"]["param"], "body");
  EXPECT_EQ(e["error"]["code"], "request_too_large");
  EXPECT_THAT(e["error"]["message"].get<std::string>(), HasSubstr("64 MiB"));
  ExpectServing();
}

}  // namespace
}  // namespace glm::testing
