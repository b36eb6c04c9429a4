// Element types of weights as stored in checkpoints and kept in memory, and their conversions.
#ifndef GLM_SHARD_WORKER_KERNELS_DTYPE_H_
#define GLM_SHARD_WORKER_KERNELS_DTYPE_H_

#include <cstdint>
#include <cstring>
#include <string_view>

namespace glm::kernels {

enum class DType : uint8_t {
  kF32,
  kBF16,
  kF8E4M3,  // OCP "e4m3fn": no infinities, 0x7f/0xff are NaN; block-scaled in checkpoints
  // Quantised at load (never in checkpoints), symmetric, one f16 scale per group of columns of a
  // row (WeightView::group_scales; layouts in weight_view.h and quantize.h):
  kI8,  // int8 q in [-127, 127], value q · scale
  kI4,  // int4 q in [-8, 7] stored as q + 8, two per byte, value q · scale
};

inline constexpr int kNumDTypes = 5;

// Bytes per element; kI4 (half a byte) reports 1: size rows with DTypeRowBytes instead.
inline constexpr int64_t DTypeSize(DType t) {
  return t == DType::kF32 ? 4 : (t == DType::kBF16 ? 2 : 1);
}

// Bytes of one stored row of `cols` elements. kI4 rows are whole 32-column blocks of 16 bytes
// (the last one zero-point padded), so every row starts on a 16-byte boundary of the block grid.
inline constexpr int64_t DTypeRowBytes(DType t, int64_t cols) {
  return t == DType::kI4 ? (cols + 31) / 32 * 16 : cols * DTypeSize(t);
}

// kI8 and kI4: weights with per-row group scales.
inline constexpr bool IsGroupQuantized(DType t) { return t == DType::kI8 || t == DType::kI4; }

std::string_view DTypeName(DType t);

inline float Bf16ToF32(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round-to-nearest-even, as torch does when casting float32 to bfloat16.
inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

// IEEE binary16 (the group scales of kI8 / kI4). F16ToF32 is exact for every code (subnormals,
// ±inf, NaN included); F32ToF16 rounds to nearest even, values from 65520 up become ±inf, NaN
// stays NaN (quiet), and results below the subnormal range become zero of their sign.
inline float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else {  // zero or subnormal: mant · 2^-24, exact in f32
    float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    std::memcpy(&bits, &v, sizeof bits);
    bits |= sign;
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
uint16_t F32ToF16(float f);

// Table of the 256 e4m3fn values as float (NaN for 0x7f and 0xff).
const float* Fp8E4M3Table();

inline float Fp8E4M3ToF32(uint8_t v) { return Fp8E4M3Table()[v]; }

// Whether n FP8 e4m3fn bytes hold a NaN code (0x7f / 0xff: the low seven bits all set).
inline bool Fp8HasNanCode(const uint8_t* bytes, int64_t n) {
  uint8_t any = 0;
  for (int64_t i = 0; i < n; ++i) any |= static_cast<uint8_t>((bytes[i] & 0x7f) == 0x7f);
  return any != 0;
}

// Nearest e4m3fn value (saturating to ±448), round to nearest even. For synthetic checkpoints
// and quantisation tests.
uint8_t F32ToFp8E4M3(float f);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_DTYPE_H_
