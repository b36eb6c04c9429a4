// Calibrated (GPTQ) group quantisation of a weight matrix to kI8 / kI4: the same format and the
// same per-group scale choice as QuantizeRow (quantize.h), but the codes are chosen column by
// column so that the matrix's outputs on real inputs move as little as possible, instead of each
// weight independently (round to nearest).
//
// With H = Σ x xᵀ over calibration inputs x [cols] of the matrix (the inputs it multiplies in the
// model), quantising column i leaves an error e_r = w_ri - q_ri·s in each row r; GPTQ (Frantar et
// al., 2022) spreads it over the columns not quantised yet, w_rj -= e_r · U_ij / U_ii (j > i), where
// U is the upper Cholesky factor of H⁻¹, which minimises the growth of Σ_x |W x - Q x|² that the
// remaining columns can still correct. A group's scale is picked (QuantizeGroupCodes) from its
// columns' values as they are when quantisation reaches the group, so the scales absorb the
// corrections too. Rows are independent given U; the work is O(cols³) for U plus
// O(rows · cols²) for the rows: seconds for small models, far too slow to run at load for
// GLM-5-sized experts (6144 columns).
#ifndef GLM_SHARD_WORKER_KERNELS_GPTQ_H_
#define GLM_SHARD_WORKER_KERNELS_GPTQ_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "shard_worker/kernels/dtype.h"

namespace glm::kernels {

// Σ x xᵀ of a matrix's inputs, [cols, cols] row-major in double (sums of many products); Add
// fills the lower triangle (j <= i), the only part read.
struct InputGram {
  int64_t cols = 0;
  int64_t samples = 0;     // inputs summed
  std::vector<double> sum;  // [cols, cols]

  explicit InputGram(int64_t n = 0) : cols(n), sum(static_cast<size_t>(n * n), 0.0) {}
  // Adds x [n, cols] (n inputs).
  void Add(const float* x, int64_t n);
};

// The upper Cholesky factor U of (H + damp·mean(diag H)·I)⁻¹, [cols, cols] row-major (the lower
// triangle zero). Columns no input ever reached (H_ii = 0) get H_ii = 1, as if independent.
// Increases the damping tenfold (up to 3 times) when H is not positive definite in double;
// FailedPrecondition if it still is not.
absl::Status GptqInverseFactor(const InputGram& gram, double damp, std::vector<double>* upper);

// Quantises w [rows, cols] (row-major f32) into `dtype` (kI8 / kI4) with `group_size` columns a
// scale (as QuantizeRow: <= 0 or >= cols: one group a row) against the calibration statistics
// `gram` (cols must match), writing out [rows, DTypeRowBytes(dtype, cols)] and scales
// [rows, QuantGroupsPerRow(cols, group_size)] (f16 bits). `damp` is the fraction of H's mean
// diagonal added to it (0.01 is the usual choice). Columns no calibration input reached quantise
// as QuantizeRow would (nothing is known about them). Rows are split across `threads`.
// With a diagonal H the codes are exactly QuantizeRow's (there is no correlation to exploit).
absl::Status GptqQuantizeMatrix(DType dtype, const float* w, int64_t rows, int64_t cols, int64_t group_size,
                                const InputGram& gram, double damp, int threads, uint8_t* out,
                                uint16_t* scales);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_GPTQ_H_
