// A model whose routed experts are twice the memory budget serves exactly like the fully resident
// one: the same logits bit for bit, the same greedy tokens, with the cache's hit rate reported.
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "gtest/gtest.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/model/safetensors_file.h"
#include "shard_worker/moe/expert_store.h"

namespace glm::model {
namespace {

namespace fs = std::filesystem;

std::string ModelDir(const std::string& name) {
  fs::path bundled = fs::path(GLM_MODELS_DIR) / name;
  return fs::exists(bundled) ? bundled.string() : (fs::path(GLM_TEST_FIXTURES_DIR) / name).string();
}

int64_t RoutedExpertBytes(const ModelWeights& w) {
  int64_t n = 0;
  for (int64_t l = 0; l < w.config().num_weight_layers(); ++l) {
    const MoeWeights& moe = w.layer(l).moe;
    for (size_t e = 0; e < moe.experts.size(); ++e)
      if (moe.expert_loaded[e]) n += moe.experts[e].bytes();
  }
  return n;
}

std::unique_ptr<Glm5Model> MakeModel(const Checkpoint& ckpt, const LoadOptions& opt, kernels::ThreadPool* pool) {
  auto w = ModelWeights::Load(ckpt, opt);
  EXPECT_TRUE(w.ok()) << w.status();
  if (!w.ok()) return nullptr;
  auto m = Glm5Model::Create(std::shared_ptr<const ModelWeights>(std::move(*w)), pool);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(*m) : nullptr;
}

// Prefill of a few prompts (all logits), then greedy decode; every logit row, in order.
struct ServeResult {
  std::vector<std::vector<float>> logits;
  std::vector<int32_t> tokens;
};

ServeResult Serve(const Glm5Model& m, int decode_steps, moe::ExpertStore* hammer = nullptr) {
  ServeResult r;
  const int64_t V = m.config().vocab_size;
  std::vector<std::unique_ptr<kv_cache::KvCache>> caches;
  std::vector<SequenceInput> batch(2);
  for (int b = 0; b < 2; ++b) {
    caches.push_back(m.NewCache());
    batch[b].cache = caches.back().get();
    for (int i = 0; i < (b == 0 ? 9 : 13); ++i) batch[b].tokens.push_back(static_cast<int32_t>((b * 131 + i * 977 + 5) % V));
  }
  // Optionally, a thread issuing random prefetches meanwhile: they may only change timing.
  std::atomic<bool> stop{false};
  std::thread noise;
  if (hammer != nullptr)
    noise = std::thread([&] {
      std::mt19937 rng(7);
      const int64_t E = m.config().n_routed_experts;
      while (!stop) {
        hammer->Prefetch(rng() % m.config().num_weight_layers(), {static_cast<int64_t>(rng() % E)});
        std::this_thread::yield();
      }
    });
  auto out = m.Forward(batch, LogitRows::kAll);
  EXPECT_TRUE(out.ok()) << out.status();
  if (!out.ok()) return r;
  r.logits.push_back(out->logits);
  std::vector<const float*> last = {out->logits.data() + 8 * V, out->logits.data() + 21 * V};  // 9 + 13 rows
  for (int step = 0; step < decode_steps; ++step) {
    std::vector<SequenceInput> next(2);
    for (int b = 0; b < 2; ++b) {
      next[b].cache = caches[b].get();
      next[b].tokens = {static_cast<int32_t>(std::max_element(last[b], last[b] + V) - last[b])};
      r.tokens.push_back(next[b].tokens[0]);
    }
    auto o = m.Forward(next, LogitRows::kLast);
    EXPECT_TRUE(o.ok()) << o.status();
    if (!o.ok()) break;
    r.logits.push_back(o->logits);
    last = {r.logits.back().data(), r.logits.back().data() + V};
  }
  stop = true;
  if (noise.joinable()) noise.join();
  return r;
}

void ExpectSame(const ServeResult& a, const ServeResult& b) {
  ASSERT_EQ(a.logits.size(), b.logits.size());
  for (size_t i = 0; i < a.logits.size(); ++i) {
    ASSERT_EQ(a.logits[i].size(), b.logits[i].size());
    EXPECT_EQ(std::memcmp(a.logits[i].data(), b.logits[i].data(), a.logits[i].size() * sizeof(float)), 0)
        << "logits of forward " << i << " differ";
  }
  EXPECT_EQ(a.tokens, b.tokens);
}

class StreamedModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StreamedModelTest, HalfBudgetServesBitIdentically) {
  auto ckpt = Checkpoint::Open(ModelDir(GetParam()));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  kernels::ThreadPool pool(2);
  auto resident = MakeModel(**ckpt, {}, &pool);
  ASSERT_NE(resident, nullptr);
  const int64_t expert_bytes = RoutedExpertBytes(resident->weights());
  ASSERT_GT(expert_bytes, 0);
  ASSERT_NE(resident->weights().expert_store(), nullptr);
  EXPECT_FALSE(resident->weights().expert_store()->streaming());

  LoadOptions opt;
  opt.expert_memory_bytes = expert_bytes / 2;
  auto streamed = MakeModel(**ckpt, opt, &pool);
  ASSERT_NE(streamed, nullptr);
  moe::ExpertStore* store = streamed->weights().expert_store();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->streaming());
  EXPECT_LE(streamed->weights().bytes_loaded(), resident->weights().bytes_loaded() - expert_bytes);

  const ServeResult want = Serve(*resident, 8);
  const ServeResult got = Serve(*streamed, 8);
  ExpectSame(want, got);
  store->Drain();
  const moe::ExpertStoreStats s = store->stats();
  std::printf("%s: %ld hits, %ld misses (hit rate %.3f), %ld prefetches (%ld used), %ld evictions, %.2f MB read\n",
              GetParam().c_str(), static_cast<long>(s.hits), static_cast<long>(s.misses), s.hit_rate(),
              static_cast<long>(s.prefetches), static_cast<long>(s.prefetches_used), static_cast<long>(s.evictions),
              s.bytes_read / 1e6);
  EXPECT_GT(s.misses, 0);
  EXPECT_GT(s.hits, 0);
  EXPECT_GT(s.evictions, 0);
  EXPECT_GT(s.bytes_read, 0);
  EXPECT_LE(s.resident_bytes, opt.expert_memory_bytes);
  // Streamed experts bypass the page cache where the file system allows O_DIRECT.
  const std::string shard = (*ckpt)->files().front()->path();
  if (FileSystemTakesDirectIo(shard)) EXPECT_EQ(s.direct_loads, s.loads);
  else std::printf("%s refuses O_DIRECT: expert reads went through the page cache\n", shard.c_str());

  // Buffered reads (LoadOptions::expert_direct_io off) serve the same.
  LoadOptions buffered = opt;
  buffered.expert_direct_io = false;
  auto paged = MakeModel(**ckpt, buffered, &pool);
  ASSERT_NE(paged, nullptr);
  ExpectSame(want, Serve(*paged, 8));
  paged->weights().expert_store()->Drain();
  EXPECT_GT(paged->weights().expert_store()->stats().loads, 0);
  EXPECT_EQ(paged->weights().expert_store()->stats().direct_loads, 0);

  // Random prefetches from another thread, and a cache too small for one layer's experts:
  // still the same results.
  const ServeResult noisy = Serve(*streamed, 8, store);
  ExpectSame(want, noisy);
  LoadOptions tiny = opt;
  tiny.expert_memory_bytes = 1;
  auto starved = MakeModel(**ckpt, tiny, &pool);
  ASSERT_NE(starved, nullptr);
  ExpectSame(want, Serve(*starved, 8));
}

TEST_P(StreamedModelTest, BudgetAboveExpertBytesKeepsEverythingResident) {
  auto ckpt = Checkpoint::Open(ModelDir(GetParam()));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  kernels::ThreadPool pool(2);
  LoadOptions opt;
  opt.expert_memory_bytes = int64_t{1} << 40;
  auto m = MakeModel(**ckpt, opt, &pool);
  ASSERT_NE(m, nullptr);
  ASSERT_NE(m->weights().expert_store(), nullptr);
  EXPECT_FALSE(m->weights().expert_store()->streaming());
}

INSTANTIATE_TEST_SUITE_P(Models, StreamedModelTest, ::testing::Values("glm5-random-sparse", "glm5-tiny-code"));

}  // namespace
}  // namespace glm::model
