// Bytes held and bytes read per decoded token for a rank's slice of the model, and the
// bandwidth and memory figures that turn them into predictions. Decode is bandwidth-bound, so
// these byte counts are the whole performance model (DESIGN.md, "the physics").
#ifndef GLM_COORDINATOR_PLACEMENT_COST_MODEL_H_
#define GLM_COORDINATOR_PLACEMENT_COST_MODEL_H_

#include <cstdint>

#include "coordinator/placement/weight_format.h"
#include "protos/placement.pb.h"
#include "shard_worker/kv_cache/kv_block_pool.h"
#include "shard_worker/model/model_config.h"

namespace glm::placement {

// What a rank holds of one part of the model and what it reads of it per decoded token.
struct Footprint {
  int64_t weight_bytes = 0;
  int64_t decode_bytes = 0;  // batch 1
  // The routed experts' part of weight_bytes: the part an expert memory budget may leave on
  // disk (RankAssignment::expert_memory_bytes), so it is kept apart.
  int64_t routed_expert_bytes = 0;
  Footprint& operator+=(const Footprint& o) {
    weight_bytes += o.weight_bytes;
    decode_bytes += o.decode_bytes;
    routed_expert_bytes += o.routed_expert_bytes;
    return *this;
  }
  // Memory held with `expert_memory_bytes` for routed experts (0 = unlimited): experts beyond it
  // stay on disk and an LRU cache of that size holds the rest (model/expert_streaming.cc).
  int64_t ResidentBytes(int64_t expert_memory_bytes) const {
    if (expert_memory_bytes <= 0 || routed_expert_bytes <= expert_memory_bytes) return weight_bytes;
    return weight_bytes - routed_expert_bytes + expert_memory_bytes;
  }
};

// Bandwidth used when the topology carries no measurement: a core streams about 8 GB/s, and a
// NUMA node saturates near 120 GB/s (roughly 6 DDR5-4800 channels at ~50-60% of peak, which is
// what bandwidth-bound decode loops reach in practice). A measured NumaNode.bandwidth_gbps from
// the bandwidth probe always wins.
inline constexpr double kEstimatedGbpsPerCore = 8.0;
inline constexpr double kEstimatedMaxNodeGbps = 120.0;
// Default memory budget: this fraction of a node's memory (the rest is for the OS, activations
// and page tables), shared equally by the ranks bound to the node.
inline constexpr double kDefaultMemoryFraction = 0.9;
// Communication at batch 1: handing the hidden state to the next stage (or the sampled token to
// the coordinator), and each tensor-parallel all-reduce (two per layer, one for the vocab-parallel
// head). Small messages, so latency, not bandwidth: shared-memory MPI inside a host, a network
// round inside a stage spanning hosts.
inline constexpr double kStageHandoffMs = 0.05;
inline constexpr double kAllReduceMsInHost = 0.01;
inline constexpr double kAllReduceMsAcrossHosts = 0.03;

double NodeBandwidthGbps(const NumaNode& node);

class CostModel {
 public:
  // Matrices are counted the way the workers will hold them (`format`: as stored in the
  // checkpoint, FP8 one byte plus an f32 scale per block, else BF16; or converted at load).
  CostModel(const model::ModelConfig& config, const WeightFormat& format);

  // Weight layer `layer` (num_hidden_layers = the MTP layer) for a rank with `r`'s slices
  // (heads, dense, shared, experts or expert slice, vocab for the MTP head). The MTP layer's
  // decode bytes are 0: the decode ceiling counts the main model's token only.
  Footprint Layer(const RankAssignment& r, int64_t layer, bool expert_tensor_parallel) const;
  // What one MTP draft position reads on a rank holding `r`'s slices of the MTP layer: the layer
  // as a MoE layer's decode (its share of the k active experts), eh_proj, and its head rows.
  Footprint MtpDraft(const RankAssignment& r) const;
  // One whole routed expert (gate, up, down) as held.
  int64_t RoutedExpertBytes() const { return MlpBytes(0, config_.moe_intermediate_size, Part::kExpert); }
  // The token embedding (replicated on every first-stage rank); decode reads one row.
  Footprint Embedding() const;
  // Final norm plus the rank's vocabulary rows of lm_head.
  Footprint Head(const RankAssignment& r) const;
  // Latent KV (+ indexer key) cache bytes per context token of one layer: the latent and rope rows
  // as `dtype` stores them (kv_cache::KvRowBytes), the indexer key as `index_key_dtype` does.
  int64_t KvBytesPerToken(int64_t layer, kv_cache::KvDType dtype = kv_cache::KvDType::kF32,
                          kv_cache::KvDType index_key_dtype = kv_cache::KvDType::kF32) const;

  const model::ModelConfig& config() const { return config_; }

 private:
  // What a matrix is, which decides its stored format and whether a conversion reaches it
  // (mirrors model/weight_loader.cc):
  //   kExpert      routed and shared experts' gate/up/down: FP8 in FP8 checkpoints; int8/int4
  //                re-quantise them in either scope;
  //   kMatrix      attention, indexer wq_b/wk, dense MLPs, MTP eh_proj: FP8 in FP8 checkpoints;
  //                re-quantised with scope "all";
  //   kPlainMatrix never FP8 (indexer weights_proj, the MTP layer's embedding and head, which
  //                the layer loader reads): re-quantised with scope "all";
  // scope "mtp" re-quantises all three in the MTP layer only (LayerFormat);
  //   kHead        the embedding and lm_head: never FP8, never re-quantised.
  // bf16 / f32 conversion reaches all four.
  enum class Part { kExpert, kMatrix, kPlainMatrix, kHead };
  // The format `layer`'s matrices are held in (scope "mtp" differs between layers).
  WeightFormat LayerFormat(int64_t layer) const;
  // Layer() without the MTP layer's decode set to 0.
  Footprint LayerReads(const RankAssignment& r, int64_t layer, bool expert_tensor_parallel) const;
  // Bytes of rows [r0, r1) x cols [c0, c1) of a matrix as held in memory.
  int64_t MatrixBytes(int64_t r0, int64_t r1, int64_t c0, int64_t c1, Part part) const;
  // The same rows x cols in the checkpoint's stored format (FP8 with block scales, or BF16).
  int64_t StoredMatrixBytes(int64_t r0, int64_t r1, int64_t c0, int64_t c1) const;
  int64_t FullMatrixBytes(int64_t rows, int64_t cols, Part part) const { return MatrixBytes(0, rows, 0, cols, part); }
  // gate/up rows and down columns [b, e) of an MLP (dense: kMatrix; routed or shared expert: kExpert).
  int64_t MlpBytes(int64_t b, int64_t e, Part part) const;
  static int64_t F32Bytes(int64_t elements) { return elements * 4; }

  model::ModelConfig config_;
  WeightFormat format_;
};

}  // namespace glm::placement

#endif  // GLM_COORDINATOR_PLACEMENT_COST_MODEL_H_
