// AVX-512 prefill GEMM kernels (see gemm_driver.h): packers that decode a weight row to f32 in
// matmul_avx512's lane order (F32 natural, BF16 even/odd per 32 columns, FP8 the in-lane unpack
// order per 64 columns), and 4-row × 1..6-token microkernels over 16-lane accumulators reduced
// by matmul_avx512's tree — so a prefill output equals the decode path's bit for bit.
//
// Why FMA on f32 and not vdpbf16ps or AMX tiles: both round the activations to bf16 and sum pairs
// (vdpbf16ps) or whole K-tiles (AMX TDPBF16PS, 32 products per lane into one f32 with unspecified
// internal order) — a different arithmetic from the decode path's f32 FMA chain, which would
// break the batch-invariance contract (or force decode onto bf16 activations too). This machine
// (AMD EPYC, Zen 5) has no AMX anyway; an AMX path would need the same contract change.
#ifndef GLM_SHARD_WORKER_KERNELS_GEMM_AVX512_H_
#define GLM_SHARD_WORKER_KERNELS_GEMM_AVX512_H_

#include "shard_worker/kernels/gemm_driver.h"

namespace glm::kernels {

// Only valid where CpuSupportsAvx512MatMul() holds; fp8_by_table (DecodeFp8ByTable's packer) only
// where CpuSupportsAvx512Vbmi() does. Must match the decode kernels' choice.
const GemmKernelSet* Avx512GemmKernels(bool fp8_by_table);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_GEMM_AVX512_H_
