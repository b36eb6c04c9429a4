// Bytes held and bytes read per decoded token for a rank's slice of the model, and the
// bandwidth and memory figures that turn them into predictions. Decode is bandwidth-bound, so
// these byte counts are the whole performance model (DESIGN.md, "the physics").
#ifndef GLM_COORDINATOR_PLACEMENT_COST_MODEL_H_
#define GLM_COORDINATOR_PLACEMENT_COST_MODEL_H_

#include <cstdint>

#include "protos/placement.pb.h"
#include "shard_worker/model/model_config.h"

namespace glm::placement {

// What a rank holds of one part of the model and what it reads of it per decoded token.
struct Footprint {
  int64_t weight_bytes = 0;
  int64_t decode_bytes = 0;  // batch 1
  Footprint& operator+=(const Footprint& o) {
    weight_bytes += o.weight_bytes;
    decode_bytes += o.decode_bytes;
    return *this;
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
  // `weight_bytes_per_param` 0 counts matrices as stored in the checkpoint (FP8 one byte plus an
  // f32 scale per block, else BF16); otherwise every converted matrix takes that many bytes.
  CostModel(const model::ModelConfig& config, int64_t weight_bytes_per_param);

  // Weight layer `layer` (num_hidden_layers = the MTP layer) for a rank with `r`'s slices
  // (heads, dense, shared, experts or expert slice, vocab for the MTP head). The MTP layer's
  // decode bytes are 0: the decode ceiling counts the main model's token only.
  Footprint Layer(const RankAssignment& r, int64_t layer, bool expert_tensor_parallel) const;
  // The token embedding (replicated on every first-stage rank); decode reads one row.
  Footprint Embedding() const;
  // Final norm plus the rank's vocabulary rows of lm_head.
  Footprint Head(const RankAssignment& r) const;
  // Latent KV (+ indexer key) cache bytes per context token of one layer, f32.
  int64_t KvBytesPerToken(int64_t layer) const;

  const model::ModelConfig& config() const { return config_; }

 private:
  enum class Storage { kQuantizable, kPlain };  // kPlain: never FP8 (embeddings, heads, gates)
  // Bytes of rows [r0, r1) x cols [c0, c1) of a matrix as held in memory.
  int64_t MatrixBytes(int64_t r0, int64_t r1, int64_t c0, int64_t c1, Storage storage) const;
  int64_t FullMatrixBytes(int64_t rows, int64_t cols, Storage storage) const {
    return MatrixBytes(0, rows, 0, cols, storage);
  }
  // gate/up rows and down columns [b, e) of an MLP with `inter` intermediate size.
  int64_t MlpBytes(int64_t b, int64_t e) const;
  static int64_t F32Bytes(int64_t elements) { return elements * 4; }

  model::ModelConfig config_;
  int64_t bytes_per_param_;
};

}  // namespace glm::placement

#endif  // GLM_COORDINATOR_PLACEMENT_COST_MODEL_H_
