// DeepSeek Sparse Attention indexer: picks, for each query, the index_topk cached positions
// with the highest score  Σ_h w_h · relu(q_h · k · d^-0.5),  w = weights_proj(x) · H^-0.5.
// Its keys (LayerNorm(wk(x)) with rope on the first rope dims) are cached for every position,
// even while the context is short and the selection is simply "all keys".
#ifndef GLM_SHARD_WORKER_ATTENTION_DSA_INDEXER_H_
#define GLM_SHARD_WORKER_ATTENTION_DSA_INDEXER_H_

#include <vector>

#include "shard_worker/attention/sequence_span.h"
#include "shard_worker/kernels/rope.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/model_config.h"
#include "shard_worker/model/model_weights.h"

namespace glm::attention {

// The k highest of scores[0, n) (k < n), ties going to the lower position, as positions in
// ascending order, into *keep: the k-th highest score is a threshold, positions above it are kept
// and positions at it in ascending order while room is left. Same set as ordering all positions
// by (score descending, position ascending) and keeping the first k; `scratch` is reused memory.
void SelectTopPositions(const float* scores, int64_t n, int64_t k, std::vector<int32_t>* keep,
                        std::vector<float>* scratch);

class DsaIndexer {
 public:
  DsaIndexer(const model::ModelConfig& config, const kernels::RopeTable* rope, kernels::ThreadPool* pool);

  // x_norm [T, hidden] (the layer's normalised input), q_resid [T, q_lora_rank] (q_a_layernorm
  // output). Writes index keys for the spans' new positions into their caches and fills
  // selection[t] for every batch token t — except tokens with out_rows[t] == 0 (out_rows
  // [T], null: none), which only write their keys and keep an empty selection.
  void Run(const model::IndexerWeights& w, int64_t layer, const float* x_norm, const float* q_resid,
           int64_t total_tokens, const std::vector<SequenceSpan>& spans, KeySelection* selection,
           const uint8_t* out_rows = nullptr) const;

  // The most scores (floats) Run holds at once: query rows are scored and selected in batches
  // within it (any row alone may exceed it). Without a bound a 2048-token prefill chunk at
  // position 200K held 2048 x 200K floats (1.6 GB) per indexer layer, outside every memory budget.
  // The selections do not depend on it (tests set small budgets).
  static constexpr int64_t kDefaultScoreBudget = int64_t{16} << 20;  // 64 MiB
  void set_score_budget(int64_t floats) { score_budget_ = floats; }

 private:
  const model::ModelConfig& config_;
  const kernels::RopeTable* rope_;
  kernels::ThreadPool* pool_;
  int64_t score_budget_ = kDefaultScoreBudget;

  // Run's scoring and top-k of sparse rows [b0, b1): q [rows, heads * d] and head_w [rows, heads]
  // are every sparse row's (rope applied); the rows' positions, batch tokens and spans as given.
  // T: the element type of the caches' index key rows (float, or uint16_t / uint8_t for BF16 / e4m3
  // rows, whose DotRows give the scores of the stored values; int8_t for int8 rows, which meet the
  // queries rounded to int8 in integer dot products: kernels/int8_row_dots.h).
  template <typename T>
  void ScoreAndSelect(int64_t layer, int64_t b0, int64_t b1, const std::vector<int64_t>& sparse_tokens,
                      const std::vector<int64_t>& sparse_pos, const std::vector<const SequenceSpan*>& sparse_span,
                      const std::vector<float>& q, const std::vector<float>& head_w, KeySelection* selection) const;
};

}  // namespace glm::attention

#endif  // GLM_SHARD_WORKER_ATTENTION_DSA_INDEXER_H_
