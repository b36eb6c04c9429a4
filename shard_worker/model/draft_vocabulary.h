// The tokens an MTP draft may propose, so that a draft reads only their rows of the MTP head.
//
// A draft is a proposal the main model verifies, so which tokens it may propose changes no
// output: greedy requests get exactly their tokens, sampled ones the same distribution (the
// rejection rule holds for any proposal distribution, here one that is zero off the set). It only
// changes how often drafts are accepted. The head is most of a draft's bytes: GLM-5's is
// 154,880 x 6,144 (1.9 GB in BF16) next to ~0.6 GB for the rest of the MTP layer.
//
// The set has two parts:
// - "common": the ids below a count. BPE vocabularies number tokens in merge order, so low ids
//   are the frequent ones (their rows are one contiguous block of the head);
// - every token the sequence already holds (its prompt and output): code and agent transcripts
//   keep repeating their identifiers, which are rare tokens overall.
// On the bundled model's greedy continuations of held-out code, ids below 1,024 of 4,096 cover
// 73% of the tokens and with the sequence's own tokens 98% (bench/spec_bench --draft_vocab).
#ifndef GLM_SHARD_WORKER_MODEL_DRAFT_VOCABULARY_H_
#define GLM_SHARD_WORKER_MODEL_DRAFT_VOCABULARY_H_

#include <cstdint>
#include <vector>

#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/kernels/weight_view.h"

namespace glm::model {

class DraftVocabulary {
 public:
  // Ids [0, common) and, once added, the sequence's tokens; common is clamped to [0, vocab].
  DraftVocabulary(int64_t common, int64_t vocab);

  // Adds a sequence's tokens (ids outside [0, vocab) are ignored: the model validates them).
  void Add(const int32_t* tokens, size_t n);
  void Add(const std::vector<int32_t>& tokens) { Add(tokens.data(), tokens.size()); }

  int64_t vocab() const { return vocab_; }
  int64_t common() const { return common_; }
  // The added ids at or above common, ascending, each once.
  const std::vector<int32_t>& extra() const { return extra_; }
  // How many ids the set holds.
  int64_t size() const { return common_ + static_cast<int64_t>(extra_.size()); }
  bool Contains(int32_t id) const;

 private:
  int64_t vocab_;
  int64_t common_;
  std::vector<uint64_t> held_;  // bit per id in [common, vocab)
  std::vector<int32_t> extra_;
};

// Logits of the ids each row's vocabulary holds, -inf for every other id: x [n, head.cols],
// logits [n, head.rows] (head.rows = vocabulary size), vocab_of_row[i] for row i (null: every
// id). Each computed logit has the bits a full x · headᵀ gives it (kernels/matmul.h: a row's sum
// never depends on which rows are computed with it). Rows are split over the pool.
void DraftLogits(const float* x, int64_t n, const kernels::WeightView& head,
                 const std::vector<const DraftVocabulary*>& vocab_of_row, float* logits,
                 kernels::ThreadPool* pool);

// Bytes of `head` DraftLogits reads for these rows: the largest common block once (rows are
// computed together) and one head row per extra id of each row.
int64_t DraftLogitsBytes(const kernels::WeightView& head, const std::vector<const DraftVocabulary*>& vocab_of_row);

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_DRAFT_VOCABULARY_H_
