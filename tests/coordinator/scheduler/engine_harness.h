// The engine tests' harness: a continuous-batching engine over a real in-process cluster of a
// fixture model, its loop on a thread, and the single-process engine it is compared with.
#ifndef GLM_TESTS_COORDINATOR_SCHEDULER_ENGINE_HARNESS_H_
#define GLM_TESTS_COORDINATOR_SCHEDULER_ENGINE_HARNESS_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/scheduler/cluster_step_runner.h"
#include "coordinator/scheduler/engine.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/runtime/generator.h"
#include "tests/coordinator/cluster/cluster_test_util.h"
#include "tests/prompt_logprobs.h"

namespace glm::scheduler {

using testing::FixtureModelDir;
using testing::LocalCluster;

// Runs the engine loop on a thread for the test's lifetime.
class EngineHarness {
 public:
  // Makes the engine's StepRunner over the cluster's client (default: a ClusterStepRunner).
  using RunnerFactory = std::function<std::unique_ptr<StepRunner>(cluster::ClusterClient*)>;
  EngineHarness(const std::string& model, int workers, int stages, int kv_blocks, int block_size,
                EngineOptions overrides = {}, int worker_threads = 1, const RunnerFactory& make_runner = nullptr,
                const std::string& kv_cache_dtype = "f32", const std::string& index_key_dtype = "f32") {
    auto lc = LocalCluster::Start(FixtureModelDir(model), workers, stages, kv_blocks, block_size, worker_threads,
                                  kv_cache_dtype, index_key_dtype);
    EXPECT_TRUE(lc.ok()) << lc.status();
    cluster_ = std::move(*lc);
    runner_ = make_runner ? make_runner(cluster_->client()) : std::make_unique<ClusterStepRunner>(cluster_->client());
    EngineOptions o = overrides;
    o.max_context = cluster_->config().max_position_embeddings;
    o.vocab_size = static_cast<int32_t>(cluster_->config().vocab_size);
    o.eos_token_ids = cluster_->config().eos_token_ids;
    o.kv_blocks = kv_blocks;
    o.kv_block_size = block_size;
    o.has_mtp = cluster_->config().has_mtp();
    auto e = Engine::Create(runner_.get(), o);
    EXPECT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
    loop_ = std::thread([this] { loop_status_ = engine_->RunLoop(); });
  }
  ~EngineHarness() { Stop(); }
  // Ends the engine loop (the runner may be read after).
  void Stop() {
    if (!loop_.joinable()) return;
    engine_->Shutdown(false);
    loop_.join();
  }
  Engine* engine() { return engine_.get(); }
  StepRunner* runner() { return runner_.get(); }
  // KV blocks still held once the engine has published the step that finished the last request:
  // its load snapshot may lag the final token by a step, so this waits (up to 10 s) for 0.
  int64_t SettledBlocksUsed() {
    for (int i = 0; i < 1000 && engine_->GetLoad().kv_blocks_used != 0; ++i) absl::SleepFor(absl::Milliseconds(10));
    return engine_->GetLoad().kv_blocks_used;
  }

  // Submits and collects the whole output.
  struct Output {
    std::vector<int32_t> tokens;
    std::string finish_reason;
    absl::Status error;
    int32_t cached_tokens = 0;
    int32_t accepted_prediction_tokens = 0, rejected_prediction_tokens = 0;
    std::vector<TokenLogprob> prompt_logprobs;
    std::vector<TokenLogprob> logprobs;  // one per output token when asked for
  };
  Output Run(GenerationRequest r) { return std::move(RunAll({std::move(r)}).front()); }
  // Submits every request before reading any (they run together, whatever the threads' timing),
  // then collects each one's whole output.
  std::vector<Output> RunAll(std::vector<GenerationRequest> requests) {
    std::vector<Output> outs(requests.size());
    std::vector<std::shared_ptr<RequestStream>> streams(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      auto stream = engine_->Submit(std::move(requests[i]));
      if (!stream.ok()) {
        outs[i].error = stream.status();
        continue;
      }
      streams[i] = std::move(*stream);
    }
    for (size_t i = 0; i < requests.size(); ++i) {
      if (streams[i] == nullptr) continue;
      Output& out = outs[i];
      GenerationEvent e;
      while (streams[i]->Next(&e, absl::Seconds(120))) {
        out.tokens.insert(out.tokens.end(), e.tokens.begin(), e.tokens.end());
        if (!e.prompt_logprobs.empty()) out.prompt_logprobs = e.prompt_logprobs;
        out.logprobs.insert(out.logprobs.end(), e.logprobs.begin(), e.logprobs.end());
        if (e.finished) {
          out.finish_reason = e.finish_reason;
          out.error = e.error;
          out.cached_tokens = e.cached_tokens;
          out.accepted_prediction_tokens = e.accepted_prediction_tokens;
          out.rejected_prediction_tokens = e.rejected_prediction_tokens;
          break;
        }
      }
    }
    return outs;
  }

 private:
  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<StepRunner> runner_;
  std::unique_ptr<Engine> engine_;
  std::thread loop_;
  absl::Status loop_status_;
};

// Options of an engine over a scripted StepRunner (no model): a vocabulary of 100, blocks of 16.
inline EngineOptions ScriptedEngineOptions(int64_t max_context, int32_t kv_blocks) {
  EngineOptions o;
  o.max_context = max_context;
  o.vocab_size = 100;
  o.kv_blocks = kv_blocks;
  o.kv_block_size = 16;
  return o;
}

// A scripted last stage's result for `plan`: `token` for every sequence the plan samples.
inline shard::StepResult SampleEverySequence(const shard::StepPlan& plan, int32_t token = 7) {
  shard::StepResult r;
  for (const auto& s : plan.sequences()) {
    if (!s.sample()) continue;
    auto* out = r.add_sequences();
    out->set_seq_id(s.seq_id());
    out->set_token(token);
  }
  return r;
}

inline GenerationRequest Greedy(std::vector<int32_t> prompt, int max_tokens, std::string id = "") {
  GenerationRequest r;
  r.request_id = std::move(id);
  r.prompt = std::move(prompt);
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  return r;
}

// The single-process engine the cluster is compared with: the model on one thread.
struct SingleProcess {
  explicit SingleProcess(const std::string& model_name = "glm5-tiny-code",
                         kv_cache::KvDType kv_dtype = kv_cache::KvDType::kF32,
                         kv_cache::KvDType index_key_dtype = kv_cache::KvDType::kF32)
      : pool(1) {
    auto ckpt = model::Checkpoint::Open(FixtureModelDir(model_name));
    EXPECT_TRUE(ckpt.ok()) << ckpt.status();
    auto weights = model::ModelWeights::Load(**ckpt);
    EXPECT_TRUE(weights.ok()) << weights.status();
    auto m = model::Glm5Model::Create(std::shared_ptr<const model::ModelWeights>(std::move(*weights)), &pool);
    EXPECT_TRUE(m.ok()) << m.status();
    model = std::move(*m);
    model->set_kv_cache_dtype(kv_dtype);
    model->set_index_key_dtype(index_key_dtype);
  }
  kernels::ThreadPool pool;
  std::unique_ptr<model::Glm5Model> model;
};

inline std::vector<int32_t> SingleProcessGreedy(const std::vector<int32_t>& prompt, int n,
                                         const std::string& model_name = "glm5-tiny-code",
                                         kv_cache::KvDType kv_dtype = kv_cache::KvDType::kF32,
                                         kv_cache::KvDType index_key_dtype = kv_cache::KvDType::kF32) {
  SingleProcess sp(model_name, kv_dtype, index_key_dtype);
  runtime::GenerateOptions g;
  g.max_new_tokens = n;
  g.ignore_eos = true;
  return runtime::Generate(*sp.model, prompt, g)->tokens;
}

// log p(prompt[p] | prompt[0, p)) for p >= 1 from a single-process forward of `model` with the given
// cache dtypes.
inline std::vector<double> SingleProcessPromptLogprobs(const std::vector<int32_t>& prompt, const std::string& model_name,
                                                       kv_cache::KvDType kv, kv_cache::KvDType index) {
  SingleProcess sp(model_name, kv, index);
  auto cache = sp.model->NewCache();
  std::vector<model::SequenceInput> in(1);
  in[0].cache = cache.get();
  in[0].tokens = prompt;
  auto full = sp.model->Forward(in, model::LogitRows::kAll);
  EXPECT_TRUE(full.ok()) << full.status();
  if (!full.ok()) return {};
  return testing::PromptLogprobsFromLogits(full->logits, sp.model->config().vocab_size, prompt);
}

// `len` token ids in [20, 20 + min(4000, vocab - 20)).
inline std::vector<int32_t> Prompt(int seed, int len, int vocab = 4096) {
  const int span = std::min(4000, vocab - 20);
  std::vector<int32_t> p;
  for (int i = 0; i < len; ++i) p.push_back(static_cast<int32_t>((seed * 7919 + i * 104729 + i * i) % span + 20));
  return p;
}

// A multi-turn conversation: each turn's prompt extends the previous turn's prompt and reply.
// With the prefix cache (and eviction pressure from unrelated requests) every turn gives exactly
// the tokens of a cold run — greedy and seeded sampling — with the workers' KV rows in
// `kv_cache_dtype` and their indexer keys in `index_key_dtype`, on `model` (its vocabulary `vocab`).
inline void ExpectMultiTurnPrefixHitsExact(const std::string& kv_cache_dtype, const std::string& model = "glm5-tiny-code",
                                           const std::string& index_key_dtype = "f32", int vocab = 4096) {
  for (float temperature : {0.0f, 0.9f}) {
    SCOPED_TRACE(::testing::Message() << model << ", KV " << kv_cache_dtype << ", indexer keys " << index_key_dtype
                                      << ", temperature " << temperature);
    // A small pool: evictions happen.
    EngineHarness warm(model, 1, 1, 48, 8, {}, 1, nullptr, kv_cache_dtype, index_key_dtype);
    EngineOptions no_cache;
    no_cache.enable_prefix_cache = false;
    EngineHarness cold(model, 1, 1, 48, 8, no_cache, 1, nullptr, kv_cache_dtype, index_key_dtype);
    std::vector<int32_t> conversation = Prompt(5, 30, vocab);
    int total_cached = 0;
    for (int turn = 0; turn < 5; ++turn) {
      GenerationRequest r = Greedy(conversation, 12);
      r.sampling.temperature = temperature;
      r.sampling.seed = 1234 + turn;
      auto hot = warm.Run(r);
      auto ref = cold.Run(r);
      ASSERT_TRUE(hot.error.ok()) << hot.error;
      ASSERT_TRUE(ref.error.ok()) << ref.error;
      EXPECT_EQ(hot.tokens, ref.tokens) << "turn " << turn;
      EXPECT_EQ(ref.cached_tokens, 0);
      total_cached += hot.cached_tokens;
      // Pressure: an unrelated request that needs most of the pool.
      auto other = warm.Run(Greedy(Prompt(900 + turn, 150, vocab), 4));
      ASSERT_TRUE(other.error.ok()) << other.error;
      conversation.insert(conversation.end(), hot.tokens.begin(), hot.tokens.end());
      auto next = Prompt(50 + turn, 9, vocab);
      conversation.insert(conversation.end(), next.begin(), next.end());
      if (conversation.size() > 200) break;
    }
    EXPECT_GT(total_cached, 0) << "the conversation never hit the prefix cache";
    EXPECT_GT(warm.engine()->GetLoad().prefix_cache_hits, 0);
  }
}

// A FORWARD plan of one sequence: `tokens` from position 0 in KV block 0, sampled greedily.
inline shard::StepPlan OneSequencePlan(uint64_t step_id, uint64_t seq_id, const std::vector<int32_t>& tokens) {
  shard::StepPlan plan;
  plan.set_kind(shard::StepPlan::FORWARD);
  plan.set_step_id(step_id);
  auto* s = plan.add_sequences();
  s->set_seq_id(seq_id);
  s->mutable_tokens()->Add(tokens.begin(), tokens.end());
  s->set_start_position(0);
  s->add_block_table(0);
  s->set_sample(true);
  return plan;
}

}  // namespace glm::scheduler

#endif  // GLM_TESTS_COORDINATOR_SCHEDULER_ENGINE_HARNESS_H_
