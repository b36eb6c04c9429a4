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
};

// Bytes per element.
inline constexpr int64_t DTypeSize(DType t) {
  return t == DType::kF32 ? 4 : (t == DType::kBF16 ? 2 : 1);
}

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

// Table of the 256 e4m3fn values as float (NaN for 0x7f and 0xff).
const float* Fp8E4M3Table();

inline float Fp8E4M3ToF32(uint8_t v) { return Fp8E4M3Table()[v]; }

// Nearest e4m3fn value (saturating to ±448), round to nearest even. For synthetic checkpoints
// and quantisation tests.
uint8_t F32ToFp8E4M3(float f);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_DTYPE_H_
