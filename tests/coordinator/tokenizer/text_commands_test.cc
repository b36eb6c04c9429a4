// The glmctl text commands: output format and error paths.
#include "coordinator/cli/text_commands.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace glm::cli {
namespace {

std::string TempFile(const std::string& name, const std::string& content) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

const std::string kModel = std::string(GLM_MODELS_DIR) + "/glm5-tiny-code";

TEST(TextCommandsTest, TokenizeAndDetokenize) {
  auto out = RunTokenizeCommand(kModel, TempFile("t.txt", "Hello world"));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, R"({"ids":[60,474,332,344,284,1871]})");
  auto text = RunDetokenizeCommand(kModel + "/tokenizer.json", "60, 474,332,344,284,1871");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, R"({"text":"Hello world"})");
  EXPECT_EQ(*RunDetokenizeCommand(kModel, ""), R"({"text":""})");
  // --prompt TEXT instead of a file.
  auto prompt = RunTokenizeCommand(kModel, "", "Hello world");
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(*prompt, *out);
}

// Missing paths name the flags to give (it was "cannot open : No such file or directory").
TEST(TextCommandsTest, MissingInputsNameTheirFlags) {
  EXPECT_THAT(RunTokenizeCommand("", "", "hi").status().message(), ::testing::HasSubstr("--tokenizer PATH"));
  EXPECT_THAT(RunTokenizeCommand(kModel, "", "").status().message(), ::testing::HasSubstr("--text-file FILE or --prompt"));
  EXPECT_THAT(RunDetokenizeCommand("", "1").status().message(), ::testing::HasSubstr("--model DIR"));
  EXPECT_THAT(RunRenderChatCommand("", "r.json").status().message(), ::testing::HasSubstr("--tokenizer-config PATH"));
  EXPECT_THAT(RunRenderChatCommand(kModel, "").status().message(), ::testing::HasSubstr("--request-file FILE"));
}

TEST(TextCommandsTest, Errors) {
  EXPECT_FALSE(RunDetokenizeCommand(kModel, "1,x").ok());
  EXPECT_FALSE(RunDetokenizeCommand(kModel, "1,,2").ok());
  EXPECT_FALSE(RunDetokenizeCommand(kModel, "999999").ok());
  EXPECT_FALSE(RunTokenizeCommand(kModel, "/nonexistent").ok());
  EXPECT_FALSE(RunTokenizeCommand(kModel, TempFile("bad.txt", "\xFF")).ok());
  EXPECT_FALSE(RunRenderChatCommand(kModel, TempFile("r.json", "{")).ok());
  // Malformed messages rendered as if absent (the server refuses them); a directory read as "".
  for (const char* bad : {R"({"messages": [1, 2]})", R"({"messages": [{"content": "x"}]})",
                          R"({"messages": [{"role": 7, "content": "x"}]})", R"({"messages": {"role": "user"}})",
                          R"({"messages": [{"role": "user", "content": "x"}], "add_generation_prompt": "yes"})"}) {
    auto out = RunRenderChatCommand(kModel, TempFile("bad.json", bad));
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << bad << " -> " << out.status();
  }
  EXPECT_FALSE(RunTokenizeCommand(kModel, "/tmp").ok());
}

TEST(TextCommandsTest, RenderChatFromVectorsLayout) {
  const std::string request = TempFile("req.json", R"({
    "inputs": {"messages": [{"role": "user", "content": "Reply exactly: OK"}], "add_generation_prompt": true},
    "special_tokens": {"eos_token": "<|endoftext|>"}})");
  auto out = RunRenderChatCommand(kModel, request);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(nlohmann::json::parse(*out)["text"],
            "[gMASK]<sop><|user|>\nReply exactly: OK<|assistant|>\n<think></think>");
  const std::string flat = TempFile("flat.json", R"({"messages": [{"role": "user", "content": "한국"}],
    "add_generation_prompt": false, "bos_token": "<｜begin▁of▁sentence｜>"})");
  auto ds = RunRenderChatCommand(std::string(GLM_TEST_FIXTURES_DIR) + "/tokenizers/deepseek_v3", flat);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(*ds, R"({"text":"<｜begin▁of▁sentence｜><｜User｜>한국"})");
}

}  // namespace
}  // namespace glm::cli
