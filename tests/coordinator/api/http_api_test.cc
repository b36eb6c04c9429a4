// The OpenAI-compatible HTTP front end against a FakeEngine, with a real HTTP client.

#include <algorithm>
#include <set>

#include <httplib.h>

#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

class HttpApiTest : public ApiTest {
 protected:
  httplib::Result Post(const std::string& path, const json& body) { return PostJson(path, body.dump()); }
  // Posts a non-streaming completions body that fans out into `choices` engine requests;
  // returns the response and those requests in choice order (choice k's id is the response's
  // id, then id-k).
  std::pair<json, std::vector<scheduler::GenerationRequest>> PostChoices(const json& body, size_t choices) {
    const size_t before = engine_->requests().size();
    auto res = Post("/v1/completions", body);
    EXPECT_EQ(res->status, 200) << res->body;
    json j = json::parse(res->body);
    EXPECT_EQ(j["choices"].size(), choices);
    auto requests = engine_->requests();
    EXPECT_EQ(requests.size(), before + choices);
    std::vector<scheduler::GenerationRequest> by_choice(choices);
    const std::string id = j.value("id", "");
    for (size_t r = before; r < requests.size(); ++r)
      for (size_t k = 0; k < choices; ++k)
        if (requests[r].request_id == (k == 0 ? id : id + "-" + std::to_string(k))) by_choice[k] = requests[r];
    return {j, by_choice};
  }
  httplib::Result Get(const std::string& path) {
    httplib::Client client("127.0.0.1", server_->http_port());
    client.set_read_timeout(10, 0);
    return client.Get(path.c_str());
  }
  // The JSON objects of an SSE body, and whether it ended with [DONE].
  static std::vector<json> SseEvents(const std::string& body, bool* done) {
    std::vector<json> events;
    *done = false;
    for (absl::string_view block : absl::StrSplit(body, "\n\n", absl::SkipEmpty())) {
      EXPECT_TRUE(absl::StartsWith(block, "data: ")) << block;
      absl::string_view payload = block.substr(6);
      if (payload == "[DONE]") {
        *done = true;
        continue;
      }
      EXPECT_FALSE(*done) << "data after [DONE]";
      events.push_back(json::parse(payload));
    }
    return events;
  }
  static json ChatBody(const std::string& content) {
    return {{"model", "whatever-model"}, {"messages", {{{"role", "user"}, {"content", content}}}}, {"temperature", 0}};
  }
};

TEST_F(HttpApiTest, ListsModels) {
  auto res = Get("/v1/models");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  json j = json::parse(res->body);
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["data"][0]["id"], "glm5-tiny-code");
  EXPECT_EQ(j["data"][1]["id"], "glm-tiny");
}

TEST_F(HttpApiTest, ChatNonStreamingEchoesAnyModelName) {
  ScriptText("Hi there!");
  json body = ChatBody("hello");
  body["some_unknown_field"] = {1, 2};
  auto res = Post("/v1/chat/completions", body);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  json j = json::parse(res->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "whatever-model");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Hi there!");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["completion_tokens"], static_cast<int>(Encode("Hi there!").size()) + 1);
  EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());
  EXPECT_TRUE(absl::StartsWith(j["id"].get<std::string>(), "chatcmpl-"));
}

TEST_F(HttpApiTest, ChatStreamingSseShapesUsageAndDone) {
  ScriptText("one two three");
  json body = ChatBody("count");
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  auto res = Post("/v1/chat/completions", body);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("text/event-stream"));
  bool done = false;
  std::vector<json> events = SseEvents(res->body, &done);
  EXPECT_TRUE(done);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  std::string content;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    EXPECT_TRUE(events[i]["usage"].is_null());
    EXPECT_TRUE(events[i]["choices"][0]["finish_reason"].is_null());
    if (events[i]["choices"][0]["delta"].contains("content"))
      content += events[i]["choices"][0]["delta"]["content"].get<std::string>();
  }
  EXPECT_EQ(content, "one two three");
  const json& finish = events[events.size() - 2];
  EXPECT_EQ(finish["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(finish["choices"][0]["delta"], json::object());
  const json& usage = events.back();
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], static_cast<int>(Encode("one two three").size()) + 1);
  EXPECT_EQ(usage["model"], "whatever-model");
}

TEST_F(HttpApiTest, CompletionsWithTokenPromptLogprobsAndOptions) {
  json body = {{"model", "glm-tiny"},  {"prompt", {5, 6, 7}},    {"max_tokens", 4}, {"logprobs", 2},
               {"ignore_eos", true},   {"seed", 42},             {"top_k", 5},      {"min_p", 0.1},
               {"repetition_penalty", 1.1}, {"temperature", 0.5}, {"speculative", "ngram:2"}};
  auto res = Post("/v1/completions", body);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  json j = json::parse(res->body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "glm-tiny");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["choices"][0]["text"], *tokenizer_->Decode({100, 101, 102, 103}, true));
  EXPECT_EQ(j["choices"][0]["logprobs"]["token_logprobs"].size(), 4u);
  EXPECT_EQ(j["choices"][0]["logprobs"]["top_logprobs"][0].size(), 2u);
  scheduler::GenerationRequest seen = engine_->last_request();
  EXPECT_EQ(seen.prompt, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(seen.sampling.max_tokens, 4);
  EXPECT_TRUE(seen.sampling.ignore_eos);
  EXPECT_EQ(seen.sampling.seed, std::optional<uint64_t>(42));
  EXPECT_EQ(seen.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(seen.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(seen.sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(seen.sampling.top_logprobs, 2);
  EXPECT_EQ(seen.speculative, "ngram:2");

  // logprobs: 0 lists just the sampled token (it gave {}).
  body["logprobs"] = 0;
  res = Post("/v1/completions", body);
  ASSERT_EQ(res->status, 200) << res->body;
  j = json::parse(res->body);
  EXPECT_EQ(j["choices"][0]["logprobs"]["top_logprobs"][0], json({{*tokenizer_->Decode({100}), -0.25f}}));
}

// OpenAI's penalties and logit_bias reach the engine; bad values are 400s naming the field.
TEST_F(HttpApiTest, PresenceFrequencyPenaltiesAndLogitBias) {
  json body = {{"prompt", {5, 6}}, {"max_tokens", 2}, {"presence_penalty", 0.5}, {"frequency_penalty", -0.25},
               {"logit_bias", {{"7", 5.5}, {"12", -100}}}, {"min_tokens", 2}};
  auto res = Post("/v1/completions", body);
  ASSERT_EQ(res->status, 200) << res->body;
  scheduler::GenerationRequest seen = engine_->last_request();
  EXPECT_FLOAT_EQ(seen.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(seen.sampling.frequency_penalty, -0.25f);
  EXPECT_EQ(seen.sampling.min_tokens, 2);
  auto bias = seen.sampling.logit_bias;
  std::sort(bias.begin(), bias.end());
  EXPECT_EQ(bias, (std::vector<std::pair<int32_t, float>>{{7, 5.5f}, {12, -100.0f}}));

  const std::vector<std::pair<json, std::string>> bad = {
      {{{"presence_penalty", 2.5}}, "presence_penalty"},
      {{{"frequency_penalty", "high"}}, "frequency_penalty"},
      {{{"logit_bias", {1, 2}}}, "logit_bias"},
      {{{"logit_bias", {{"seven", 1}}}}, "logit_bias[\"seven\"]"},
      {{{"logit_bias", {{"7", "up"}}}}, "logit_bias[\"7\"]"},
      {{{"logit_bias", {{"7", 101}}}}, "logit_bias[\"7\"]"},
      {{{"logit_bias", {{"-1", 1}}}}, "logit_bias[\"-1\"]"},
      {{{"logit_bias", {{"99999999", 1}}}}, "logit_bias[\"99999999\"]"},
      {{{"min_tokens", -1}}, "min_tokens"},
      {{{"min_tokens", "x"}}, "min_tokens"},
  };
  for (const auto& [fields, param] : bad) {
    json b = {{"prompt", "x"}, {"max_tokens", 2}};
    b.update(fields);
    res = Post("/v1/completions", b);
    ASSERT_EQ(res->status, 400) << b.dump() << " -> " << res->body;
    EXPECT_EQ(json::parse(res->body)["error"]["param"], param) << b.dump() << " -> " << res->body;
  }
}

// n > 1: one engine request per choice (ids id, id-1, ...; seeds seed, seed+1, ...), choices
// in index order, the prompt counted once in usage.
TEST_F(HttpApiTest, SeveralChoicesNonStreaming) {
  engine_->SetScript([](const scheduler::GenerationRequest& r) {
    // Each choice says something of its own: its seed picks the tokens.
    return std::vector<int32_t>{static_cast<int32_t>(100 + *r.sampling.seed % 50), 101};
  });
  auto [j, requests] = PostChoices({{"prompt", {5, 6, 7}}, {"max_tokens", 4}, {"n", 3}, {"seed", 7}, {"temperature", 0.8}}, 3);
  ASSERT_EQ(requests.size(), 3u);
  const std::string id = j["id"].get<std::string>();
  for (int i = 0; i < 3; ++i) {
    const scheduler::GenerationRequest& r = requests[i];
    EXPECT_EQ(r.request_id, i == 0 ? id : id + "-" + std::to_string(i));
    EXPECT_EQ(r.sampling.seed, std::optional<uint64_t>(7 + i));
    EXPECT_EQ(r.prompt, (std::vector<int32_t>{5, 6, 7}));
    EXPECT_EQ(j["choices"][i]["index"], i);
    EXPECT_EQ(j["choices"][i]["text"], *tokenizer_->Decode({100 + (7 + i) % 50, 101}, true)) << i;
    EXPECT_EQ(j["choices"][i]["finish_reason"], "stop");
  }
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(j["usage"]["completion_tokens"], 3 * 3);  // two tokens and EOS each
  EXPECT_EQ(j["usage"]["total_tokens"], 3 + 9);

  for (const json& n : {json(0), json(17), json("two")}) {
    auto res = Post("/v1/completions", {{"prompt", "x"}, {"n", n}});
    EXPECT_EQ(res->status, 400) << n;
    EXPECT_EQ(json::parse(res->body)["error"]["param"], "n");
  }
}

// Completions with several prompts (strings or token-id arrays): choice prompt · n + i, usage
// counts every prompt once.
TEST_F(HttpApiTest, SeveralPromptsTimesSeveralChoices) {
  auto [j, requests] =
      PostChoices({{"prompt", {{5, 6, 7}, {8, 9}}}, {"max_tokens", 3}, {"ignore_eos", true}, {"n", 2}}, 4);
  ASSERT_EQ(requests.size(), 4u);
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(j["choices"][k]["index"], k);
    const std::vector<int32_t> want = k < 2 ? std::vector<int32_t>{5, 6, 7} : std::vector<int32_t>{8, 9};
    EXPECT_EQ(requests[k].prompt, want) << k;
  }
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3 + 2);
  EXPECT_EQ(j["usage"]["completion_tokens"], 4 * 3);

  json body = {{"prompt", {"one", "two three"}}, {"max_tokens", 2}, {"stream", true}};
  auto res = Post("/v1/completions", body);
  ASSERT_EQ(res->status, 200);
  bool done = false;
  int finished[2] = {0, 0};
  for (const json& e : SseEvents(res->body, &done))
    if (!e["choices"].empty() && !e["choices"][0]["finish_reason"].is_null()) finished[e["choices"][0]["index"].get<int>()]++;
  EXPECT_TRUE(done);
  EXPECT_EQ(finished[0], 1);
  EXPECT_EQ(finished[1], 1);

  const std::vector<std::pair<json, std::string>> bad = {
      {{{"prompt", {{1, 2}, json::array()}}}, "prompt[1]"},
      {{{"prompt", {"a", 5}}}, "prompt[1]"},
      {{{"prompt", {{1, 2}, {3, 99999}}}}, "prompt[1][1]"},
      {{{"prompt", std::vector<std::string>(65, "x")}, {"n", 2}}, "prompt"},
  };
  const size_t submitted = engine_->requests().size();
  for (const auto& [fields, param] : bad) {
    json b = {{"max_tokens", 2}};
    b.update(fields);
    res = Post("/v1/completions", b);
    ASSERT_EQ(res->status, 400) << b.dump() << " -> " << res->body;
    EXPECT_EQ(json::parse(res->body)["error"]["param"], param) << res->body;
  }
  EXPECT_EQ(engine_->requests().size(), submitted) << "a bad prompt must fail the request before any is submitted";
}

// Completions echo: the prompt comes back first; with logprobs, its tokens' logprobs too (the
// first is null), then the completion's — lm-evaluation-harness's loglikelihood payload.
TEST_F(HttpApiTest, EchoReturnsThePromptAndItsLogprobs) {
  json body = {{"prompt", {5, 6, 7}}, {"max_tokens", 1}, {"logprobs", 1}, {"echo", true}, {"temperature", 0}};
  auto res = Post("/v1/completions", body);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(engine_->last_request().sampling.prompt_logprobs, 1);
  json choice = json::parse(res->body)["choices"][0];
  const std::string prompt_text = *tokenizer_->Decode({5, 6, 7});
  EXPECT_EQ(choice["text"], prompt_text + *tokenizer_->Decode({100}));
  const json& lp = choice["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 4u);
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  EXPECT_FLOAT_EQ(lp["token_logprobs"][1].get<float>(), -1.0f / 8);
  EXPECT_FLOAT_EQ(lp["token_logprobs"][2].get<float>(), -2.0f / 8);
  EXPECT_FLOAT_EQ(lp["token_logprobs"][3].get<float>(), -0.25f);  // the generated token's
  EXPECT_EQ(lp["top_logprobs"][2].size(), 1u);
  size_t offset = 0;
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(lp["text_offset"][i].get<size_t>(), offset) << i;
    offset += lp["tokens"][i].get<std::string>().size();
  }

  // n = 2: the prompt is scored once (by the first choice); both choices report its logprobs.
  auto [two, requests] = PostChoices({{"prompt", {5, 6, 7}}, {"max_tokens", 1}, {"logprobs", 1}, {"echo", true}, {"n", 2}}, 2);
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].sampling.prompt_logprobs, 1);
  EXPECT_EQ(requests[1].sampling.prompt_logprobs, -1);
  EXPECT_EQ(two["choices"][1]["logprobs"]["token_logprobs"][2], two["choices"][0]["logprobs"]["token_logprobs"][2]);
  EXPECT_FLOAT_EQ(two["choices"][1]["logprobs"]["token_logprobs"][2].get<float>(), -2.0f / 8);

  // Echo without logprobs: the text only, and no prompt scoring asked of the engine.
  res = Post("/v1/completions", {{"prompt", "def f"}, {"max_tokens", 1}, {"echo", true}});
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(engine_->last_request().sampling.prompt_logprobs, -1);
  EXPECT_EQ(json::parse(res->body)["choices"][0]["text"], "def f" + *tokenizer_->Decode({100}));

  // Streaming: the prompt in a chunk of its own, first.
  res = Post("/v1/completions", {{"prompt", "def f"}, {"max_tokens", 2}, {"echo", true}, {"stream", true}});
  ASSERT_EQ(res->status, 200);
  bool done = false;
  std::vector<json> events = SseEvents(res->body, &done);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[0]["choices"][0]["text"], "def f");
  std::string text;
  for (const json& e : events) text += e["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(text, "def f" + *tokenizer_->Decode({100, 101}));

  // Streaming, two choices: each opens with the prompt and the one scoring's logprobs.
  res = Post("/v1/completions",
             {{"prompt", {5, 6, 7}}, {"max_tokens", 2}, {"echo", true}, {"logprobs", 1}, {"n", 2}, {"stream", true}});
  ASSERT_EQ(res->status, 200);
  int echoed = 0;
  for (const json& e : SseEvents(res->body, &done)) {
    const json& c = e["choices"][0];
    if (c["logprobs"].is_object() && c["logprobs"]["token_logprobs"].size() == 3) {
      ++echoed;
      EXPECT_TRUE(c["logprobs"]["token_logprobs"][0].is_null());
      EXPECT_FLOAT_EQ(c["logprobs"]["token_logprobs"][1].get<float>(), -1.0f / 8) << e;
    }
  }
  EXPECT_EQ(echoed, 2);
}

TEST_F(HttpApiTest, SeveralChoicesStreaming) {
  ScriptText("one two");
  json body = ChatBody("count");
  body["n"] = 2;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  auto res = Post("/v1/chat/completions", body);
  ASSERT_EQ(res->status, 200);
  bool done = false;
  std::vector<json> events = SseEvents(res->body, &done);
  EXPECT_TRUE(done);
  ASSERT_FALSE(events.empty());
  std::string content[2];
  int roles[2] = {0, 0}, finishes[2] = {0, 0};
  for (size_t e = 0; e + 1 < events.size(); ++e) {
    ASSERT_EQ(events[e]["choices"].size(), 1u) << events[e];
    const json& c = events[e]["choices"][0];
    const int i = c["index"].get<int>();
    ASSERT_TRUE(i == 0 || i == 1) << events[e];
    if (c["delta"].contains("role")) roles[i]++;
    if (c["delta"].contains("content")) content[i] += c["delta"]["content"].get<std::string>();
    if (!c["finish_reason"].is_null()) finishes[i]++;
  }
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(content[i], "one two") << i;
    EXPECT_EQ(roles[i], 1) << i;
    EXPECT_EQ(finishes[i], 1) << i;
  }
  const json& usage = events.back();
  EXPECT_TRUE(usage["choices"].empty());
  const int per_choice = static_cast<int>(Encode("one two").size()) + 1;
  EXPECT_EQ(usage["usage"]["completion_tokens"], 2 * per_choice);
  EXPECT_EQ(usage["usage"]["prompt_tokens"], static_cast<int>(engine_->last_request().prompt.size()));
}

TEST_F(HttpApiTest, ChatLogprobsAndMaxCompletionTokens) {
  json body = ChatBody("x");
  body["logprobs"] = true;
  body["top_logprobs"] = 3;
  body["max_completion_tokens"] = 2;
  body["ignore_eos"] = true;
  auto res = Post("/v1/chat/completions", body);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  json j = json::parse(res->body);
  const json& content = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[0]["top_logprobs"].size(), 3u);
  EXPECT_FLOAT_EQ(content[0]["logprob"].get<float>(), -0.25f);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
}

TEST_F(HttpApiTest, StreamIntervalGroupsSseChunks) {
  ScriptText("one two three four five six seven eight nine ten eleven twelve");
  const std::string full = "one two three four five six seven eight nine ten eleven twelve";
  const int n_tokens = static_cast<int>(Encode(full).size());
  json body = {{"prompt", "go"}, {"max_tokens", 100}, {"stream", true}, {"n", 2},
               {"stream_options", {{"include_usage", true}}}};
  auto count_chunks = [&](std::string* text0, std::string* text1) {
    auto res = Post("/v1/completions", body);
    EXPECT_EQ(res->status, 200);
    bool done = false;
    int chunks = 0;
    for (const json& e : SseEvents(res->body, &done)) {
      if (e["choices"].empty()) continue;  // usage
      ++chunks;
      (e["choices"][0]["index"] == 0 ? *text0 : *text1) += e["choices"][0]["text"].get<std::string>();
    }
    EXPECT_TRUE(done);
    return chunks;
  };
  std::string a0, a1, b0, b1;
  const int ungrouped = count_chunks(&a0, &a1);
  RestartWithStreamInterval({.tokens = 5, .max_delay = absl::Hours(1)});
  const int grouped = count_chunks(&b0, &b1);
  EXPECT_EQ(a0, full);
  EXPECT_EQ(a1, full);
  EXPECT_EQ(b0, full);
  EXPECT_EQ(b1, full);
  // Per choice: the first token, then groups of >= 5 tokens, then the end (EOS hidden).
  EXPECT_GE(ungrouped, 2 * n_tokens);
  EXPECT_LE(grouped, 2 * (1 + (n_tokens + 1) / 5 + 1));
}

TEST_F(HttpApiTest, StopStringsStringOrList) {
  ScriptText("first line\nsecond line\nthird");
  json body = {{"prompt", "go"}, {"max_tokens", 50}, {"stop", "\n"}};
  json j = json::parse(Post("/v1/completions", body)->body);
  EXPECT_EQ(j["choices"][0]["text"], "first line");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  body["stop"] = {"zzz", "second"};
  body["stream"] = true;
  auto res = Post("/v1/completions", body);
  bool done = false;
  std::string text;
  for (const json& e : SseEvents(res->body, &done)) text += e["choices"][0]["text"].get<std::string>();
  EXPECT_TRUE(done);
  EXPECT_EQ(text, "first line\n");
}

TEST_F(HttpApiTest, ToolCallsInOpenAiShape) {
  ScriptText("<think>need weather</think><tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n</tool_call>");
  json body = ChatBody("weather in Oslo?");
  body["tools"] = json::parse(
      R"([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])");
  json j = json::parse(Post("/v1/chat/completions", body)->body);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
  const json& msg = j["choices"][0]["message"];
  EXPECT_TRUE(msg["content"].is_null());
  EXPECT_EQ(msg["reasoning_content"], "need weather");
  EXPECT_EQ(j["usage"]["completion_tokens_details"]["reasoning_tokens"], Encode("<think>need weather</think>").size());
  EXPECT_LT(j["usage"]["completion_tokens_details"]["reasoning_tokens"], j["usage"]["completion_tokens"]);
  ASSERT_EQ(msg["tool_calls"].size(), 1u);
  EXPECT_EQ(msg["tool_calls"][0]["type"], "function");
  EXPECT_EQ(msg["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(msg["tool_calls"][0]["function"]["arguments"].get<std::string>()), json({{"city", "Oslo"}}));

  body["stream"] = true;
  bool done = false;
  std::vector<json> events = SseEvents(Post("/v1/chat/completions", body)->body, &done);
  json call;
  for (const json& e : events)
    if (!e["choices"].empty() && e["choices"][0]["delta"].contains("tool_calls")) call = e["choices"][0]["delta"]["tool_calls"][0];
  EXPECT_EQ(call["index"], 0);
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(events.back()["choices"][0]["finish_reason"], "tool_calls");
}

// Every response's calls were "call_0", "call_1", ...: in a multi-turn transcript a `tool`
// message's tool_call_id then matched calls of earlier turns. Ids are now random per request and
// per choice (and still distinct within a response).
TEST_F(HttpApiTest, ToolCallIdsAreUnique) {
  ScriptText("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n</tool_call>"
             "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Bergen</arg_value>\n</tool_call>");
  json body = ChatBody("weather in Oslo and Bergen?");
  body["tools"] = json::parse(R"([{"type":"function","function":{"name":"get_weather"}}])");
  body["n"] = 2;
  std::set<std::string> ids;
  for (int request = 0; request < 2; ++request) {
    auto res = Post("/v1/chat/completions", body);
    ASSERT_EQ(res->status, 200) << res->body;
    json j = json::parse(res->body);
    ASSERT_EQ(j["choices"].size(), 2u);
    for (const json& choice : j["choices"]) {
      ASSERT_EQ(choice["message"]["tool_calls"].size(), 2u) << choice;
      for (const json& call : choice["message"]["tool_calls"]) {
        const std::string id = call["id"];
        EXPECT_TRUE(absl::StartsWith(id, "call_")) << id;
        EXPECT_TRUE(ids.insert(id).second) << "repeated tool call id " << id;
      }
    }
  }
  EXPECT_EQ(ids.size(), 8u);

  body["stream"] = true;
  bool done = false;
  std::set<std::string> streamed;
  int calls = 0;
  for (const json& e : SseEvents(Post("/v1/chat/completions", body)->body, &done)) {
    if (e["choices"].empty() || !e["choices"][0]["delta"].contains("tool_calls")) continue;
    for (const json& call : e["choices"][0]["delta"]["tool_calls"]) {
      ++calls;
      streamed.insert(call["id"].get<std::string>());
      EXPECT_FALSE(ids.contains(call["id"].get<std::string>())) << call;
    }
  }
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(streamed.size(), 4u);
}

// A tool call the model cut off or got wrong is content, finished as the engine says: it used to
// answer the client 400 (its own request was fine) and leave the generation running.
TEST_F(HttpApiTest, MalformedToolCallFromTheModelIsContent) {
  ScriptText("Checking.<tool_call>get_weather\n<arg_key>ci");
  json body = ChatBody("weather in Oslo?");
  body["tools"] = json::parse(
      R"([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])");
  auto res = Post("/v1/chat/completions", body);
  ASSERT_EQ(res->status, 200) << res->body;
  json j = json::parse(res->body);
  EXPECT_NE(j["choices"][0]["finish_reason"], "tool_calls");
  const json& msg = j["choices"][0]["message"];
  EXPECT_EQ(msg["content"], "Checking.<tool_call>get_weather\n<arg_key>ci");
  EXPECT_TRUE(!msg.contains("tool_calls") || msg["tool_calls"].is_null() || msg["tool_calls"].empty()) << msg;
}

// With no tools in the request, an empty tools list or tool_choice "none", the model's
// <tool_call> text was still parsed into tool_calls (finish_reason "tool_calls"); vLLM parses
// calls only when the client offered tools, so now it is content.
TEST_F(HttpApiTest, NoToolsMeansNoToolCalls) {
  const std::string text = "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n</tool_call>";
  ScriptText(text);
  const json tools = json::parse(R"([{"type":"function","function":{"name":"get_weather"}}])");
  for (int variant = 0; variant < 3; ++variant) {
    json body = ChatBody("weather in Oslo?");
    if (variant == 1) body["tools"] = json::array();
    if (variant == 2) {
      body["tools"] = tools;
      body["tool_choice"] = "none";
    }
    auto res = Post("/v1/chat/completions", body);
    ASSERT_EQ(res->status, 200) << res->body;
    json j = json::parse(res->body);
    EXPECT_EQ(j["choices"][0]["finish_reason"], "stop") << variant;
    EXPECT_EQ(j["choices"][0]["message"]["content"], text) << variant;
    EXPECT_FALSE(j["choices"][0]["message"].contains("tool_calls")) << variant;

    body["stream"] = true;
    bool done = false;
    std::string content;
    for (const json& e : SseEvents(Post("/v1/chat/completions", body)->body, &done)) {
      if (e["choices"].empty()) continue;
      EXPECT_FALSE(e["choices"][0]["delta"].contains("tool_calls")) << e;
      if (e["choices"][0]["delta"].contains("content")) content += e["choices"][0]["delta"]["content"].get<std::string>();
    }
    EXPECT_EQ(content, text) << variant;
  }
  // tool_choice "none" still keeps the tools out of the prompt, as before.
  json body = ChatBody("weather in Oslo?");
  ASSERT_EQ(Post("/v1/chat/completions", body)->status, 200);
  const std::vector<int32_t> without = engine_->last_request().prompt;
  body["tools"] = tools;
  body["tool_choice"] = "none";
  ASSERT_EQ(Post("/v1/chat/completions", body)->status, 200);
  EXPECT_EQ(engine_->last_request().prompt, without);
}

// A tool call cut off by max_tokens (after its name, inside an argument value) came back as a
// real tool_calls entry with the truncated name/arguments and finish_reason "tool_calls"; agents
// would run it. Now its text is content and the request finishes "length", streamed or not.
TEST_F(HttpApiTest, ToolCallCutByMaxTokensIsContent) {
  const json tools = json::parse(
      R"([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])");
  for (const std::string text : {"Checking.<tool_call>get_weather\n",
                                 "Checking.<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Os"}) {
    ScriptText(text);
    json body = ChatBody("weather in Oslo?");
    body["tools"] = tools;
    body["max_tokens"] = Encode(text).size();  // the cut falls at the end of `text`
    auto res = Post("/v1/chat/completions", body);
    ASSERT_EQ(res->status, 200) << res->body;
    json j = json::parse(res->body);
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length") << text;
    const json& msg = j["choices"][0]["message"];
    EXPECT_EQ(msg["content"], text);
    EXPECT_FALSE(msg.contains("tool_calls")) << msg;

    body["stream"] = true;
    bool done = false;
    std::string content;
    std::string finish;
    for (const json& e : SseEvents(Post("/v1/chat/completions", body)->body, &done)) {
      if (e["choices"].empty()) continue;
      const json& c = e["choices"][0];
      EXPECT_FALSE(c["delta"].contains("tool_calls")) << e;
      if (c["delta"].contains("content")) content += c["delta"]["content"].get<std::string>();
      if (!c["finish_reason"].is_null()) finish = c["finish_reason"];
    }
    EXPECT_TRUE(done);
    EXPECT_EQ(content, text);
    EXPECT_EQ(finish, "length") << text;
  }
}

TEST_F(HttpApiTest, ErrorsUseOpenAiShapeAndCodes) {
  json body = ChatBody("x");
  body["temperature"] = -2;
  auto res = Post("/v1/chat/completions", body);
  ASSERT_EQ(res->status, 400);
  json e = json::parse(res->body)["error"];
  EXPECT_EQ(e["param"], "temperature");
  EXPECT_EQ(e["type"], "invalid_request_error");
  EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("temperature"));

  res = Post("/v1/completions", {{"prompt", "x"}, {"max_tokens", "lots"}});
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json::parse(res->body)["error"]["param"], "max_tokens");
  res = Post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 0}});  // not "unlimited"
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json::parse(res->body)["error"]["param"], "max_tokens");
  res = Post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"max_completion_tokens", -1}});
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json::parse(res->body)["error"]["param"], "max_completion_tokens");
  res = Post("/v1/chat/completions", {{"model", "m"}});
  EXPECT_EQ(json::parse(res->body)["error"]["param"], "messages");
  httplib::Client client("127.0.0.1", server_->http_port());
  res = client.Post("/v1/completions", "{not json", "application/json");
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(Get("/v1/nothing-here")->status, 404);

  engine_->SetMaxLive(0);
  res = Post("/v1/completions", {{"prompt", "x"}});
  EXPECT_EQ(res->status, 429);
  EXPECT_EQ(res->get_header_value("Retry-After"), "1");
  EXPECT_EQ(json::parse(res->body)["error"]["code"], "rate_limit_exceeded");
  engine_->SetMaxLive(64);

  model_.accept_any_name = false;
  res = Post("/v1/completions", {{"prompt", "x"}, {"model", "gpt-4o"}});
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(json::parse(res->body)["error"]["code"], "model_not_found");
  model_.accept_any_name = true;

  engine_->SetDraining(true);
  res = Post("/v1/completions", {{"prompt", "x"}});
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(Get("/health")->status, 503);
}

// The tokenizer's BPE word cache on /metrics: a prompt's words are merged once, then found.
TEST_F(HttpApiTest, TokenizerWordCacheMetrics) {
  auto counter = [&](const std::string& body, const std::string& name) -> double {
    const std::string key = name + "{model_name=\"glm5-tiny-code\"} ";
    const size_t at = body.find(key);
    EXPECT_NE(at, std::string::npos) << name;
    return at == std::string::npos ? -1 : std::stod(body.substr(at + key.size()));
  };
  const json prompt = {{"prompt", "def tokenizer_cache_probe(alpha, beta): return alpha"}, {"max_tokens", 1}};
  ASSERT_EQ(Post("/v1/completions", prompt)->status, 200);
  const std::string before = Get("/metrics")->body;
  ASSERT_EQ(Post("/v1/completions", prompt)->status, 200);
  const std::string after = Get("/metrics")->body;
  EXPECT_GT(counter(after, "glm:tokenizer_cache_words"), 0);
  // The same words again: all found in the cache, none merged anew.
  EXPECT_GE(counter(after, "glm:tokenizer_cache_hits_total") - counter(before, "glm:tokenizer_cache_hits_total"), 5);
  EXPECT_EQ(counter(after, "glm:tokenizer_cache_misses_total"), counter(before, "glm:tokenizer_cache_misses_total"));
}

TEST_F(HttpApiTest, HealthAndMetrics) {
  EXPECT_EQ(Get("/health")->status, 200);
  ASSERT_EQ(Post("/v1/completions", {{"prompt", {1, 2}}, {"max_tokens", 3}})->status, 200);
  ASSERT_EQ(Post("/v1/completions", {{"prompt", {1, 2}}, {"speculative", "bogus:1"}})->status, 400);  // the engine refuses it
  auto res = Get("/metrics");
  ASSERT_EQ(res->status, 200);
  for (const char* name :
       {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket", "vllm:time_per_output_token_seconds_bucket",
        "vllm:e2e_request_latency_seconds_count", "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
        "vllm:num_preemptions_total", "glm:step_seconds_total", "glm:comm_seconds_total",
        "glm:expert_bytes_read_total", "vllm:request_queue_time_seconds_count", "vllm:request_prefill_time_seconds_count",
        "vllm:request_decode_time_seconds_count", "vllm:request_inference_time_seconds_count",
        "vllm:request_prompt_tokens_bucket", "vllm:request_generation_tokens_bucket"}) {
    EXPECT_THAT(res->body, HasSubstr(name));
  }
  EXPECT_THAT(res->body, HasSubstr("vllm:request_success_total{model_name=\"glm5-tiny-code\",finished_reason=\"length\"} 1"));
  // A refused request is a failure, not a success.
  EXPECT_THAT(res->body, HasSubstr("glm:request_failures_total{model_name=\"glm5-tiny-code\",reason=\"rejected\"} 1"));
  EXPECT_THAT(res->body, ::testing::Not(HasSubstr("finished_reason=\"rejected\"")));
  EXPECT_THAT(res->body, HasSubstr("vllm:prompt_tokens_total{model_name=\"glm5-tiny-code\"} 2"));
  // Per worker rank: labelled by rank and stage; the total is their sum.
  EXPECT_THAT(res->body, HasSubstr("glm:rank_expert_bytes_read_total{model_name=\"glm5-tiny-code\",rank=\"2\",stage=\"1\"} 2000"));
  EXPECT_THAT(res->body, HasSubstr("glm:rank_step_seconds_total{model_name=\"glm5-tiny-code\",rank=\"1\",stage=\"0\"} 0.25"));
  EXPECT_THAT(res->body, HasSubstr("glm:rank_comm_seconds_total{model_name=\"glm5-tiny-code\",rank=\"1\",stage=\"0\"} 0.125"));
  EXPECT_THAT(res->body, HasSubstr("glm:rank_steps_total{model_name=\"glm5-tiny-code\",rank=\"2\",stage=\"1\"} 3"));
  EXPECT_THAT(res->body, HasSubstr("glm:expert_bytes_read_total{model_name=\"glm5-tiny-code\"} 3000"));
  EXPECT_THAT(res->body, HasSubstr("vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name=\"glm5-tiny-code\",position=\"1\"} 1"));
  EXPECT_THAT(res->body, HasSubstr("glm:spec_decode_num_draft_tokens_per_pos_total{model_name=\"glm5-tiny-code\",position=\"1\"} 4"));

  server_->Shutdown();
  StartServer(/*serving=*/false);
  EXPECT_EQ(Get("/health")->status, 503);
  EXPECT_EQ(Get("/ping")->status, 503);  // vLLM's /ping answers as /health does
  server_->SetServing(true);
  EXPECT_EQ(Get("/health")->status, 200);
  EXPECT_EQ(Get("/ping")->status, 200);
  EXPECT_EQ(Post("/ping", json::object())->status, 200);
}

// A request that does not fit the model's context gets OpenAI's code and wording, which client
// libraries match to trim a conversation (LiteLLM's ContextWindowExceededError); before, the
// code was null.
TEST_F(HttpApiTest, ContextOverflowIsContextLengthExceeded) {
  struct Case {
    std::string path;
    json body;
    std::string param;
  };
  const std::vector<Case> cases = {
      {"/v1/completions", json{{"prompt", {1, 2, 3}}, {"max_tokens", 4094}}, "max_tokens"},
      {"/v1/chat/completions",
       json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_completion_tokens", 4096}},
       "max_completion_tokens"},
      {"/v1/completions", json{{"prompt", std::vector<int>(5000, 7)}, {"max_tokens", 1}}, "prompt"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.body.dump().substr(0, 80));
    auto r = Post(c.path, c.body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    const json e = json::parse(r->body)["error"];
    EXPECT_EQ(e["code"], "context_length_exceeded");
    EXPECT_EQ(e["type"], "invalid_request_error");
    EXPECT_EQ(e["param"], c.param);
    EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("maximum context length is 4096 tokens"));
  }
}

}  // namespace
}  // namespace glm::testing
