// Non-finite logits end only the request whose logits they are. A checkpoint whose embedding row
// of one token holds NaN (a corrupt file) used to answer every prompt containing that token
// with token 0 — EOS on most models, an empty reply with HTTP 200 — since an argmax over NaN
// picks id 0. The last stage now checks the rows it samples from, and the engine ends that
// request with an INTERNAL error naming the cause while the batch's other requests go on with
// the tokens they get alone.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "engine_harness.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/runtime/speculative_generator.h"

namespace glm::scheduler {
namespace {

namespace fs = std::filesystem;

// A copy of the bundled model whose embedding row `token` is all NaN (BF16 0x7fc0).
std::string PoisonedModel(const fs::path& dir, int32_t token) {
  fs::remove_all(dir);
  fs::copy(FixtureModelDir("glm5-tiny-code"), dir, fs::copy_options::recursive);
  auto ckpt = model::Checkpoint::Open(dir.string());
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  if (!ckpt.ok()) return "";
  const auto loc = (*ckpt)->Find("model.embed_tokens.weight");
  EXPECT_NE(loc.info, nullptr);
  EXPECT_EQ(loc.info->dtype, "BF16");
  const int64_t hidden = loc.info->shape[1];
  const std::vector<uint16_t> nan_row(static_cast<size_t>(hidden), 0x7fc0);
  std::fstream f(loc.file->path(), std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(loc.info->begin + token * hidden * 2);
  f.write(reinterpret_cast<const char*>(nan_row.data()), static_cast<std::streamsize>(hidden * 2));
  return dir.string();
}

TEST(EngineNonFiniteTest, OnlyTheRequestWithNonFiniteLogitsFails) {
  constexpr int32_t kPoisoned = 777;
  const fs::path dir = fs::temp_directory_path() / ("glm_poisoned_" + std::to_string(::getpid()));
  const std::string model_dir = PoisonedModel(dir, kPoisoned);
  ASSERT_FALSE(model_dir.empty());
  const std::vector<int32_t> clean_prompt = {11, 12, 13, 14, 15, 16, 17};
  const std::vector<int32_t> poisoned_prompt = {11, 12, kPoisoned, 14, 15};

  // What the clean prompt gives alone, on the unmodified model.
  EngineHarness reference("glm5-tiny-code", 1, 1, 64, 4);
  const EngineHarness::Output alone = reference.Run(Greedy(clean_prompt, 12));
  ASSERT_TRUE(alone.error.ok()) << alone.error;
  reference.Stop();

  auto lc = LocalCluster::Start(model_dir, 1, 1, 64, 4);
  ASSERT_TRUE(lc.ok()) << lc.status();
  ClusterStepRunner runner((*lc)->client());
  EngineOptions o;
  o.max_context = (*lc)->config().max_position_embeddings;
  o.vocab_size = static_cast<int32_t>((*lc)->config().vocab_size);
  o.eos_token_ids = (*lc)->config().eos_token_ids;
  o.kv_blocks = 64;
  o.kv_block_size = 4;
  auto engine = Engine::Create(&runner, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::thread loop([&] { (*engine)->RunLoop().IgnoreError(); });
  auto run = [&](std::vector<int32_t> prompt) {
    auto stream = (*engine)->Submit(Greedy(std::move(prompt), 12));
    EXPECT_TRUE(stream.ok()) << stream.status();
    return *std::move(stream);
  };
  for (int round = 0; round < 2; ++round) {  // together, then the clean one after a failure
    auto bad = run(poisoned_prompt);
    auto good = run(clean_prompt);
    std::vector<int32_t> bad_tokens, good_tokens;
    GenerationEvent e;
    absl::Status bad_error, good_error;
    while (bad->Next(&e, absl::Seconds(60))) {
      bad_tokens.insert(bad_tokens.end(), e.tokens.begin(), e.tokens.end());
      if (e.finished) {
        bad_error = e.error;
        break;
      }
    }
    while (good->Next(&e, absl::Seconds(60))) {
      good_tokens.insert(good_tokens.end(), e.tokens.begin(), e.tokens.end());
      if (e.finished) {
        good_error = e.error;
        break;
      }
    }
    EXPECT_EQ(bad_error.code(), absl::StatusCode::kInternal) << bad_error;
    EXPECT_TRUE(absl::StrContains(bad_error.message(), "NaN")) << bad_error;
    EXPECT_TRUE(bad_tokens.empty());
    EXPECT_TRUE(good_error.ok()) << good_error;
    EXPECT_EQ(good_tokens, alone.tokens) << "round " << round;
  }
  for (int i = 0; i < 1000 && (*engine)->GetLoad().kv_blocks_used != 0; ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ((*engine)->GetLoad().kv_blocks_used, 0);
  (*engine)->Shutdown(false);
  loop.join();
  lc->reset();
  fs::remove_all(dir);
}

// The single-process generators (glmctl generate) refuse such logits too, with and without
// speculation, and generate as before from prompts without the token.
TEST(EngineNonFiniteTest, SingleProcessGenerationFailsInsteadOfAnsweringEos) {
  constexpr int32_t kPoisoned = 777;
  const fs::path dir = fs::temp_directory_path() / ("glm_poisoned_sp_" + std::to_string(::getpid()));
  const std::string model_dir = PoisonedModel(dir, kPoisoned);
  ASSERT_FALSE(model_dir.empty());
  kernels::ThreadPool pool(1);
  auto ckpt = model::Checkpoint::Open(model_dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto weights = model::ModelWeights::Load(**ckpt);
  ASSERT_TRUE(weights.ok()) << weights.status();
  auto m = model::Glm5Model::Create(std::shared_ptr<const model::ModelWeights>(std::move(*weights)), &pool);
  ASSERT_TRUE(m.ok()) << m.status();
  runtime::GenerateOptions g;
  g.max_new_tokens = 6;
  g.ignore_eos = true;
  auto plain = runtime::Generate(**m, {11, kPoisoned, 13}, g);
  EXPECT_EQ(plain.status().code(), absl::StatusCode::kInternal) << plain.status();
  for (const char* method : {"mtp:2", "ngram:2"}) {
    auto spec = runtime::ParseSpeculative(method);
    ASSERT_TRUE(spec.ok());
    auto drafted = runtime::GenerateSpeculative(**m, {11, kPoisoned, 13}, g, *spec);
    EXPECT_EQ(drafted.status().code(), absl::StatusCode::kInternal) << method << ": " << drafted.status();
  }
  auto clean = runtime::Generate(**m, {11, 12, 13}, g);
  ASSERT_TRUE(clean.ok()) << clean.status();
  EXPECT_EQ(clean->tokens, SingleProcessGreedy({11, 12, 13}, 6));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace glm::scheduler
