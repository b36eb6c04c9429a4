// Software prefetch of the weight lines a decode kernel streams.
//
// The kernels prefetch each row stream MatMulPrefetchBytes() ahead into L2, not L1. Why L2: a
// decode tile reads 4-8 rows at once, each its own stream, and with prefetches into L1 the core's
// few L1 miss buffers bound how many lines are in flight; an L2 prefetch holds an L2 miss slot
// instead (there are several times as many), and the demand load that follows hits L2. Measured
// on a Zen 4 VM (matmul_bench --tokens 1, a matrix 2x the last-level cache, one thread, best pass
// vs the read probe of the same run): int4 11 -> 20 GB/s (0.52 -> 0.95 of the probe), int8 15 ->
// 22, bf16 16 -> 22, fp8 10.5 -> 13.5; two threads: int4 0.52-0.76 -> 0.95-1.03 of the probe.
// The price: a matrix already in L2/L3 (matmul_bench --warm) loses the L1 head start — bf16 one
// token 65 -> 60 GB/s a core, int8/int4 unchanged; decode of the cache-resident bundled model
// showed no difference through the noise. Models worth serving live in DRAM.
#ifndef GLM_SHARD_WORKER_KERNELS_PREFETCH_H_
#define GLM_SHARD_WORKER_KERNELS_PREFETCH_H_

#include <cstdint>

namespace glm::kernels {

// Requests the cache line holding p into L2 (x86: prefetcht1; a hint, never a fault).
__attribute__((always_inline)) inline void PrefetchStreamLine(const void* p) { __builtin_prefetch(p, 0, 2); }

// A decode tile's R row streams (row r at w + r · row_bytes), reading byte `pos` of each row:
// prefetches the line `distance` bytes ahead in every row, and past a row's end the same row of
// the next R-row group, which the kernel reads next. kLines lines kLineStep bytes apart a row (a
// chunk of 4-byte elements spans two).
template <int R, int kLines = 1, int kLineStep = 64>
__attribute__((always_inline)) inline void PrefetchRowsAhead(const uint8_t* w, int64_t row_bytes, int64_t pos,
                                                             int64_t distance) {
  int64_t off = pos + distance;
  if (off >= row_bytes) off += (R - 1) * row_bytes;
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int l = 0; l < kLines; ++l) PrefetchStreamLine(w + r * row_bytes + off + l * kLineStep);
}

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_PREFETCH_H_
