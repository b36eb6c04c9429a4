// AVX2 + FMA twin of the re-quantiser's scale search (quantize.cc, ScaleSearchErrorsReference):
// the squared error of a group quantised with each candidate scale, in the same 8 lanes, FMA and
// lane tree, so both choose the same scale and codes. Exposed for tests; requires
// CpuSupportsAvx2MatMul(); quantize.cc dispatches to it.
#ifndef GLM_SHARD_WORKER_KERNELS_QUANTIZE_AVX2_H_
#define GLM_SHARD_WORKER_KERNELS_QUANTIZE_AVX2_H_

#include <cstdint>

#include "shard_worker/kernels/dtype.h"

namespace glm::kernels {

// err[j] for scales[j], j < n_scales (see ScaleSearchErrorsReference in quantize.h).
void ScaleSearchErrorsAvx2(const float* w, int64_t n, const float* scales, int n_scales, float lo, float hi,
                           float* err);

// f16[j] = F32ToF16(base · multipliers[j]), f32[j] its value, for finite products (F16C).
void CandidateScalesAvx2(float base, const float* multipliers, int n, uint16_t* f16, float* f32);
// max |w[0..n)| ignoring NaN, whether there is a NaN, and the first value of that magnitude (0
// when it is 0) (the reference: quantize.cc).
float AbsMaxAvx2(const float* w, int64_t n, bool* has_nan, float* extreme);
// q[i] = round-to-nearest-even(clamp(w[i] · (1 / s), lo, hi)).
void RoundGroupAvx2(const float* w, int64_t n, float s, float lo, float hi, int8_t* q);
// One whole group of 32 or 64 values quantised to kI8 / kI4 codes (q[0..n), one per byte) and
// its f16 scale, bit for bit as the general path (quantize.cc) does, in one pass (F16C). Returns
// false, writing nothing, for the groups that need that path: another size, a NaN or inf, all
// zeros, or a candidate scale that f16 cannot hold.
bool QuantizeGroupFastAvx2(DType dtype, const float* w, int64_t n, int8_t* q, uint16_t* scale);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_QUANTIZE_AVX2_H_
