// The ISA-independent half of the prefill GEMM (gemm_avx512.cc, gemm_avx2.cc): for n_tokens
// above the decode tile, each block of weight rows is converted to f32 once into a packed panel
// (cache resident), then a register-blocked microkernel (R rows × T tokens of accumulators) runs
// over all tokens, in K blocks of columns with the accumulators parked in an L2 scratch between
// blocks.
//
// Batch invariance (matmul.h): the packed panel and the prepared activations use the decode
// path's lane order (SimdKernelSet::order, same chunk and pitch), every output has one vector
// accumulator fed by one FMA per vector step in increasing column position — K blocking only
// splits that sequence, spilling/reloading a register is exact — and the lanes are reduced by the
// decode path's tree. So y[t][r] is the decode path's value bit for bit, whatever n_tokens, the
// row range or the thread count.
#ifndef GLM_SHARD_WORKER_KERNELS_GEMM_DRIVER_H_
#define GLM_SHARD_WORKER_KERNELS_GEMM_DRIVER_H_

#include <cstdint>

#include "shard_worker/kernels/weight_view.h"

namespace glm::kernels {

struct SimdKernelSet;

inline constexpr int kMaxGemmTokens = 8;

// One weight row (cols elements at `row`) → dst[pitch] f32 in the ISA's lane order, zero padded
// past cols; the decoded values are exactly the decode kernels' (FP8: `scales` is the row's scale
// block expanded per column, permuted, times SimdKernelSet::fp8_scale_factor; else nullptr).
using GemmPackFn = void (*)(const uint8_t* row, int64_t cols, const float* scales, int64_t pitch,
                            float* dst);

// R packed rows (row i at w + i * w_stride) × T tokens (token j at x + j * x_stride), n_vec
// vector steps. acc [R][T][lanes] holds the accumulators between K blocks: loaded when
// load_acc (else zero), stored unless finish; with finish, y[j * y_stride + i] = reduce(acc[i][j])
// for the first n_rows rows.
using GemmMicroFn = void (*)(const float* w, int64_t w_stride, const float* x, int64_t x_stride,
                             int64_t n_vec, float* acc, bool load_acc, bool finish, float* y,
                             int64_t y_stride, int n_rows);

struct GemmKernelSet {
  int lanes = 0;       // f32 per vector
  int rows = 0;        // R of every microkernel
  int max_tokens = 0;  // T; micro[t] for t in 1..T
  GemmPackFn pack[3] = {};  // [dtype]; nullptr: not handled (the decode driver takes it)
  GemmMicroFn micro[kMaxGemmTokens + 1] = {};
};

// MatMulRowsFn semantics (matmul.h). Returns false (and writes nothing) when the kernel set has
// no packer for w.dtype.
bool RunSimdGemm(const SimdKernelSet& k, const GemmKernelSet& g, const float* x, int64_t n_tokens,
                 int64_t x_stride, const WeightView& w, int64_t row_begin, int64_t row_end,
                 float* y, int64_t y_stride);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_GEMM_DRIVER_H_
