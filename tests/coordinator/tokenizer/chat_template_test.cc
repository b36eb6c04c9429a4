// Chat templates must render byte for byte what transformers renders.
#include "coordinator/tokenizer/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace glm::tokenizer {
namespace {

using OJson = nlohmann::ordered_json;

OJson LoadOrdered(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return OJson::parse(ss.str());
}

class ChatTemplateVectorsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatTemplateVectorsTest, RendersExactly) {
  const OJson vectors = LoadOrdered(std::string(GLM_TEST_FIXTURES_DIR) + "/chat_template_vectors.json");
  const OJson& model = vectors.at(GetParam());
  ASSERT_FALSE(model.at("cases").empty());
  for (const auto& c : model.at("cases")) {
    auto tmpl = ChatTemplate::FromString(model.at("chat_template").get<std::string>(),
                                         c.at("special_tokens"));
    ASSERT_TRUE(tmpl.ok()) << tmpl.status();
    const OJson& in = c.at("inputs");
    auto text = (*tmpl)->RenderOrdered(in.at("messages"), in.value("tools", OJson()),
                                       in.value("add_generation_prompt", false));
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, c.at("rendered").get<std::string>()) << c.at("conversation");
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ChatTemplateVectorsTest,
                         ::testing::Values("glm5-tiny-code", "deepseek_v3"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

TEST(ChatTemplateTest, LoadsFromTokenizerConfigFiles) {
  for (const std::string& dir : {std::string(GLM_MODELS_DIR) + "/glm5-tiny-code",
                                std::string(GLM_TEST_FIXTURES_DIR) + "/tokenizers/deepseek_v3"}) {
    auto tmpl = ChatTemplate::FromTokenizerConfig(dir);
    ASSERT_TRUE(tmpl.ok()) << tmpl.status();
    EXPECT_TRUE((*tmpl)->special_tokens().contains("eos_token"));
    auto text = (*tmpl)->Render(nlohmann::json::parse(R"([{"role":"user","content":"hi"}])"),
                                nullptr, true);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_NE(text->find("hi"), std::string::npos);
  }
  auto deepseek = ChatTemplate::FromTokenizerConfig(std::string(GLM_TEST_FIXTURES_DIR) +
                                                    "/tokenizers/deepseek_v3/tokenizer_config.json");
  ASSERT_TRUE(deepseek.ok());
  auto text = (*deepseek)->Render(nlohmann::json::parse(R"([{"role":"user","content":"hi"}])"),
                                  nullptr, true);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜>");
}

TEST(ChatTemplateTest, MissingFileAndBadTemplateAreErrors) {
  EXPECT_FALSE(ChatTemplate::FromTokenizerConfig("/nonexistent/dir").ok());
  auto bad = ChatTemplate::FromString("{% if x %}unterminated");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("endif"), std::string::npos) << bad.status();
}

// A malformed named-template list used to throw a json type_error and abort the coordinator;
// it must be an error (the coordinator then serves without a chat template).
TEST(ChatTemplateTest, MalformedTemplateListIsAnErrorNamingTheEntry) {
  const std::string dir = ::testing::TempDir() + "/chat_template_list";
  std::filesystem::create_directories(dir);
  auto load = [&dir](const std::string& config) {
    std::ofstream(dir + "/tokenizer_config.json") << config;
    return ChatTemplate::FromTokenizerConfig(dir);
  };
  auto bad = load(R"({"chat_template": [{"name": "default", "template": 5}]})");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("chat_template[0].template must be a string, got number"),
            std::string::npos) << bad.status();
  bad = load(R"({"chat_template": [{"name": "default", "template": "a"}, {"name": 5, "template": "b"}]})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("chat_template[1].name must be a string, got number"),
            std::string::npos) << bad.status();
  bad = load(R"({"chat_template": 5})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("chat_template must be a string or a list"),
            std::string::npos) << bad.status();
  // Well-formed lists still pick "default", else the first entry.
  auto good = load(R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(*(*good)->Render(nlohmann::json::array(), nullptr, false), "D");
  good = load(R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"template": "U"}]})");
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(*(*good)->Render(nlohmann::json::array(), nullptr, false), "T");
}

TEST(ChatTemplateTest, RaiseExceptionIsAnError) {
  auto tmpl = ChatTemplate::FromString(
      "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be user') }}{% endif %}ok");
  ASSERT_TRUE(tmpl.ok());
  auto bad = (*tmpl)->Render(nlohmann::json::parse(R"([{"role":"system","content":"x"}])"), nullptr, false);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("first message must be user"), std::string::npos);
  auto good = (*tmpl)->Render(nlohmann::json::parse(R"([{"role":"user","content":"x"}])"), nullptr, false);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, "ok");
}

TEST(ChatTemplateTest, ExtraArgumentsReachTheTemplate) {
  auto tmpl = ChatTemplate::FromString(
      "{{ '/nothink' if enable_thinking is defined and not enable_thinking else 'think' }}");
  ASSERT_TRUE(tmpl.ok());
  EXPECT_EQ(*(*tmpl)->Render(nlohmann::json::array(), nullptr, false), "think");
  EXPECT_EQ(*(*tmpl)->Render(nlohmann::json::array(), nullptr, false, {{"enable_thinking", false}}),
            "/nothink");
}

TEST(ChatTemplateTest, ToolsAreNoneWhenAbsentAndKeepKeyOrder) {
  auto tmpl = ChatTemplate::FromString(
      "{% if tools is none %}none{% else %}{% for t in tools %}{{ t | tojson }}{% endfor %}{% endif %}");
  ASSERT_TRUE(tmpl.ok());
  EXPECT_EQ(*(*tmpl)->RenderOrdered(OJson::array(), OJson(), false), "none");
  const OJson tools = OJson::parse(R"([{"type":"function","function":{"name":"f","b":1,"a":"é"}}])");
  EXPECT_EQ(*(*tmpl)->RenderOrdered(OJson::array(), tools, false),
            R"({"type": "function", "function": {"name": "f", "b": 1, "a": "é"}})");
}

// Tool-call arguments come back from OpenAI clients as JSON text. GLM's templates iterate
// `arguments.items()` (transformers' convention: a dict) and DeepSeek's concatenate the text:
// both render what they render from their own kind of input. GLM-style templates used to fail on
// a client's own tool-call turn ("str object has no attribute items").
TEST(ChatTemplateTest, ToolCallArgumentsServeDictAndTextTemplates) {
  const nlohmann::json messages = nlohmann::json::parse(R"([
    {"role": "user", "content": "weather?"},
    {"role": "assistant", "content": "", "tool_calls": [
      {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\",\"days\":3}"}},
      {"id": "c2", "type": "function", "function": {"name": "echo", "arguments": "not json"}}]}])");
  auto glm = ChatTemplate::FromString(
      "{% for m in messages %}{% for tc in m.tool_calls %}{% set f = tc.function %}<tool_call>{{ f.name }}"
      "{% if f.arguments is string and f.arguments.items is not defined %}[{{ f.arguments }}]{% else %}"
      "{% for k, v in f.arguments.items() %}<arg_key>{{ k }}</arg_key><arg_value>"
      "{{ v if v is string else v | tojson }}</arg_value>{% endfor %}{% endif %}</tool_call>{% endfor %}{% endfor %}");
  ASSERT_TRUE(glm.ok()) << glm.status();
  auto rendered = (*glm)->Render(messages, nullptr, false);
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_EQ(*rendered,
            "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Oslo</arg_value>"
            "<arg_key>days</arg_key><arg_value>3</arg_value></tool_call><tool_call>echo[not json]</tool_call>");
  auto text = ChatTemplate::FromString(
      "{% for m in messages %}{% for tc in m.tool_calls %}{{ '<' + tc['function']['arguments'] + '>' }}"
      "{{ tc.function.arguments | length }}|{{ tc.function.arguments is string }}|"
      "{{ tc.function.arguments['city'] }};{% endfor %}{% endfor %}");
  ASSERT_TRUE(text.ok()) << text.status();
  rendered = (*text)->Render(messages, nullptr, false);
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_EQ(*rendered, "<{\"city\":\"Oslo\",\"days\":3}>24|True|Oslo;<not json>8|True|;");
}

}  // namespace
}  // namespace glm::tokenizer
