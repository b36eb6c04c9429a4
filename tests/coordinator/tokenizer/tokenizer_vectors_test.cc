// The tokenizer must reproduce Hugging Face tokenizers' ids and decoded text exactly.
#include <fstream>
#include <sstream>
#include <string>

#include "coordinator/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace glm::tokenizer {
namespace {

nlohmann::json LoadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

std::string TokenizerPath(const std::string& name) {
  if (name == "glm5-tiny-code") return std::string(GLM_MODELS_DIR) + "/glm5-tiny-code";
  return std::string(GLM_TEST_FIXTURES_DIR) + "/tokenizers/" + name;
}

class TokenizerVectorsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerVectorsTest, EncodeAndDecodeMatchHuggingFace) {
  const nlohmann::json vectors = LoadJson(std::string(GLM_TEST_FIXTURES_DIR) + "/tokenizer_vectors.json");
  auto tok = Tokenizer::FromFile(TokenizerPath(GetParam()));
  ASSERT_TRUE(tok.ok()) << tok.status();
  const auto& cases = vectors.at(GetParam());
  ASSERT_GT(cases.size(), 10u);
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const std::vector<int32_t> want = c.at("ids").get<std::vector<int32_t>>();
    auto ids = (*tok)->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, want) << "text: " << text;
    auto decoded = (*tok)->Decode(want);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, c.at("decoded").get<std::string>());
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, TokenizerVectorsTest,
                         ::testing::Values("glm5-tiny-code", "deepseek_v3"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace glm::tokenizer
