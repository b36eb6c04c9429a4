// Bad input never throws: every member of valid request bodies, at every depth, replaced by
// values of other JSON types or removed, through each HTTP API's parser and the shared chat
// preparation (template rendering, tokenization). The result must be a value or a clear
// INVALID_ARGUMENT / NOT_FOUND, never an exception (which the HTTP server would turn into a 500).

#include <functional>
#include <set>

#include "coordinator/api/anthropic_protocol.h"
#include "coordinator/api/openai_protocol.h"
#include "coordinator/api/openai_responses.h"
#include "coordinator/api/text_frontend.h"
#include "coordinator/api/tokenize_endpoint.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

using json = nlohmann::json;
namespace pb = glm::inference::v1;

// Calls `fn` with `body` changed at one place: each member (any depth) set to each of a set of
// values of all JSON types, and each object member removed.
void ForEachMutation(const json& body, const std::function<void(const json&)>& fn) {
  const std::vector<json> values = {nullptr, 0, -7, 3.5, 1e300, "", "x", true, json::array(), json::object(),
                                    json::array({1, "a"}), json{{"type", "text"}, {"text", 1}}};
  std::set<std::string> pointers;
  const json flat = body.flatten();  // kept alive: items() refers into it
  for (const auto& [leaf, unused] : flat.items()) {
    for (json::json_pointer p(leaf); !p.empty(); p = p.parent_pointer()) pointers.insert(p.to_string());
  }
  for (const std::string& ptr : pointers) {
    const json::json_pointer p(ptr);
    for (const json& v : values) {
      json m = body;
      m[p] = v;
      fn(m);
    }
    json removed = body;
    json& parent = removed[p.parent_pointer()];
    if (parent.is_object()) {
      parent.erase(p.back());
      fn(removed);
    }
  }
}

class RequestFuzzTest : public ApiTest {
 protected:
  // Runs `parse` on every mutation of `body`; each result must be OK or a 4xx-class status.
  void Fuzz(const json& body, const std::function<absl::Status(const json&)>& parse) {
    int ok = 0, refused = 0;
    ForEachMutation(body, [&](const json& m) {
      absl::Status s;
      try {
        s = parse(m);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "threw " << e.what() << " on " << m.dump();
        return;
      }
      if (s.ok()) {
        ++ok;
        return;
      }
      ++refused;
      EXPECT_TRUE(s.code() == absl::StatusCode::kInvalidArgument || s.code() == absl::StatusCode::kNotFound)
          << s << " on " << m.dump();
      EXPECT_FALSE(s.message().empty()) << m.dump();
    });
    // Both outcomes occur: the mutations reach the validation, and some leave a valid request.
    EXPECT_GT(ok, 0);
    EXPECT_GT(refused, 0);
  }
  // Parse, then prepare as the handler would (chat template, tokenizer, sampling checks).
  absl::Status Prepared(const absl::StatusOr<api::ApiRequest>& a) {
    if (!a.ok()) return a.status();
    return frontend().Prepare(*a).status();
  }
  api::TextFrontend& frontend() {
    if (frontend_ == nullptr) frontend_ = std::make_unique<api::TextFrontend>(&model_, 0);
    return *frontend_;
  }
  std::unique_ptr<api::TextFrontend> frontend_;
};

TEST_F(RequestFuzzTest, AnthropicMessages) {
  const json body = json::parse(R"({"model": "m", "max_tokens": 16, "stream": false, "temperature": 0.5,
    "top_p": 0.9, "top_k": 5, "stop_sequences": ["X"], "system": [{"type": "text", "text": "S"}],
    "thinking": {"type": "enabled", "budget_tokens": 100}, "tool_choice": {"type": "auto"},
    "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
    "messages": [
      {"role": "user", "content": [{"type": "text", "text": "hi"}]},
      {"role": "assistant", "content": [{"type": "thinking", "thinking": "t"}, {"type": "text", "text": "a"},
                                         {"type": "tool_use", "id": "u1", "name": "f", "input": {"k": 1}}]},
      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "u1", "content": "r", "is_error": false}]}]})");
  Fuzz(body, [&](const json& m) {
    auto r = api::ParseAnthropicRequest(m, "served");
    return Prepared(r.ok() ? absl::StatusOr<api::ApiRequest>(r->api) : r.status());
  });
  Fuzz(body, [&](const json& m) { return api::ParseAnthropicRequest(m, "served", /*count_only=*/true).status(); });
}

TEST_F(RequestFuzzTest, OpenAiResponses) {
  const json body = json::parse(R"({"model": "m", "instructions": "I", "max_output_tokens": 16, "temperature": 0.5,
    "top_p": 0.9, "tool_choice": "auto", "text": {"format": {"type": "text"}},
    "tools": [{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}}],
    "input": [
      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
      {"type": "reasoning", "summary": [{"type": "summary_text", "text": "s"}], "content": [{"type": "reasoning_text", "text": "t"}]},
      {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]},
      {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
      {"type": "function_call_output", "call_id": "c1", "output": "r"}]})");
  Fuzz(body, [&](const json& m) {
    auto r = api::ParseResponsesRequest(m, "served");
    return Prepared(r.ok() ? absl::StatusOr<api::ApiRequest>(r->api) : r.status());
  });
}

TEST_F(RequestFuzzTest, OpenAiChatAndCompletions) {
  const json chat = json::parse(R"({"model": "m", "max_tokens": 16, "temperature": 0.5, "top_p": 0.9, "top_k": 5,
    "min_p": 0.1, "seed": 3, "stop": ["X"], "logprobs": true, "top_logprobs": 2, "n": 1, "logit_bias": {"5": 1},
    "stream": false, "stream_options": {"include_usage": true}, "tool_choice": "auto",
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                 {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                   "function": {"name": "f", "arguments": "{}"}}]},
                 {"role": "tool", "tool_call_id": "c1", "content": "r"}]})");
  Fuzz(chat, [&](const json& m) {
    auto r = api::ParseOpenAiRequest(api::OpenAiEndpoint::kChat, m, "served");
    return Prepared(r.ok() ? absl::StatusOr<api::ApiRequest>(r->api) : r.status());
  });
  const json completions = json::parse(R"({"model": "m", "prompt": "def f", "max_tokens": 16, "echo": false,
    "logprobs": 1, "n": 2, "suffix": "", "stop": "X", "temperature": 0})");
  Fuzz(completions, [&](const json& m) {
    auto r = api::ParseOpenAiRequest(api::OpenAiEndpoint::kCompletions, m, "served");
    return Prepared(r.ok() ? absl::StatusOr<api::ApiRequest>(r->api) : r.status());
  });
}

// Structured outputs: every part of a schema (and of a forced tool's parameters) replaced by
// other JSON types reaches the schema compiler, which must refuse or accept, never throw.
TEST_F(RequestFuzzTest, StructuredOutputsAndForcedToolCalls) {
  const json schema = json::parse(R"({"type": "object", "$defs": {"n": {"type": ["integer", "null"]}},
    "properties": {"a": {"type": "string", "minLength": 1, "maxLength": 9}, "b": {"$ref": "#/$defs/n"},
    "c": {"type": "array", "items": {"enum": ["x", 1, null]}, "minItems": 0, "maxItems": 3},
    "d": {"anyOf": [{"type": "boolean"}, {"const": "k"}]}, "e": {"allOf": [{"type": "number"}]},
    "f": {"type": "object", "additionalProperties": {"type": "string"}}}, "required": ["a", "b"]})");
  json chat = json::parse(R"({"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}],
    "response_format": {"type": "json_schema", "json_schema": {"name": "s", "strict": true}}})");
  chat["response_format"]["json_schema"]["schema"] = schema;
  Fuzz(chat, [&](const json& m) {
    auto r = api::ParseOpenAiRequest(api::OpenAiEndpoint::kChat, m, "served");
    return Prepared(r.ok() ? absl::StatusOr<api::ApiRequest>(r->api) : r.status());
  });
  json forced = json::parse(R"({"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}],
    "tool_choice": {"type": "function", "function": {"name": "f"}}})");
  forced["tools"] = json::array({{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", schema}}}}});
  Fuzz(forced, [&](const json& m) {
    auto r = api::ParseOpenAiRequest(api::OpenAiEndpoint::kChat, m, "served");
    return Prepared(r.ok() ? absl::StatusOr<api::ApiRequest>(r->api) : r.status());
  });
  json messages = json::parse(R"({"max_tokens": 16, "messages": [{"role": "user", "content": "hi"}],
    "output_format": {"type": "json_schema"}})");
  messages["output_format"]["schema"] = schema;
  Fuzz(messages, [&](const json& m) {
    auto r = api::ParseAnthropicRequest(m, "served");
    return Prepared(r.ok() ? absl::StatusOr<api::ApiRequest>(r->api) : r.status());
  });
}

// The smallest valid bodies too: a mutation of the only message can leave nothing (an empty
// conversation once crashed the Anthropic path).
TEST_F(RequestFuzzTest, MinimalBodies) {
  Fuzz(json::parse(R"({"max_tokens": 4, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})"),
       [&](const json& m) {
         auto r = api::ParseAnthropicRequest(m, "served");
         return Prepared(r.ok() ? absl::StatusOr<api::ApiRequest>(r->api) : r.status());
       });
  Fuzz(json::parse(R"({"input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]})"),
       [&](const json& m) {
         auto r = api::ParseResponsesRequest(m, "served");
         return Prepared(r.ok() ? absl::StatusOr<api::ApiRequest>(r->api) : r.status());
       });
  Fuzz(json::parse(R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})"),
       [&](const json& m) {
         auto r = api::ParseOpenAiRequest(api::OpenAiEndpoint::kChat, m, "served");
         return Prepared(r.ok() ? absl::StatusOr<api::ApiRequest>(r->api) : r.status());
       });
  Fuzz(json::parse(R"({"prompt": ["a", [1, 2]], "max_tokens": 2})"), [&](const json& m) {
    auto r = api::ParseOpenAiRequest(api::OpenAiEndpoint::kCompletions, m, "served");
    return Prepared(r.ok() ? absl::StatusOr<api::ApiRequest>(r->api) : r.status());
  });
  // vLLM's structured outputs (a regex, a schema of patterns, formats and bounds) and its request
  // extensions.
  for (const char* seed : {R"({"prompt": "x", "guided_regex": "(a|b[0-9]{1,3})+\\.?", "max_tokens": 2})",
                           R"({"prompt": "x", "structured_outputs": {"json": {"type": "object", "properties": {
                               "s": {"type": "string", "pattern": "^[a-z]{1,3}$", "maxLength": 3},
                               "d": {"type": "string", "format": "date-time"},
                               "n": {"type": "number", "minimum": -1.5, "exclusiveMaximum": 7}}}}})",
                           R"({"prompt": [1, 2, 3, 4], "min_tokens": 1, "allowed_token_ids": [1, 2], "cache_salt": "s",
                               "truncate_prompt_tokens": 3, "max_tokens": 2})"}) {
    Fuzz(json::parse(seed), [&](const json& m) {
      auto r = api::ParseOpenAiRequest(api::OpenAiEndpoint::kCompletions, m, "served");
      return Prepared(r.ok() ? absl::StatusOr<api::ApiRequest>(r->api) : r.status());
    });
  }
  Fuzz(json::parse(R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "def"}],
                       "continue_final_message": true, "add_special_tokens": true, "guided_choice": ["a", "b"]})"),
       [&](const json& m) {
         auto r = api::ParseOpenAiRequest(api::OpenAiEndpoint::kChat, m, "served");
         return Prepared(r.ok() ? absl::StatusOr<api::ApiRequest>(r->api) : r.status());
       });
}

// gRPC's JSON-text fields (chat tools, tool_choice, template kwargs, an assistant message's
// tool calls, response_format) mutated the same way, through a real stub: every call ends OK or
// INVALID_ARGUMENT with a message, and the server keeps serving.
TEST_F(RequestFuzzTest, GrpcJsonFields) {
  const json bundle = json::parse(R"({
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
      "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "kwargs": {"enable_thinking": false},
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": \"x\"}"}}],
    "format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}},
    "outputs": {"regex": "[a-z]{2}"}})");
  ScriptText("{}");
  Fuzz(bundle, [&](const json& m) -> absl::Status {
    auto text = [&m](const char* key) { return m.is_object() && m.contains(key) ? m[key].dump() : std::string(); };
    pb::GenerateRequest r;
    pb::ChatInput* chat = r.mutable_chat();
    pb::ChatMessage* user = chat->add_messages();
    user->set_role("user");
    user->set_content("hi");
    pb::ChatMessage* assistant = chat->add_messages();
    assistant->set_role("assistant");
    assistant->set_tool_calls_json(text("tool_calls"));
    pb::ChatMessage* tool = chat->add_messages();
    tool->set_role("tool");
    tool->set_tool_call_id("c1");
    tool->set_content("done");
    chat->set_tools_json(text("tools"));
    chat->set_tool_choice_json(text("tool_choice"));
    chat->set_template_kwargs_json(text("kwargs"));
    r.set_response_format_json(text("format"));
    if (m.is_object() && !m.contains("format")) r.set_structured_outputs_json(text("outputs"));
    r.mutable_sampling()->set_max_tokens(4);
    grpc::ClientContext ctx;
    auto reader = stub_->Generate(&ctx, r);
    pb::GenerateResponse resp;
    while (reader->Read(&resp)) {
    }
    const grpc::Status g = reader->Finish();
    if (g.ok()) return absl::OkStatus();
    if (g.error_code() == grpc::StatusCode::INVALID_ARGUMENT) return absl::InvalidArgumentError(g.error_message());
    return absl::InternalError(absl::StrCat("gRPC code ", g.error_code(), ": ", g.error_message()));
  });
  grpc::ClientContext ctx;
  pb::LoadRequest load;
  pb::LoadResponse load_response;
  EXPECT_TRUE(stub_->GetLoad(&ctx, load, &load_response).ok());
}

TEST_F(RequestFuzzTest, TokenizeAndDetokenize) {
  Fuzz(json::parse(R"({"model": "m", "prompt": "hi", "add_special_tokens": true, "return_token_strs": true})"),
       [&](const json& m) { return api::TokenizeBody(frontend(), m).status(); });
  Fuzz(json::parse(R"({"model": "m", "messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": true})"),
       [&](const json& m) { return api::TokenizeBody(frontend(), m).status(); });
  Fuzz(json::parse(R"({"model": "m", "tokens": [1, 2, 3], "skip_special_tokens": false})"),
       [&](const json& m) { return api::DetokenizeBody(frontend(), m).status(); });
}

}  // namespace
}  // namespace glm::testing
