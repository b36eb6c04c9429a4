// Draft vocabularies: the set they hold, and the head logits restricted to it — every computed
// logit has the full head's bits (any weight format, any split over threads), every other one is
// -inf, and the MTP layer's hidden states and caches do not change.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/draft_vocabulary.h"
#include "shard_worker/model/glm5_model.h"
#include "reference_fixture.h"

namespace glm::model {
namespace {

using glm::testing::LoadModelWeights;

TEST(DraftVocabularyTest, HoldsTheCommonIdsAndTheAddedTokensOnce) {
  DraftVocabulary v(100, 1000);
  EXPECT_EQ(v.common(), 100);
  EXPECT_EQ(v.size(), 100);
  EXPECT_TRUE(v.Contains(0));
  EXPECT_TRUE(v.Contains(99));
  EXPECT_FALSE(v.Contains(100));
  EXPECT_FALSE(v.Contains(-1));
  EXPECT_FALSE(v.Contains(1000));
  // Below common, repeated, or outside the vocabulary: nothing new.
  v.Add({5, 700, 300, 700, -3, 1000, 99, 300, 999});
  EXPECT_EQ(v.extra(), (std::vector<int32_t>{300, 700, 999}));
  EXPECT_EQ(v.size(), 103);
  EXPECT_TRUE(v.Contains(700));
  EXPECT_FALSE(v.Contains(701));
  // A prompt's worth at once (sorted in one go) and single tokens (inserted in place) agree.
  std::vector<int32_t> many;
  for (int i = 0; i < 40; ++i) many.push_back(static_cast<int32_t>((i * 37) % 900 + 100));
  DraftVocabulary at_once(100, 1000), one_by_one(100, 1000);
  at_once.Add(many);
  for (int32_t t : many) one_by_one.Add(&t, 1);
  EXPECT_EQ(at_once.extra(), one_by_one.extra());
  EXPECT_TRUE(std::is_sorted(at_once.extra().begin(), at_once.extra().end()));
  // common is clamped to the vocabulary.
  EXPECT_EQ(DraftVocabulary(5000, 1000).common(), 1000);
  EXPECT_EQ(DraftVocabulary(-4, 1000).common(), 0);
}

// The head of each weight format: the bundled model's MTP head (BF16, and int4 with quantize
// scope mtp), the FP8 fixture's lm_head (block scales: a view of some rows must find theirs).
TEST(DraftLogitsTest, EveryComputedLogitHasTheFullHeadsBits) {
  struct Case {
    const char* model;
    const char* dtype;
    const char* scope;
    bool mtp_head;
  };
  for (const Case c : {Case{"glm5-tiny-code", "stored", "experts", true}, Case{"glm5-tiny-code", "int4", "mtp", true},
                       Case{"glm5-tiny-code", "int8", "mtp", true}, Case{"glm5-random-fp8", "stored", "experts", false}}) {
    auto w = LoadModelWeights(c.model, c.dtype, c.scope);
    ASSERT_NE(w, nullptr);
    const kernels::WeightView& head = c.mtp_head ? w->layer(w->config().num_hidden_layers).mtp.head : w->lm_head();
    const int64_t vocab = head.rows, cols = head.cols;
    SCOPED_TRACE(std::string(c.model) + " " + c.dtype + " vocabulary " + std::to_string(vocab));
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const int64_t n = 4;
    std::vector<float> x(n * cols);
    for (float& v : x) v = normal(rng);
    // Row 0: a common block, a run of consecutive ids, ids far apart, the last id, one below
    // common; row 1: every id; row 2: no common block; row 3: the same vocabulary as row 0.
    DraftVocabulary a(vocab / 4, vocab), b(0, vocab);
    a.Add({static_cast<int32_t>(vocab / 4), static_cast<int32_t>(vocab / 4 + 1), static_cast<int32_t>(vocab / 4 + 2),
           static_cast<int32_t>(vocab / 2 + 3), static_cast<int32_t>(vocab - 1), 3});
    b.Add({2, 3, static_cast<int32_t>(vocab - 2)});
    const std::vector<const DraftVocabulary*> of_row = {&a, nullptr, &b, &a};
    std::vector<float> full(n * vocab);
    kernels::MatMul(x.data(), n, head, full.data(), nullptr);
    for (int threads : {1, 2}) {
      kernels::ThreadPool pool(threads);
      std::vector<float> got(n * vocab, 7.0f);
      DraftLogits(x.data(), n, head, of_row, got.data(), &pool);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t id = 0; id < vocab; ++id) {
          const float g = got[i * vocab + id];
          if (of_row[i] == nullptr || of_row[i]->Contains(static_cast<int32_t>(id))) {
            ASSERT_EQ(std::memcmp(&g, &full[i * vocab + id], sizeof g), 0)
                << "row " << i << " id " << id << " " << g << " vs " << full[i * vocab + id] << ", " << threads << " threads";
          } else {
            ASSERT_EQ(g, -std::numeric_limits<float>::infinity()) << "row " << i << " id " << id;
          }
        }
    }
    // Bytes: the common block once, a head row per extra id.
    const int64_t row_bytes = head.bytes() / vocab;
    EXPECT_EQ(DraftLogitsBytes(head, {&a}), (vocab / 4 + 5) * row_bytes);
    EXPECT_EQ(DraftLogitsBytes(head, {&a, &b}), (vocab / 4 + 5 + 3) * row_bytes);
    EXPECT_EQ(DraftLogitsBytes(head, {&b, nullptr}), (vocab + 3) * row_bytes);
  }
}

// ForwardMtp with a draft vocabulary for one of two sequences: that sequence's logits are the
// unrestricted ones on its ids and -inf elsewhere; the other sequence, every hidden state and
// both caches are unchanged.
TEST(DraftLogitsTest, ForwardMtpRestrictsOnlyTheLogits) {
  auto w = LoadModelWeights("glm5-tiny-code");
  ASSERT_NE(w, nullptr);
  kernels::ThreadPool pool(1);  // one path for both runs: the byte counts are comparable
  auto m = Glm5Model::Create(w, &pool);
  ASSERT_TRUE(m.ok()) << m.status();
  const Glm5Model& model = **m;
  const int64_t vocab = model.config().vocab_size, hidden = model.config().hidden_size;
  DraftVocabulary v(512, vocab);
  v.Add({700, 701, 3000, 4095, 12});
  auto run = [&](const DraftVocabulary* vocab_of_first, std::vector<std::unique_ptr<kv_cache::KvCache>>* caches) {
    std::vector<SequenceInput> in(2);
    for (int s = 0; s < 2; ++s) {
      caches->push_back(model.NewMtpCache());
      in[s].cache = caches->back().get();
      for (int i = 0; i < 5 + 3 * s; ++i) in[s].tokens.push_back(static_cast<int32_t>((s * 311 + i * 97 + 11) % vocab));
      for (size_t i = 0; i < in[s].tokens.size() * hidden; ++i)
        in[s].prev_hidden.push_back(std::sin(0.01f * static_cast<float>(i + 7 * s)));
    }
    in[0].draft_vocab = vocab_of_first;
    auto out = model.ForwardMtp(in, LogitRows::kLast);
    EXPECT_TRUE(out.ok()) << out.status();
    return *std::move(out);
  };
  std::vector<std::unique_ptr<kv_cache::KvCache>> full_caches, draft_caches;
  const ForwardOutput full = run(nullptr, &full_caches), draft = run(&v, &draft_caches);
  ASSERT_EQ(full.logits.size(), static_cast<size_t>(2 * vocab));
  ASSERT_EQ(draft.logits.size(), full.logits.size());
  EXPECT_EQ(draft.hidden, full.hidden);
  for (int64_t id = 0; id < vocab; ++id) {
    if (v.Contains(static_cast<int32_t>(id)))
      ASSERT_EQ(draft.logits[id], full.logits[id]) << id;
    else
      ASSERT_EQ(draft.logits[id], -std::numeric_limits<float>::infinity()) << id;
  }
  for (int64_t id = 0; id < vocab; ++id) ASSERT_EQ(draft.logits[vocab + id], full.logits[vocab + id]) << id;
  // The other sequence reads the whole head; this one adds its 4 ids past the common block.
  const kernels::WeightView& head = w->layer(model.config().num_hidden_layers).mtp.head;
  EXPECT_EQ(draft.weight_bytes_read, full.weight_bytes_read + 4 * head.bytes() / vocab);
  for (int s = 0; s < 2; ++s) EXPECT_EQ(draft_caches[s]->length(), full_caches[s]->length());
}

// A sequence with an empty draft vocabulary (the cluster's last stage gives one to a sequence
// that does not draft this step) only keeps its cache rows current: its last row skips the
// attention output and the MLP like the rows before it. The other sequence's outputs are
// unchanged, and so are the first one's cache rows: the next row drafted on them has the same bits.
TEST(DraftLogitsTest, ForwardMtpWithAnEmptyVocabularyWritesOnlyCacheRows) {
  auto w = LoadModelWeights("glm5-tiny-code");
  ASSERT_NE(w, nullptr);
  kernels::ThreadPool pool(2);
  auto m = Glm5Model::Create(w, &pool);
  ASSERT_TRUE(m.ok()) << m.status();
  const Glm5Model& model = **m;
  const int64_t vocab = model.config().vocab_size, hidden = model.config().hidden_size;
  const DraftVocabulary none(0, vocab);
  auto rows = [&](int s, int n, int salt) {
    SequenceInput in;
    for (int i = 0; i < n; ++i) in.tokens.push_back(static_cast<int32_t>((s * 311 + i * 97 + salt) % vocab));
    for (size_t i = 0; i < in.tokens.size() * hidden; ++i)
      in.prev_hidden.push_back(std::cos(0.013f * static_cast<float>(i + 5 * s + salt)));
    return in;
  };
  struct Run {
    ForwardOutput first, next;
    int64_t expert_bytes = 0;  // routed-expert bytes the first forward read
    std::vector<std::unique_ptr<kv_cache::KvCache>> caches;
  };
  auto run = [&](const DraftVocabulary* vocab_of_first) {
    Run r;
    std::vector<SequenceInput> in;
    for (int s = 0; s < 2; ++s) {
      r.caches.push_back(model.NewMtpCache());
      in.push_back(rows(s, 4 + 3 * s, 11));
      in.back().cache = r.caches.back().get();
    }
    in[0].draft_vocab = vocab_of_first;
    const int64_t bytes_before = model.routed_expert_bytes_read();
    auto out = model.ForwardMtp(in, LogitRows::kLast);
    EXPECT_TRUE(out.ok()) << out.status();
    r.expert_bytes = model.routed_expert_bytes_read() - bytes_before;
    r.first = *std::move(out);
    // One more row of the first sequence, drafted on the rows just written.
    std::vector<SequenceInput> next{rows(0, 1, 29)};
    next[0].cache = r.caches[0].get();
    auto n = model.ForwardMtp(next, LogitRows::kLast);
    EXPECT_TRUE(n.ok()) << n.status();
    r.next = *std::move(n);
    return r;
  };
  const Run drafting = run(nullptr), cache_only = run(&none);
  ASSERT_EQ(cache_only.first.logits.size(), static_cast<size_t>(2 * vocab));
  for (int64_t id = 0; id < vocab; ++id) {
    ASSERT_EQ(cache_only.first.logits[id], -std::numeric_limits<float>::infinity()) << id;
    ASSERT_EQ(cache_only.first.logits[vocab + id], drafting.first.logits[vocab + id]) << id;
  }
  // The second sequence's rows (after the first's 4) are the same; the first's outputs are not computed.
  EXPECT_TRUE(std::equal(cache_only.first.hidden.begin() + 4 * hidden, cache_only.first.hidden.end(),
                         drafting.first.hidden.begin() + 4 * hidden));
  EXPECT_EQ(cache_only.next.logits, drafting.next.logits);
  EXPECT_EQ(cache_only.next.hidden, drafting.next.hidden);
  EXPECT_GT(cache_only.expert_bytes, 0);  // the second sequence's last row
  // Alone, a sequence that does not draft reads no expert at all.
  auto cache = model.NewMtpCache();
  std::vector<SequenceInput> alone{rows(0, 4, 11)};
  alone[0].cache = cache.get();
  alone[0].draft_vocab = &none;
  const int64_t bytes_before = model.routed_expert_bytes_read();
  ASSERT_TRUE(model.ForwardMtp(alone, LogitRows::kLast).ok());
  EXPECT_EQ(model.routed_expert_bytes_read(), bytes_before);
  for (int s = 0; s < 2; ++s) EXPECT_EQ(cache_only.caches[s]->length(), drafting.caches[s]->length());
}

}  // namespace
}  // namespace glm::model
