// Token-group steps (each pool thread takes a group of tokens through the layers; a sequence split
// between groups runs as a wavefront) give the same logits, hidden states and caches, bit for bit,
// as the pooled path (every matmul's rows split across the threads), for every thread count,
// batch shape and weight format: a token's arithmetic does not depend on which other tokens
// share its batch or its thread.
#include <algorithm>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/glm5_model.h"
#include "reference_fixture.h"

namespace glm::model {
namespace {

using glm::testing::LoadModelWeights;

// Restores the default threshold when a test ends, whatever it set.
class TokenGroupsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    SetTokenGroupStaggerForTesting(0);
    SetTokenGroupMode(TokenGroupMode::kAuto);
    kernels::SetBf16Activations(false);
  }
};

// Prompts of different lengths, then steps where sequence b brings tokens_per_seq[b] tokens (a
// decode token, or a speculative verify of a few); every logit row, every final hidden state and
// each cache's latent rows of the last layer.
std::vector<float> RunSteps(const Glm5Model& m, const std::vector<int>& tokens_per_seq) {
  const int64_t V = m.config().vocab_size;
  const int batch = static_cast<int>(tokens_per_seq.size());
  std::vector<std::unique_ptr<kv_cache::KvCache>> caches;
  std::vector<SequenceInput> in(batch);
  for (int b = 0; b < batch; ++b) {
    caches.push_back(m.NewCache());
    in[b].cache = caches.back().get();
    for (int i = 0; i < 3 + 2 * b; ++i) in[b].tokens.push_back(static_cast<int32_t>((b * 131 + i * 977 + 5) % V));
  }
  std::vector<float> all;
  for (int step = 0; step < 4; ++step) {
    auto out = m.Forward(in, LogitRows::kAll);
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) return all;
    all.insert(all.end(), out->logits.begin(), out->logits.end());
    all.insert(all.end(), out->hidden.begin(), out->hidden.end());
    int64_t row = 0;
    for (int b = 0; b < batch; ++b) {
      row += static_cast<int64_t>(in[b].tokens.size());
      const float* last = out->logits.data() + (row - 1) * V;
      const int32_t next = static_cast<int32_t>(std::max_element(last, last + V) - last);
      in[b].tokens.assign(tokens_per_seq[b], next);
      for (int i = 1; i < tokens_per_seq[b]; ++i) in[b].tokens[i] = static_cast<int32_t>((next + 17 * i) % V);
    }
  }
  const int64_t rank = m.config().kv_lora_rank, layer = m.config().num_hidden_layers - 1;
  for (const auto& c : caches)
    for (int64_t p = 0; p < c->length(); ++p) all.insert(all.end(), c->latent(layer, p), c->latent(layer, p) + rank);
  return all;
}

TEST_F(TokenGroupsTest, BitIdenticalToPooledSteps) {
  for (const std::string name : {"glm5-tiny-code", "glm5-random-sparse", "glm5-random-fp8"}) {
    for (const char* dtype : {"stored", "int4"}) {
      const std::shared_ptr<const ModelWeights> weights = LoadModelWeights(name, dtype);
      ASSERT_NE(weights, nullptr);
      for (bool bf16 : {false, true}) {
        kernels::SetBf16Activations(bf16);
        for (int threads : {2, 3}) {
          kernels::ThreadPool pool(threads);
          auto m = Glm5Model::Create(weights, &pool);
          ASSERT_TRUE(m.ok()) << m.status();
          // Decode batches and verifies, then steps past 16 tokens (the chooser's buckets): chunks of
          // one sequence split into a wavefront, and a chunk mixed with decodes.
          for (const std::vector<int>& shape : std::vector<std::vector<int>>{
                   {1}, {3}, {1, 1}, {1, 3, 1}, {2, 1, 1, 1, 4, 1, 1, 1}, {20}, {1, 33, 1, 1}}) {
            SetTokenGroupMode(TokenGroupMode::kNever);
            const std::vector<float> pooled = RunSteps(**m, shape);
            SetTokenGroupMode(TokenGroupMode::kAlways);
            const std::vector<float> by_sequence = RunSteps(**m, shape);
            ASSERT_FALSE(pooled.empty());
            ASSERT_EQ(pooled.size(), by_sequence.size());
            EXPECT_EQ(0, std::memcmp(pooled.data(), by_sequence.data(), pooled.size() * sizeof(float)))
                << name << " " << dtype << (bf16 ? " bf16" : " f32") << " threads " << threads << " sequences "
                << shape.size();
          }
        }
      }
    }
  }
}

// With group 0 held back before every layer, a group continuing its sequence reaches the attention
// first: only the wait for group 0's cache rows (CacheRowSync) keeps the result exact.
TEST_F(TokenGroupsTest, LaterGroupWaitsForTheEarlierGroupsCacheRows) {
  const std::shared_ptr<const ModelWeights> weights = LoadModelWeights("glm5-tiny-code");
  ASSERT_NE(weights, nullptr);
  kernels::ThreadPool pool(2);
  auto m = Glm5Model::Create(weights, &pool);
  ASSERT_TRUE(m.ok()) << m.status();
  for (const std::vector<int>& shape : std::vector<std::vector<int>>{{2}, {4}, {1, 3}}) {
    // Grouped first: its caches must not reuse memory a pooled run just filled with the very rows
    // a missing wait would read too early.
    SetTokenGroupMode(TokenGroupMode::kAlways);
    SetTokenGroupStaggerForTesting(300);
    const std::vector<float> grouped = RunSteps(**m, shape);
    SetTokenGroupStaggerForTesting(0);
    SetTokenGroupMode(TokenGroupMode::kNever);
    const std::vector<float> pooled = RunSteps(**m, shape);
    ASSERT_FALSE(pooled.empty());
    ASSERT_EQ(pooled.size(), grouped.size());
    EXPECT_EQ(0, std::memcmp(pooled.data(), grouped.data(), pooled.size() * sizeof(float))) << shape.size();
  }
}

// A decode batch, and a batch of speculative verifies (sequences of 1-3 tokens), whose group 0 is
// held back before every layer: the other groups, done first, take over the later half of its
// sequences at its next layer boundary (TokenGroupSteals), and again from what is left. Every
// logit, hidden state and cache row stays bit-identical to the pooled path's; the DSA key
// selections of the sparse model travel with the tokens.
TEST_F(TokenGroupsTest, SlowGroupHandsOverTokensExactly) {
  for (const std::string name : {"glm5-tiny-code", "glm5-random-sparse"}) {
    const std::shared_ptr<const ModelWeights> weights = LoadModelWeights(name);
    ASSERT_NE(weights, nullptr);
    for (int threads : {2, 3}) {
      kernels::ThreadPool pool(threads);
      auto m = Glm5Model::Create(weights, &pool);
      ASSERT_TRUE(m.ok()) << m.status();
      for (const std::vector<int>& batch : {std::vector<int>(8, 1), std::vector<int>{2, 1, 3, 1, 1, 2, 1, 1}}) {
        SetTokenGroupMode(TokenGroupMode::kAlways);
        SetTokenGroupStaggerForTesting(300);
        const int64_t steals_before = (*m)->token_group_steals();
        const std::vector<float> grouped = RunSteps(**m, batch);
        SetTokenGroupStaggerForTesting(0);
        EXPECT_GT((*m)->token_group_steals(), steals_before) << name << " threads " << threads;
        SetTokenGroupMode(TokenGroupMode::kNever);
        const std::vector<float> pooled = RunSteps(**m, batch);
        ASSERT_FALSE(pooled.empty());
        ASSERT_EQ(pooled.size(), grouped.size());
        EXPECT_EQ(0, std::memcmp(pooled.data(), grouped.data(), pooled.size() * sizeof(float)))
            << name << " threads " << threads << " sequences of up to " << *std::max_element(batch.begin(), batch.end())
            << " tokens";
      }
    }
  }
}

// The MTP layer's steps: rows of several sequences (the draft row, and accepted rows it catches
// up on) with their main-model hidden states; logits, hidden states and the MTP cache rows.
std::vector<float> RunMtpSteps(const Glm5Model& m, const std::vector<int>& rows_per_seq) {
  const int64_t V = m.config().vocab_size, H = m.config().hidden_size;
  std::vector<std::unique_ptr<kv_cache::KvCache>> caches;
  std::vector<SequenceInput> in(rows_per_seq.size());
  std::vector<float> all;
  for (int step = 0; step < 3; ++step) {
    for (size_t b = 0; b < in.size(); ++b) {
      if (step == 0) {
        caches.push_back(m.NewMtpCache());
        in[b].cache = caches.back().get();
      }
      const int n = step == 0 ? 2 + static_cast<int>(b) : rows_per_seq[b];
      in[b].tokens.resize(n);
      in[b].prev_hidden.resize(n * H);
      for (int i = 0; i < n; ++i) in[b].tokens[i] = static_cast<int32_t>((b * 211 + step * 37 + i * 977 + 3) % V);
      for (int64_t j = 0; j < n * H; ++j) in[b].prev_hidden[j] = static_cast<float>(((j * 7919 + b * 13 + step) % 2001) - 1000) / 500.0f;
    }
    auto out = m.ForwardMtp(in, LogitRows::kAll);
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) return all;
    all.insert(all.end(), out->logits.begin(), out->logits.end());
    all.insert(all.end(), out->hidden.begin(), out->hidden.end());
  }
  const int64_t rank = m.config().kv_lora_rank, layer = m.config().num_hidden_layers;
  for (const auto& c : caches)
    for (int64_t p = 0; p < c->length(); ++p) all.insert(all.end(), c->latent(layer, p), c->latent(layer, p) + rank);
  return all;
}

TEST_F(TokenGroupsTest, MtpLayerBitIdenticalToPooledSteps) {
  for (const std::string name : {"glm5-tiny-code", "glm5-random-sparse"}) {
    const std::shared_ptr<const ModelWeights> weights = LoadModelWeights(name);
    ASSERT_NE(weights, nullptr);
    ASSERT_TRUE(weights->config().has_mtp()) << name;
    for (int threads : {2, 3}) {
      kernels::ThreadPool pool(threads);
      auto m = Glm5Model::Create(weights, &pool);
      ASSERT_TRUE(m.ok()) << m.status();
      for (const std::vector<int>& shape : std::vector<std::vector<int>>{{1}, {2}, {1, 2, 1}, {2, 1, 1, 3}}) {
        SetTokenGroupMode(TokenGroupMode::kNever);
        const std::vector<float> pooled = RunMtpSteps(**m, shape);
        SetTokenGroupMode(TokenGroupMode::kAlways);
        const std::vector<float> grouped = RunMtpSteps(**m, shape);
        ASSERT_FALSE(pooled.empty());
        ASSERT_EQ(pooled.size(), grouped.size());
        EXPECT_EQ(0, std::memcmp(pooled.data(), grouped.data(), pooled.size() * sizeof(float)))
            << name << " threads " << threads << " sequences " << shape.size();
      }
    }
  }
}

// One MTP run of three steps over sequences of `rows` rows each (20 more in the first step), with
// `kind` of output (kNone: none for two steps, then kLast). Returns the rows asked for (each
// sequence's last row: hidden and logits) and every MTP cache row (latent, rope key, index key).
std::pair<std::vector<float>, std::vector<float>> RunMtpOutputRows(const Glm5Model& m, LogitRows kind) {
  const ModelConfig& c = m.config();
  const int64_t V = c.vocab_size, H = c.hidden_size, layer = c.num_hidden_layers;
  const std::vector<int> rows = {3, 1, 2};
  std::vector<std::unique_ptr<kv_cache::KvCache>> caches;
  std::vector<SequenceInput> in(rows.size());
  std::vector<float> asked, cache_rows;
  for (int step = 0; step < 3; ++step) {
    for (size_t b = 0; b < in.size(); ++b) {
      if (step == 0) {
        caches.push_back(m.NewMtpCache());
        in[b].cache = caches.back().get();
      }
      const int n = rows[b] + (step == 0 ? 20 : 0);
      in[b].tokens.resize(n);
      in[b].prev_hidden.resize(n * H);
      for (int i = 0; i < n; ++i) in[b].tokens[i] = static_cast<int32_t>((b * 131 + step * 53 + i * 701 + 9) % V);
      for (int64_t j = 0; j < n * H; ++j)
        in[b].prev_hidden[j] = static_cast<float>(((j * 6007 + b * 17 + step) % 1999) - 999) / 400.0f;
    }
    const bool no_output = kind == LogitRows::kNone && step < 2;
    auto out = m.ForwardMtp(in, kind == LogitRows::kNone && !no_output ? LogitRows::kLast : kind);
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) return {};
    if (no_output) continue;
    int64_t row = -1, logit_row = 0;
    for (const SequenceInput& s : in) {
      row += static_cast<int64_t>(s.tokens.size());
      asked.insert(asked.end(), out->hidden.begin() + row * H, out->hidden.begin() + (row + 1) * H);
      const int64_t lr = kind == LogitRows::kAll ? row : logit_row++;
      asked.insert(asked.end(), out->logits.begin() + lr * V, out->logits.begin() + (lr + 1) * V);
    }
  }
  for (const auto& cache : caches)
    for (int64_t p = 0; p < cache->length(); ++p) {
      cache_rows.insert(cache_rows.end(), cache->latent(layer, p), cache->latent(layer, p) + c.kv_lora_rank);
      cache_rows.insert(cache_rows.end(), cache->rope_key(layer, p), cache->rope_key(layer, p) + c.qk_rope_head_dim);
      if (const float* k = cache->index_key(layer, p); k != nullptr)
        cache_rows.insert(cache_rows.end(), k, k + c.index_head_dim);
    }
  return {asked, cache_rows};
}

// Rows whose MTP output nobody asks for (LogitRows kLast / kNone: caught-up and prompt rows) only
// write their cache rows (attention output, indexer queries and MLP skipped): the rows asked for
// get exactly what a kAll step gives them, and every cache row is the same, so later draft rows
// attend over the same cache. glm5-random-sparse has index_topk 16: rows past it select keys.
TEST_F(TokenGroupsTest, MtpRowsWithoutOutputOnlyFillTheCache) {
  for (const std::string name : {"glm5-tiny-code", "glm5-random-sparse"}) {
    const std::shared_ptr<const ModelWeights> weights = LoadModelWeights(name);
    ASSERT_NE(weights, nullptr);
    kernels::ThreadPool pool(2);
    auto m = Glm5Model::Create(weights, &pool);
    ASSERT_TRUE(m.ok()) << m.status();
    for (TokenGroupMode mode : {TokenGroupMode::kNever, TokenGroupMode::kAlways}) {
      SetTokenGroupMode(mode);
      const auto all = RunMtpOutputRows(**m, LogitRows::kAll);
      const auto last = RunMtpOutputRows(**m, LogitRows::kLast);
      const auto none = RunMtpOutputRows(**m, LogitRows::kNone);  // two steps without output, then kLast
      ASSERT_FALSE(all.second.empty()) << name;
      ASSERT_EQ(all.first.size(), last.first.size()) << name;
      EXPECT_EQ(0, std::memcmp(all.first.data(), last.first.data(), all.first.size() * sizeof(float))) << name;
      ASSERT_EQ(all.second.size(), last.second.size()) << name;
      EXPECT_EQ(0, std::memcmp(all.second.data(), last.second.data(), all.second.size() * sizeof(float))) << name;
      ASSERT_EQ(all.second.size(), none.second.size()) << name;
      EXPECT_EQ(0, std::memcmp(all.second.data(), none.second.data(), all.second.size() * sizeof(float))) << name;
      // The kLast step after two output-less ones: the same rows as the third kAll step.
      const size_t step_floats = all.first.size() / 3;
      ASSERT_EQ(none.first.size(), step_floats) << name;
      EXPECT_EQ(0, std::memcmp(all.first.data() + 2 * step_floats, none.first.data(), step_floats * sizeof(float)))
          << name;
    }
  }
}

// The weight bytes a step reports (ForwardOutput::weight_bytes_read, the ranks' expert-bytes
// metric) do not depend on the path: token groups read the layers' weights once per group, but a
// step counts each matrix once and each routed expert once, as the pooled path does. MTP steps
// too, where the first group may hold only caught-up rows (no MLP block of its own).
TEST_F(TokenGroupsTest, StepBytesDoNotDependOnThePath) {
  const std::shared_ptr<const ModelWeights> weights = LoadModelWeights("glm5-tiny-code");
  ASSERT_NE(weights, nullptr);
  const int64_t V = weights->config().vocab_size, H = weights->config().hidden_size;
  for (int threads : {2, 3}) {
    kernels::ThreadPool pool(threads);
    auto m = Glm5Model::Create(weights, &pool);
    ASSERT_TRUE(m.ok()) << m.status();
    for (const std::vector<int>& shape :
         std::vector<std::vector<int>>{{2}, {4}, {1, 1, 1, 1, 1, 1, 1, 1}, {2, 1, 3}, {1, 5}}) {
      // One step of each shape after a short prompt per sequence, main model then MTP layer.
      auto step_bytes = [&](TokenGroupMode mode, bool mtp) -> int64_t {
        SetTokenGroupMode(mode);
        std::vector<std::unique_ptr<kv_cache::KvCache>> caches;
        std::vector<SequenceInput> in(shape.size());
        for (size_t b = 0; b < shape.size(); ++b) {
          caches.push_back(mtp ? (*m)->NewMtpCache() : (*m)->NewCache());
          in[b].cache = caches.back().get();
          in[b].tokens = {static_cast<int32_t>((b * 37 + 11) % V), static_cast<int32_t>((b * 91 + 5) % V)};
          if (mtp) in[b].prev_hidden.assign(2 * H, 0.25f);
        }
        auto prompt = mtp ? (*m)->ForwardMtp(in, LogitRows::kNone) : (*m)->Forward(in, LogitRows::kNone);
        EXPECT_TRUE(prompt.ok());
        for (size_t b = 0; b < shape.size(); ++b) {
          in[b].tokens.clear();
          for (int i = 0; i < shape[b]; ++i) in[b].tokens.push_back(static_cast<int32_t>((b * 131 + i * 977 + 3) % V));
          if (mtp) in[b].prev_hidden.assign(static_cast<size_t>(shape[b]) * H, 0.5f);
        }
        auto out = mtp ? (*m)->ForwardMtp(in, LogitRows::kLast) : (*m)->Forward(in, LogitRows::kAll);
        EXPECT_TRUE(out.ok());
        return out.ok() ? out->weight_bytes_read : -1;
      };
      for (bool mtp : {false, true}) {
        const int64_t pooled = step_bytes(TokenGroupMode::kNever, mtp);
        const int64_t grouped = step_bytes(TokenGroupMode::kAlways, mtp);
        EXPECT_GT(pooled, 0);
        EXPECT_EQ(pooled, grouped) << "threads " << threads << ", " << shape.size() << " sequences"
                                   << (mtp ? ", MTP layer" : "");
      }
    }
  }
}

}  // namespace
}  // namespace glm::model
