// Group quantisation of weight rows to kI8 / kI4 (see weight_view.h for the layouts), done once
// at load from f32 values (BF16 / FP8 checkpoints are dequantised first).
//
// Both formats are symmetric (no zero point): zero stays exact, a group costs one f16 scale, and
// the kernels decode a value with one multiply (int8) or one FMA (int4: (n - 8)·s = fma(n, s,
// -8s)), giving exactly WeightView::At's q · scale.
//   kI8: scale = max|w| / 127, q = round(w / scale) in [-127, 127].
//   kI4: q in [-8, 7]. A plain max|w| / 7 scale leaves code -8 unused; instead a few candidate
//        scales are tried per group — the max-magnitude value mapped to -8 (llama.cpp Q4_0) or
//        to ±7, and steps between — and the one with the least squared error is kept.
#ifndef GLM_SHARD_WORKER_KERNELS_QUANTIZE_H_
#define GLM_SHARD_WORKER_KERNELS_QUANTIZE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "shard_worker/kernels/dtype.h"

namespace glm::kernels {

// Default columns per scale: int8 64 (6% scale overhead; on the bundled model 128 keeps top-1
// agreement only at the 99% bar, 64 with margin — bench/quant_quality_bench), int4 32.
inline constexpr int64_t kDefaultI8GroupSize = 64;
inline constexpr int64_t kDefaultI4GroupSize = 32;

// A group's candidate scales, in the order they are judged (the first of equal errors wins).
// kI8: max|w| / 127 times these (a slightly clipped step can lower a heavy-tailed group's error).
inline constexpr float kI8ScaleClips[] = {1.0f, 0.97f, 0.94f, 0.91f, 0.88f, 0.85f};
// kI4: the group's first value of the largest magnitude times these: mapped to -8 (its sign's
// side gets the 8th level), -7.75 .. -6.5 (clipping it a little), or +7 (symmetric).
inline constexpr float kI4ScaleDivisors[] = {-1 / 8.0f, -1 / 7.75f, -1 / 7.5f, -1 / 7.25f,
                                             -1 / 7.0f, -1 / 6.75f, -1 / 6.5f, 1 / 7.0f};

// Whether the SIMD kernels accept `group_size` for `dtype` (a multiple of 32;
// any value >= cols, i.e. one group per row, is always accepted). Empty string = fine, else why.
std::string CheckQuantGroupSize(DType dtype, int64_t group_size, int64_t cols);

// Scales per row for `cols` columns in groups of `group_size` (>= cols: 1).
inline int64_t QuantGroupsPerRow(int64_t cols, int64_t group_size) {
  return group_size <= 0 || group_size >= cols ? 1 : (cols + group_size - 1) / group_size;
}

// The squared error of quantising w[0..n) with each of scales[0..n_scales): err[j] = the sum of
// (w_i - q_i · s_j)^2, q_i = round-to-nearest-even(clamp(w_i · (1 / s_j), lo, hi)), in one order
// every implementation follows (the chosen scale, and so the codes, never depend on the CPU):
// d = fma(-q, s, w), element i into lane i % 8 as fma(d, d, lane), then
// ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)). The re-quantiser judges 6 (int8) or 8
// (int4) candidate scales a group with it: most of a --weight-dtype load's time.
using ScaleSearchErrorsFn = void (*)(const float* w, int64_t n, const float* scales, int n_scales, float lo, float hi,
                                     float* err);
void ScaleSearchErrorsReference(const float* w, int64_t n, const float* scales, int n_scales, float lo, float hi,
                                float* err);

// Quantises one row src[cols] into out[DTypeRowBytes(dtype, cols)] and
// scales[QuantGroupsPerRow(cols, group_size)] (f16 bits; each group's candidates are judged with
// the f16-rounded scale, so the codes fit the scale the kernels read).
// The fastest scale search this CPU has (quantize_avx2.h), the same bytes as QuantizeRowReference.
void QuantizeRow(DType dtype, const float* src, int64_t cols, int64_t group_size, uint8_t* out,
                 uint16_t* scales);
// QuantizeRow with the portable scale search: the reference the SIMD one is tested against.
void QuantizeRowReference(DType dtype, const float* src, int64_t cols, int64_t group_size, uint8_t* out,
                          uint16_t* scales);

// One group w[0..n) of kI8 / kI4 as QuantizeRow quantises it: the scale it picks (f16 bits) and
// the codes q[0..n) (kI8 in [-127, 127], kI4 in [-8, 7]). Calibrated quantisation (gptq.h)
// picks each group's scale with it.
void QuantizeGroupCodes(DType dtype, const float* w, int64_t n, int8_t* q, uint16_t* scale);
// Packs a row of kI4 codes q[cols] (each in [-8, 7]) into out[DTypeRowBytes(kI4, cols)] (the
// layout in weight_view.h; the last block's padding columns get code 0).
void PackI4Row(const int8_t* q, int64_t cols, uint8_t* out);

// Command-line names of the quantised formats: "int8" (groups of 64), "int8-row" (one scale per
// row), "int4" (groups of 32), and "int8-g<N>" / "int4-g<N>" for other group sizes. Sets
// *group_size to -1 for "-row". False when `name` is none of these.
bool ParseQuantFormatName(std::string_view name, DType* dtype, int64_t* group_size);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_QUANTIZE_H_
