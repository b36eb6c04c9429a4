// Forced tool calls are generated in the layout the served chat template writes calls in:
// GLM-4.5's template puts a newline after the name, </arg_key> and </arg_value>; GLM-4.7's and
// GLM-5's put none. The server reads the layout off a probe call the template renders
// (TextFrontend::TemplateToolCallLayout) and the request path compiles the call in it.
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "coordinator/api/api_server.h"
#include "coordinator/api/openai_protocol.h"
#include "coordinator/api/text_frontend.h"
#include "coordinator/tokenizer/chat_template.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace glm::testing {
namespace {

using json = nlohmann::json;
using structured::ToolCallLayout;

// GLM-4.7's way of printing an assistant's calls (its template, reduced to the turns used here).
constexpr char kCompactTemplate[] =
    "[gMASK]<sop>{%- for m in messages -%}"
    "{%- if m.role == 'user' -%}<|user|>{{ m.content }}"
    "{%- elif m.role == 'assistant' -%}<|assistant|><think></think>{{ m.content }}"
    "{%- for tc in m.tool_calls or [] -%}{%- if tc.function %}{%- set tc = tc.function %}{%- endif %}"
    "<tool_call>{{ tc.name }}{%- for k, v in tc.arguments.items() -%}<arg_key>{{ k }}</arg_key>"
    "<arg_value>{{ v | tojson(ensure_ascii=False) if v is not string else v }}</arg_value>{%- endfor -%}"
    "</tool_call>{%- endfor -%}{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|><think></think>{%- endif -%}";

class ToolCallLayoutTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = std::string(GLM_MODELS_DIR) + "/glm5-tiny-code";
    auto tok = tokenizer::Tokenizer::FromFile(dir);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = tok->release();
    auto bundled = tokenizer::ChatTemplate::FromTokenizerConfig(dir);
    ASSERT_TRUE(bundled.ok()) << bundled.status();
    bundled_ = bundled->release();
    std::ifstream in(std::string(GLM_TEST_FIXTURES_DIR) + "/tokenizer_extra/jinja_cases.json");
    std::stringstream ss;
    ss << in.rdbuf();
    auto glm45 = tokenizer::ChatTemplate::FromString(json::parse(ss.str())["templates"]["glm45"].get<std::string>());
    ASSERT_TRUE(glm45.ok()) << glm45.status();
    glm45_ = glm45->release();
    auto compact = tokenizer::ChatTemplate::FromString(kCompactTemplate);
    ASSERT_TRUE(compact.ok()) << compact.status();
    compact_ = compact->release();
  }

  static api::ServedModel Model(const tokenizer::ChatTemplate* tmpl) {
    api::ServedModel m;
    m.name = "m";
    m.max_context = 4096;
    m.vocab_size = 4096;
    m.eos_token_ids = {0};
    m.tokenizer = tokenizer_;
    m.chat_template = tmpl;
    return m;
  }

  // Whether the constraint a forced-call chat request gets accepts `text` whole.
  static bool ForcedCallAccepts(const api::ServedModel& model, const std::string& text) {
    const std::string body = R"({"messages":[{"role":"user","content":"weather?"}],"tool_choice":"required",
        "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
        "properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}}},
        {"type":"function","function":{"name":"get"}}]})";
    auto request = api::ParseOpenAiRequest(api::OpenAiEndpoint::kChat, json::parse(body), "m", &body);
    EXPECT_TRUE(request.ok()) << request.status();
    if (!request.ok()) return false;
    api::TextFrontend frontend(&model, 64);
    auto prepared = frontend.Prepare(request->api);
    EXPECT_TRUE(prepared.ok()) << prepared.status();
    if (!prepared.ok() || prepared->engine_request.constraint == nullptr) return false;
    auto constraint = prepared->engine_request.constraint;
    auto ids = tokenizer_->Encode(text);
    EXPECT_TRUE(ids.ok());
    for (int32_t id : *ids)
      if (!constraint->Accept(id).ok()) return false;
    return constraint->CanEnd();
  }

  static inline tokenizer::Tokenizer* tokenizer_ = nullptr;
  static inline tokenizer::ChatTemplate* bundled_ = nullptr;
  static inline tokenizer::ChatTemplate* glm45_ = nullptr;
  static inline tokenizer::ChatTemplate* compact_ = nullptr;
};

TEST_F(ToolCallLayoutTest, ReadOffTheTemplatesOwnCall) {
  const api::ServedModel glm45 = Model(glm45_), compact = Model(compact_), bundled = Model(bundled_);
  auto spaced = api::TextFrontend(&glm45, 0).TemplateToolCallLayout();
  ASSERT_TRUE(spaced.has_value());
  EXPECT_EQ(*spaced, ToolCallLayout{}) << spaced->Describe();
  auto tight = api::TextFrontend(&compact, 0).TemplateToolCallLayout();
  ASSERT_TRUE(tight.has_value());
  EXPECT_EQ(*tight, ToolCallLayout::Compact()) << tight->Describe();
  // The bundled model's template prints no calls; no template at all: nothing to read.
  EXPECT_FALSE(api::TextFrontend(&bundled, 0).TemplateToolCallLayout().has_value());
  const api::ServedModel none = Model(nullptr);
  EXPECT_FALSE(api::TextFrontend(&none, 0).TemplateToolCallLayout().has_value());
  EXPECT_EQ(ToolCallLayout{}.Describe(),
            "after the name \"\\n\", after </arg_key> \"\\n\", after </arg_value> \"\\n\"");
}

TEST_F(ToolCallLayoutTest, ForcedCallsAreGeneratedInTheServedLayout) {
  const std::string spaced_call =
      "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n</tool_call>";
  const std::string compact_call =
      "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Oslo</arg_value></tool_call>";
  api::ServedModel model = Model(compact_);
  EXPECT_TRUE(ForcedCallAccepts(model, spaced_call));  // the default: GLM-4.5's
  EXPECT_FALSE(ForcedCallAccepts(model, compact_call));
  model.tool_call_layout = ToolCallLayout::Compact();
  EXPECT_TRUE(ForcedCallAccepts(model, compact_call));
  EXPECT_FALSE(ForcedCallAccepts(model, spaced_call));
  // "get" is a prefix of "get_weather": told apart by the tag after the name.
  EXPECT_TRUE(ForcedCallAccepts(model, "<tool_call>get</tool_call>"));
  EXPECT_TRUE(ForcedCallAccepts(model, "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Rome</arg_value>"
                                       "<arg_key>days</arg_key><arg_value>2</arg_value></tool_call>"));
  EXPECT_FALSE(ForcedCallAccepts(model, "<tool_call>get_weather</tool_call>"));  // city is required
}

}  // namespace
}  // namespace glm::testing
