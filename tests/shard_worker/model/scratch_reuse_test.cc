// The forward pass keeps its large temporaries in per-thread scratch (kernels/scratch.h) whose
// contents are whatever the previous call left. Nothing may depend on them: a forward on a thread
// whose scratch holds a longer, unrelated batch must give the bits of the same forward on a fresh
// thread (fresh, zero-filled scratch) — for the main model and the MTP layer, on 1 and 2 threads.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "reference_fixture.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/model/model_weights.h"

namespace glm::model {
namespace {

struct Outputs {
  std::vector<float> logits, hidden, mtp_logits;
};

// Full forward of `ids` (every logits row), then the MTP layer over it.
Outputs RunForwards(const Glm5Model& model, const std::vector<int32_t>& ids) {
  Outputs o;
  auto cache = model.NewCache();
  std::vector<SequenceInput> batch(1);
  batch[0].cache = cache.get();
  batch[0].tokens = ids;
  auto out = model.Forward(batch, LogitRows::kAll);
  EXPECT_TRUE(out.ok()) << out.status();
  if (!out.ok()) return o;
  o.logits = out->logits;
  o.hidden = out->hidden;
  if (!model.config().has_mtp() || ids.size() < 2) return o;
  const int64_t hidden = model.config().hidden_size, n = static_cast<int64_t>(ids.size());
  auto mtp_cache = model.NewMtpCache();
  std::vector<SequenceInput> mtp(1);
  mtp[0].cache = mtp_cache.get();
  mtp[0].tokens.assign(ids.begin() + 1, ids.end());
  mtp[0].prev_hidden.assign(out->hidden.begin(), out->hidden.begin() + (n - 1) * hidden);
  auto m = model.ForwardMtp(mtp, LogitRows::kAll);
  EXPECT_TRUE(m.ok()) << m.status();
  if (m.ok()) o.mtp_logits = m->logits;
  return o;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(ScratchReuseTest, StaleScratchNeverChangesAResult) {
  auto fixture = testing::ReferenceFixture::Load("glm5-tiny-code");
  ASSERT_NE(fixture, nullptr);
  auto ckpt = Checkpoint::Open(fixture->model_dir());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto weights = ModelWeights::Load(**ckpt);
  ASSERT_TRUE(weights.ok()) << weights.status();
  std::shared_ptr<const ModelWeights> shared(std::move(*weights));
  const int64_t vocab = shared->config().vocab_size;

  std::vector<int32_t> longer(300), shorter(37);
  for (size_t i = 0; i < longer.size(); ++i) longer[i] = static_cast<int32_t>((i * 7919 + 13) % vocab);
  for (size_t i = 0; i < shorter.size(); ++i) shorter[i] = static_cast<int32_t>((i * 104729 + 5) % vocab);

  for (int threads : {1, 2}) {
    kernels::ThreadPool pool(threads);
    auto model = Glm5Model::Create(shared, &pool);
    ASSERT_TRUE(model.ok()) << model.status();
    // The reference runs first, on a new calling thread while the new pool's threads are unused
    // too: all of its scratch starts zero-filled.
    Outputs fresh;
    std::thread([&] { fresh = RunForwards(**model, shorter); }).join();
    Outputs stale_first = RunForwards(**model, longer);  // fills this thread's scratch, and the pool's
    Outputs reused = RunForwards(**model, shorter);
    EXPECT_TRUE(SameBits(reused.logits, fresh.logits)) << threads << " threads: logits";
    EXPECT_TRUE(SameBits(reused.hidden, fresh.hidden)) << threads << " threads: hidden";
    EXPECT_TRUE(SameBits(reused.mtp_logits, fresh.mtp_logits)) << threads << " threads: MTP logits";
    Outputs again = RunForwards(**model, longer);
    EXPECT_TRUE(SameBits(again.logits, stale_first.logits)) << threads << " threads: longer batch, second run";
  }
}

}  // namespace
}  // namespace glm::model
