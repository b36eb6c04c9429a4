// A read-only view of a 2-D weight matrix [rows, cols] in any stored format.
#ifndef GLM_SHARD_WORKER_KERNELS_WEIGHT_VIEW_H_
#define GLM_SHARD_WORKER_KERNELS_WEIGHT_VIEW_H_

#include <cstdint>

#include "shard_worker/kernels/dtype.h"

namespace glm::kernels {

// Row-major [rows, cols]; row r starts at data + r * row_bytes() (r * cols * DTypeSize(dtype)
// for every format but kI4). For kF8E4M3 the real value is fp8(r, c) * block_scales[(r / block_rows) * scale_cols +
// c / block_cols] (the checkpoint's `weight_scale_inv`, already a multiplier despite its name).
// For kI8 / kI4 the real value is q(r, c) * F16ToF32(group_scales[r * groups_per_row() + c / group_size])
// (groups of `group_size` consecutive columns; group_size >= cols means one scale per row; the
// scales are IEEE binary16, 2 bytes a group: int4 with 32-column groups is 4.5 bits a weight). kI8
// stores q as int8 at byte c of the row. kI4 stores 32-column blocks of 16 bytes: byte j of block
// b holds column 32b + j in its low nibble and column 32b + 16 + j in its high nibble, as q + 8 —
// the order in which a zero-extending byte→dword load and a 4-bit shift give the columns.
// The view does not own memory; the owner (model/weight store) outlives every use.
struct WeightView {
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
  const float* block_scales = nullptr;  // kF8E4M3 only
  int64_t block_rows = 128;
  int64_t block_cols = 128;
  int64_t scale_cols = 0;  // ceil(cols / block_cols)
  const uint16_t* group_scales = nullptr;  // kI8 / kI4 only: [rows, groups_per_row()] f16 bits
  int64_t group_size = 0;               // kI8 / kI4 only: columns per scale

  int64_t row_bytes() const { return DTypeRowBytes(dtype, cols); }
  int64_t groups_per_row() const {
    return group_size <= 0 || group_size >= cols ? 1 : (cols + group_size - 1) / group_size;
  }
  // Bytes a full pass reads: the elements, plus the group scales of kI8 / kI4.
  int64_t bytes() const {
    return rows * row_bytes() +
           (IsGroupQuantized(dtype) ? rows * groups_per_row() * int64_t{sizeof(uint16_t)} : 0);
  }
  // Value of one element as float (slow path, for tests and reference code).
  float At(int64_t r, int64_t c) const;
  // Row r as floats into out[cols], the values At gives, a row at a time (embedding lookups, the
  // portable matmul).
  void RowToF32(int64_t r, float* out) const;
  // A view of rows [begin, end) (block scales stay aligned because offsets are kept in rows).
  WeightView Rows(int64_t begin, int64_t end) const;

  int64_t row_offset = 0;  // first row of this view inside the scale grid (set by Rows())
  // kF8E4M3: the bytes are known to hold no NaN code (0x7f / 0xff; the loader scans them). The
  // SIMD decode then skips its NaN patch (~17% of its work at one token); unknown: patched.
  bool fp8_nan_free = false;
};

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_WEIGHT_VIEW_H_
