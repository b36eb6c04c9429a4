// The weights of a GLM-5 model (or the part one rank holds), in the layout the forward pass
// reads. Matrices stay in their stored format (BF16, F32, block-FP8); small vectors (norms,
// router) become f32. Memory is owned by the ModelWeights and lives as long as it does.
#ifndef GLM_SHARD_WORKER_MODEL_MODEL_WEIGHTS_H_
#define GLM_SHARD_WORKER_MODEL_MODEL_WEIGHTS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "shard_worker/kernels/weight_view.h"
#include "shard_worker/model/aligned_buffer.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/model_config.h"
#include "shard_worker/moe/expert_replicas.h"

namespace glm::moe {
class ExpertStore;
}  // namespace glm::moe

namespace glm::model {

class MlpCalibration;
using kernels::WeightView;

struct IndexerWeights {
  bool present = false;
  WeightView wq_b;          // [index_n_heads * index_head_dim, q_lora_rank]
  WeightView wk;            // [index_head_dim, hidden]
  WeightView weights_proj;  // [index_n_heads, hidden]
  std::vector<float> k_norm_weight, k_norm_bias;  // [index_head_dim] (LayerNorm, eps 1e-6)
};

struct AttentionWeights {
  WeightView q_a_proj;   // [q_lora_rank, hidden]
  std::vector<float> q_a_norm;  // [q_lora_rank]
  WeightView q_b_proj;   // [heads * qk_head_dim, q_lora_rank]; per head: nope then rope
  WeightView kv_a_proj;  // [kv_lora_rank + rope, hidden]
  std::vector<float> kv_a_norm;  // [kv_lora_rank]
  // kv_b_proj [heads * (nope + v), kv_lora_rank] as stored, for absorbed (latent-space)
  // attention: head h's rows h·(nope + v) + nope .. (h + 1)·(nope + v) are W_uv [v, kv_lora],
  // which maps the attended latent to values (a GEMV on a Rows() view, in the stored format).
  WeightView kv_b_proj;
  // W_uk [nope, kv_lora] of each head transposed, [heads · kv_lora, nope]: maps a query into the
  // latent space as a GEMV. BF16 when kv_b_proj is BF16, else f32 — the stored values exactly.
  WeightView w_uk_t;
  // Bytes the absorbed attention reads per step: the W_uk copy and kv_b_proj's W_uv rows (its
  // share of the stored bytes).
  int64_t AbsorptionBytes(int64_t nope, int64_t v) const { return w_uk_t.bytes() + kv_b_proj.bytes() * v / (nope + v); }
  WeightView o_proj;     // [hidden, heads * v]
  IndexerWeights indexer;
};

struct MlpWeights {
  WeightView gate_proj;  // [inter, hidden]
  WeightView up_proj;    // [inter, hidden]
  WeightView down_proj;  // [hidden, inter]
  int64_t bytes() const { return gate_proj.bytes() + up_proj.bytes() + down_proj.bytes(); }
};

struct MoeWeights {
  std::vector<float> router;       // [n_routed_experts, hidden]
  std::vector<float> router_bias;  // [n_routed_experts] e_score_correction_bias (choice only)
  // [n_routed_experts]; only owned ones are loaded. When the model's ExpertStore streams, these
  // stay empty and ExpertStore::Acquire supplies the weights.
  std::vector<MlpWeights> experts;
  std::vector<bool> expert_loaded; // [n_routed_experts] owned by this rank (resident or streamed)
  // Experts other ranks of the stage hold too (the plan's replicas): which holder computes each
  // in a step. Null: this rank computes every expert it holds.
  std::shared_ptr<const moe::ExpertReplicas> replicas;
  bool has_shared = false;
  MlpWeights shared;
};

// Parts only the MTP layer has.
struct MtpHeadWeights {
  std::vector<float> enorm, hnorm;  // [hidden]
  WeightView eh_proj;               // [hidden, 2 * hidden]: input [enorm(embed); hnorm(h)]
  WeightView embed_tokens;          // [vocab, hidden]
  std::vector<float> head_norm;     // [hidden] shared_head.norm
  WeightView head;                  // [vocab, hidden] shared_head.head
};

struct LayerWeights {
  bool loaded = false;
  std::vector<float> input_norm, post_attention_norm;  // [hidden]
  AttentionWeights attn;
  MlpKind mlp_kind = MlpKind::kDense;
  MlpWeights dense;
  MoeWeights moe;
  MtpHeadWeights mtp;  // the MTP layer only
};

// What part of the model to load (a shard worker loads its slice only).
// Which matrices --weight-dtype int8|int4 re-quantises (LoadOptions::quantize_scope).
// kMtpLayer: the MTP layer only (every matrix of it, its head and embedding included), the main
// model as stored. The MTP layer only drafts tokens that the main model then verifies, so its
// precision never changes what is generated, only how often drafts are accepted; an int4 draft
// layer reads about a quarter of the bytes per draft.
enum class QuantizeScope { kExperts, kAllMatrices, kMtpLayer };

// "experts" / "all" / "mtp" (the --quantize-scope flag); false for anything else.
bool ParseQuantizeScope(std::string_view name, QuantizeScope* scope);
const char* QuantizeScopeName(QuantizeScope scope);

struct LoadOptions {
  int64_t layer_begin = 0;
  int64_t layer_end = -1;  // exclusive; -1 = every weight layer including MTP
  bool load_embedding = true;
  bool load_head = true;   // final norm + lm_head
  // Whether this rank holds routed expert `expert` of `layer`; null = all.
  std::function<bool(int64_t layer, int64_t expert)> owns_expert;
  // Per MoE layer whose experts some ranks of the stage share (MoeWeights::replicas); null or
  // absent = none shared.
  std::function<std::shared_ptr<const moe::ExpertReplicas>(int64_t layer)> expert_replicas;
  // Tensor-parallel slices (end -1 = to the end). Heads split q_b_proj rows, kv_b_proj and
  // o_proj columns; dense/shared slices split gate/up rows and down columns; the vocabulary
  // slice splits lm_head (and the MTP head) rows.
  int64_t head_begin = 0, head_end = -1;
  int64_t dense_begin = 0, dense_end = -1;
  int64_t shared_begin = 0, shared_end = -1;
  int64_t vocab_begin = 0, vocab_end = -1;
  // Expert-tensor-parallel: the slice [begin, end) of moe_intermediate_size this rank holds of
  // every routed expert it loads (gate/up rows, down columns); the ranks' partial outputs are
  // summed by the same all-reduce as the other tensor-parallel parts.
  int64_t expert_slice_begin = 0, expert_slice_end = -1;
  // With int8/int4: also quantise the embedding and lm_head (default: keep them as stored).
  bool quantize_head = false;
  // With int8/int4: which matrices are re-quantised. kExperts: the routed and shared experts'
  // gate/up/down (the bulk of a MoE model's bytes: ~97% of GLM-5's) while attention, the
  // indexer, dense MLPs and the MTP projections keep their stored precision; kAllMatrices:
  // every matrix but the embedding and lm_head (see quantize_head). On the bundled model the
  // first dense MLP alone costs int8 ~1% top-1 agreement (bench/quant_quality_bench). kMtpLayer:
  // the MTP draft layer only (see QuantizeScope).
  QuantizeScope quantize_scope = QuantizeScope::kExperts;
  // The plan's activation_dtype is "bf16": the worker sets kernels::SetBf16Activations (a
  // process-wide kernel setting, not a property of the loaded weights) before loading.
  bool bf16_activations = false;
  // Loading progress, one line each: every shard file as reading starts on it, then a summary.
  std::function<void(const std::string&)> progress;
  // Convert every matrix at load to this format (BF16, F32, or quantised I8 / I4 from the stored
  // values, see kernels/quantize.h); unset = keep the stored format.
  std::optional<kernels::DType> matrix_dtype;
  // I8 / I4 only: columns per scale; 0 = the format's default (kernels::kDefaultI8GroupSize,
  // kDefaultI4GroupSize), -1 = one scale per row.
  int64_t matrix_group_size = 0;
  // Benchmarks only (quant_quality_bench's simulated formats): when set, every matrix in
  // quantize_scope is loaded as F32 and each of its rows [cols] passes through this function
  // after conversion, e.g. a quantise-dequantise round trip of a format no kernel has, to see what
  // it would cost in quality. matrix_dtype must then be unset (the loader refuses both).
  std::function<void(float* row, int64_t cols)> simulate_rows;
  // Benchmarks only (quant_quality_bench --only): when set, of the matrices in quantize_scope only
  // those it accepts (by checkpoint name) are re-quantised or simulated, the rest stay as stored:
  // what each part of the model costs in quality on its own.
  std::function<bool(const std::string& name)> quantize_only;
  // With int8/int4: calibrated quantisation (kernels/gptq.h) of every in-scope matrix the
  // calibration has input statistics for (MLP matrices: experts, shared experts, dense MLPs);
  // the others round to nearest as without it. Null: round to nearest everywhere.
  std::shared_ptr<const MlpCalibration> calibration;
  // Memory for this rank's routed experts; when they need more, they stay on disk and an LRU
  // cache of this many bytes streams them (moe/expert_store.h). 0 = unlimited: all resident.
  int64_t expert_memory_bytes = 0;
  // Streamed experts are read with O_DIRECT (SafetensorsFile::ReadDirect), where the file system
  // allows it: each read reaches the disk (the cache's hit rate and disk bandwidth are then what
  // they say), and no second copy of the experts builds up in the page cache beside the budget.
  bool expert_direct_io = true;
  // Threads that read the stored tensors at load (SafetensorsFile::ReadParallel); 0 = the CPUs
  // this process may run on, at most kMaxDefaultReadThreads; 1 = one pread at a time.
  int read_threads = 0;
  // Announce each layer's tensors to the kernel while the previous layer is read (LayerReadAhead):
  // loads from the disk keep it busy. false: only the kernel's own read-ahead (for comparisons).
  bool read_ahead = true;
};

// A --weight-dtype value: "stored", "bf16", "f32", or a quantised format name (kernels/quantize.h:
// int8, int8-row, int4, int{8,4}-g<N>) into options->matrix_dtype / matrix_group_size. Returns
// an InvalidArgument status naming the accepted values otherwise.
absl::Status ParseWeightDType(std::string_view name, LoadOptions* options);
// InvalidArgument when `options` asks scope kMtpLayer where it cannot hold: with a BF16/F32
// conversion (it reaches every matrix) or on a model without an MTP layer. The loader and the
// coordinator's plan check (placement::ParseWeightFormat) both ask it.
absl::Status CheckQuantizeScope(const LoadOptions& options, const ModelConfig& config);

// One routed expert read on its own (the ExpertStore's cache fills), owning its memory.
struct LoadedExpert {
  MlpWeights weights;
  std::vector<AlignedBuffer> buffers;
  int64_t file_bytes = 0;  // bytes read from the checkpoint files
  bool read_direct = false;  // every byte read with O_DIRECT (LoadOptions::expert_direct_io)
  int64_t memory_bytes() const {
    int64_t n = 0;
    for (const auto& b : buffers) n += b.size();
    return n;
  }
};

class ModelWeights {
 public:
  // Validates every tensor name, dtype and shape of the checkpoint against its config (missing
  // or unexpected tensors are errors naming file and tensor), then reads the selected part.
  static absl::StatusOr<std::unique_ptr<ModelWeights>> Load(const Checkpoint& checkpoint,
                                                            const LoadOptions& options = {});

  const ModelConfig& config() const { return config_; }
  const WeightView& embed_tokens() const { return embed_tokens_; }
  const WeightView& lm_head() const { return lm_head_; }
  const std::vector<float>& final_norm() const { return final_norm_; }
  // The slices this object holds (resolved: no -1).
  const LoadOptions& slices() const { return slices_; }
  // Index 0..num_hidden_layers-1 main layers, num_hidden_layers = MTP layer.
  const LayerWeights& layer(int64_t i) const { return layers_[i]; }
  int64_t bytes_loaded() const { return bytes_loaded_; }
  // The routed experts of the loaded MoE layers: the resident ones, or an LRU cache streaming
  // them from disk (LoadOptions::expert_memory_bytes). Null when no MoE layer is loaded.
  moe::ExpertStore* expert_store() const { return expert_store_.get(); }

  // Routed expert `expert` of `layer` exactly as Load would hold it (stored format, or the
  // conversion `options` asks for). Thread-safe (pread), for the ExpertStore's I/O threads.
  static absl::StatusOr<LoadedExpert> LoadExpert(const Checkpoint& checkpoint, const LoadOptions& options,
                                                 int64_t layer, int64_t expert);

 private:
  friend class WeightLoader;
  // expert_streaming.cc: whether the owned routed experts of the selected layers outgrow
  // options.expert_memory_bytes, then (after the layers are loaded) the store serving them.
  absl::StatusOr<bool> ExpertsOverBudget(const Checkpoint& checkpoint, const LoadOptions& options) const;
  absl::Status SetUpExpertStore(const Checkpoint& checkpoint, const LoadOptions& options, bool stream);
  ModelConfig config_;
  WeightView embed_tokens_, lm_head_;
  std::vector<float> final_norm_;
  std::vector<LayerWeights> layers_;
  LoadOptions slices_;
  // Points the MTP head at lm_head when the checkpoint's copy is byte-identical (frees the copy).
  void ShareMtpHeadWithLmHead();

  std::vector<AlignedBuffer> buffers_;
  int64_t bytes_loaded_ = 0;
  std::shared_ptr<moe::ExpertStore> expert_store_;  // declared last: destroyed (I/O joined) first
};

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_MODEL_WEIGHTS_H_
