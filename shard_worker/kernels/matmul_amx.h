// BF16 weights × BF16 activations on AMX tiles (TDPBF16PS), for CPUs that have them (Intel
// Sapphire Rapids and later): the matrix unit issue 6 asks for. It serves --activation-dtype bf16
// (SetBf16Activations), the mode whose arithmetic AMX can do: activations rounded to BF16 (nearest
// even), exact BF16 products, f32 accumulation.
//
// Tiles: C[16 rows][16 tokens] f32 += A[16 rows][32 columns] (the weights as stored, row-major,
// read with the row stride) · B[16 column pairs][16 tokens][2] (the activations re-laid out once a
// call). Decode (one token block): 16 rows a pass, one C tile. Prefill: blocks of 32 rows × 32
// tokens, each A and B tile feeding two TDPBF16PS.
//
// Batch invariance: every output element is one C-tile lane accumulated over the columns in the
// same order (32 columns a TDPBF16PS, left to right), whatever the token count, the token's
// position in its tile, the row range or the thread. So a token's result is the same alone or in
// any batch, and a prefix-cache hit gives the bits a cold prefill gives. It is not the bits of the
// vdpbf16ps path (a different summation order), so on a CPU with AMX every BF16-activation matmul
// of every token count takes this path.
#ifndef GLM_SHARD_WORKER_KERNELS_MATMUL_AMX_H_
#define GLM_SHARD_WORKER_KERNELS_MATMUL_AMX_H_

#include <cstdint>

#include "shard_worker/kernels/weight_view.h"

namespace glm::kernels {

// The CPU has AMX-TILE and AMX-BF16, the OS saves tile state (XCR0 bits 17 and 18), and Linux
// granted this process the tile data (arch_prctl ARCH_REQ_XCOMP_PERM; asked once, before any
// thread uses a tile).
bool CpuSupportsAmxBf16();

// Process-wide switch (default on): off sends BF16-activation matmuls to the vdpbf16ps path
// instead, to compare the two on one machine. Set before matmuls run.
void SetAmxTilesEnabled(bool on);
bool AmxTilesEnabled();

// y[t * y_stride + r] = Σ_c bf16(x[t * x_stride + c]) · w[r][c] for rows [row_begin, row_end) and
// tokens [0, n_tokens); w must be kBF16. Needs CpuSupportsAmxBf16().
void MatMulRowsAmxBf16(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w, int64_t row_begin,
                       int64_t row_end, float* y, int64_t y_stride);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_MATMUL_AMX_H_
