// `glmctl quantize`: its flags' refusals, and a pre-quantised copy of the bundled model that
// `glmctl generate` runs as stored to exactly the tokens of the original re-quantised at load.
#include <unistd.h>

#include <filesystem>
#include <string>

#include "coordinator/cli/model_commands.h"
#include "gtest/gtest.h"

namespace glm::cli {
namespace {

const char kModel[] = GLM_MODELS_DIR "/glm5-tiny-code";

TEST(QuantizeCommandTest, WritesAModelThatGeneratesTheConvertedTokens) {
  namespace fs = std::filesystem;
  const std::string out = (fs::temp_directory_path() / ("glm_quantize_cmd_" + std::to_string(getpid()))).string();
  fs::remove_all(out);
  ModelCommandOptions q;
  q.model_dir = kModel;
  q.out = out;
  q.weight_dtype = "int4";
  auto summary = RunQuantizeCommand(q);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_NE(summary->find("\"format\":\"int4\""), std::string::npos) << *summary;
  // Into a directory that now holds a model: refused without --force, replaced with it.
  EXPECT_EQ(RunQuantizeCommand(q).status().code(), absl::StatusCode::kAlreadyExists);
  q.force = true;
  EXPECT_TRUE(RunQuantizeCommand(q).ok());

  ModelCommandOptions g;
  g.prompt = "def fib(n):";
  g.max_new_tokens = 12;
  g.json = true;
  g.threads = 2;
  g.model_dir = out;
  auto stored = RunGenerateCommand(g);
  g.model_dir = kModel;
  g.weight_dtype = "int4";
  auto converted = RunGenerateCommand(g);
  ASSERT_TRUE(stored.ok() && converted.ok()) << stored.status() << converted.status();
  EXPECT_EQ(*stored, *converted);
  g.model_dir = out;
  g.weight_dtype = "bf16";
  EXPECT_EQ(RunGenerateCommand(g).status().code(), absl::StatusCode::kInvalidArgument);
  fs::remove_all(out);
}

TEST(QuantizeCommandTest, RefusesWhatItCannotWrite) {
  ModelCommandOptions q;
  q.model_dir = kModel;
  q.out = "/tmp/glm_quantize_never_" + std::to_string(getpid());
  for (const char* dtype : {"stored", "bf16", "f32", "int5", "int4-g48"}) {
    q.weight_dtype = dtype;
    EXPECT_EQ(RunQuantizeCommand(q).status().code(), absl::StatusCode::kInvalidArgument) << dtype;
  }
  q.weight_dtype = "int4";
  q.quantize_scope = "all";
  EXPECT_EQ(RunQuantizeCommand(q).status().code(), absl::StatusCode::kInvalidArgument);
  q.quantize_scope = "experts";
  q.out = "";
  EXPECT_EQ(RunQuantizeCommand(q).status().code(), absl::StatusCode::kInvalidArgument);
  q.out = kModel;
  EXPECT_EQ(RunQuantizeCommand(q).status().code(), absl::StatusCode::kInvalidArgument);
  q.out = "/tmp/glm_quantize_never_" + std::to_string(getpid());
  q.model_dir = "/nonexistent/model";
  EXPECT_FALSE(RunQuantizeCommand(q).ok());
  EXPECT_FALSE(std::filesystem::exists(q.out));
}

}  // namespace
}  // namespace glm::cli
