// OpenAI's Responses API on the HTTP front end, against a FakeEngine with the bundled tokenizer and
// chat template and a real HTTP client: input items translated to the chat path's messages
// (compared with the equivalent chat request, token for token), output items, the typed event
// stream, incomplete replies and errors.

#include <httplib.h>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "coordinator/api/openai_protocol.h"
#include "coordinator/api/openai_responses.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

class ResponsesApiTest : public ApiTest {
 protected:
  httplib::Result Post(const std::string& path, const json& body) { return PostJson(path, body.dump()); }
  json Response(const json& body) {
    auto res = Post("/v1/responses", body);
    EXPECT_TRUE(res);
    if (!res) return json();
    EXPECT_EQ(res->status, 200) << res->body;
    return json::parse(res->body, nullptr, false);
  }
  // A streaming call's events (data objects, in order); checks the SSE framing and numbering.
  std::vector<json> Events(json body) {
    body["stream"] = true;
    auto res = Post("/v1/responses", body);
    std::vector<json> events;
    EXPECT_TRUE(res);
    if (!res) return events;
    EXPECT_EQ(res->status, 200) << res->body;
    for (absl::string_view block : absl::StrSplit(res->body, "\n\n", absl::SkipEmpty())) {
      if (absl::StartsWith(block, ":")) continue;
      std::vector<std::string> lines = absl::StrSplit(block, '\n');
      EXPECT_EQ(lines.size(), 2u) << block;
      if (lines.size() != 2) continue;
      json data = json::parse(lines[1].substr(6), nullptr, false);
      EXPECT_EQ(data["type"], lines[0].substr(7)) << block;
      EXPECT_EQ(data["sequence_number"], events.size()) << block;
      events.push_back(std::move(data));
    }
    return events;
  }
  std::vector<int32_t> LastPrompt() { return engine_->requests().back().prompt; }
  std::vector<int32_t> ChatPrompt(const json& body) {
    ScriptText("x");
    auto res = Post("/v1/chat/completions", body);
    EXPECT_TRUE(res && res->status == 200) << (res ? res->body : "");
    return LastPrompt();
  }
  static json WeatherTool() {
    return json::parse(R"([{"type":"function","name":"get_weather","description":"Weather now",
                           "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}])");
  }
};

TEST_F(ResponsesApiTest, TextResponseShapeUsageAndTheChatsInput) {
  ScriptText("Hello there!");
  json r = Response({{"model", "gpt-5-codex"}, {"instructions", "Be brief."}, {"input", "hi"}, {"store", false},
                     {"priority", 2}});
  EXPECT_EQ(engine_->requests().back().priority, 2);  // vLLM's, as on chat completions
  EXPECT_TRUE(absl::StartsWith(r["id"].get<std::string>(), "resp_")) << r;  // OpenAI's form
  EXPECT_EQ(r["object"], "response");
  EXPECT_EQ(r["status"], "completed");
  EXPECT_EQ(r["model"], "gpt-5-codex");
  EXPECT_EQ(r["instructions"], "Be brief.");
  ASSERT_EQ(r["output"].size(), 1u) << r;
  const json& msg = r["output"][0];
  EXPECT_EQ(msg["type"], "message");
  EXPECT_EQ(msg["role"], "assistant");
  EXPECT_EQ(msg["status"], "completed");
  EXPECT_EQ(msg["content"], json::parse(R"([{"type":"output_text","text":"Hello there!","annotations":[]}])"));
  const std::vector<int32_t> prompt = LastPrompt();
  EXPECT_EQ(r["usage"]["input_tokens"], prompt.size());
  EXPECT_EQ(r["usage"]["total_tokens"],
            r["usage"]["input_tokens"].get<int>() + r["usage"]["output_tokens"].get<int>());
  EXPECT_TRUE(r["incomplete_details"].is_null());
  EXPECT_EQ(ChatPrompt({{"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "hi"}}}}}),
            prompt);
}

// This server's per-request `speculative`, as on chat completions (it was ignored: no opt-out,
// and a malformed value got a 200).
TEST_F(ResponsesApiTest, SpeculativeIsTakenAndChecked) {
  ScriptText("Hello there!");
  Response({{"input", "hi"}, {"store", false}, {"speculative", "ngram:3"}});
  EXPECT_EQ(engine_->requests().back().speculative, "ngram:3");
  for (const json& bad : {json("bogus"), json(3)}) {
    auto refused = Post("/v1/responses", {{"input", "hi"}, {"store", false}, {"speculative", bad}});
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 400) << refused->body;
    EXPECT_NE(refused->body.find("speculative"), std::string::npos) << refused->body;
  }
}

TEST_F(ResponsesApiTest, InputItemsTranslateToChatMessages) {
  // An agent transcript as Codex sends it: developer instructions, a user message of parts, the
  // assistant's reasoning, text and two calls, their outputs, then the next user message.
  json body = json::parse(R"({"input": [
      {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Use tools."}]},
      {"role": "user", "content": [{"type": "input_text", "text": "Weather in"}, {"type": "input_text", "text": "Oslo and Bergen?"}]},
      {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "two calls"}]},
      {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
      {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
      {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": "{\"city\":\"Bergen\"}"},
      {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
      {"type": "function_call_output", "call_id": "call_2", "output": "rain"},
      {"role": "user", "content": "And tomorrow?"}]})");
  body["tools"] = WeatherTool();
  const json expected = json::parse(R"([
      {"role": "system", "content": "Use tools."},
      {"role": "user", "content": "Weather in\nOslo and Bergen?"},
      {"role": "assistant", "content": "Checking.", "reasoning_content": "two calls", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Bergen\"}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
      {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
      {"role": "user", "content": "And tomorrow?"}])");
  auto parsed = api::ParseResponsesRequest(body, "served");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(json(parsed->api.messages), expected);
  EXPECT_EQ(json(parsed->api.tools), json::parse(R"([{"type":"function","function":{"name":"get_weather","description":"Weather now",
                                             "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])"));
  ScriptText("ok");
  Response(body);
  const std::vector<int32_t> prompt = LastPrompt();
  EXPECT_EQ(ChatPrompt({{"messages", expected}, {"tools", json(parsed->api.tools)}}), prompt);
}

// OpenAI's reasoning effort: "none" sets the chat template's enable_thinking to false (GLM's
// thinking is on or off; the bundled model's template has no thinking switch, GLM-5's has), on
// chat completions (`reasoning_effort`) and Responses (`reasoning.effort`, echoed in the response);
// other efforts leave thinking on; explicit chat_template_kwargs win; unknown efforts are refused
// with the field named.
TEST_F(ResponsesApiTest, ReasoningEffortNoneTurnsThinkingOff) {
  const json messages = {{{"role", "user"}, {"content", "hi"}}};
  auto kwargs = [&](const json& extra) {
    json body = {{"messages", messages}};
    body.update(extra);
    auto r = api::ParseOpenAiRequest(api::OpenAiEndpoint::kChat, body, "m");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->api.template_kwargs : json();
  };
  EXPECT_EQ(kwargs({{"reasoning_effort", "none"}}), json({{"enable_thinking", false}}));
  for (const char* effort : {"minimal", "low", "medium", "high", "xhigh"})
    EXPECT_FALSE(kwargs({{"reasoning_effort", effort}}).contains("enable_thinking")) << effort;
  EXPECT_FALSE(kwargs({{"reasoning_effort", nullptr}}).contains("enable_thinking"));
  EXPECT_EQ(kwargs({{"reasoning_effort", "none"}, {"chat_template_kwargs", {{"enable_thinking", true}}}}),
            json({{"enable_thinking", true}}));
  auto parsed = api::ParseResponsesRequest({{"input", "hi"}, {"reasoning", {{"effort", "none"}, {"summary", "auto"}}}}, "m");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->api.template_kwargs, json({{"enable_thinking", false}}));
  parsed = api::ParseResponsesRequest({{"input", "hi"}, {"reasoning", {{"effort", "low"}}}}, "m");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE(parsed->api.template_kwargs.contains("enable_thinking"));

  // Served: the effort asked is echoed in the response object (null when none was).
  ScriptText("ok");
  EXPECT_EQ(Response({{"input", "hi"}, {"reasoning", {{"effort", "none"}}}})["reasoning"]["effort"], "none");
  ScriptText("ok");
  EXPECT_TRUE(Response({{"input", "hi"}})["reasoning"]["effort"].is_null());
  for (const auto& [path, body, field] : std::vector<std::tuple<std::string, json, std::string>>{
           {"/v1/chat/completions", {{"messages", messages}, {"reasoning_effort", "maximum"}}, "reasoning_effort"},
           {"/v1/chat/completions", {{"messages", messages}, {"reasoning_effort", 2}}, "reasoning_effort"},
           {"/v1/responses", {{"input", "hi"}, {"reasoning", "none"}}, "reasoning"},
           {"/v1/responses", {{"input", "hi"}, {"reasoning", {{"effort", "max"}}}}, "reasoning.effort"}}) {
    auto res = Post(path, body);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << res->body;
    EXPECT_EQ(json::parse(res->body, nullptr, false)["error"]["param"], field) << res->body;
  }
}

TEST_F(ResponsesApiTest, FunctionCallOutputWholeAndStreamed) {
  ScriptText("<think>need weather</think><tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n"
             "</tool_call>");
  json body = {{"input", "weather in Oslo?"}, {"tools", WeatherTool()}};
  json r = Response(body);
  ASSERT_EQ(r["output"].size(), 2u) << r;
  EXPECT_EQ(r["output"][0]["type"], "reasoning");
  EXPECT_EQ(r["output"][0]["content"][0], json({{"type", "reasoning_text"}, {"text", "need weather"}}));
  const json& call = r["output"][1];
  EXPECT_EQ(call["type"], "function_call");
  EXPECT_EQ(call["name"], "get_weather");
  EXPECT_EQ(json::parse(call["arguments"].get<std::string>()), json({{"city", "Oslo"}}));
  EXPECT_TRUE(absl::StartsWith(call["call_id"].get<std::string>(), "call_")) << call;
  EXPECT_EQ(r["status"], "completed");
  // The reasoning's tokens, its tags included, of the output's.
  EXPECT_EQ(r["usage"]["output_tokens_details"]["reasoning_tokens"], Encode("<think>need weather</think>").size());

  const std::vector<json> events = Events(body);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events[0]["type"], "response.created");
  EXPECT_EQ(events[0]["response"]["status"], "in_progress");
  EXPECT_EQ(events[1]["type"], "response.in_progress");
  EXPECT_EQ(events.back()["type"], "response.completed");
  // The done items are the final response's output, and each was announced before it was done.
  json done = json::array();
  std::set<std::string> added;
  for (const json& e : events) {
    if (e["type"] == "response.output_item.added") added.insert(e["item"]["id"].get<std::string>());
    if (e["type"] == "response.output_item.done") {
      EXPECT_TRUE(added.count(e["item"]["id"].get<std::string>())) << e;
      EXPECT_EQ(e["output_index"], done.size());
      done.push_back(e["item"]);
    }
  }
  EXPECT_EQ(events.back()["response"]["output"], done);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0]["content"], r["output"][0]["content"]);
  EXPECT_EQ(done[1]["name"], "get_weather");
  EXPECT_EQ(done[1]["arguments"], call["arguments"]);
}

TEST_F(ResponsesApiTest, StreamedTextDeltasAndAnIncompleteReply) {
  ScriptText("one two three four");
  std::vector<json> events = Events({{"input", "count"}});
  std::string text;
  for (const json& e : events)
    if (e["type"] == "response.output_text.delta") text += e["delta"].get<std::string>();
  EXPECT_EQ(text, "one two three four");
  EXPECT_EQ(events.back()["response"]["output"][0]["content"][0]["text"], "one two three four");
  EXPECT_EQ(events.back()["response"]["usage"]["input_tokens"], LastPrompt().size());
  EXPECT_EQ(events.back()["response"]["output"][0]["status"], "completed");

  ScriptText("a long answer that goes on and on and on");
  json cut = Response({{"input", "go"}, {"max_output_tokens", 2}});
  EXPECT_EQ(cut["status"], "incomplete");
  EXPECT_EQ(cut["incomplete_details"]["reason"], "max_output_tokens");
  EXPECT_EQ(cut["usage"]["output_tokens"], 2);
  EXPECT_EQ(cut["max_output_tokens"], 2);
  // The message being written when the reply was cut is incomplete too (it said completed).
  EXPECT_EQ(cut["output"].back()["status"], "incomplete") << cut;
  events = Events({{"input", "go"}, {"max_output_tokens", 2}});
  EXPECT_EQ(events.back()["type"], "response.incomplete");
  EXPECT_EQ(events.back()["response"]["output"].back()["status"], "incomplete");
  bool item_done_incomplete = false;
  for (const json& e : events)
    if (e["type"] == "response.output_item.done") item_done_incomplete = e["item"]["status"] == "incomplete";
  EXPECT_TRUE(item_done_incomplete);
}

// "store" (the API's default) keeps a reply; previous_response_id continues its conversation,
// which gives the prompt the whole conversation sent at once gives (so the prefix cache serves
// it). Replies read back with GET, go with DELETE; unknown ids are 400 / 404.
TEST_F(ResponsesApiTest, StoredRepliesContinueWithPreviousResponseId) {
  ScriptText("<think>need weather</think><tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n"
             "</tool_call>");
  const json first = Response({{"instructions", "Use tools."}, {"input", "weather in Oslo?"}, {"tools", WeatherTool()}});
  EXPECT_EQ(first["store"], true);
  ASSERT_EQ(first["output"].size(), 2u) << first;
  const json call = first["output"][1];
  const json output_item = {{"type", "function_call_output"}, {"call_id", call["call_id"]}, {"output", "sunny"}};

  ScriptText("Sunny.");
  const json second = Response({{"instructions", "Use tools."}, {"previous_response_id", first["id"]},
                                {"input", json::array({output_item})}, {"tools", WeatherTool()}});
  EXPECT_EQ(second["previous_response_id"], first["id"]);
  const std::vector<int32_t> continued = LastPrompt();
  ScriptText("Sunny.");
  Response({{"instructions", "Use tools."}, {"store", false}, {"tools", WeatherTool()},
            {"input", json::array({{{"role", "user"}, {"content", "weather in Oslo?"}}, first["output"][0], call, output_item})}});
  EXPECT_EQ(LastPrompt(), continued);
  // Item references to the stored reply's output items stand for the items.
  ScriptText("Sunny.");
  Response({{"instructions", "Use tools."}, {"store", false}, {"tools", WeatherTool()},
            {"input", json::array({{{"role", "user"}, {"content", "weather in Oslo?"}},
                                   {{"type", "item_reference"}, {"id", first["output"][0]["id"]}},
                                   {{"type", "item_reference"}, {"id", call["id"]}}, output_item})}});
  EXPECT_EQ(LastPrompt(), continued);

  // Streamed replies are kept too, and chains go on; instructions are not carried over.
  ScriptText("Glad to help.");
  const std::vector<json> events = Events({{"previous_response_id", second["id"]}, {"input", "thanks!"}});
  ASSERT_FALSE(events.empty());
  const json third = events.back()["response"];
  ScriptText("Bye.");
  Response({{"previous_response_id", third["id"]}, {"input", "bye"}});
  auto text = tokenizer_->Decode(LastPrompt(), false);
  ASSERT_TRUE(text.ok());
  for (const char* part : {"weather in Oslo?", "sunny", "Sunny.", "thanks!", "Glad to help.", "bye"})
    EXPECT_THAT(*text, HasSubstr(part));
  EXPECT_THAT(*text, ::testing::Not(HasSubstr("Use tools.")));

  httplib::Client client("127.0.0.1", server_->http_port());
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->body, HasSubstr("glm:responses_stored{model_name=\"glm5-tiny-code\"} 4"));
  EXPECT_THAT(metrics->body, HasSubstr("glm:responses_stored_bytes{"));
  const std::string path = "/v1/responses/" + second["id"].get<std::string>();
  auto got = client.Get(path.c_str());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(json::parse(got->body), second);
  auto deleted = client.Delete(path.c_str());
  ASSERT_TRUE(deleted);
  EXPECT_EQ(json::parse(deleted->body), json({{"id", second["id"]}, {"object", "response.deleted"}, {"deleted", true}}));
  EXPECT_EQ(client.Get(path.c_str())->status, 404);
  EXPECT_EQ(client.Delete(path.c_str())->status, 404);
  auto gone = Post("/v1/responses", {{"previous_response_id", second["id"]}, {"input", "again"}});
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->status, 400);
  EXPECT_EQ(json::parse(gone->body)["error"]["param"], "previous_response_id");

  // A reply of no output item adds no assistant turn (resending its output items would not).
  ScriptText("");
  const json empty = Response({{"input", "say nothing"}});
  ASSERT_TRUE(empty["output"].empty()) << empty;
  ScriptText("x");
  Response({{"previous_response_id", empty["id"]}, {"input", "then?"}});
  const std::vector<int32_t> after_empty = LastPrompt();
  ScriptText("x");
  Response({{"store", false}, {"input", json::array({{{"role", "user"}, {"content", "say nothing"}},
                                                    {{"role", "user"}, {"content", "then?"}}})}});
  EXPECT_EQ(LastPrompt(), after_empty);

  ScriptText("x");
  const json unstored = Response({{"input", "hi"}, {"store", false}});
  EXPECT_EQ(client.Get(("/v1/responses/" + unstored["id"].get<std::string>()).c_str())->status, 404);
}

// The response object echoes the request's text config and metadata, as the API does (they were
// always {"format": {"type": "text"}} and {}), whole, streamed and as stored.
TEST_F(ResponsesApiTest, TextFormatAndMetadataAreEchoed) {
  const json format = {{"type", "json_schema"}, {"name", "point"}, {"strict", true},
                       {"schema", {{"type", "object"}, {"properties", {{"x", {{"type", "integer"}}}}},
                                   {"required", {"x"}}, {"additionalProperties", false}}}};
  const json metadata = {{"team", "infra"}, {"run", "7"}};
  ScriptText("{\"x\": 1}");
  const json reply = Response({{"input", "a point"}, {"text", {{"format", format}}}, {"metadata", metadata}});
  EXPECT_EQ(reply["text"]["format"], format) << reply;
  EXPECT_EQ(reply["metadata"], metadata);
  ScriptText("{\"x\": 1}");
  const std::vector<json> events = Events({{"input", "a point"}, {"text", {{"format", format}}}, {"metadata", metadata}});
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front()["response"]["metadata"], metadata);
  EXPECT_EQ(events.back()["response"]["text"]["format"], format);
  httplib::Client client("127.0.0.1", server_->http_port());
  auto got = client.Get(("/v1/responses/" + reply["id"].get<std::string>()).c_str());
  ASSERT_TRUE(got);
  EXPECT_EQ(json::parse(got->body)["metadata"], metadata);
  // Without them: the defaults.
  ScriptText("x");
  const json plain = Response({{"input", "hi"}});
  EXPECT_EQ(plain["text"], json({{"format", {{"type", "text"}}}}));
  EXPECT_EQ(plain["metadata"], json::object());
  EXPECT_EQ(plain["truncation"], "disabled");
  // truncation as sent (it was always "disabled"); background false, top_logprobs 0 and other
  // include values (Codex sends reasoning.encrypted_content) are fine.
  ScriptText("x");
  const json sent = Response({{"input", "hi"}, {"truncation", "auto"}, {"background", false}, {"top_logprobs", 0},
                              {"include", {"reasoning.encrypted_content"}}});
  EXPECT_EQ(sent["truncation"], "auto") << sent;
}

TEST_F(ResponsesApiTest, ErrorsNameTheField) {
  struct Case {
    json body;
    int status;
    const char* param;
  };
  const std::vector<Case> cases = {
      {json::object(), 400, "input"},
      {{{"input", json::array()}}, 400, "input"},
      {{{"input", "hi"}, {"previous_response_id", "resp_1"}}, 400, "previous_response_id"},
      {{{"input", "hi"}, {"previous_response_id", 7}}, 400, "previous_response_id"},
      {{{"input", "hi"}, {"store", "yes"}}, 400, "store"},
      {{{"input", "hi"}, {"conversation", "conv_1"}}, 400, "conversation"},
      {{{"input", {{{"role", "user"}, {"content", {{{"type", "input_image"}, {"image_url", "x"}}}}}}}}, 400,
       "input[0].content[0].type"},
      {{{"input", {{{"type", "item_reference"}, {"id", "msg_1"}}}}}, 400, "input[0].id"},
      {{{"input", {{{"type", "item_reference"}}}}}, 400, "input[0].id"},
      {{{"input", {{{"type", "function_call_output"}, {"output", "x"}}}}}, 400, "input[0].call_id"},
      {{{"input", {{{"role", "tool"}, {"content", "x"}}}}}, 400, "input[0].role"},
      {{{"input", "hi"}, {"tools", {{{"type", "web_search"}}}}}, 400, "tools[0].type"},
      {{{"input", "hi"}, {"tool_choice", "required"}}, 400, "tool_choice"},
      {{{"input", "hi"}, {"text", {{"format", {{"type", "json_schema"}}}}}}, 400, "text.format.schema"},
      {{{"input", "hi"}, {"text", {{"format", {{"type", "xml"}}}}}}, 400, "text.format.type"},
      {{{"input", "hi"}, {"max_output_tokens", 0}}, 400, "max_output_tokens"},
      {{{"input", "hi"}, {"temperature", "warm"}}, 400, "temperature"},
      {{{"input", "hi"}, {"max_output_tokens", 100000}}, 400, "max_output_tokens"},
      {{{"input", "hi"}, {"priority", "high"}}, 400, "priority"},
      {{{"input", "hi"}, {"priority", int64_t{1} << 40}}, 400, "priority"},
      {{{"input", "hi"}, {"metadata", "tag"}}, 400, "metadata"},
      {{{"input", "hi"}, {"metadata", {{"k", 1}}}}, 400, "metadata.k"},
      {{{"input", "hi"}, {"metadata", {{"k", std::string(513, 'v')}}}}, 400, "metadata.k"},
      {{{"input", "hi"}, {"metadata", {{std::string(65, 'k'), "v"}}}}, 400, "metadata"},
      // Options that would change the reply are refused, not ignored (they were served as if absent).
      {{{"input", "hi"}, {"background", true}}, 400, "background"},
      {{{"input", "hi"}, {"include", {"message.output_text.logprobs"}}}, 400, "include"},
      {{{"input", "hi"}, {"include", "reasoning"}}, 400, "include"},
      {{{"input", "hi"}, {"top_logprobs", 3}}, 400, "top_logprobs"},
      {{{"input", "hi"}, {"truncation", "middle"}}, 400, "truncation"},
  };
  for (const Case& c : cases) {
    auto res = Post("/v1/responses", c.body);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, c.status) << c.body << " -> " << res->body;
    json j = json::parse(res->body, nullptr, false);
    EXPECT_EQ(j["error"]["param"], c.param) << c.body << " -> " << res->body;
  }
  model_.accept_any_name = false;
  auto missing = Post("/v1/responses", {{"model", "other"}, {"input", "hi"}});
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  model_.accept_any_name = true;
  // And the server still serves.
  ScriptText("fine");
  EXPECT_EQ(Response({{"input", "hi"}})["output"][0]["content"][0]["text"], "fine");
}

}  // namespace
}  // namespace glm::testing
