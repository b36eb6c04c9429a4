// RequestOutput on its own: detokenization across token boundaries, stop-string hold-back, the
// hidden EOS, and the chat parser split.
#include "coordinator/api/request_output.h"

#include "gtest/gtest.h"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

class RequestOutputTest : public ApiTest {
 protected:
  void SetUp() override {}  // no server needed
  void TearDown() override {}

  // Feeds `ids` one event each (the last one finished with `reason`); returns the deltas' texts.
  std::vector<std::string> Feed(api::RequestOutput* out, const std::vector<int32_t>& ids, const std::string& reason,
                                api::OutputDelta* last = nullptr) {
    std::vector<std::string> texts;
    for (size_t i = 0; i < ids.size(); ++i) {
      scheduler::GenerationEvent e;
      e.tokens = {ids[i]};
      e.completion_tokens = static_cast<int32_t>(i + 1);
      e.finished = i + 1 == ids.size();
      if (e.finished) e.finish_reason = reason;
      auto d = out->Consume(e);
      EXPECT_TRUE(d.ok()) << d.status();
      texts.push_back(d->text);
      if (last != nullptr) *last = *d;
      if (d->finished) break;
    }
    return texts;
  }

  // One token per byte-level piece, so text arrives split inside words and characters.
  std::vector<int32_t> Pieces(const std::string& text) { return Encode(text); }
};

TEST_F(RequestOutputTest, StopStringSplitAcrossTokensIsHeldBackThenCut) {
  api::OutputOptions o;
  o.stop = {"<END>"};
  api::RequestOutput out(tokenizer_, o);
  api::OutputDelta last;
  std::vector<int32_t> ids = Pieces("abc <EN");
  std::vector<int32_t> rest = Pieces("D> tail");
  ids.insert(ids.end(), rest.begin(), rest.end());
  auto texts = Feed(&out, ids, "length", &last);
  std::string all;
  for (const auto& t : texts) {
    EXPECT_EQ(t.find('<'), std::string::npos) << "a partial stop string leaked: " << t;
    all += t;
  }
  EXPECT_EQ(all, "abc ");
  EXPECT_TRUE(last.stop_string_matched);
  EXPECT_EQ(last.finish_reason, "stop");
  EXPECT_TRUE(out.finished());
}

TEST_F(RequestOutputTest, UnmatchedPartialStopIsReleased) {
  api::OutputOptions o;
  o.stop = {"<END>"};
  api::RequestOutput out(tokenizer_, o);
  auto texts = Feed(&out, Pieces("x <EN y <E"), "length");
  std::string all;
  for (const auto& t : texts) all += t;
  EXPECT_EQ(all, "x <EN y <E");
}

TEST_F(RequestOutputTest, MultiByteCharactersArriveWhole) {
  api::RequestOutput out(tokenizer_, api::OutputOptions{});
  const std::string text = "héllo wörld ✓ 日本";
  auto texts = Feed(&out, Pieces(text), "length");
  std::string all;
  for (const auto& t : texts) all += t;
  EXPECT_EQ(all, text);
}

TEST_F(RequestOutputTest, EosTextHiddenButTokenKept) {
  api::OutputOptions o;
  o.hidden_stop_ids = {0};
  o.skip_special_tokens = false;
  api::RequestOutput out(tokenizer_, o);
  std::vector<int32_t> ids = Pieces("done");
  ids.push_back(0);
  api::OutputDelta last;
  auto texts = Feed(&out, ids, "stop", &last);
  std::string all;
  for (const auto& t : texts) all += t;
  EXPECT_EQ(all, "done");
  EXPECT_EQ(last.tokens, std::vector<int32_t>{0});
}

TEST_F(RequestOutputTest, ChatSplitsReasoningContentAndToolCalls) {
  api::OutputOptions o;
  o.parse_chat = true;
  api::RequestOutput out(tokenizer_, o);
  std::string reasoning, content;
  int calls = 0;
  std::string last_reason;
  const std::vector<int32_t> ids =
      Pieces("<think>hmm</think>Sure.<tool_call>f\n<arg_key>a</arg_key>\n<arg_value>1</arg_value>\n</tool_call>");
  for (size_t i = 0; i < ids.size(); ++i) {
    scheduler::GenerationEvent e;
    e.tokens = {ids[i]};
    e.finished = i + 1 == ids.size();
    if (e.finished) e.finish_reason = "stop";
    auto d = out.Consume(e);
    ASSERT_TRUE(d.ok()) << d.status();
    reasoning += d->reasoning;
    content += d->text;
    calls += static_cast<int>(d->tool_calls.size());
    if (d->finished) last_reason = d->finish_reason;
  }
  EXPECT_EQ(reasoning, "hmm");
  EXPECT_EQ(content, "Sure.");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(last_reason, "tool_calls");
}

TEST_F(RequestOutputTest, EngineErrorIsReturned) {
  api::RequestOutput out(tokenizer_, api::OutputOptions{});
  scheduler::GenerationEvent e;
  e.finished = true;
  e.error = absl::UnavailableError("cluster gone");
  EXPECT_EQ(out.Consume(e).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace glm::testing
