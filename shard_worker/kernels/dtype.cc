#include "shard_worker/kernels/dtype.h"

#include <cmath>
#include <limits>

namespace glm::kernels {

std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kF8E4M3: return "F8_E4M3";
    case DType::kI8: return "I8";
    case DType::kI4: return "I4";
  }
  return "?";
}

namespace {

struct Fp8Table {
  float values[256];
  Fp8Table() {
    for (int i = 0; i < 256; ++i) {
      int sign = (i >> 7) & 1;
      int exponent = (i >> 3) & 0xf;
      int mantissa = i & 0x7;
      float v;
      if (exponent == 0xf && mantissa == 0x7) {
        v = std::numeric_limits<float>::quiet_NaN();
      } else if (exponent == 0) {
        v = std::ldexp(static_cast<float>(mantissa) / 8.0f, -6);  // subnormal
      } else {
        v = std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
      }
      values[i] = sign ? -v : v;
    }
  }
};

}  // namespace

const float* Fp8E4M3Table() {
  static const Fp8Table table;
  return table.values;
}

uint8_t F32ToFp8E4M3(float f) {
  if (std::isnan(f)) return 0x7f;
  const float* table = Fp8E4M3Table();
  uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7e;
  // Positive codes 0..0x7e are monotonic in value: binary search the nearest, ties to even code.
  int lo = 0, hi = 0x7e;
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    if (table[mid] <= a) lo = mid; else hi = mid;
  }
  float dlo = a - table[lo], dhi = table[hi] - a;
  int code = (dlo < dhi) ? lo : (dhi < dlo ? hi : ((lo & 1) ? hi : lo));
  return sign | static_cast<uint8_t>(code);
}

uint16_t F32ToF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return sign | 0x7e00u;     // NaN
  if (x >= 0x477ff000u) return sign | 0x7c00u;    // >= 65520 (and inf): rounds to inf
  if (x >= 0x38800000u) {                          // normal half (>= 2^-14)
    uint32_t h = ((x >> 23) - 112) << 10 | ((x >> 13) & 0x3ffu);
    const uint32_t rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry moves into the exponent
    return sign | static_cast<uint16_t>(h);
  }
  if (x <= 0x33000000u) return sign;               // <= 2^-25: rounds to zero (the tie to even)
  // Subnormal half: q = round(value / 2^-24) from the 24-bit significand m · 2^(e - 150).
  const uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - e;                  // 14..24 here
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;  // may reach 0x400, the smallest normal
  return sign | static_cast<uint16_t>(q);
}

}  // namespace glm::kernels
