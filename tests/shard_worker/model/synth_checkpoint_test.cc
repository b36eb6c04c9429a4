// glmctl synth's output directory: never silently written over. Into another model's directory
// it used to succeed, leaving the new config and index beside the old shards and the old
// tokenizer (a 4096-token tokenizer.json for a 512-vocabulary model).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "gtest/gtest.h"
#include "shard_worker/model/model_config.h"
#include "shard_worker/model/synth_checkpoint.h"

namespace glm::model {
namespace {

namespace fs = std::filesystem;

std::set<std::string> Files(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

class SynthOutputDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("glm_synth_out_" + std::to_string(getpid()) + "_" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(SynthOutputDirTest, RefusesANonEmptyDirectoryUnlessReplacing) {
  auto tiny = SynthPresetByName("tiny");
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  ASSERT_TRUE(WriteSynthCheckpoint(*tiny, dir_.string(), 1).ok());
  { std::ofstream(dir_ / "tokenizer.json") << "{}"; }
  { std::ofstream(dir_ / "NOTES.txt") << "mine"; }
  const std::set<std::string> before = Files(dir_);
  ASSERT_TRUE(before.count("model-00001-of-00004.safetensors")) << before.size();

  auto glm5 = SynthPresetByName("glm5");
  ASSERT_TRUE(glm5.ok()) << glm5.status();
  auto refused = WriteSynthCheckpoint(*glm5, dir_.string(), 0);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(refused.status().message(),
            dir_.string() + " is not empty (" + std::to_string(before.size()) +
                " entries): give an empty or new directory, or --force to replace the model files "
                "(*.safetensors, *.json) in it");
  // Nothing was touched: still the tiny model.
  EXPECT_EQ(Files(dir_), before);
  auto config = ModelConfig::FromFile((dir_ / "config.json").string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->vocab_size, 512);

  // Replacing: the old model's files go (shards, tokenizer), other files stay.
  auto replaced = WriteSynthCheckpoint(*glm5, dir_.string(), 0, /*replace=*/true);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_EQ(Files(dir_), (std::set<std::string>{"NOTES.txt", "config.json", "generation_config.json",
                                                "model.safetensors.index.json"}));
  config = ModelConfig::FromFile((dir_ / "config.json").string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->vocab_size, 154880);
}

TEST_F(SynthOutputDirTest, AnEmptyDirectoryIsFineAndAFileIsNot) {
  auto tiny = SynthPresetByName("tiny");
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  fs::create_directories(dir_);
  auto summary = WriteSynthCheckpoint(*tiny, dir_.string(), 1);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_TRUE(fs::exists(dir_ / "config.json"));
  const fs::path file = dir_ / "config.json";
  auto refused = WriteSynthCheckpoint(*tiny, file.string(), 1, /*replace=*/true);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(refused.status().message(), file.string() + ": exists and is not a directory");
}

}  // namespace
}  // namespace glm::model
