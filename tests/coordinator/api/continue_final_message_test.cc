// continue_final_message (vLLM's chat field) and Anthropic's assistant prefill cut the prompt
// right after the final message's content, as transformers' apply_chat_template does: a template
// that closes an assistant turn with an end-of-turn token (DeepSeek-V3's <｜end▁of▁sentence｜>)
// used to leave it in the prompt, so the model "continued" after a finished turn.
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/api/anthropic_protocol.h"
#include "coordinator/api/api_server.h"
#include "coordinator/api/openai_protocol.h"
#include "coordinator/api/text_frontend.h"
#include "coordinator/tokenizer/chat_template.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace glm::testing {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

constexpr char kDeepSeekPrompt[] = "<｜begin▁of▁sentence｜><｜User｜>Write hello<｜Assistant｜>";
constexpr char kEndOfSentence[] = "<｜end▁of▁sentence｜>";

class ContinueFinalMessageTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    for (const std::string& dir : {std::string(GLM_TEST_FIXTURES_DIR) + "/tokenizers/deepseek_v3",
                                   std::string(GLM_MODELS_DIR) + "/glm5-tiny-code"}) {
      auto tok = tokenizer::Tokenizer::FromFile(dir);
      ASSERT_TRUE(tok.ok()) << tok.status();
      auto tmpl = tokenizer::ChatTemplate::FromTokenizerConfig(dir);
      ASSERT_TRUE(tmpl.ok()) << tmpl.status();
      api::ServedModel* model = dir.find("deepseek") != std::string::npos ? &deepseek_ : &glm_;
      model->name = "m";
      model->max_context = 4096;
      model->tokenizer = tok->release();
      model->chat_template = tmpl->release();
    }
  }

  // The prompt text a chat completions body renders to, through the request path (ParseOpenAiRequest
  // with the body's text, then EncodeChat as generation and /tokenize use it).
  static absl::StatusOr<std::string> ChatPrompt(const api::ServedModel& model, const std::string& body) {
    auto r = api::ParseOpenAiRequest(api::OpenAiEndpoint::kChat, json::parse(body), "m", &body);
    if (!r.ok()) return r.status();
    return Render(model, r->api);
  }
  // The same for an Anthropic Messages body.
  static absl::StatusOr<std::string> AnthropicPrompt(const api::ServedModel& model, const std::string& body) {
    auto r = api::ParseAnthropicRequest(json::parse(body), "m", /*count_only=*/false, &body);
    if (!r.ok()) return r.status();
    return Render(model, r->api);
  }
  static absl::StatusOr<std::string> Render(const api::ServedModel& model, const api::ApiRequest& request) {
    api::TextFrontend frontend(&model, 16);
    std::string rendered;
    auto ids = frontend.EncodeChat(request, /*add_special_tokens=*/false, &rendered);
    if (!ids.ok()) return ids.status();
    return rendered;
  }
  // A model with the glm5-tiny-code tokenizer and its own chat template `source`.
  static api::ServedModel WithTemplate(const std::string& source) {
    auto tmpl = tokenizer::ChatTemplate::FromString(source);
    EXPECT_TRUE(tmpl.ok()) << tmpl.status();
    templates_.push_back(*std::move(tmpl));
    api::ServedModel model = glm_;
    model.chat_template = templates_.back().get();
    return model;
  }

  static inline api::ServedModel deepseek_;
  static inline api::ServedModel glm_;
  static inline std::vector<std::unique_ptr<tokenizer::ChatTemplate>> templates_;
};

TEST_F(ContinueFinalMessageTest, PromptEndsRightAfterTheFinalMessage) {
  const std::string messages =
      R"("messages": [{"role": "user", "content": "Write hello"}, {"role": "assistant", "content": "def hello():"}])";
  auto prompt = ChatPrompt(deepseek_, "{" + messages + R"(, "continue_final_message": true})");
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(*prompt, std::string(kDeepSeekPrompt) + "def hello():");
  // Without it the turn is closed, as the template closes it.
  auto closed = ChatPrompt(deepseek_, "{" + messages + R"(, "add_generation_prompt": false})");
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_EQ(*closed, std::string(kDeepSeekPrompt) + "def hello():" + kEndOfSentence);

  // Content parts: cut after the last text part (the parts are joined with "\n").
  prompt = ChatPrompt(deepseek_, R"({"messages": [{"role": "user", "content": "Write hello"}, {"role": "assistant",
      "content": [{"type": "text", "text": "def hello"}, {"type": "text", "text": "():"}]}],
      "continue_final_message": true})");
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(*prompt, std::string(kDeepSeekPrompt) + "def hello\n():");
}

// A template that trims the message: the trimmed text is found instead (transformers' fallback).
TEST_F(ContinueFinalMessageTest, TrimmedContentIsFoundAndAbsentContentIsRefused) {
  const api::ServedModel trims =
      WithTemplate("{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</s>{% endfor %}");
  auto prompt = ChatPrompt(trims, R"({"messages": [{"role": "user", "content": "Write hello"},
      {"role": "assistant", "content": "  def hello():\n"}], "continue_final_message": true})");
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(*prompt, "<user>Write hello</s><assistant>def hello():");

  const api::ServedModel drops = WithTemplate("{% for m in messages %}<{{ m.role }}>{% endfor %}");
  prompt = ChatPrompt(drops, R"({"messages": [{"role": "user", "content": "Write hello"},
      {"role": "assistant", "content": "def hello():"}], "continue_final_message": true})");
  ASSERT_FALSE(prompt.ok());
  EXPECT_EQ(prompt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(prompt.status().message(), HasSubstr("continue_final_message"));
  EXPECT_THAT(prompt.status().message(), HasSubstr("does not appear"));
}

TEST_F(ContinueFinalMessageTest, AnthropicPrefillIsCutTheSameWay) {
  auto prompt = AnthropicPrompt(deepseek_, R"({"max_tokens": 8, "messages": [{"role": "user", "content": "Write hello"},
      {"role": "assistant", "content": [{"type": "text", "text": "def hello():"}]}]})");
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(*prompt, std::string(kDeepSeekPrompt) + "def hello():");

  const api::ServedModel drops = WithTemplate("{% for m in messages %}<{{ m.role }}>{% endfor %}");
  prompt = AnthropicPrompt(drops, R"({"max_tokens": 8, "messages": [{"role": "user", "content": "Write hello"},
      {"role": "assistant", "content": "def hello():"}]})");
  ASSERT_FALSE(prompt.ok());
  EXPECT_EQ(prompt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(prompt.status().message(), HasSubstr("messages[1].content"));
}

// GLM's templates close a turn only by starting the next: nothing follows the final message, so
// the cut changes nothing there.
TEST_F(ContinueFinalMessageTest, GlmPromptIsUnchanged) {
  const std::string messages = R"("messages": [{"role": "user", "content": "Write hello"},
      {"role": "assistant", "content": "def hello():", "reasoning_content": "short"}])";
  auto continued = ChatPrompt(glm_, "{" + messages + R"(, "continue_final_message": true})");
  ASSERT_TRUE(continued.ok()) << continued.status();
  auto open = ChatPrompt(glm_, "{" + messages + R"(, "add_generation_prompt": false})");
  ASSERT_TRUE(open.ok()) << open.status();
  EXPECT_EQ(*continued, *open);
  EXPECT_THAT(*continued, ::testing::EndsWith("def hello():"));
}

}  // namespace
}  // namespace glm::testing
