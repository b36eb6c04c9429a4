#include "bench/model_flops.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/kernels/weight_view.h"

namespace glm::bench {

ModelFlops TokenFlops(const model::ModelConfig& c, int64_t position, bool logits) {
  const double H = static_cast<double>(c.hidden_size), heads = static_cast<double>(c.num_attention_heads);
  const double rank = static_cast<double>(c.kv_lora_rank), rope = static_cast<double>(c.qk_rope_head_dim);
  const double nope = static_cast<double>(c.qk_nope_head_dim), vd = static_cast<double>(c.v_head_dim);
  const double keys = static_cast<double>(std::min<int64_t>(position + 1, c.index_topk));
  const bool sparse = position >= c.index_topk;  // the indexer picks this token's keys
  double params = 0;                             // projection parameters touched
  ModelFlops f;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    params += c.q_lora_rank * H + heads * c.qk_head_dim() * c.q_lora_rank + (rank + rope) * H + H * heads * vd;
    const bool full_indexer = c.indexer_kind(l) == model::IndexerKind::kFull;
    if (full_indexer) params += c.index_head_dim * H;  // keys
    if (c.mlp_kind(l) == model::MlpKind::kDense)
      params += 3 * H * c.intermediate_size;
    else
      params += c.n_routed_experts * H + (c.num_experts_per_tok + c.n_shared_experts) * 3 * H * c.moe_intermediate_size;
    f.attention += 2 * heads * (nope * rank + vd * rank) + 2 * heads * keys * (2 * rank + rope);
    if (full_indexer && sparse)
      f.attention += 2.0 * (c.index_n_heads * c.index_head_dim * c.q_lora_rank + c.index_n_heads * H) +
                     2.0 * static_cast<double>(position + 1) * c.index_n_heads * c.index_head_dim;
  }
  f.projections = 2 * params + (logits ? 2.0 * c.vocab_size * H : 0.0);
  return f;
}

ModelFlops PrefillFlops(const model::ModelConfig& c, int64_t prompt, int64_t chunk) {
  ModelFlops f;
  for (int64_t p = 0; p < prompt; ++p) f += TokenFlops(c, p, /*logits=*/(p + 1) % chunk == 0 || p + 1 == prompt);
  return f;
}

PeakGemmFormat PeakGemmFormatFor(const std::string& weight_dtype, int64_t cols) {
  PeakGemmFormat f;
  if (!kernels::ParseQuantFormatName(weight_dtype, &f.dtype, &f.group) || !kernels::IsGroupQuantized(f.dtype))
    return PeakGemmFormat();
  if (f.group < 0) f.group = cols;  // one scale per row
  f.name = weight_dtype;
  return f;
}

double PeakGemmGflops(int64_t tokens, int64_t rows, int64_t cols, int reps, kernels::DType quant, int64_t group,
                      kernels::ThreadPool* pool) {
  using Clock = std::chrono::steady_clock;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> source(rows * cols);
  for (auto& v : source) v = normal(rng) + 1e-3f;
  std::vector<float> x(tokens * cols), y(tokens * rows);
  for (auto& v : x) v = normal(rng) * 50.0f;
  kernels::WeightView w;
  w.rows = rows;
  w.cols = cols;
  std::vector<uint16_t> bf16;
  std::vector<uint8_t> qdata;
  std::vector<uint16_t> scales;  // f16 bits
  if (kernels::IsGroupQuantized(quant)) {
    w.dtype = quant;
    w.group_size = group;
    qdata.resize(rows * w.row_bytes());
    scales.resize(rows * w.groups_per_row());
    for (int64_t r = 0; r < rows; ++r)
      kernels::QuantizeRow(quant, source.data() + r * cols, cols, group, qdata.data() + r * w.row_bytes(),
                           scales.data() + r * w.groups_per_row());
    w.data = qdata.data();
    w.group_scales = scales.data();
  } else {
    w.dtype = kernels::DType::kBF16;
    bf16.resize(rows * cols);
    for (int64_t i = 0; i < rows * cols; ++i) bf16[i] = kernels::F32ToBf16(source[i]);
    w.data = bf16.data();
  }
  kernels::MatMul(x.data(), std::min<int64_t>(tokens, 64), w, y.data(), pool);  // warm-up
  double best = 1e30;
  for (int i = 0; i < std::max(1, reps); ++i) {
    const auto t0 = Clock::now();
    kernels::MatMul(x.data(), tokens, w, y.data(), pool);
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return 2.0 * tokens * rows * cols / best / 1e9;
}

}  // namespace glm::bench
