// Local `glmctl chat` splits reasoning the way the server does: its parser sees GLM's markup
// tokens (<think>, </think>, ... are special tokens) and starts in reasoning when the template's
// generation prompt opened <think>. It decoded with special tokens skipped before parsing and
// never started in reasoning, so a thinking reply came out as plain text.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "coordinator/cli/model_commands.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace glm::cli {
namespace {

const char kModel[] = GLM_MODELS_DIR "/glm5-tiny-code";

TEST(ChatCommandTest, AReplyAfterAnOpenedThinkIsReasoning) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("glm_chat_cmd_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(kModel))
    if (entry.path().filename() != "tokenizer_config.json") fs::create_symlink(fs::absolute(entry.path()), dir / entry.path().filename());
  // The bundled template with a generation prompt that opens <think> (GLM's thinking mode).
  nlohmann::json config = nlohmann::json::parse(std::ifstream(std::string(kModel) + "/tokenizer_config.json"));
  std::string tmpl = config["chat_template"].get<std::string>();
  const std::string closed = "<|assistant|>\n<think></think>\n{%- endif -%}";
  ASSERT_NE(tmpl.find(closed), std::string::npos) << tmpl;
  tmpl.replace(tmpl.find(closed), closed.size(), "<|assistant|>\n<think>{%- endif -%}");
  config["chat_template"] = tmpl;
  std::ofstream(dir / "tokenizer_config.json") << config.dump();

  ModelCommandOptions o;
  o.model_dir = dir.string();
  o.message = "Sort a list in Python";
  o.max_new_tokens = 12;
  o.threads = 2;
  o.json = true;
  auto thinking = RunChatCommand(o);
  ASSERT_TRUE(thinking.ok()) << thinking.status();
  const nlohmann::json t = nlohmann::json::parse(*thinking);
  ASSERT_EQ(t["tokens"].size(), 12u) << t;
  // Twelve tokens with no </think> among them (the bundled model writes code): all reasoning.
  EXPECT_TRUE(t.contains("reasoning")) << t;
  EXPECT_EQ(t["text"], "") << t;
  // The bundled template as shipped closes <think> first: the same tokens are content.
  o.model_dir = kModel;
  auto plain = RunChatCommand(o);
  ASSERT_TRUE(plain.ok()) << plain.status();
  const nlohmann::json p = nlohmann::json::parse(*plain);
  EXPECT_FALSE(p.contains("reasoning")) << p;
  EXPECT_NE(p["text"], "") << p;
  fs::remove_all(dir);
}

// --system is rendered before the user message (local chat ignored it: the reply to another prompt).
TEST(ChatCommandTest, TheSystemMessageIsRendered) {
  ModelCommandOptions o;
  o.model_dir = kModel;
  o.message = "Sort a list in Python";
  o.max_new_tokens = 2;
  o.threads = 2;
  o.json = true;
  auto plain = RunChatCommand(o);
  ASSERT_TRUE(plain.ok()) << plain.status();
  o.system = "You answer in French";
  auto with_system = RunChatCommand(o);
  ASSERT_TRUE(with_system.ok()) << with_system.status();
  const int64_t without = nlohmann::json::parse(*plain)["prompt_tokens"].get<int64_t>();
  const int64_t with = nlohmann::json::parse(*with_system)["prompt_tokens"].get<int64_t>();
  EXPECT_GE(with, without + 4) << "<|system|> and the text";
}

// generate --json gives the text whenever the model has a tokenizer, with --tokens too (as
// through --server; it was left out for --tokens), and the same text for the same tokens.
TEST(GenerateCommandTest, JsonHasTheTextForTokenIdPromptsToo) {
  ModelCommandOptions o;
  o.model_dir = kModel;
  o.prompt = "def sort_list(";
  o.max_new_tokens = 6;
  o.threads = 2;
  o.json = true;
  auto by_text = RunGenerateCommand(o);
  ASSERT_TRUE(by_text.ok()) << by_text.status();
  const nlohmann::json a = nlohmann::json::parse(*by_text);
  ASSERT_TRUE(a.contains("text")) << a;
  o.prompt.clear();
  o.tokens_csv = "1642,1089,2315,309";  // any ids
  auto by_ids = RunGenerateCommand(o);
  ASSERT_TRUE(by_ids.ok()) << by_ids.status();
  const nlohmann::json b = nlohmann::json::parse(*by_ids);
  ASSERT_TRUE(b.contains("text")) << b;
  EXPECT_EQ(b["tokens"].size(), 6u);
  o.json = false;  // plain output of an id prompt: the ids, as before
  auto plain = RunGenerateCommand(o);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->find_first_not_of("0123456789,"), std::string::npos) << *plain;
}

}  // namespace
}  // namespace glm::cli
