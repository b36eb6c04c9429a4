// The GLM-5 forward pass on CPU in f32 arithmetic: embedding, decoder layers (MLA + DSA
// attention, dense MLP or MoE), final norm, lm_head; and the MTP layer. Batched: one call
// advances several sequences (each a prefill chunk or a decode token) and reads every weight
// once for the whole batch.
#ifndef GLM_SHARD_WORKER_MODEL_GLM5_MODEL_H_
#define GLM_SHARD_WORKER_MODEL_GLM5_MODEL_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "shard_worker/attention/mla_attention.h"
#include "shard_worker/comm/communicator.h"
#include "shard_worker/kernels/rope.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/kv_cache/kv_cache.h"
#include "shard_worker/model/block_path_chooser.h"
#include "shard_worker/model/draft_vocabulary.h"
#include "shard_worker/model/model_weights.h"
#include "shard_worker/model/step_path_chooser.h"
#include "shard_worker/model/token_group_steals.h"
#include "shard_worker/moe/moe_layer.h"

namespace glm::model {

// One sequence's part of a step: its new tokens continue its cache.
struct SequenceInput {
  kv_cache::KvCache* cache = nullptr;
  std::vector<int32_t> tokens;
  // MTP only: the main model's final hidden state (after the final norm) at the position before
  // each token, [tokens.size(), hidden].
  std::vector<float> prev_hidden;
  int32_t logit_tail = 1;  // rows of logits wanted with LogitRows::kTail (>= 1)
  // MTP only: the ids this sequence's drafts may propose (null: every id). Its rows' logits are
  // computed for those ids alone, -inf elsewhere (draft_vocabulary.h). Borrowed for the call.
  const DraftVocabulary* draft_vocab = nullptr;
};

// kTail: the last `logit_tail` rows of each sequence (speculative verification).
enum class LogitRows { kAll, kLast, kNone, kTail };

struct ForwardOutput {
  std::vector<float> hidden;  // [T, hidden] after the final norm (main model) — MTP needs it
  std::vector<float> logits;  // [rows, vocab]: every token (kAll), each sequence's last (kLast) or tail rows (kTail)
  int64_t logit_rows = 0;
  // The DSA key selection of the stage's last full-indexer layer, per token; a later stage whose
  // first layers are "shared" reuses it.
  attention::KeySelection selection;
  // Statistics of this step.
  int64_t weight_bytes_read = 0;
};

// Tests only: token group 0 sleeps this long before each layer, so a later group that continues
// its sequence reaches the cache rows first and must wait for them (a missing wait then shows as
// different results instead of depending on timing). 0 = off.
void SetTokenGroupStaggerForTesting(int64_t microseconds);

// Which part of the model this process runs (a pipeline stage, tensor-parallel over `tp`).
// The default is the whole model in one process.
struct StageContext {
  int64_t layer_begin = 0;
  int64_t layer_end = -1;      // -1 = num_hidden_layers
  bool has_embedding = true;
  bool has_head = true;        // final norm + lm_head, and the MTP layer when the model has one
  // The stage's ranks. Partial results (attention heads, MLP slices, experts, vocabulary
  // slices) are combined over it; null or size 1 = this process holds everything.
  comm::Communicator* tp = nullptr;
};

class Glm5Model {
 public:
  // `weights` must hold the stage's layers and slices; `pool` outlives the model.
  static absl::StatusOr<std::unique_ptr<Glm5Model>> Create(std::shared_ptr<const ModelWeights> weights,
                                                           kernels::ThreadPool* pool,
                                                           StageContext stage = StageContext());
  const StageContext& stage() const { return stage_; }

  const ModelConfig& config() const { return weights_->config(); }
  const ModelWeights& weights() const { return *weights_; }
  // The compute threads the forward runs on (null: the caller's thread alone).
  kernels::ThreadPool* pool() const { return pool_; }
  // Routed-expert weight bytes this model's MoE layers have read since it was created (each
  // token group counts the experts it computed; the MTP layer's too): a rank's metric.
  int64_t routed_expert_bytes_read() const { return routed_expert_bytes_.load(std::memory_order_relaxed); }
  // Tokens routed to each expert of each MoE layer this model holds since it was created
  // (prefill, decode, verify and MTP rows alike): layer -> [n_routed_experts], layers with none
  // left out. Every rank of a stage routes the same tokens.
  std::map<int64_t, std::vector<int64_t>> routed_tokens() const;
  // Tokens' remaining layers a token group took over from a slower one (TokenGroupSteals), all steps.
  int64_t token_group_steals() const { return token_group_steals_.load(std::memory_order_relaxed); }

  // What NewCache / NewMtpCache store rows in (kF32 unless set; set before generating).
  void set_kv_cache_dtype(kv_cache::KvDType dtype) { kv_dtype_ = dtype; }
  kv_cache::KvDType kv_cache_dtype() const { return kv_dtype_; }
  // The same for the DSA indexer key rows (kF32 unless set).
  void set_index_key_dtype(kv_cache::KvDType dtype) { index_key_dtype_ = dtype; }
  kv_cache::KvDType index_key_dtype() const { return index_key_dtype_; }
  // A fresh cache for the main layers / the MTP layer of one sequence.
  std::unique_ptr<kv_cache::KvCache> NewCache() const;
  std::unique_ptr<kv_cache::KvCache> NewMtpCache() const;

  // Advances each sequence by its tokens. Validates token ids and context length first (nothing
  // changes on error).
  // One pipeline stage's share of a step. First stage: input_hidden is null (tokens are
  // embedded). Later stages: input_hidden [T, hidden] from the previous stage. Output: the
  // residual stream in `hidden` ([T, hidden], for the next stage), or on the last stage the
  // final-normed hidden and, on tp rank 0, the logits of the whole vocabulary.
  absl::StatusOr<ForwardOutput> ForwardStage(std::vector<SequenceInput>& batch, const float* input_hidden,
                                             LogitRows rows, std::vector<float>* layer_outputs = nullptr,
                                             const attention::KeySelection* input_selection = nullptr) const;
  // `layer_outputs`, if set, receives the residual stream before layer 0 and after every layer,
  // [num_hidden_layers + 1, T, hidden] (to find where a divergence from a reference starts).
  absl::StatusOr<ForwardOutput> Forward(std::vector<SequenceInput>& batch, LogitRows rows,
                                        std::vector<float>* layer_outputs = nullptr) const;
  // The MTP layer: token i of a sequence is t[j+1] with prev_hidden h[j]; logits predict t[j+2].
  // Only the rows `rows` asks logits for get the layer's output (logits and hidden); the others
  // only write their MTP cache rows (the MLP block is skipped there) and their hidden is not the
  // layer's output. Every cache row is the same whatever `rows` is. A sequence with a
  // draft_vocab gets logits for its ids only (a whole vocabulary when the stage is split over
  // tensor-parallel ranks: their vocabulary slices are gathered in full).
  // `on_caller`: the whole layer and its head run on the calling thread alone (no pool), so that
  // a pool thread can draft while the others run the main model (ForwardDraftingAlongside).
  absl::StatusOr<ForwardOutput> ForwardMtp(std::vector<SequenceInput>& batch, LogitRows rows,
                                           bool on_caller = false) const;

  // Whether ForwardDraftingAlongside can run: the whole model, small enough for token groups
  // (TokenGroups), a pool of two or more threads, and TokenGroupMode not kNever.
  bool CanDraftAlongside() const;
  // Times speculative steps drafted first (BlockPathChooser::Path::kPreferred: the draft, then the
  // verify, each on the whole pool) against drafted alongside (kOther) in blocks of consecutive
  // steps, for the generator to keep the faster on this machine.
  BlockPathChooser& draft_alongside_chooser() const { return draft_chooser_; }
  // One speculative verify step of one sequence whose drafts are made while it runs. The main
  // model's input is `token` (the newest, not yet cached) and then `n_drafts` drafts that do not
  // exist yet: the caller's thread takes `token` through the layers at once, while a second pool
  // thread first calls `draft` (on that thread; it must give exactly n_drafts ids and may run
  // ForwardMtp with on_caller) and then takes the drafts through the layers a wavefront behind
  // (each layer's attention waits for the first token's cache rows). The MTP layer's draft thus
  // overlaps the first token's forward instead of preceding the whole verify. The result — the
  // cache, the hidden [1 + n_drafts, hidden] and the logits of every row — is bit for bit what
  // Forward of {token, drafts...} with LogitRows::kAll gives. *drafts receives the drafts.
  absl::StatusOr<ForwardOutput> ForwardDraftingAlongside(kv_cache::KvCache* cache, int32_t token, int n_drafts,
                                                         const std::function<absl::Status(std::vector<int32_t>*)>& draft,
                                                         std::vector<int32_t>* drafts) const;

 private:
  Glm5Model(std::shared_ptr<const ModelWeights> weights, kernels::ThreadPool* pool, StageContext stage);
  // Sums a partial result over the stage's ranks (no-op without tensor parallelism).
  absl::Status ReduceOverStage(float* data, int64_t n) const;
  absl::Status Prepare(std::vector<SequenceInput>& batch, bool mtp, std::vector<attention::SequenceSpan>* spans,
                       int64_t* total) const;
  // What a layer runs on: the pool (matmul rows split across its threads), or one thread alone
  // (a token group; `pool` is then a 1-thread pool that runs everything inline).
  struct Runners {
    const attention::MlaAttention* attention;
    const moe::MoeLayer* moe;
    kernels::ThreadPool* pool;
  };
  // Decode-like steps of a small model (<= 16 tokens, layer weights <= 32 MiB in matrices of
  // <= 256 KiB on average, no tensor/expert parallelism, no streamed experts) may run in token
  // groups: each pool thread takes a contiguous group of tokens (whole sequences where that
  // balances) through the stage's layers on its own instead of every matmul's rows being split
  // across the threads; a one-token step runs on the caller alone. On a small model a matmul
  // takes about as long as a fork-join of the pool, so the pooled path can spend half of a
  // decode step waiting; StepPathChooser times both and keeps the faster (TokenGroupMode).
  // Whether this model and pool may run steps in token groups at all.
  bool TokenGroupsAllowed() const;
  // How many token groups this step can run in; 0 = the pooled path only.
  int TokenGroups(const std::vector<SequenceInput>& batch, int64_t T, const std::vector<float>* layer_outputs) const;
  // Layers [layer_begin, layer_end) over x [T, hidden] in place, in `groups` contiguous token
  // groups, one per pool thread, each with the single-thread runners (one group: on the caller
  // alone). A sequence split between groups runs as a wavefront: in each layer the later group's
  // attention reads other positions only once the earlier group wrote its cache rows
  // (CacheRowSync). A token's arithmetic is the same in any batch and on any thread (the kernels
  // treat tokens independently), so the result is bit-identical to the pooled path.
  // `late`: the last group's tokens are not known when the step starts (ForwardDraftingAlongside).
  struct LateGroup {
    int64_t first_token;                 // where the last group starts
    std::function<absl::Status()> fill;  // run by the last group before its first layer: writes its rows of x
    std::function<void()> first_done;    // run by group 0 after its last layer (the last group may still run)
  };
  absl::Status RunLayersByTokenGroup(int groups, int64_t layer_begin, int64_t layer_end, float* x, int64_t T,
                                     const std::vector<attention::SequenceSpan>& spans,
                                     attention::KeySelection* selection, int64_t* bytes,
                                     const uint8_t* output_rows = nullptr, const LateGroup* late = nullptr) const;
  // After RunLayersByTokenGroup's threads: the first failed task's status, else adds the tasks'
  // bytes to *bytes and sets *selection to their key selections in token order.
  static absl::Status MergeTokenGroups(TokenGroupSteals& tasks, attention::KeySelection* selection, int64_t* bytes);
  // How a step's layers ran, timed from their start to Record() (after the head, which runs on
  // the caller too after a one-group step) for the chooser that picked the path (none: forced).
  struct StepTiming {
    StepPathChooser* chooser = nullptr;
    int64_t tokens = 0;
    bool several = false;
    StepPath path = StepPath::kPooled;
    bool alone = false;  // one token group: the calling thread only
    std::chrono::steady_clock::time_point start;
    void Record() const;
  };
  // The pool a step's lm_head `head` runs on: the caller alone after a one-group step when the
  // head is small, else the pool.
  kernels::ThreadPool* HeadPool(const StepTiming& timing, const WeightView& head) const;
  // Layers [layer_begin, layer_end) over x [T, hidden] in place, pooled or in token groups as
  // `chooser` picks; `layer_outputs` as in ForwardStage (pooled only); `output_rows` as in RunLayer.
  absl::Status RunLayers(StepPathChooser& chooser, const std::vector<SequenceInput>& batch, int64_t layer_begin,
                         int64_t layer_end, float* x, int64_t T, const std::vector<attention::SequenceSpan>& spans,
                         attention::KeySelection* selection, int64_t* bytes, std::vector<float>* layer_outputs,
                         StepTiming* timing, const uint8_t* output_rows = nullptr) const;
  // How a token group counts the weight bytes of a layer that every group of the step reads, so
  // that the step counts each once: the attention's by the first group (every group runs it),
  // the dense MLP or shared expert and router by the first group that runs its MLP block (bit 0
  // of counted[0]), each routed expert by the first group that computes it (counted + 1:
  // moe::ExpertSource::counted_experts).
  struct GroupByteCount {
    bool attention_weights = true;
    std::atomic<uint64_t>* counted = nullptr;  // [1 + ceil(n_routed_experts / 64)], zero at the step's start
  };
  // Runs decoder layer `layer` on x [T, hidden] in place. output_rows [T] (null: every row): rows
  // with 0 only write their cache rows — their attention output and MLP block are skipped, and x
  // there is not the layer's output (rows only the cache needs: the MTP layer's caught-up rows).
  // Adds the weight bytes read to *bytes (a token group: as `group` says; null: all of them).
  absl::Status RunLayer(const Runners& run, int64_t layer, float* x, int64_t T,
                        const std::vector<attention::SequenceSpan>& spans, attention::KeySelection* selection,
                        int64_t* bytes, const attention::CacheRowSync* sync = nullptr,
                        const uint8_t* output_rows = nullptr, const GroupByteCount* group = nullptr) const;
  void Embed(const WeightView& table, const std::vector<SequenceInput>& batch, float* x) const;
  absl::Status Head(const std::vector<float>& norm, const WeightView& head, const float* x, int64_t T,
                    const std::vector<attention::SequenceSpan>& spans, const std::vector<SequenceInput>& batch,
                    LogitRows rows, kernels::ThreadPool* pool, ForwardOutput* out,
                    bool use_draft_vocab = false) const;

  std::shared_ptr<const ModelWeights> weights_;
  kernels::ThreadPool* pool_;
  StageContext stage_;
  std::unique_ptr<kernels::RopeTable> rope_;
  std::unique_ptr<attention::MlaAttention> attention_;
  std::unique_ptr<moe::MoeLayer> moe_;
  // The single-thread runners of token groups (thread-safe: no state across calls).
  std::unique_ptr<kernels::ThreadPool> inline_pool_;
  std::unique_ptr<attention::MlaAttention> inline_attention_;
  std::unique_ptr<moe::MoeLayer> inline_moe_;
  int64_t stage_weight_bytes_ = 0;  // matmul weights of the stage's layers
  kv_cache::KvDType kv_dtype_ = kv_cache::KvDType::kF32;
  kv_cache::KvDType index_key_dtype_ = kv_cache::KvDType::kF32;
  bool small_matrices_ = false;     // their mean size is below where a split across the pool pays
  mutable StepPathChooser chooser_, mtp_chooser_;  // main-layer steps, MTP-layer steps
  mutable BlockPathChooser draft_chooser_;          // draft_alongside_chooser()
  mutable std::atomic<int64_t> routed_expert_bytes_{0};
  // [num_weight_layers * n_routed_experts]: routed_tokens()' counters.
  std::unique_ptr<std::atomic<int64_t>[]> routed_tokens_;
  mutable std::atomic<int64_t> token_group_steals_{0};
};

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_GLM5_MODEL_H_
