// Decode with each expert's rows split across the pool (the path large experts take) gives the
// same logits, bit for bit, as whole-expert tasks, for every batch size and thread count: the
// split only changes which thread computes a row.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <vector>

#include "gtest/gtest.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/moe/moe_layer.h"

namespace glm::moe {
namespace {

namespace fs = std::filesystem;

std::string ModelDir(const std::string& name) {
  fs::path bundled = fs::path(GLM_MODELS_DIR) / name;
  return fs::exists(bundled) ? bundled.string() : (fs::path(GLM_TEST_FIXTURES_DIR) / name).string();
}

// Prefill of `batch` prompts, then 6 greedy decode steps of all of them; every logit row.
std::vector<float> DecodeLogits(const model::Glm5Model& m, int batch) {
  const int64_t V = m.config().vocab_size;
  std::vector<std::unique_ptr<kv_cache::KvCache>> caches;
  std::vector<model::SequenceInput> in(batch);
  for (int b = 0; b < batch; ++b) {
    caches.push_back(m.NewCache());
    in[b].cache = caches.back().get();
    for (int i = 0; i < 5 + b; ++i) in[b].tokens.push_back(static_cast<int32_t>((b * 131 + i * 977 + 5) % V));
  }
  std::vector<float> all;
  auto out = m.Forward(in, model::LogitRows::kLast);
  EXPECT_TRUE(out.ok()) << out.status();
  if (!out.ok()) return all;
  for (int step = 0; step < 6; ++step) {
    all.insert(all.end(), out->logits.begin(), out->logits.end());
    std::vector<model::SequenceInput> next(batch);
    for (int b = 0; b < batch; ++b) {
      const float* row = out->logits.data() + b * V;
      next[b].cache = caches[b].get();
      next[b].tokens = {static_cast<int32_t>(std::max_element(row, row + V) - row)};
    }
    out = m.Forward(next, model::LogitRows::kLast);
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) return all;
  }
  all.insert(all.end(), out->logits.begin(), out->logits.end());
  return all;
}

TEST(SplitExpertsTest, SameLogitsAsWholeExpertTasks) {
  for (const std::string name : {"glm5-tiny-code", "glm5-random-fp8"}) {
    auto ckpt = model::Checkpoint::Open(ModelDir(name));
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    for (const char* dtype : {"stored", "int4"}) {
      model::LoadOptions opt;
      ASSERT_TRUE(model::ParseWeightDType(dtype, &opt).ok());
      auto w = model::ModelWeights::Load(**ckpt, opt);
      ASSERT_TRUE(w.ok()) << w.status();
      std::shared_ptr<const model::ModelWeights> weights(std::move(*w));
      // Pooled steps only: token-group steps run every expert whole on one thread.
      model::SetTokenGroupMode(model::TokenGroupMode::kNever);
      for (int threads : {2, 3, 5, 16}) {  // 16: the split in many pieces, most spanning two experts
        kernels::ThreadPool pool(threads);
        auto m = model::Glm5Model::Create(weights, &pool);
        ASSERT_TRUE(m.ok()) << m.status();
        for (int batch : {1, 3, 8}) {
          SetSplitExpertBytes(int64_t{1} << 60);  // never split
          const std::vector<float> whole = DecodeLogits(**m, batch);
          SetSplitExpertBytes(0);  // always split
          const std::vector<float> split = DecodeLogits(**m, batch);
          SetSplitExpertBytes(int64_t{1} << 20);
          ASSERT_EQ(whole.size(), split.size());
          ASSERT_FALSE(whole.empty());
          EXPECT_EQ(0, std::memcmp(whole.data(), split.data(), whole.size() * sizeof(float)))
              << name << " " << dtype << " threads " << threads << " batch " << batch;
        }
      }
      model::SetTokenGroupMode(model::TokenGroupMode::kAuto);
    }
  }
}

}  // namespace
}  // namespace glm::moe
