// vLLM's additions to the response: return_token_ids (the prompt's and each choice's token ids, as
// RL and agent-training frameworks read them instead of re-tokenising the text),
// return_tokens_as_token_ids (logprobs name tokens "token_id:N"), whole and streamed, and
// stream_options.continuous_usage_stats (usage on every chunk).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

using json = nlohmann::json;

class ResponseExtrasApiTest : public ApiTest {
 protected:
  json PostOk(const std::string& path, const json& body) {
    auto res = PostJson(path, body.dump());
    EXPECT_TRUE(res);
    if (!res) return json();
    EXPECT_EQ(res->status, 200) << res->body;
    return body.value("stream", false) ? json(res->body) : json::parse(res->body, nullptr, false);
  }
  // The JSON events of an SSE body, [DONE] left out.
  static std::vector<json> Events(const json& sse) {
    std::vector<json> out;
    for (absl::string_view block : absl::StrSplit(sse.get<std::string>(), "\n\n", absl::SkipEmpty())) {
      EXPECT_TRUE(absl::StartsWith(block, "data: ")) << block;
      if (block == "data: [DONE]") continue;
      out.push_back(json::parse(block.substr(6)));
    }
    return out;
  }
  // What the fake engine generates for `text`: its tokens, then EOS.
  std::vector<int32_t> Generated(const std::string& text) {
    std::vector<int32_t> ids = Encode(text);
    ids.push_back(FakeEngineOptions{}.eos_token_ids.at(0));
    return ids;
  }
};

TEST_F(ResponseExtrasApiTest, CompletionsCarryThePromptsAndEachChoicesIds) {
  ScriptText("Hello world");
  json r = PostOk("/v1/completions", {{"prompt", {5, 6, 7}}, {"max_tokens", 20}, {"n", 2}, {"return_token_ids", true}});
  ASSERT_EQ(r["choices"].size(), 2u) << r;
  for (const json& choice : r["choices"]) {
    EXPECT_EQ(choice["prompt_token_ids"], json({5, 6, 7}));
    EXPECT_EQ(choice["token_ids"].get<std::vector<int32_t>>(), Generated("Hello world"));
  }
  EXPECT_EQ(r["usage"]["completion_tokens"], 2 * Generated("Hello world").size());
  // Several prompts: each choice its own.
  r = PostOk("/v1/completions", {{"prompt", {{5, 6}, {8}}}, {"max_tokens", 20}, {"return_token_ids", true}});
  EXPECT_EQ(r["choices"][0]["prompt_token_ids"], json({5, 6}));
  EXPECT_EQ(r["choices"][1]["prompt_token_ids"], json({8}));
  // Without the flag, neither key.
  r = PostOk("/v1/completions", {{"prompt", {5, 6, 7}}, {"max_tokens", 20}});
  EXPECT_FALSE(r["choices"][0].contains("token_ids")) << r;
  EXPECT_FALSE(r["choices"][0].contains("prompt_token_ids")) << r;
}

TEST_F(ResponseExtrasApiTest, ChatCarriesThePromptOnTheResponse) {
  ScriptText("Sure.");
  json r = PostOk("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                                           {"return_token_ids", true}});
  EXPECT_EQ(r["prompt_token_ids"].get<std::vector<int32_t>>(), engine_->last_request().prompt);
  EXPECT_EQ(r["choices"][0]["token_ids"].get<std::vector<int32_t>>(), Generated("Sure."));
  EXPECT_EQ(r["choices"][0]["message"]["content"], "Sure.");
  r = PostOk("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi"}}}}});
  EXPECT_FALSE(r.contains("prompt_token_ids"));
  EXPECT_FALSE(r["choices"][0].contains("token_ids"));
}

// Streamed: the chat role chunk carries the prompt's ids (completions: the choice's first chunk),
// each chunk its new ids; together they are every generated id, those of a character split over
// several tokens and the EOS included, however the stream groups them.
TEST_F(ResponseExtrasApiTest, StreamedChunksCarryTheirNewIds) {
  for (const int interval : {1, 4}) {
    SCOPED_TRACE(interval);
    scheduler::StreamInterval si;
    si.tokens = interval;
    RestartWithStreamInterval(si);
    const std::string text = "caf\xC3\xA9 \xF0\x9F\x98\x80 ok";  // é and an emoji: tokens without text of their own
    ScriptText(text);
    const std::vector<json> chat = Events(PostOk(
        "/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"stream", true},
                                 {"return_token_ids", true}, {"stream_options", {{"include_usage", true}}}}));
    ASSERT_GE(chat.size(), 3u);
    EXPECT_EQ(chat[0]["prompt_token_ids"].get<std::vector<int32_t>>(), engine_->last_request().prompt);
    std::vector<int32_t> ids;
    std::string content;
    for (size_t i = 1; i < chat.size(); ++i) {
      EXPECT_FALSE(chat[i].contains("prompt_token_ids")) << chat[i];
      if (chat[i]["choices"].empty()) continue;  // the usage chunk
      const json& choice = chat[i]["choices"][0];
      ASSERT_TRUE(choice.contains("token_ids")) << chat[i];
      for (int32_t id : choice["token_ids"]) ids.push_back(id);
      content += choice["delta"].value("content", "");
    }
    EXPECT_EQ(ids, Generated(text));
    EXPECT_EQ(content, text);
    EXPECT_EQ(chat.back()["usage"]["completion_tokens"], ids.size());

    const std::vector<json> completion = Events(PostOk(
        "/v1/completions", {{"prompt", {9, 10}}, {"max_tokens", 30}, {"stream", true}, {"return_token_ids", true}}));
    ids.clear();
    for (size_t i = 0; i < completion.size(); ++i) {
      const json& choice = completion[i]["choices"][0];
      EXPECT_EQ(choice.contains("prompt_token_ids"), i == 0) << completion[i];
      for (int32_t id : choice["token_ids"]) ids.push_back(id);
    }
    EXPECT_EQ(completion[0]["choices"][0]["prompt_token_ids"], json({9, 10}));
    EXPECT_EQ(ids, Generated(text));
  }
}

// return_tokens_as_token_ids: every token logprobs name, chosen or alternative, is "token_id:N".
TEST_F(ResponseExtrasApiTest, LogprobsNameTokensByIdWhenAsked) {
  ScriptText("ab");
  const std::vector<int32_t> ids = Generated("ab");
  json r = PostOk("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                                           {"logprobs", true}, {"top_logprobs", 2},
                                           {"return_tokens_as_token_ids", true}});
  const json& content = r["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), ids.size()) << r;
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(content[i]["token"], "token_id:" + std::to_string(ids[i]));
    for (const json& alt : content[i]["top_logprobs"])
      EXPECT_TRUE(absl::StartsWith(alt["token"].get<std::string>(), "token_id:")) << alt;
  }
  r = PostOk("/v1/completions", {{"prompt", {5, 6}}, {"max_tokens", 8}, {"logprobs", 1}, {"echo", true},
                                 {"return_tokens_as_token_ids", true}});
  const json& lp = r["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 2 + ids.size()) << r;  // the echoed prompt, then the completion
  EXPECT_EQ(lp["tokens"][0], "token_id:5");
  EXPECT_EQ(lp["tokens"][2], "token_id:" + std::to_string(ids[0]));
  EXPECT_TRUE(lp["top_logprobs"][2].contains("token_id:" + std::to_string(ids[0]))) << lp;
  // The text itself is unchanged.
  EXPECT_EQ(r["choices"][0]["text"].get<std::string>().substr(r["choices"][0]["text"].get<std::string>().size() - 2), "ab");
}

// continuous_usage_stats: each chunk of a choice carries its usage so far (completion tokens
// counting up to the total); the final usage chunk as ever; without it, null as OpenAI sends.
TEST_F(ResponseExtrasApiTest, ContinuousUsageStatsPutUsageOnEveryChunk) {
  ScriptText("one two three");
  const size_t generated = Generated("one two three").size();
  for (const bool continuous : {true, false}) {
    const std::vector<json> events = Events(PostOk(
        "/v1/completions", {{"prompt", {5, 6}}, {"max_tokens", 30}, {"stream", true},
                            {"stream_options", {{"include_usage", true}, {"continuous_usage_stats", continuous}}}}));
    ASSERT_GE(events.size(), 3u);
    int64_t last = 0;
    for (size_t i = 0; i + 1 < events.size(); ++i) {
      const json& usage = events[i]["usage"];
      if (!continuous) {
        EXPECT_TRUE(usage.is_null()) << events[i];
        continue;
      }
      EXPECT_EQ(usage["prompt_tokens"], 2) << events[i];
      EXPECT_GE(usage["completion_tokens"].get<int64_t>(), last) << events[i];
      last = usage["completion_tokens"].get<int64_t>();
      EXPECT_EQ(usage["total_tokens"], 2 + last);
    }
    if (continuous) {
      EXPECT_EQ(last, static_cast<int64_t>(generated));
    }
    EXPECT_TRUE(events.back()["choices"].empty());
    EXPECT_EQ(events.back()["usage"]["completion_tokens"], generated);
  }
}

// vLLM's prompt_logprobs: per prompt position after the first, the prompt token (its logprob and
// rank) and the best N alternatives (ranks 1..N), with their text; on every completions choice
// (each of n; the prompt is scored once) and on the chat response. With echo + logprobs, the echo
// keeps to its own `logprobs` alternatives. Not with stream; N in [0, 20].
TEST_F(ResponseExtrasApiTest, PromptLogprobsGiveEveryPromptTokensLogprobAndRank) {
  auto Text = [](int32_t id) { return *tokenizer_->Decode({id}); };
  ScriptText("ok");
  json r = PostOk("/v1/completions", {{"prompt", {5, 6, 7}}, {"max_tokens", 2}, {"n", 2}, {"prompt_logprobs", 2}});
  EXPECT_EQ(engine_->requests().front().sampling.prompt_logprobs, 2);
  for (const json& choice : r["choices"]) {
    const json& lps = choice["prompt_logprobs"];
    ASSERT_EQ(lps.size(), 3u) << choice;
    EXPECT_TRUE(lps[0].is_null());
    for (int p : {1, 2}) {
      const std::string id = std::to_string(p == 1 ? 6 : 7);
      ASSERT_EQ(lps[p].size(), 2u) << lps[p];  // the token is the best here, then 200
      EXPECT_FLOAT_EQ(lps[p][id]["logprob"].get<float>(), -p / 8.0f);
      EXPECT_EQ(lps[p][id]["rank"], 10 + p);
      EXPECT_EQ(lps[p][id]["decoded_token"], Text(p == 1 ? 6 : 7));
      EXPECT_EQ(lps[p]["200"]["rank"], 2);
      EXPECT_FLOAT_EQ(lps[p]["200"]["logprob"].get<float>(), -p / 8.0f - 1);
    }
  }
  ScriptText("ok");
  r = PostOk("/v1/completions", {{"prompt", {5, 6, 7}}, {"max_tokens", 2}, {"prompt_logprobs", 0}});
  EXPECT_EQ(r["choices"][0]["prompt_logprobs"][1], json({{"6", {{"logprob", -0.125}, {"rank", 11}, {"decoded_token", Text(6)}}}}));
  // Echo with logprobs: 1 alternative there, 3 in prompt_logprobs.
  ScriptText("ok");
  r = PostOk("/v1/completions", {{"prompt", {5, 6, 7}}, {"max_tokens", 2}, {"echo", true}, {"logprobs", 1}, {"prompt_logprobs", 3}});
  EXPECT_EQ(engine_->last_request().sampling.prompt_logprobs, 3);
  EXPECT_EQ(r["choices"][0]["logprobs"]["top_logprobs"][1].size(), 1u) << r;  // the token, also the best
  EXPECT_EQ(r["choices"][0]["prompt_logprobs"][1].size(), 3u) << r;          // 6, 200, 201
  ScriptText("ok");
  r = PostOk("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"prompt_logprobs", 1}});
  const std::vector<int32_t> prompt = engine_->last_request().prompt;
  ASSERT_EQ(r["prompt_logprobs"].size(), prompt.size()) << r;
  EXPECT_EQ(r["prompt_logprobs"].back()[std::to_string(prompt.back())]["rank"], 10 + static_cast<int>(prompt.size()) - 1);
  EXPECT_FALSE(r["choices"][0].contains("prompt_logprobs"));
  r = PostOk("/v1/completions", {{"prompt", {5, 6}}, {"max_tokens", 2}});
  EXPECT_FALSE(r["choices"][0].contains("prompt_logprobs"));

  for (const json& bad : {json{{"prompt_logprobs", -1}}, json{{"prompt_logprobs", 21}}, json{{"prompt_logprobs", "2"}},
                          json{{"prompt_logprobs", 1}, {"stream", true}}}) {
    json body = {{"prompt", {5, 6}}, {"max_tokens", 2}};
    body.update(bad);
    auto res = PostJson("/v1/completions", body.dump());
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << res->body;
    EXPECT_EQ(json::parse(res->body)["error"]["param"], "prompt_logprobs") << bad;
  }
}

// vLLM's include_stop_str_in_output keeps the matched stop string in the text (it was ignored),
// and the text of the token that stopped the request: a stop_token_ids entry (it was always
// dropped) or EOS, whose special-token text skip_special_tokens still drops.
TEST_F(ResponseExtrasApiTest, IncludeStopStrInOutputKeepsTheStopStringAndStopToken) {
  for (bool include : {false, true}) {
    ScriptText("alpha beta STOP gamma");
    const json c = PostOk("/v1/completions", {{"prompt", "x"}, {"max_tokens", 20}, {"stop", "STOP"},
                                              {"include_stop_str_in_output", include}})["choices"][0];
    EXPECT_EQ(c["text"], include ? "alpha beta STOP" : "alpha beta ");
    EXPECT_EQ(c["finish_reason"], "stop");
  }
  const std::vector<int32_t> ids = Encode("alpha beta gamma");
  ASSERT_GE(ids.size(), 2u);
  const std::vector<int32_t> head(ids.begin(), ids.end() - 1);
  auto Decode = [](const std::vector<int32_t>& v) {
    auto text = tokenizer_->Decode(v, /*skip_special_tokens=*/true);
    EXPECT_TRUE(text.ok()) << text.status();
    return text.ok() ? *text : std::string();
  };
  for (bool include : {false, true}) {
    ScriptText("alpha beta gamma");
    const json c = PostOk("/v1/completions", {{"prompt", "x"}, {"max_tokens", 20}, {"stop_token_ids", {ids.back()}},
                                              {"include_stop_str_in_output", include}})["choices"][0];
    EXPECT_EQ(c["text"], include ? Decode(ids) : Decode(head)) << include;
    EXPECT_EQ(c["finish_reason"], "stop");
    // EOS (the fake engine's, after the script): its special text stays out either way.
    const json eos = PostOk("/v1/completions", {{"prompt", "x"}, {"max_tokens", 20},
                                                {"include_stop_str_in_output", include}})["choices"][0];
    EXPECT_EQ(eos["text"], Decode(ids)) << include;
    EXPECT_EQ(eos["finish_reason"], "stop");
  }
}

TEST_F(ResponseExtrasApiTest, NonBooleansAreRefused) {
  for (const char* field : {"return_token_ids", "return_tokens_as_token_ids"}) {
    auto res = PostJson("/v1/completions", json{{"prompt", "x"}, {field, "yes"}}.dump());
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << res->body;
    EXPECT_EQ(json::parse(res->body)["error"]["param"], field) << res->body;
  }
  auto res = PostJson("/v1/completions",
                      R"({"prompt":"x","stream":true,"stream_options":{"continuous_usage_stats":1}})");
  ASSERT_TRUE(res);
  EXPECT_EQ(json::parse(res->body)["error"]["param"], "stream_options.continuous_usage_stats") << res->body;
}

}  // namespace
}  // namespace glm::testing
