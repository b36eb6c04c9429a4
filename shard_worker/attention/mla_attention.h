// Multi-head latent attention over the compressed cache, with DSA key selection.
//
// Absorbed form (same mathematics as expanding keys and values per head):
//   q_lat_h = W_uk_hᵀ · q_nope_h                       [kv_lora]
//   score_s = (q_lat_h · latent_s + q_pe_h · k_pe_s) · qk_head_dim^-0.5
//   o_h     = W_uv_h · Σ_s softmax(score)_s · latent_s  [v_head_dim]
// so a step reads kv_lora + rope floats per cached position instead of heads × (k + v).
#ifndef GLM_SHARD_WORKER_ATTENTION_MLA_ATTENTION_H_
#define GLM_SHARD_WORKER_ATTENTION_MLA_ATTENTION_H_

#include <vector>

#include "absl/status/status.h"
#include "shard_worker/attention/dsa_indexer.h"
#include "shard_worker/attention/sequence_span.h"
#include "shard_worker/kernels/rope.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/model_config.h"
#include "shard_worker/model/model_weights.h"

namespace glm::attention {

class MlaAttention {
 public:
  MlaAttention(const model::ModelConfig& config, const kernels::RopeTable* rope, kernels::ThreadPool* pool);

  // x_norm [T, hidden] → out [T, hidden] (after o_proj). Writes the spans' new positions into
  // their caches (which must have room). On "full" indexer layers `selection` is recomputed;
  // on "shared" layers it is read as left by the previous full layer. `sync` (optional): this
  // call is one token group of sequences other groups also run (CacheRowSync). out_rows [T]
  // (null: every row): rows with 0 only write their cache rows (and index keys); their out row
  // is zero and their selection empty. The other rows' results do not depend on them.
  void Forward(const model::AttentionWeights& w, int64_t layer, const float* x_norm, int64_t total_tokens,
               const std::vector<SequenceSpan>& spans, KeySelection* selection, float* out,
               const CacheRowSync* sync = nullptr, const uint8_t* out_rows = nullptr) const;

 private:
  const model::ModelConfig& config_;
  const kernels::RopeTable* rope_;
  kernels::ThreadPool* pool_;
  DsaIndexer indexer_;
};

}  // namespace glm::attention

#endif  // GLM_SHARD_WORKER_ATTENTION_MLA_ATTENTION_H_
