#include "shard_worker/kernels/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace glm::kernels {
namespace {

// Round to nearest even for |v| < 2^22 without a libm call (the baseline ISA has no roundss).
inline float RoundNearest(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 · 2^23
  return (v + kMagic) - kMagic;
}

// q[i] = clamp(round(w[i] / s), lo, hi); returns the squared error of q · s.
float RoundGroup(const float* w, int64_t n, float s, float lo, float hi, int8_t* q) {
  const float inv = 1.0f / s;
  float err = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = RoundNearest(std::clamp(w[i] * inv, lo, hi));
    if (q != nullptr) q[i] = static_cast<int8_t>(v);
    const float d = w[i] - v * s;
    err += d * d;
  }
  return err;
}

// Whether the group holds a NaN, which then makes its scale NaN: comparisons skip NaN, so the
// max would not see it and the value would quantise to an arbitrary code; this way a broken
// checkpoint shows as NaN outputs.
bool HasNaN(const float* w, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (std::isnan(w[i])) return true;
  return false;
}

// The scale among `candidates` (multipliers of `base`, each rounded to f16 first: the error is
// judged with the scale the kernels will use) with the least squared error, then q. A group whose
// every candidate leaves f16's range keeps the nearest representable scale: 65504 (its values
// saturate at the ends of the code range) or zero (values below ~1e-7 · 8 quantise to 0).
void QuantizeGroup(const float* w, int64_t n, float base, const float* candidates, int n_candidates,
                   float lo, float hi, int8_t* q, uint16_t* scale) {
  if (HasNaN(w, n)) base = std::numeric_limits<float>::quiet_NaN();
  if (base == 0.0f || !std::isfinite(base)) {  // all zero, or a NaN / inf weight: q = 0, the scale
    *scale = F32ToF16(base);                    // keeps the non-finite value (outputs turn NaN)
    std::fill(q, q + n, int8_t{0});
    return;
  }
  float best = -1.0f;
  bool overflow = false;
  for (int k = 0; k < n_candidates; ++k) {
    const uint16_t s16 = F32ToF16(base * candidates[k]);
    const float s = F16ToF32(s16);
    if (!std::isfinite(s)) overflow = true;
    if (s == 0.0f || !std::isfinite(s)) continue;
    const float err = RoundGroup(w, n, s, lo, hi, nullptr);
    if (best < 0.0f || err < best) {
      best = err;
      *scale = s16;
    }
  }
  if (best < 0.0f) {
    if (!overflow) {
      *scale = 0;
      std::fill(q, q + n, int8_t{0});
      return;
    }
    *scale = static_cast<uint16_t>(0x7bffu | (std::signbit(base * candidates[0]) ? 0x8000u : 0u));
  }
  RoundGroup(w, n, F16ToF32(*scale), lo, hi, q);
}

void QuantizeGroupI8(const float* w, int64_t n, int8_t* q, uint16_t* scale) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(w[i]));
  // max|w| / 127, or a slightly clipped step when that lowers the group's squared error
  // (heavy-tailed groups: the bulk gains more than the clipped extreme loses).
  static constexpr float kClip[] = {1.0f, 0.97f, 0.94f, 0.91f, 0.88f, 0.85f};
  QuantizeGroup(w, n, amax / 127.0f, kClip, 6, -127.0f, 127.0f, q, scale);
}

void QuantizeGroupI4(const float* w, int64_t n, int8_t* q, uint16_t* scale) {
  float amax = 0.0f, extreme = 0.0f;
  for (int64_t i = 0; i < n; ++i)
    if (std::fabs(w[i]) > amax) {
      amax = std::fabs(w[i]);
      extreme = w[i];
    }
  // Candidates map the extreme value to -8 (its sign's side gets the 8th level), -7.75 .. -6.5
  // (clipping it a little), or +7 (symmetric): which is best depends on the group's tails.
  static constexpr float kDivisors[] = {-1 / 8.0f,  -1 / 7.75f, -1 / 7.5f, -1 / 7.25f,
                                        -1 / 7.0f,  -1 / 6.75f, -1 / 6.5f, 1 / 7.0f};
  QuantizeGroup(w, n, extreme, kDivisors, 8, -8.0f, 7.0f, q, scale);
}

}  // namespace

std::string CheckQuantGroupSize(DType dtype, int64_t group_size, int64_t cols) {
  if (!IsGroupQuantized(dtype)) return "not a group-quantised dtype";
  if (group_size <= 0) return "group size must be positive";
  if (group_size >= cols) return "";
  const int64_t unit = 32;
  if (group_size % unit != 0)
    return std::string(DTypeName(dtype)) + " group size must be a multiple of " + std::to_string(unit) +
           " (or cover the whole row), got " + std::to_string(group_size);
  return "";
}

void QuantizeRow(DType dtype, const float* src, int64_t cols, int64_t group_size, uint8_t* out,
                 uint16_t* scales) {
  const int64_t g = group_size <= 0 || group_size >= cols ? cols : group_size;
  if (dtype == DType::kI8) {
    for (int64_t c0 = 0, k = 0; c0 < cols; c0 += g, ++k)
      QuantizeGroupI8(src + c0, std::min(g, cols - c0), reinterpret_cast<int8_t*>(out) + c0, scales + k);
    return;
  }
  // kI4: quantise into a padded int8 row, then pack 32-column blocks.
  const int64_t padded = (cols + 31) / 32 * 32;
  thread_local std::vector<int8_t> q;
  q.assign(padded, 0);
  for (int64_t c0 = 0, k = 0; c0 < cols; c0 += g, ++k)
    QuantizeGroupI4(src + c0, std::min(g, cols - c0), q.data() + c0, scales + k);
  for (int64_t b = 0; b < padded / 32; ++b)
    for (int j = 0; j < 16; ++j) {
      const int lo = q[32 * b + j] + 8, hi = q[32 * b + 16 + j] + 8;
      out[16 * b + j] = static_cast<uint8_t>(lo | (hi << 4));
    }
}

bool ParseQuantFormatName(std::string_view name, DType* dtype, int64_t* group_size) {
  std::string_view rest;
  if (name.substr(0, 4) == "int8") *dtype = DType::kI8;
  else if (name.substr(0, 4) == "int4") *dtype = DType::kI4;
  else return false;
  rest = name.substr(4);
  if (rest.empty()) {
    *group_size = *dtype == DType::kI8 ? kDefaultI8GroupSize : kDefaultI4GroupSize;
    return true;
  }
  if (rest == "-row") {
    *group_size = -1;
    return true;
  }
  if (rest.size() < 3 || rest.substr(0, 2) != "-g") return false;
  int64_t g = 0;
  for (char ch : rest.substr(2)) {
    if (ch < '0' || ch > '9' || g > (int64_t{1} << 40)) return false;
    g = g * 10 + (ch - '0');
  }
  if (g <= 0) return false;
  *group_size = g;
  return true;
}

}  // namespace glm::kernels
