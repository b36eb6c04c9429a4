// y = x · Wᵀ for activations x [n_tokens, cols] (f32) and a weight matrix W [rows, cols] in any
// stored format. Decode (n_tokens 1..8) streams each weight byte once; prefill reuses each
// converted weight row across the chunk's tokens.
//
// Contract every implementation keeps (the model relies on it for exactness checks):
// - each output y[t][r] is computed by one thread with a summation order that depends only on
//   cols and the weight format, never on n_tokens, the row range or the thread count, so a token's
//   result is the same alone or in a batch (prefix-cache hit == cold prefill, bit for bit);
// - the scalar reference (MatMulRowsReference) is the twin SIMD paths are tested against.
#ifndef GLM_SHARD_WORKER_KERNELS_MATMUL_H_
#define GLM_SHARD_WORKER_KERNELS_MATMUL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shard_worker/kernels/weight_view.h"

namespace glm::kernels {

class ThreadPool;

// Computes y[t * y_stride + r] for t in [0, n_tokens) and r in [row_begin, row_end).
using MatMulRowsFn = void (*)(const float* x, int64_t n_tokens, int64_t x_stride,
                              const WeightView& w, int64_t row_begin, int64_t row_end, float* y,
                              int64_t y_stride);

// Plain C++ twin: y = Σ_c x[c] · W.At(r, c) in column order, double-free f32 accumulation.
void MatMulRowsReference(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                         int64_t row_begin, int64_t row_end, float* y, int64_t y_stride);

// The fastest implementation this CPU supports (chosen once, at first use).
MatMulRowsFn BestMatMulRows();
// Chooses the path by name ("auto": the fastest this CPU supports), e.g. "avx2" to compare paths
// on one machine. Returns "" on success, else why not (naming the paths this CPU has), changing
// nothing. Call before matmuls run (flag parsing).
std::string SelectMatMulPath(const std::string& name);
// The paths this CPU supports, fastest first.
std::vector<std::string> MatMulPathNames();
// Name of the chosen path, e.g. "avx512", "avx2", "scalar"; printed at startup.
std::string MatMulPathName();
// The name plus the instructions of its integer dots, e.g.
// "avx512 (int8 dots: vpdpwssd, int4 dots: vpdpbusd)", for the startup log.
std::string MatMulPathDetails();

// BF16 activations for BF16 weights (off by default; a process-wide setting, made before matmuls
// run). On: every matmul with BF16 weights rounds its activations to BF16 (nearest even) and
// accumulates the exact products in f32 — what GPU and oneDNN BF16 inference do — and CPUs with
// AVX512-BF16 use vdpbf16ps (32 products an instruction, no weight conversion: ~2× the f32 FMA
// kernels where compute-bound: batched decode, prefill). Off: activations stay f32, results match
// the float64 references to ~1e-5. Other weight formats are not affected.
void SetBf16Activations(bool on);
// The --activation-dtype names: "f32" (or empty) and "bf16". False for anything else.
bool ParseActivationDType(std::string_view name, bool* bf16);
bool Bf16Activations();
// "AMX tiles: tdpbf16ps" or "vdpbf16ps" where the chosen path has them (matmul_amx.h), else
// "f32 kernels on rounded inputs".
std::string Bf16ActivationsDetails();
// x [n_tokens, x_stride] with every value rounded to BF16 (kept as f32) into out [n_tokens, cols]:
// what the paths without BF16 dot products (and the reference) multiply in BF16-activation mode.
void RoundActivationsToBf16(const float* x, int64_t n_tokens, int64_t x_stride, int64_t cols, float* out);

// Splits the rows of W across the pool's threads. y is [n_tokens, w.rows] with stride w.rows.
// A matmul's work in streamed-weight bytes: its weight bytes, plus a quarter of them for each
// token after the first (what splitting it across the pool, or sharing a pool between matmuls,
// is weighed by).
int64_t MatMulWork(int64_t weight_bytes, int64_t n_tokens);

void MatMul(const float* x, int64_t n_tokens, const WeightView& w, float* y, ThreadPool* pool);
// Same with explicit strides (x [n_tokens, x_stride], y [n_tokens, y_stride]).
void MatMulStrided(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                   float* y, int64_t y_stride, ThreadPool* pool);

// Several matrices (all with the same cols) applied to the same activations x [n_tokens, cols] in
// one parallel region
// (q_a and kv_a of attention, gate and up of an MLP): y_i = x · W_iᵀ, [n_tokens, W_i.rows] each.
// The rows of all of them are split across the pool together — one fork-join instead of one per
// matrix, which at decode is a fair share of a small model's step. Results are those of MatMul.
struct MatMulTarget {
  const WeightView* w;
  float* y;
};
void MatMulShared(const float* x, int64_t n_tokens, const std::vector<MatMulTarget>& targets, ThreadPool* pool);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_MATMUL_H_
