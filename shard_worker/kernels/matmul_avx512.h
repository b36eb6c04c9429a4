// AVX-512 (F/BW/VL + F16C) matmul path. Accumulation layout, fixed by cols and dtype alone: one 16-lane
// f32 accumulator per (row, token); per chunk, one FMA per vector in order —
//   F32:  32-column chunks, columns 0..15 then 16..31;
//   BF16: 32-column chunks, the even columns then the odd ones (a bf16 load split by shift and
//         mask, no shuffles);
//   FP8:  64-column chunks (one cache line), four vectors in the order an in-lane byte unpack
//         yields, decoded by byte tables where the CPU has VBMI (DecodeFp8ByTable), else through
//         f16 bits and vcvtph2ps (DecodeFp8);
// activations and scales are pre-permuted to match; the last partial chunk is zero-padded, then
// the lanes are reduced 16→8→4→2→1.
// Weights are decoded to f32 exactly (FP8: fp8 · scale rounded once, as the reference does, NaN
// codes included) and multiplied with f32 activations by FMA; there is no bf16 rounding of
// activations (so no vdpbf16ps) unless SetBf16Activations is on: then BF16 weights on CPUs with
// AVX512-BF16 take vdpbf16ps kernels (32-column chunks in natural order, lane j holding columns
// 2j and 2j+1, one instruction per chunk and token) at every token count, prefill included, so a
// token's result still does not depend on its batch. Rows go in groups (8 at one token, 4
// otherwise) and tokens in tiles of up to 4; neither changes any output's arithmetic.
#ifndef GLM_SHARD_WORKER_KERNELS_MATMUL_AVX512_H_
#define GLM_SHARD_WORKER_KERNELS_MATMUL_AVX512_H_

#include "shard_worker/kernels/matmul.h"

namespace glm::kernels {

// True when this CPU (and OS) runs the AVX-512 path.
bool CpuSupportsAvx512MatMul();
// True when it also has AVX512-BF16 (vdpbf16ps), used with SetBf16Activations.
bool CpuSupportsAvx512Bf16Dot();
// True when it also has AVX512-VBMI: FP8 weights are then decoded by byte tables (vpermi2b,
// DecodeFp8ByTable) rather than through f16 and vcvtph2ps — the same values, another lane order.
bool CpuSupportsAvx512Vbmi();

// dst[i] = F32ToBf16(src[i]) for i < n (dtype.h's rounding), 16 at a time. Needs the AVX-512 path.
void ConvertF32ToBf16Avx512(const float* src, int64_t n, uint16_t* dst);

void MatMulRowsAvx512(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                      int64_t row_begin, int64_t row_end, float* y, int64_t y_stride);
// The same with the f16 FP8 decode on any AVX-512 CPU: the "avx512_f16c_fp8" path, listed where
// VBMI exists so that decode stays tested and measurable there.
void MatMulRowsAvx512F16cFp8(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                             int64_t row_begin, int64_t row_end, float* y, int64_t y_stride);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_MATMUL_AVX512_H_
