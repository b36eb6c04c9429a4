#include "coordinator/placement/cost_model.h"

#include <algorithm>
#include <cmath>

#include "shard_worker/kernels/quantize.h"
#include "shard_worker/model/checkpoint_layout.h"

namespace glm::placement {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
// Blocks of size `block` that [b, e) touches.
int64_t BlocksTouched(int64_t b, int64_t e, int64_t block) { return e <= b ? 0 : CeilDiv(e, block) - b / block; }
// Group-quantised rows: packed codes plus one f16 scale per group of each row (int8 group G:
// 1 + 2/G bytes a weight, int4: 0.5 + 2/G).
int64_t CodesBytes(kernels::DType dtype, int64_t rows, int64_t cols, int64_t group) {
  return rows * (kernels::DTypeRowBytes(dtype, cols) +
                 kernels::QuantGroupsPerRow(cols, group) * static_cast<int64_t>(sizeof(uint16_t)));
}

}  // namespace

double NodeBandwidthGbps(const NumaNode& node) {
  if (node.bandwidth_gbps() > 0) return node.bandwidth_gbps();
  return std::min(kEstimatedMaxNodeGbps, kEstimatedGbpsPerCore * std::max(1, node.cores()));
}

CostModel::CostModel(const model::ModelConfig& config, const WeightFormat& format)
    : config_(config), format_(format) {}

int64_t CostModel::MatrixBytes(int64_t r0, int64_t r1, int64_t c0, int64_t c1, Part part) const {
  const int64_t rows = std::max<int64_t>(0, r1 - r0), cols = std::max<int64_t>(0, c1 - c0);
  const int64_t elements = rows * cols;
  if (elements == 0) return 0;
  if (format_.bytes_per_param > 0) return elements * format_.bytes_per_param;
  kernels::DType stored;
  int64_t stored_group = 0;
  if (part == Part::kExpert && model::StoredExpertFormat(config_, cols, &stored, &stored_group)) {
    // Pre-quantised experts (glmctl quantize) are held as stored, whatever the load asks (a
    // conversion they cannot give was refused).
    return CodesBytes(stored, rows, cols, stored_group);
  }
  if (format_.dtype && !format_.quantized()) return elements * kernels::DTypeSize(*format_.dtype);  // BF16 / F32
  // Scope "mtp" reaches here only for parts outside any layer (LayerFormat() handles layers).
  const bool requantized =
      format_.quantized() && part != Part::kHead &&
      ((part == Part::kExpert && format_.scope == model::QuantizeScope::kExperts) ||
       format_.scope == model::QuantizeScope::kAllMatrices);
  if (requantized) {
    // A slice is quantised on its own, so its groups start at its first column.
    return CodesBytes(*format_.dtype, rows, cols, format_.group_size);
  }
  if (part == Part::kExpert || part == Part::kMatrix) return StoredMatrixBytes(r0, r1, c0, c1);
  return elements * 2;  // BF16
}

int64_t CostModel::StoredMatrixBytes(int64_t r0, int64_t r1, int64_t c0, int64_t c1) const {
  const int64_t elements = std::max<int64_t>(0, r1 - r0) * std::max<int64_t>(0, c1 - c0);
  if (elements == 0) return 0;
  if (config_.fp8_weights) {
    // One e4m3 byte per weight and one f32 scale (weight_scale_inv) per block the slice touches:
    // a slice that cuts a block still needs that block's scale.
    const int64_t scales = BlocksTouched(r0, r1, config_.fp8_block_rows) * BlocksTouched(c0, c1, config_.fp8_block_cols);
    return elements + F32Bytes(scales);
  }
  return elements * 2;  // BF16
}

int64_t CostModel::MlpBytes(int64_t b, int64_t e, Part part) const {
  const int64_t h = config_.hidden_size;
  return 2 * MatrixBytes(b, e, 0, h, part) + MatrixBytes(0, h, b, e, part);
}

Footprint CostModel::Layer(const RankAssignment& r, int64_t layer, bool expert_tensor_parallel) const {
  Footprint f = LayerReads(r, layer, expert_tensor_parallel);
  if (layer == config_.num_hidden_layers) f.decode_bytes = 0;
  return f;
}

WeightFormat CostModel::LayerFormat(int64_t layer) const {
  WeightFormat f = format_;
  if (f.scope != model::QuantizeScope::kMtpLayer) return f;
  // Scope "mtp": every matrix of the MTP layer re-quantised (as scope "all" would), the others
  // as stored.
  f.scope = model::QuantizeScope::kAllMatrices;
  if (layer != config_.num_hidden_layers) f.dtype.reset();
  return f;
}

Footprint CostModel::MtpDraft(const RankAssignment& r) const {
  if (format_.scope == model::QuantizeScope::kMtpLayer)
    return CostModel(config_, LayerFormat(config_.num_hidden_layers)).MtpDraft(r);
  const int64_t h = config_.hidden_size;
  Footprint f = LayerReads(r, config_.num_hidden_layers, /*expert_tensor_parallel=*/false);
  f.decode_bytes += F32Bytes(3 * h) + FullMatrixBytes(h, 2 * h, Part::kMatrix) +
                    MatrixBytes(r.vocab_begin(), r.vocab_end(), 0, h, Part::kPlainMatrix);
  return f;
}

Footprint CostModel::LayerReads(const RankAssignment& r, int64_t layer, bool expert_tensor_parallel) const {
  if (format_.scope == model::QuantizeScope::kMtpLayer)
    return CostModel(config_, LayerFormat(layer)).LayerReads(r, layer, expert_tensor_parallel);
  const model::ModelConfig& c = config_;
  const int64_t h = c.hidden_size;
  Footprint f;
  auto both = [&f](int64_t bytes) {
    f.weight_bytes += bytes;
    f.decode_bytes += bytes;
  };
  // Norms (loaded as f32).
  both(F32Bytes(2 * h + c.q_lora_rank + c.kv_lora_rank));
  // Attention: the low-rank down projections are replicated; per-head parts sliced by heads.
  both(FullMatrixBytes(c.q_lora_rank, h, Part::kMatrix));
  both(FullMatrixBytes(c.kv_lora_rank + c.qk_rope_head_dim, h, Part::kMatrix));
  const int64_t hb = r.head_begin(), he = r.head_end();
  both(MatrixBytes(hb * c.qk_head_dim(), he * c.qk_head_dim(), 0, c.q_lora_rank, Part::kMatrix));
  // kv_b_proj is held as stored whatever the weight format; the absorbed attention reads its W_uv
  // rows, and W_uk from a transposed copy in BF16 (f32 for FP8 checkpoints).
  const int64_t nope = c.qk_nope_head_dim, vd = c.v_head_dim;
  const int64_t kv_b = StoredMatrixBytes(hb * (nope + vd), he * (nope + vd), 0, c.kv_lora_rank);
  const int64_t w_uk_t = (he - hb) * nope * c.kv_lora_rank * (c.fp8_weights ? 4 : 2);
  f.weight_bytes += kv_b + w_uk_t;
  f.decode_bytes += w_uk_t + kv_b * vd / (nope + vd);
  both(MatrixBytes(0, h, hb * c.v_head_dim, he * c.v_head_dim, Part::kMatrix));
  // DSA indexer on full layers, replicated (its scores need every index head).
  if (c.indexer_kind(layer) == model::IndexerKind::kFull) {
    both(FullMatrixBytes(c.index_n_heads * c.index_head_dim, c.q_lora_rank, Part::kMatrix));
    both(FullMatrixBytes(c.index_head_dim, h, Part::kMatrix));
    both(FullMatrixBytes(c.index_n_heads, h, Part::kPlainMatrix));
    both(F32Bytes(2 * c.index_head_dim));
  }
  if (c.mlp_kind(layer) == model::MlpKind::kDense) {
    both(MlpBytes(r.dense_begin(), r.dense_end(), Part::kMatrix));
  } else {
    both(F32Bytes(c.n_routed_experts * h + c.n_routed_experts));  // router + correction bias
    if (c.n_shared_experts > 0) both(MlpBytes(r.shared_begin(), r.shared_end(), Part::kExpert));
    const int64_t k = c.num_experts_per_tok, n_experts = c.n_routed_experts;
    if (expert_tensor_parallel) {
      // Every expert's slice is held; each of the k active experts' slices is read.
      const int64_t slice = MlpBytes(r.expert_slice_begin(), r.expert_slice_end(), Part::kExpert);
      f.weight_bytes += n_experts * slice;
      f.routed_expert_bytes += n_experts * slice;
      f.decode_bytes += k * slice;
    } else {
      // Whole experts; at batch 1 a rank reads its expected share of the k active ones.
      const int64_t expert = MlpBytes(0, c.moe_intermediate_size, Part::kExpert);
      const int64_t owned = r.experts_size();
      // Replicas of hot experts are held too; which holder computes one is decided per step, so
      // the stage's reads per token stay k experts and each rank's share stays that of its own.
      int64_t replicas = 0;
      for (const ExpertReplica& rep : r.replicas()) replicas += rep.layer() == layer ? 1 : 0;
      f.weight_bytes += (owned + replicas) * expert;
      f.routed_expert_bytes += (owned + replicas) * expert;
      if (n_experts > 0)
        f.decode_bytes += static_cast<int64_t>(std::llround(static_cast<double>(k * expert) * owned / n_experts));
    }
  }
  if (layer == c.num_hidden_layers) {
    // MTP extras: eh_proj and its norms, its own embedding (replicated) and a vocab-parallel head.
    f.weight_bytes += F32Bytes(3 * h) + FullMatrixBytes(h, 2 * h, Part::kMatrix) +
                      FullMatrixBytes(c.vocab_size, h, Part::kPlainMatrix) +
                      MatrixBytes(r.vocab_begin(), r.vocab_end(), 0, h, Part::kPlainMatrix);
  }
  return f;
}

Footprint CostModel::Embedding() const {
  Footprint f;
  f.weight_bytes = FullMatrixBytes(config_.vocab_size, config_.hidden_size, Part::kHead);
  f.decode_bytes = FullMatrixBytes(1, config_.hidden_size, Part::kHead);
  return f;
}

Footprint CostModel::Head(const RankAssignment& r) const {
  const int64_t bytes = F32Bytes(config_.hidden_size) +
                        MatrixBytes(r.vocab_begin(), r.vocab_end(), 0, config_.hidden_size, Part::kHead);
  return {bytes, bytes, 0};
}

int64_t CostModel::KvBytesPerToken(int64_t layer, kv_cache::KvDType dtype, kv_cache::KvDType index_key_dtype) const {
  int64_t bytes = kv_cache::KvRowBytes(dtype, config_.kv_lora_rank) +
                  kv_cache::KvRowBytes(kv_cache::RopeKeyDType(dtype), config_.qk_rope_head_dim);
  if (config_.indexer_kind(layer) == model::IndexerKind::kFull)
    bytes += kv_cache::KvRowBytes(index_key_dtype, config_.index_head_dim);
  return bytes;
}

}  // namespace glm::placement
