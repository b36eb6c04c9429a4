// The compute side of the benchmarks' limits: the FLOPs (2 per multiply-add) a forward of the
// model does, counted from its config, and the peak rate of the prefill GEMM kernel family on
// this machine, measured. prefill_bench judges prefill against that peak; decode_bench judges
// batched decode against it too (at batch 8 a small model's step is bound by its multiply-adds,
// not by its weight bytes).
#ifndef GLM_BENCH_MODEL_FLOPS_H_
#define GLM_BENCH_MODEL_FLOPS_H_

#include <cstdint>
#include <string>

#include "shard_worker/kernels/dtype.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/model_config.h"

namespace glm::bench {

struct ModelFlops {
  // Every projection: attention, indexer keys (queries only past index_topk), dense MLP, router,
  // active + shared experts, and lm_head rows where logits are computed.
  double projections = 0;
  // The attention core as executed: absorbed MLA over the latent cache (q·W_uk, scores over
  // rank + rope dims, the weighted latent sum, ·W_uv) and the indexer's queries and scores for
  // tokens past index_topk.
  double attention = 0;
  double total() const { return projections + attention; }
  ModelFlops& operator+=(const ModelFlops& o) {
    projections += o.projections;
    attention += o.attention;
    return *this;
  }
};

// One token at `position` (the keys it attends: position + 1, at most index_topk), with its
// lm_head row when `logits`.
ModelFlops TokenFlops(const model::ModelConfig& c, int64_t position, bool logits);

// Prefilling `prompt` tokens from position 0 in chunks of `chunk`, one lm_head row per chunk.
ModelFlops PrefillFlops(const model::ModelConfig& c, int64_t prompt, int64_t chunk);

// The format the peak GEMM runs in for a model loaded as `weight_dtype` (decode_bench's and
// prefill_bench's --weight-dtype): its int8/int4 format when the model is re-quantised to one
// (one scale per row spans `cols`), else BF16 (stored, float and FP8 weights: the same f32
// FMAs). `name` is what the benches print.
struct PeakGemmFormat {
  kernels::DType dtype = kernels::DType::kBF16;
  int64_t group = 0;
  std::string name = "bf16";
};
PeakGemmFormat PeakGemmFormatFor(const std::string& weight_dtype, int64_t cols);

// Best GFLOP/s of kernels::MatMul with `tokens` rows of activations against W [rows, cols]
// (normal, subnormal-free values) in BF16, or quantised to `quant` (kI8 / kI4 with `group`
// columns per scale) when that is not BF16: the prefill GEMM family's peak on this machine.
double PeakGemmGflops(int64_t tokens, int64_t rows, int64_t cols, int reps, kernels::DType quant, int64_t group,
                      kernels::ThreadPool* pool);
inline double PeakGemmGflops(int64_t tokens, int64_t rows, int64_t cols, int reps, const PeakGemmFormat& format,
                             kernels::ThreadPool* pool) {
  return PeakGemmGflops(tokens, rows, cols, reps, format.dtype, format.group, pool);
}

}  // namespace glm::bench

#endif  // GLM_BENCH_MODEL_FLOPS_H_
