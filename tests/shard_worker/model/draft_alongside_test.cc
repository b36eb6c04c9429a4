// Glm5Model::ForwardDraftingAlongside: a verify step whose drafts are made on a second thread
// while the caller already runs the first token gives, bit for bit, what Forward of the whole step
// gives — logits, final hidden states, and every cache row the next steps read — for every
// fixture model, weight format, thread count and draft count, also when the drafts' group reaches
// a layer before the first token's cache rows are there; and a failing or misbehaving drafter
// leaves a clear error and the cache's length as it was.
#include <algorithm>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/glm5_model.h"
#include "reference_fixture.h"

namespace glm::model {
namespace {

using glm::testing::LoadModelWeights;

class DraftAlongsideTest : public ::testing::Test {
 protected:
  void TearDown() override {
    SetTokenGroupStaggerForTesting(0);
    SetTokenGroupMode(TokenGroupMode::kAuto);
  }
};

// Everything a verify step leaves behind: its logits and hidden rows, then the logits of one
// more plain step after it (which read every cache row of every layer the step wrote).
struct StepResult {
  std::vector<float> logits, hidden, next_logits;
};

std::vector<int32_t> Prompt(int64_t vocab) {
  std::vector<int32_t> p;
  for (int i = 0; i < 9; ++i) p.push_back(static_cast<int32_t>((i * 977 + 5) % vocab));
  return p;
}

std::vector<int32_t> Drafts(int n, int64_t vocab) {
  std::vector<int32_t> d;
  for (int i = 0; i < n; ++i) d.push_back(static_cast<int32_t>((131 + 613 * i) % vocab));
  return d;
}

// NaN in every cache row of positions [from, to) of every layer: a row read before the step
// writes it shows in the results, whatever memory the cache happened to reuse.
void PoisonRows(kv_cache::KvCache* cache, int64_t from, int64_t to) {
  ASSERT_TRUE(cache->Reserve(to).ok());
  const kv_cache::KvCacheShape& s = cache->shape();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t l = 0; l < static_cast<int64_t>(s.layer_has_index_keys.size()); ++l)
    for (int64_t p = from; p < to; ++p) {
      std::fill_n(cache->latent(l, p), s.kv_lora_rank, nan);
      std::fill_n(cache->rope_key(l, p), s.rope_dim, nan);
      if (s.layer_has_index_keys[l]) std::fill_n(cache->index_key(l, p), s.index_head_dim, nan);
    }
}

// alongside: the step through ForwardDraftingAlongside, else through Forward.
StepResult RunStep(const Glm5Model& m, int n_drafts, bool alongside, std::thread::id* drafter = nullptr) {
  const int64_t vocab = m.config().vocab_size;
  auto cache = m.NewCache();
  std::vector<SequenceInput> in(1);
  in[0].cache = cache.get();
  in[0].tokens = Prompt(vocab);
  EXPECT_TRUE(m.Forward(in, LogitRows::kLast).ok());
  PoisonRows(cache.get(), cache->length(), cache->length() + 1 + n_drafts);
  const int32_t token = 77 % static_cast<int32_t>(vocab);
  const std::vector<int32_t> drafts = Drafts(n_drafts, vocab);
  absl::StatusOr<ForwardOutput> out;
  if (alongside) {
    std::vector<int32_t> made;
    out = m.ForwardDraftingAlongside(
        cache.get(), token, n_drafts,
        [&](std::vector<int32_t>* d) {
          if (drafter != nullptr) *drafter = std::this_thread::get_id();
          *d = drafts;
          return absl::OkStatus();
        },
        &made);
    EXPECT_EQ(made, drafts);
  } else {
    in[0].tokens = {token};
    in[0].tokens.insert(in[0].tokens.end(), drafts.begin(), drafts.end());
    out = m.Forward(in, LogitRows::kAll);
  }
  StepResult r;
  EXPECT_TRUE(out.ok()) << out.status();
  if (!out.ok()) return r;
  EXPECT_EQ(out->logit_rows, 1 + n_drafts);
  EXPECT_EQ(cache->length(), static_cast<int64_t>(Prompt(vocab).size()) + 1 + n_drafts);
  r.logits = out->logits;
  r.hidden = out->hidden;
  in[0].tokens = {static_cast<int32_t>(4242 % vocab)};
  auto next = m.Forward(in, LogitRows::kAll);
  EXPECT_TRUE(next.ok()) << next.status();
  if (next.ok()) r.next_logits = next->logits;
  return r;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && !a.empty() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST_F(DraftAlongsideTest, BitIdenticalToForwardOfTheWholeStep) {
  for (const std::string name : {"glm5-tiny-code", "glm5-random-sparse", "glm5-random-fp8"}) {
    for (const char* dtype : {"stored", "int4"}) {
      const std::shared_ptr<const ModelWeights> weights = LoadModelWeights(name, dtype);
      ASSERT_NE(weights, nullptr);
      for (int threads : {2, 3}) {
        kernels::ThreadPool pool(threads);
        auto m = Glm5Model::Create(weights, &pool);
        ASSERT_TRUE(m.ok()) << m.status();
        ASSERT_TRUE((*m)->CanDraftAlongside()) << name;
        for (int n_drafts : {1, 2, 4}) {
          // Stagger: the first token's group sleeps before every layer, so the drafts' group gets
          // to each layer's attention first and must wait for that token's cache rows (poisoned
          // until written, RunStep).
          for (int64_t stagger_us : {0, 300}) {
            SetTokenGroupStaggerForTesting(stagger_us);
            std::thread::id drafter;
            const StepResult along = RunStep(**m, n_drafts, /*alongside=*/true, &drafter);
            SetTokenGroupStaggerForTesting(0);
            SetTokenGroupMode(TokenGroupMode::kNever);
            const StepResult whole = RunStep(**m, n_drafts, /*alongside=*/false);
            SetTokenGroupMode(TokenGroupMode::kAuto);
            const std::string what = name + " " + dtype + " threads " + std::to_string(threads) + " drafts " +
                                     std::to_string(n_drafts) + " stagger " + std::to_string(stagger_us);
            EXPECT_TRUE(SameBits(whole.logits, along.logits)) << what;
            EXPECT_TRUE(SameBits(whole.hidden, along.hidden)) << what;
            EXPECT_TRUE(SameBits(whole.next_logits, along.next_logits)) << what;
            EXPECT_NE(drafter, std::this_thread::get_id()) << "the drafts are made on another thread";
          }
        }
      }
    }
  }
}

TEST_F(DraftAlongsideTest, OnlyWhereTokenGroupsCanRun) {
  const std::shared_ptr<const ModelWeights> weights = LoadModelWeights("glm5-tiny-code");
  ASSERT_NE(weights, nullptr);
  kernels::ThreadPool one(1), two(2);
  auto alone = Glm5Model::Create(weights, &one);
  auto pooled = Glm5Model::Create(weights, &two);
  ASSERT_TRUE(alone.ok() && pooled.ok());
  EXPECT_FALSE((*alone)->CanDraftAlongside()) << "one thread: nothing to draft alongside on";
  EXPECT_TRUE((*pooled)->CanDraftAlongside());
  SetTokenGroupMode(TokenGroupMode::kNever);
  EXPECT_FALSE((*pooled)->CanDraftAlongside());
  auto cache = (*pooled)->NewCache();
  std::vector<int32_t> made;
  auto out = (*pooled)->ForwardDraftingAlongside(
      cache.get(), 1, 1, [](std::vector<int32_t>* d) { *d = {2}; return absl::OkStatus(); }, &made);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  // A pipeline stage (no head) cannot verify on its own.
  SetTokenGroupMode(TokenGroupMode::kAuto);
  StageContext first_half;
  first_half.layer_end = weights->config().num_hidden_layers / 2;
  first_half.has_head = false;
  auto stage = Glm5Model::Create(weights, &two, first_half);
  ASSERT_TRUE(stage.ok()) << stage.status();
  EXPECT_FALSE((*stage)->CanDraftAlongside());
}

TEST_F(DraftAlongsideTest, ADrafterThatFailsOrMisbehavesGivesAnErrorAndLeavesTheCache) {
  const std::shared_ptr<const ModelWeights> weights = LoadModelWeights("glm5-tiny-code");
  ASSERT_NE(weights, nullptr);
  kernels::ThreadPool pool(2);
  auto m = Glm5Model::Create(weights, &pool);
  ASSERT_TRUE(m.ok());
  const int64_t vocab = (*m)->config().vocab_size;
  auto cache = (*m)->NewCache();
  std::vector<SequenceInput> in(1);
  in[0].cache = cache.get();
  in[0].tokens = Prompt(vocab);
  ASSERT_TRUE((*m)->Forward(in, LogitRows::kLast).ok());
  const int64_t length = cache->length();
  struct Case {
    std::function<absl::Status(std::vector<int32_t>*)> drafter;
    absl::StatusCode code;
    const char* what;
  };
  const std::vector<Case> cases = {
      {[](std::vector<int32_t>*) { return absl::UnavailableError("the MTP layer is gone"); },
       absl::StatusCode::kUnavailable, "the drafter's own error"},
      {[](std::vector<int32_t>* d) { *d = {1}; return absl::OkStatus(); }, absl::StatusCode::kInternal,
       "one draft where two were promised"},
      {[vocab](std::vector<int32_t>* d) { *d = {1, static_cast<int32_t>(vocab)}; return absl::OkStatus(); },
       absl::StatusCode::kInternal, "an id outside the vocabulary"},
  };
  for (const Case& c : cases) {
    std::vector<int32_t> made;
    auto out = (*m)->ForwardDraftingAlongside(cache.get(), 3, 2, c.drafter, &made);
    EXPECT_EQ(out.status().code(), c.code) << c.what << ": " << out.status();
    EXPECT_EQ(cache->length(), length) << c.what;
  }
  std::vector<int32_t> made;
  EXPECT_EQ((*m)
                ->ForwardDraftingAlongside(
                    cache.get(), 3, 0, [](std::vector<int32_t>*) { return absl::OkStatus(); }, &made)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*m)
                ->ForwardDraftingAlongside(
                    cache.get(), static_cast<int32_t>(vocab), 1,
                    [](std::vector<int32_t>* d) { *d = {1}; return absl::OkStatus(); }, &made)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  // Still serving: a good step after the failed ones.
  auto ok = (*m)->ForwardDraftingAlongside(
      cache.get(), 3, 2, [](std::vector<int32_t>* d) { *d = {5, 6}; return absl::OkStatus(); }, &made);
  EXPECT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(cache->length(), length + 3);
}

}  // namespace
}  // namespace glm::model
