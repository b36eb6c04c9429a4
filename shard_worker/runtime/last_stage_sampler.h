// What the last pipeline stage does after its forward: sample each sequence's next token (or
// verify its draft tokens and sample one more), report log-probabilities, and — for requests
// speculating with the MTP head — keep the MTP layer's cache rows up to date and propose the
// next step's drafts. Every rank of the last stage runs it on identical inputs (the logits are
// gathered over the stage and the generators are seeded per request and token), so the ranks
// agree without exchanging decisions; only tp rank 0 reports.
#ifndef GLM_SHARD_WORKER_RUNTIME_LAST_STAGE_SAMPLER_H_
#define GLM_SHARD_WORKER_RUNTIME_LAST_STAGE_SAMPLER_H_

#include <algorithm>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "protos/shard.pb.h"
#include "shard_worker/kv_cache/kv_block_pool.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/runtime/sampler.h"

namespace glm::runtime {

class LastStageSampler {
 public:
  LastStageSampler(const model::Glm5Model* model, kv_cache::KvBlockPool* pool)
      : model_(model), pool_(pool), no_drafts_(0, model->config().vocab_size) {}

  // How many logit rows a sequence samples from (its drafts + 1): the last of its rows.
  static int32_t TailRows(const shard::SequenceStep& s) { return s.num_drafts() + 1; }
  // How many rows of logits the forward computes for it with LogitRows::kTail: every row of a
  // chunk whose prompt is scored, else TailRows. (Only that sequence's: a scored prompt sharing
  // a step with a long prefill must not make the step compute logits for every row.)
  static int32_t LogitRowsFor(const shard::SequenceStep& s) {
    return s.want_prompt_logprobs() ? std::max(s.tokens_size(), TailRows(s)) : TailRows(s);
  }

  // `out` holds the step's forward (logits of the tail rows, or of every row when `all_rows`);
  // block_tables[i]: sequence i's whole block table (the plan may carry only its new entries).
  absl::Status Process(const shard::StepPlan& plan, const model::ForwardOutput& out, bool all_rows,
                       const std::vector<const std::vector<int32_t>*>& block_tables, shard::StepResult* result);
  void Forget(uint64_t seq_id) { states_.erase(seq_id); }

 private:
  struct SequenceState {
    int64_t pending_row = -1;           // MTP row whose next token was unknown (end of a prefill chunk)
    std::vector<float> pending_hidden;  // its main-model hidden state [hidden]
    std::vector<SamplingCandidates> q;  // draft distributions of the drafts proposed last step
    std::vector<int32_t> penalty_history;  // the prompt and accepted output (penalty_tokens_from)
    // The MTP drafts' vocabulary (SequenceStep.draft_vocab): built from penalty_history, of
    // which the first draft_vocab_added tokens are in it.
    std::unique_ptr<model::DraftVocabulary> draft_vocab;
    size_t draft_vocab_added = 0;
  };
  struct Decision {
    int accepted = 0;
    std::vector<int32_t> tokens;  // accepted drafts then the new token
  };
  Decision Decide(const shard::SequenceStep& s, const float* tail_logits, shard::SequenceResult* r);
  absl::Status RunMtp(const shard::StepPlan& plan, const model::ForwardOutput& out,
                      const std::vector<const std::vector<int32_t>*>& block_tables,
                      const std::vector<Decision>& decisions, shard::StepResult* result);

  const model::Glm5Model* model_;
  kv_cache::KvBlockPool* pool_;
  std::unordered_map<uint64_t, SequenceState> states_;
  // The vocabulary of MTP rows that draft nothing this step: no ids, so no head rows are read.
  const model::DraftVocabulary no_drafts_;
};

}  // namespace glm::runtime

#endif  // GLM_SHARD_WORKER_RUNTIME_LAST_STAGE_SAMPLER_H_
