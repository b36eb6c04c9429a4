// OpenAiResponseBuilder on its own: the logprob shapes of completions and chat responses for
// hand-made deltas (alternatives that leave out the sampled token, tokens that are part of a
// UTF-8 character), streamed and not.
#include "coordinator/api/openai_protocol.h"

#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

using json = nlohmann::json;

class OpenAiProtocolTest : public ApiTest {
 protected:
  void SetUp() override {  // no server needed
    model_.name = "m";
    model_.vocab_size = 4096;
    model_.tokenizer = tokenizer_;
    frontend_ = std::make_unique<api::TextFrontend>(&model_, 0);
  }
  void TearDown() override {}

  std::string Text(int32_t id) const { return frontend_->TokenText(id); }
  // A token's name in completions logprobs (its text, or "bytes:\\xNN" for part of a character).
  std::string Name(int32_t id) const { return frontend_->LogprobTokenName(id); }

  // The choice objects of an SSE body's chunks, in order.
  static std::vector<json> Choices(const std::string& sse) {
    std::vector<json> out;
    for (absl::string_view block : absl::StrSplit(sse, "\n\n", absl::SkipEmpty())) {
      if (block == "data: [DONE]") continue;
      json j = json::parse(block.substr(6));
      if (!j["choices"].empty()) out.push_back(j["choices"][0]);
    }
    return out;
  }

  std::unique_ptr<api::TextFrontend> frontend_;
};

// vLLM's `documents` reach the chat template as its `documents` variable (it was accepted and
// dropped); chat_template_kwargs.documents wins; anything but an array of objects is refused.
TEST_F(OpenAiProtocolTest, ChatDocumentsBecomeATemplateVariable) {
  const json messages = {{{"role", "user"}, {"content", "q"}}};
  const json docs = {{{"title", "a"}, {"text", "x"}}};
  auto r = api::ParseOpenAiRequest(api::OpenAiEndpoint::kChat, {{"messages", messages}, {"documents", docs}}, "m");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->api.template_kwargs["documents"], docs);
  r = api::ParseOpenAiRequest(api::OpenAiEndpoint::kChat,
                              {{"messages", messages}, {"documents", docs}, {"chat_template_kwargs", {{"documents", 1}}}},
                              "m");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->api.template_kwargs["documents"], 1);
  for (const json& bad : {json("x"), json::array({1})}) {
    r = api::ParseOpenAiRequest(api::OpenAiEndpoint::kChat, {{"messages", messages}, {"documents", bad}}, "m");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("documents"), std::string::npos) << r.status();
  }
}

// Completions top_logprobs left out the sampled token when it was not among the `logprobs` best
// alternatives ({} for logprobs: 0). OpenAI and vLLM list up to logprobs + 1 entries, always the
// sampled token among them; the echoed prompt's entries likewise include the prompt token.
TEST_F(OpenAiProtocolTest, CompletionTopLogprobsIncludeTheSampledToken) {
  api::OpenAiRequest request;
  request.endpoint = api::OpenAiEndpoint::kCompletions;
  request.logprobs = true;
  api::OutputDelta d;
  d.tokens = {100, 101};
  d.text = Text(100) + Text(101);
  d.logprobs = {{100, -0.5f, {{102, -0.1f}, {103, -0.2f}}}, {101, -1.0f, {}}};
  d.finished = true;
  d.finish_reason = "length";

  api::OpenAiResponseBuilder whole(&request, frontend_.get(), "cmpl-1", 0);
  whole.Accumulate(d);
  const json lp = whole.Final()["choices"][0]["logprobs"];
  const json expect0 = {{Name(102), -0.1f}, {Name(103), -0.2f}, {Name(100), -0.5f}};
  EXPECT_EQ(lp["top_logprobs"][0], expect0);
  EXPECT_EQ(lp["top_logprobs"][1], json({{Name(101), -1.0f}}));  // logprobs: 0

  api::OpenAiResponseBuilder streamed(&request, frontend_.get(), "cmpl-1", 0);
  const std::vector<json> chunks = Choices(streamed.StreamChunks(d));
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks[0]["logprobs"]["top_logprobs"][0], expect0);
  EXPECT_EQ(chunks[0]["logprobs"]["top_logprobs"][1], json({{Name(101), -1.0f}}));

  // Echo: the prompt [5, 6, 7]; position 1 scored with alternatives that leave out token 6.
  request.echo = true;
  api::OpenAiResponseBuilder echo(&request, frontend_.get(), "cmpl-1", 0);
  echo.SetPromptTokenIds({5, 6, 7});
  echo.SetEchoPrompt(Text(5) + Text(6) + Text(7));
  api::OutputDelta e = d;
  e.prompt_logprobs = {{6, -0.75f, {{200, -0.25f}}}, {7, -0.125f, {}}};
  echo.Accumulate(e);
  const json elp = echo.Final()["choices"][0]["logprobs"];
  ASSERT_EQ(elp["top_logprobs"].size(), 5u);
  EXPECT_TRUE(elp["top_logprobs"][0].is_null());  // the first prompt token has no logprob
  EXPECT_TRUE(elp["token_logprobs"][0].is_null());
  EXPECT_EQ(elp["top_logprobs"][1], json({{Name(200), -0.25f}, {Name(6), -0.75f}}));
  EXPECT_EQ(elp["top_logprobs"][2], json({{Name(7), -0.125f}}));
  EXPECT_EQ(elp["top_logprobs"][3], expect0);
}

// Completions logprobs named every token that is only part of a UTF-8 character by its lossy
// text U+FFFD, so in a top_logprobs object such alternatives overwrite each other (logprobs: 2
// came back with one entry). They are OpenAI's "bytes:\\xNN" now, distinct per token.
TEST_F(OpenAiProtocolTest, CompletionLogprobsNamePartialCharactersByTheirBytes) {
  const int32_t half_emoji = *tokenizer_->TokenToId("ðŁ");  // bytes F0 9F
  const int32_t other_half = *tokenizer_->TokenToId("ĺ");   // byte 98
  EXPECT_EQ(frontend_->LogprobTokenName(half_emoji), "bytes:\\xf0\\x9f");
  EXPECT_EQ(frontend_->LogprobTokenName(other_half), "bytes:\\x98");
  EXPECT_EQ(frontend_->LogprobTokenName(100), Text(100));
  api::OpenAiRequest request;
  request.endpoint = api::OpenAiEndpoint::kCompletions;
  request.logprobs = true;
  api::OutputDelta d;
  d.tokens = {half_emoji};
  d.logprobs = {{half_emoji, -0.5f, {{other_half, -0.25f}, {half_emoji, -0.5f}}}};
  d.finished = true;
  d.finish_reason = "length";
  api::OpenAiResponseBuilder whole(&request, frontend_.get(), "cmpl-1", 0);
  whole.Accumulate(d);
  const json lp = whole.Final()["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"][0], "bytes:\\xf0\\x9f");
  EXPECT_EQ(lp["top_logprobs"][0], json({{"bytes:\\x98", -0.25f}, {"bytes:\\xf0\\x9f", -0.5f}}));
}

// Logprob `bytes` of a token that is only part of a UTF-8 character were U+FFFD's bytes
// [239,191,189] instead of the token's own (e.g. [240,159]); the token text stays lossy.
TEST_F(OpenAiProtocolTest, ChatLogprobBytesAreTheTokensRawBytes) {
  const int32_t half_emoji = *tokenizer_->TokenToId("ðŁ");  // bytes F0 9F
  api::OpenAiRequest request;
  request.endpoint = api::OpenAiEndpoint::kChat;
  request.logprobs = true;
  api::OutputDelta d;
  d.tokens = {half_emoji};
  d.logprobs = {{half_emoji, -0.5f, {{half_emoji, -0.5f}, {100, -1.0f}}}};
  d.finished = true;
  d.finish_reason = "length";
  api::OpenAiResponseBuilder whole(&request, frontend_.get(), "chatcmpl-1", 0);
  whole.Accumulate(d);
  const json content = whole.Final()["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 1u);
  EXPECT_EQ(content[0]["bytes"], json({240, 159}));
  EXPECT_EQ(content[0]["token"], "\xEF\xBF\xBD");
  EXPECT_EQ(content[0]["top_logprobs"][0]["bytes"], json({240, 159}));
  EXPECT_EQ(content[0]["top_logprobs"][1]["bytes"], json({'p'}));
  api::OpenAiResponseBuilder streamed(&request, frontend_.get(), "chatcmpl-1", 0);
  bool seen = false;
  for (const json& c : Choices(streamed.StreamChunks(d))) {
    if (!c["logprobs"].is_object()) continue;
    EXPECT_EQ(c["logprobs"]["content"][0]["bytes"], json({240, 159}));
    seen = true;
  }
  EXPECT_TRUE(seen);
}

// Completions text_offset counted each token's lossy text in UTF-8 bytes, so the 3 bytes of every
// U+FFFD of a split character (and multi-byte characters themselves) pushed later offsets past
// the text. Offsets are code-point indices into the returned text now, streamed or not, after an
// echoed prompt too (whose special tokens the text does not show take no room).
TEST_F(OpenAiProtocolTest, CompletionTextOffsetsAreCodePointsOfTheText) {
  const std::string text = "a\xF0\x9F\x98\x80" "b";  // a😀b: 3 code points
  const std::vector<int32_t> ids = Encode(text);
  ASSERT_GE(ids.size(), 4u) << "the emoji must be split over several tokens";
  std::vector<size_t> expected;
  for (size_t i = 0; i < ids.size(); ++i) expected.push_back(i == 0 ? 0 : i + 1 == ids.size() ? 2 : 1);
  api::OpenAiRequest request;
  request.endpoint = api::OpenAiEndpoint::kCompletions;
  request.logprobs = true;
  api::OutputDelta d;
  d.tokens = ids;
  d.text = text;
  for (int32_t id : ids) d.logprobs.push_back({id, -1.0f, {}});
  d.finished = true;
  d.finish_reason = "length";

  api::OpenAiResponseBuilder whole(&request, frontend_.get(), "cmpl-1", 0);
  whole.Accumulate(d);
  EXPECT_EQ(whole.Final()["choices"][0]["logprobs"]["text_offset"], json(expected));

  // Streamed one token per chunk.
  api::OpenAiResponseBuilder streamed(&request, frontend_.get(), "cmpl-1", 0);
  std::vector<size_t> offsets;
  for (size_t i = 0; i < ids.size(); ++i) {
    api::OutputDelta one;
    one.tokens = {ids[i]};
    one.logprobs = {d.logprobs[i]};
    for (const json& c : Choices(streamed.StreamChoiceChunks(one)))
      if (c["logprobs"].is_object())
        for (const json& o : c["logprobs"]["text_offset"]) offsets.push_back(o.get<size_t>());
  }
  EXPECT_EQ(offsets, expected);

  // Echo of the prompt [gMASK] a😀 (the special token is not in the echoed text), then "b".
  request.echo = true;
  std::vector<int32_t> prompt = {2};
  const std::vector<int32_t> head(ids.begin(), ids.end() - 1);
  prompt.insert(prompt.end(), head.begin(), head.end());
  api::OpenAiResponseBuilder echo(&request, frontend_.get(), "cmpl-1", 0);
  echo.SetPromptTokenIds(prompt);
  echo.SetEchoPrompt(text.substr(0, text.size() - 1));
  api::OutputDelta tail;
  tail.tokens = {ids.back()};
  tail.text = "b";
  tail.logprobs = {d.logprobs.back()};
  tail.finished = true;
  tail.finish_reason = "length";
  echo.Accumulate(tail);
  const json choice = echo.Final()["choices"][0];
  EXPECT_EQ(choice["text"], text);
  std::vector<size_t> echo_expected = {0};
  echo_expected.insert(echo_expected.end(), expected.begin(), expected.end());
  EXPECT_EQ(choice["logprobs"]["text_offset"], json(echo_expected));
}

}  // namespace
}  // namespace glm::testing
