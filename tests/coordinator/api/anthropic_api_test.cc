// Anthropic's Messages API on the HTTP front end, against a FakeEngine with the bundled tokenizer
// and chat template and a real HTTP client: request translation (compared with the equivalent
// OpenAI chat request, token for token), response and event shapes, stop reasons, tool use,
// count_tokens, errors, and a client hanging up.

#include <httplib.h>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "coordinator/api/anthropic_protocol.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

constexpr char kWeatherCall[] =
    "<think>need weather</think><tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n"
    "</tool_call>";

class AnthropicApiTest : public ApiTest {
 protected:
  httplib::Result Post(const std::string& path, const json& body) { return PostJson(path, body.dump()); }
  // A non-streaming call that must succeed: the message object.
  json Message(const json& body) {
    auto res = Post("/v1/messages", body);
    EXPECT_TRUE(res);
    if (!res) return json();
    EXPECT_EQ(res->status, 200) << res->body;
    return json::parse(res->body, nullptr, false);
  }
  // A streaming call: its events as (name, data) in order.
  std::vector<std::pair<std::string, json>> Events(json body) {
    body["stream"] = true;
    auto res = Post("/v1/messages", body);
    std::vector<std::pair<std::string, json>> events;
    EXPECT_TRUE(res);
    if (!res) return events;
    EXPECT_EQ(res->status, 200) << res->body;
    EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
    for (absl::string_view block : absl::StrSplit(res->body, "\n\n", absl::SkipEmpty())) {
      if (absl::StartsWith(block, ":")) continue;  // keep-alive comment
      std::vector<std::string> lines = absl::StrSplit(block, '\n');
      EXPECT_EQ(lines.size(), 2u) << block;
      if (lines.size() != 2) continue;
      EXPECT_TRUE(absl::StartsWith(lines[0], "event: ")) << block;
      EXPECT_TRUE(absl::StartsWith(lines[1], "data: ")) << block;
      json data = json::parse(lines[1].substr(6), nullptr, false);
      EXPECT_EQ(data["type"], lines[0].substr(7)) << block;
      events.emplace_back(lines[0].substr(7), std::move(data));
    }
    return events;
  }
  // The prompt the engine got for the last request.
  std::vector<int32_t> LastPrompt() { return engine_->requests().back().prompt; }
  std::vector<int32_t> OpenAiChatPrompt(const json& body) {
    ScriptText("x");
    auto res = Post("/v1/chat/completions", body);
    EXPECT_TRUE(res && res->status == 200) << (res ? res->body : "");
    return LastPrompt();
  }
  // The message a stream describes, rebuilt as the Anthropic SDKs accumulate it.
  static json Accumulate(const std::vector<std::pair<std::string, json>>& events) {
    json message;
    std::vector<std::string> partial_json;
    for (const auto& [name, e] : events) {
      if (name == "message_start") {
        message = e["message"];
      } else if (name == "content_block_start") {
        EXPECT_EQ(e["index"], message["content"].size());
        message["content"].push_back(e["content_block"]);
        partial_json.emplace_back();
      } else if (name == "content_block_delta") {
        json& block = message["content"][e["index"].get<size_t>()];
        const json& d = e["delta"];
        if (d["type"] == "text_delta") block["text"] = block["text"].get<std::string>() + d["text"].get<std::string>();
        if (d["type"] == "thinking_delta")
          block["thinking"] = block["thinking"].get<std::string>() + d["thinking"].get<std::string>();
        if (d["type"] == "input_json_delta") partial_json[e["index"].get<size_t>()] += d["partial_json"].get<std::string>();
      } else if (name == "content_block_stop") {
        const size_t i = e["index"].get<size_t>();
        if (message["content"][i]["type"] == "tool_use") message["content"][i]["input"] = json::parse(partial_json[i]);
      } else if (name == "message_delta") {
        message["stop_reason"] = e["delta"]["stop_reason"];
        message["stop_sequence"] = e["delta"]["stop_sequence"];
        message["usage"]["output_tokens"] = e["usage"]["output_tokens"];
      }
    }
    return message;
  }
  static json WeatherTools() {
    return json::parse(R"([{"name":"get_weather","description":"Weather now",
                           "input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}])");
  }
};

TEST_F(AnthropicApiTest, TextMessageShapeUsageAndSameInputAsTheOpenAiChat) {
  ScriptText("Hello there!");
  json body = {{"model", "claude-sonnet-4-5"},
               {"max_tokens", 64},
               {"system", "Be brief."},
               {"metadata", {{"user_id", "u1"}}},
               {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  // This server's per-request `speculative`, as on chat completions (it was ignored).
  json speculative = body;
  speculative["speculative"] = "none";
  Message(speculative);
  EXPECT_EQ(engine_->requests().back().speculative, "none");
  speculative["speculative"] = "bogus";
  auto refused = Post("/v1/messages", speculative);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400) << refused->body;
  EXPECT_NE(refused->body.find("speculative"), std::string::npos) << refused->body;
  ScriptText("Hello there!");
  json m = Message(body);
  EXPECT_TRUE(absl::StartsWith(m["id"].get<std::string>(), "msg_")) << m;  // Anthropic's form
  EXPECT_EQ(m["type"], "message");
  EXPECT_EQ(m["role"], "assistant");
  EXPECT_EQ(m["model"], "claude-sonnet-4-5");
  EXPECT_EQ(m["content"], json::parse(R"([{"type":"text","text":"Hello there!"}])"));
  EXPECT_EQ(m["stop_reason"], "end_turn");
  EXPECT_TRUE(m["stop_sequence"].is_null());
  const std::vector<int32_t> prompt = LastPrompt();
  EXPECT_EQ(m["usage"]["input_tokens"], prompt.size());
  EXPECT_EQ(m["usage"]["cache_read_input_tokens"], 0);
  EXPECT_GT(m["usage"]["output_tokens"].get<int>(), 0);

  // The same conversation through /v1/chat/completions reads the same tokens.
  EXPECT_EQ(OpenAiChatPrompt({{"messages", {{{"role", "system"}, {"content", "Be brief."}},
                                            {{"role", "user"}, {"content", "hi"}}}}}),
            prompt);
  // count_tokens counts exactly those.
  auto count = Post("/v1/messages/count_tokens", {{"model", "x"}, {"system", "Be brief."}, {"messages", body["messages"]}});
  ASSERT_TRUE(count);
  ASSERT_EQ(count->status, 200) << count->body;
  EXPECT_EQ(json::parse(count->body), json({{"input_tokens", prompt.size()}}));
}

TEST_F(AnthropicApiTest, ToolTurnsTranslateToTheChatTemplatesInput) {
  // An agent transcript: text blocks, an assistant's thinking and tool_use, the user's
  // tool_result (one an error) followed by text, and a system prompt given as blocks.
  json body = json::parse(R"({
    "max_tokens": 16,
    "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Use tools.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
      {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo and Bergen?"}]},
      {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "two calls", "signature": "abc"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Bergen"}}]},
      {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "no data"}], "is_error": true},
        {"type": "text", "text": "And tomorrow?"}]}
    ]})");
  body["tools"] = WeatherTools();
  ScriptText("ok");
  Message(body);
  const std::vector<int32_t> prompt = LastPrompt();

  json openai = json::parse(R"({"messages": [
      {"role": "system", "content": "You are terse.\nUse tools."},
      {"role": "user", "content": "Weather in Oslo and Bergen?"},
      {"role": "assistant", "content": "Checking.", "reasoning_content": "two calls", "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
        {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Bergen\"}"}}]},
      {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
      {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no data"},
      {"role": "user", "content": "And tomorrow?"}]})");
  openai["tools"] = json::parse(R"([{"type":"function","function":{"name":"get_weather","description":"Weather now",
                                    "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])");
  EXPECT_EQ(OpenAiChatPrompt(openai), prompt);
  // The translation itself, field by field (the bundled template prints only roles and content;
  // GLM-5's own renders the tool calls and reasoning too).
  auto parsed = api::ParseAnthropicRequest(body, "served");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(json(parsed->api.messages), openai["messages"]);
  EXPECT_EQ(json(parsed->api.tools), openai["tools"]);
  EXPECT_EQ(parsed->api.max_tokens, 16);
  EXPECT_EQ(parsed->model, "served");
}

TEST_F(AnthropicApiTest, ToolUseResponseWholeAndStreamed) {
  ScriptText(kWeatherCall);
  json body = {{"max_tokens", 64}, {"tools", WeatherTools()},
               {"messages", {{{"role", "user"}, {"content", "weather in Oslo?"}}}}};
  json m = Message(body);
  ASSERT_EQ(m["content"].size(), 2u) << m;
  EXPECT_EQ(m["content"][0], json({{"type", "thinking"}, {"thinking", "need weather"}, {"signature", ""}}));
  const json& use = m["content"][1];
  EXPECT_EQ(use["type"], "tool_use");
  EXPECT_TRUE(absl::StartsWith(use["id"].get<std::string>(), "toolu_")) << use;
  EXPECT_EQ(use["name"], "get_weather");
  EXPECT_EQ(use["input"], json({{"city", "Oslo"}}));
  EXPECT_EQ(m["stop_reason"], "tool_use");

  const auto events = Events(body);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.front().first, "message_start");
  EXPECT_EQ(events[1].first, "ping");
  EXPECT_EQ(events[events.size() - 2].first, "message_delta");
  EXPECT_EQ(events.back().first, "message_stop");
  json streamed = Accumulate(events);
  // Same message, but for the per-request ids.
  ASSERT_EQ(streamed["content"].size(), 2u) << streamed;
  streamed["content"][1]["id"] = use["id"];
  streamed["id"] = m["id"];
  EXPECT_EQ(streamed, m);
}

TEST_F(AnthropicApiTest, StreamedTextBlocksAndUsage) {
  ScriptText("one two three four");
  const auto events = Events({{"max_tokens", 64}, {"messages", {{{"role", "user"}, {"content", "count"}}}}});
  json m = Accumulate(events);
  EXPECT_EQ(m["content"], json::parse(R"([{"type":"text","text":"one two three four"}])"));
  EXPECT_EQ(m["stop_reason"], "end_turn");
  EXPECT_EQ(m["usage"]["input_tokens"], LastPrompt().size());
  // Every block opened is closed, before the message ends.
  int open = 0;
  for (const auto& [name, e] : events) {
    if (name == "content_block_start") ++open;
    if (name == "content_block_stop") --open;
    if (name == "message_delta") {
      EXPECT_EQ(open, 0);
    }
  }
}

TEST_F(AnthropicApiTest, StopSequenceAndMaxTokensStopReasons) {
  ScriptText("abc STOP def");
  json m = Message({{"max_tokens", 64}, {"stop_sequences", {"NEVER", "STOP"}},
                    {"messages", {{{"role", "user"}, {"content", "go"}}}}});
  EXPECT_EQ(m["stop_reason"], "stop_sequence");
  EXPECT_EQ(m["stop_sequence"], "STOP");
  EXPECT_EQ(m["content"][0]["text"], "abc ");

  ScriptText("a long answer that goes on and on and on");
  json cut = Message({{"max_tokens", 2}, {"messages", {{{"role", "user"}, {"content", "go"}}}}});
  EXPECT_EQ(cut["stop_reason"], "max_tokens");
  EXPECT_EQ(cut["usage"]["output_tokens"], 2);
}

// A conversation ending with an assistant message continues it (Anthropic's prefill): the prompt
// is the chat template's rendering without a new assistant turn.
TEST_F(AnthropicApiTest, LastAssistantMessageIsAPrefill) {
  const json messages = {{{"role", "user"}, {"content", "Write a sort function."}},
                         {{"role", "assistant"}, {"content", "def sort_list(xs):"}}};
  ScriptText("\n    return sorted(xs)");
  json m = Message({{"max_tokens", 16}, {"messages", messages}});
  EXPECT_EQ(m["content"][0]["text"], "\n    return sorted(xs)") << m;
  const std::vector<int32_t> prompt = LastPrompt();
  EXPECT_EQ(OpenAiChatPrompt({{"messages", messages}, {"add_generation_prompt", false}}), prompt);
  EXPECT_NE(OpenAiChatPrompt({{"messages", messages}}), prompt);
  // The OpenAI chat without a generation prompt continues the message the same way (vLLM's
  // continue_final_message): the reply's leading newline is content there too.
  ScriptText("\n    return sorted(xs)");
  auto res = Post("/v1/chat/completions", {{"messages", messages}, {"add_generation_prompt", false}});
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body)["choices"][0]["message"]["content"], "\n    return sorted(xs)");
}

// GLM chat templates switch reasoning with the enable_thinking kwarg; Anthropic's `thinking`
// sets it (and leaves it to the template's default when absent).
TEST_F(AnthropicApiTest, ThinkingSwitchIsTheTemplatesEnableThinking) {
  json body = {{"max_tokens", 8}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  auto plain = api::ParseAnthropicRequest(body, "m");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->api.template_kwargs.contains("enable_thinking"));
  for (const bool enabled : {true, false}) {
    body["thinking"] = {{"type", enabled ? "enabled" : "disabled"}, {"budget_tokens", 1024}};
    auto parsed = api::ParseAnthropicRequest(body, "m");
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->api.template_kwargs["enable_thinking"], enabled);
    ScriptText("x");
    auto res = Post("/v1/messages", body);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
  }
}

TEST_F(AnthropicApiTest, ErrorsInAnthropicShapeNameTheField) {
  struct Case {
    json body;
    const char* message;
  };
  const json user = {{{"role", "user"}, {"content", "hi"}}};
  const std::vector<Case> cases = {
      {{{"messages", user}}, "max_tokens"},
      {{{"max_tokens", 0}, {"messages", user}}, "max_tokens"},
      {{{"max_tokens", 8}, {"messages", json::array()}}, "messages"},
      {{{"max_tokens", 8}, {"messages", {{{"role", "system"}, {"content", "x"}}}}}, "messages[0].role"},
      {{{"max_tokens", 8},
        {"messages", {{{"role", "user"}, {"content", {{{"type", "image"}, {"source", json::object()}}}}}}}},
       "messages[0].content[0].type: 'image' is not supported"},
      {{{"max_tokens", 8}, {"messages", {{{"role", "user"}, {"content", {{{"type", "tool_use"}}}}}}}},
       "messages[0].content[0].type"},
      {{{"max_tokens", 8}, {"messages", {{{"role", "user"}, {"content", {{{"type", "tool_result"}}}}}}}},
       "messages[0].content[0].tool_use_id"},
      {{{"max_tokens", 8}, {"messages", user}, {"tools", {{{"type", "web_search_20250305"}, {"name", "web_search"}}}}},
       "tools[0].type"},
      {{{"max_tokens", 8}, {"messages", user}, {"tools", {{{"name", "f"}}}}}, "tools[0].input_schema"},
      {{{"max_tokens", 8}, {"messages", user}, {"tool_choice", {{"type", "any"}}}}, "tool_choice: forces a tool call, but there are no tools"},
      {{{"max_tokens", 8}, {"messages", user}, {"tool_choice", {{"type", "sometimes"}}}}, "tool_choice.type"},
      // Only empty content: nothing to answer (this crashed the server: messages.back() of none).
      {{{"max_tokens", 8}, {"messages", {{{"role", "user"}, {"content", json::array()}}}}}, "messages: have no content"},
      {{{"max_tokens", 8}, {"messages", user}, {"stop_sequences", {""}}}, "stop_sequences[0]"},
      {{{"max_tokens", 8}, {"messages", user}, {"temperature", "hot"}}, "temperature"},
      {{{"max_tokens", 8}, {"messages", user}, {"thinking", {{"type", "maybe"}}}}, "thinking.type"},
  };
  for (const Case& c : cases) {
    auto res = Post("/v1/messages", c.body);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << c.body << " -> " << res->body;
    json j = json::parse(res->body, nullptr, false);
    EXPECT_EQ(j["type"], "error") << res->body;
    EXPECT_EQ(j["error"]["type"], "invalid_request_error") << res->body;
    EXPECT_THAT(j["error"]["message"].get<std::string>(), HasSubstr(c.message)) << res->body;
  }
  auto bad_json = PostJson("/v1/messages", "{");
  ASSERT_TRUE(bad_json);
  EXPECT_EQ(bad_json->status, 400);
  EXPECT_EQ(json::parse(bad_json->body)["error"]["type"], "invalid_request_error");

  // A prompt over the context: "prompt is too long" (what Anthropic clients compact on).
  std::string text;
  for (int i = 0; i < 1500; ++i) text += "x = 1\n";
  auto long_res = Post("/v1/messages", {{"max_tokens", 8}, {"messages", {{{"role", "user"}, {"content", text}}}}});
  ASSERT_TRUE(long_res);
  EXPECT_EQ(long_res->status, 400);
  EXPECT_THAT(json::parse(long_res->body)["error"]["message"].get<std::string>(),
              ::testing::MatchesRegex("prompt is too long: [0-9]+ tokens > 4095 maximum"));
  // Prompt + max_tokens over the context: Anthropic's wording with the numbers, which Claude Code
  // reads to retry with a smaller max_tokens.
  auto over = Post("/v1/messages", {{"max_tokens", 5000}, {"messages", user}});
  ASSERT_TRUE(over);
  EXPECT_EQ(over->status, 400);
  auto count = Post("/v1/messages/count_tokens", {{"messages", user}});
  ASSERT_TRUE(count);
  const int64_t input = json::parse(count->body)["input_tokens"].get<int64_t>();
  EXPECT_EQ(json::parse(over->body)["error"]["message"],
            "input length and `max_tokens` exceed context limit: " + std::to_string(input) +
                " + 5000 > 4096, decrease input length or `max_tokens` and try again");

  // Strict names: 404 not_found_error.
  model_.accept_any_name = false;
  auto missing = Post("/v1/messages", {{"model", "other"}, {"max_tokens", 8}, {"messages", user}});
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(json::parse(missing->body)["error"]["type"], "not_found_error");
  model_.accept_any_name = true;

  // A full queue: 429 with Retry-After; draining: 529 overloaded_error.
  engine_->SetMaxLive(0);
  auto full = Post("/v1/messages", {{"max_tokens", 8}, {"messages", user}});
  ASSERT_TRUE(full);
  EXPECT_EQ(full->status, 429) << full->body;
  EXPECT_EQ(json::parse(full->body)["error"]["type"], "rate_limit_error");
  EXPECT_EQ(full->get_header_value("Retry-After"), "1");
  engine_->SetMaxLive(64);
  engine_->SetDraining(true);
  auto draining = Post("/v1/messages", {{"max_tokens", 8}, {"messages", user}});
  ASSERT_TRUE(draining);
  EXPECT_EQ(draining->status, 529) << draining->body;
  EXPECT_EQ(json::parse(draining->body)["error"]["type"], "overloaded_error");
  engine_->SetDraining(false);

  // Another method or an unknown path under /v1/messages: Anthropic's shape too (it was OpenAI's).
  httplib::Client client("127.0.0.1", server_->http_port());
  auto get = client.Get("/v1/messages");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 405);
  EXPECT_EQ(json::parse(get->body)["type"], "error") << get->body;
  EXPECT_EQ(json::parse(get->body)["error"]["type"], "invalid_request_error");
  auto unknown = client.Post("/v1/messages/batches", "{}", "application/json");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(json::parse(unknown->body)["type"], "error") << unknown->body;

  // And the server still serves.
  ScriptText("fine");
  EXPECT_EQ(Message({{"max_tokens", 8}, {"messages", user}})["content"][0]["text"], "fine");
}

TEST_F(AnthropicApiTest, ClientHangingUpMidStreamAbortsTheGeneration) {
  engine_->SetTokenDelay(absl::Milliseconds(10));
  engine_->SetScript([](const scheduler::GenerationRequest&) { return std::vector<int32_t>(400, 100); });
  httplib::Client client("127.0.0.1", server_->http_port());
  client.set_read_timeout(10, 0);
  const json body = {{"max_tokens", 400}, {"stream", true}, {"messages", {{{"role", "user"}, {"content", "go"}}}}};
  std::string got;
  httplib::Request request;
  request.method = "POST";
  request.path = "/v1/messages";
  request.set_header("Content-Type", "application/json");
  request.body = body.dump();
  request.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    got.append(data, n);
    return got.find("content_block_delta") == std::string::npos;  // hang up after the first delta
  };
  httplib::Response response;
  httplib::Error error = httplib::Error::Success;
  client.send(request, response, error);
  EXPECT_THAT(got, HasSubstr("message_start"));
  EXPECT_TRUE(engine_->WaitForAbort(engine_->last_request().request_id, absl::Seconds(3)));
}

}  // namespace
}  // namespace glm::testing
