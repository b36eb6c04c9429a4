#include "shard_worker/kernels/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "shard_worker/kernels/matmul_avx2.h"
#include "shard_worker/kernels/quantize_avx2.h"

namespace glm::kernels {
namespace {

// Round to nearest even for |v| < 2^22 without a libm call (the baseline ISA has no roundss).
inline float RoundNearest(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 · 2^23
  return (v + kMagic) - kMagic;
}

// q[i] = clamp(round(w[i] / s), lo, hi).
void RoundGroupReference(const float* w, int64_t n, float s, float lo, float hi, int8_t* q) {
  const float inv = 1.0f / s;
  for (int64_t i = 0; i < n; ++i) q[i] = static_cast<int8_t>(RoundNearest(std::clamp(w[i] * inv, lo, hi)));
}

// max |w| over the non-NaN values, and whether a NaN is there: it then makes the group's scale
// NaN (comparisons skip NaN, so the max would not see it and the value would quantise to an
// arbitrary code; this way a broken checkpoint shows as NaN outputs).
float AbsMaxReference(const float* w, int64_t n, bool* has_nan, float* extreme) {
  float amax = 0.0f;
  *has_nan = false;
  *extreme = 0.0f;  // the first value of the largest magnitude (0 for an all-zero group)
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(w[i])) *has_nan = true;
    if (std::fabs(w[i]) > amax) {
      amax = std::fabs(w[i]);
      *extreme = w[i];
    }
  }
  return amax;
}

// f16[j] = F32ToF16(base · multipliers[j]) and its value (base finite, |multipliers| <= 1).
void CandidateScalesReference(float base, const float* multipliers, int n, uint16_t* f16, float* f32) {
  for (int j = 0; j < n; ++j) {
    f16[j] = F32ToF16(base * multipliers[j]);
    f32[j] = F16ToF32(f16[j]);
  }
}

// The pieces of a group's quantisation, portable or AVX2 (the same results).
struct GroupKernels {
  void (*candidate_scales)(float base, const float* multipliers, int n, uint16_t* f16, float* f32);
  ScaleSearchErrorsFn errors;
  float (*abs_max)(const float* w, int64_t n, bool* has_nan, float* extreme);
  void (*round_group)(const float* w, int64_t n, float s, float lo, float hi, int8_t* q);
  // A whole common group in one pass (QuantizeGroupFastAvx2), or null: false = the pieces above.
  bool (*fast_group)(DType dtype, const float* w, int64_t n, int8_t* q, uint16_t* scale);
};

// The scale among `candidates` (multipliers of `base`, each rounded to f16 first: the error is
// judged with the scale the kernels will use) with the least squared error (the first of equals),
// then q. A group whose every candidate leaves f16's range keeps the nearest representable scale:
// 65504 (its values saturate at the ends of the code range) or zero (values below ~1e-7 · 8
// quantise to 0).
void QuantizeGroup(const GroupKernels& k, const float* w, int64_t n, bool has_nan, float base, const float* candidates,
                   int n_candidates, float lo, float hi, int8_t* q, uint16_t* scale) {
  if (has_nan) base = std::numeric_limits<float>::quiet_NaN();
  if (base == 0.0f || !std::isfinite(base)) {  // all zero, or a NaN / inf weight: q = 0, the scale
    *scale = F32ToF16(base);                    // keeps the non-finite value (outputs turn NaN)
    std::fill(q, q + n, int8_t{0});
    return;
  }
  constexpr int kMaxCandidates = 16;
  n_candidates = std::min(n_candidates, kMaxCandidates);
  float all[kMaxCandidates], scales[kMaxCandidates], errors[kMaxCandidates];
  uint16_t all_codes[kMaxCandidates], codes[kMaxCandidates];
  k.candidate_scales(base, candidates, n_candidates, all_codes, all);
  int usable = 0;
  bool overflow = false;
  for (int c = 0; c < n_candidates; ++c) {
    const float s = all[c];
    if (!std::isfinite(s)) overflow = true;
    if (s == 0.0f || !std::isfinite(s)) continue;
    scales[usable] = s;
    codes[usable++] = all_codes[c];
  }
  if (usable == 0) {
    if (!overflow) {
      *scale = 0;
      std::fill(q, q + n, int8_t{0});
      return;
    }
    *scale = static_cast<uint16_t>(0x7bffu | (std::signbit(base * candidates[0]) ? 0x8000u : 0u));
  } else {
    k.errors(w, n, scales, usable, lo, hi, errors);
    int best = 0;
    for (int c = 1; c < usable; ++c)
      if (errors[c] < errors[best]) best = c;
    *scale = codes[best];
  }
  k.round_group(w, n, F16ToF32(*scale), lo, hi, q);
}

void QuantizeGroupI8(const GroupKernels& k, const float* w, int64_t n, int8_t* q, uint16_t* scale) {
  bool has_nan = false;
  float extreme = 0.0f;
  const float amax = k.abs_max(w, n, &has_nan, &extreme);
  // max|w| / 127, or a slightly clipped step when that lowers the group's squared error
  // (heavy-tailed groups: the bulk gains more than the clipped extreme loses).
  QuantizeGroup(k, w, n, has_nan, amax / 127.0f, kI8ScaleClips, 6, -127.0f, 127.0f, q, scale);
}

void QuantizeGroupI4(const GroupKernels& k, const float* w, int64_t n, int8_t* q, uint16_t* scale) {
  bool has_nan = false;
  float extreme = 0.0f;
  k.abs_max(w, n, &has_nan, &extreme);
  // Which candidate is best depends on the group's tails.
  QuantizeGroup(k, w, n, has_nan, extreme, kI4ScaleDivisors, 8, -8.0f, 7.0f, q, scale);
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

namespace {

void QuantizeRowWith(const GroupKernels& k, DType dtype, const float* src, int64_t cols, int64_t group_size,
                     uint8_t* out, uint16_t* scales) {
  const int64_t g = group_size <= 0 || group_size >= cols ? cols : group_size;
  auto quantize_groups = [&](int8_t* q) {
    for (int64_t c0 = 0, group = 0; c0 < cols; c0 += g, ++group) {
      const int64_t n = std::min(g, cols - c0);
      if (k.fast_group != nullptr && k.fast_group(dtype, src + c0, n, q + c0, scales + group)) continue;
      if (dtype == DType::kI8) QuantizeGroupI8(k, src + c0, n, q + c0, scales + group);
      else QuantizeGroupI4(k, src + c0, n, q + c0, scales + group);
    }
  };
  if (dtype == DType::kI8) {
    quantize_groups(reinterpret_cast<int8_t*>(out));
    return;
  }
  // kI4: quantise into an int8 row, then pack 32-column blocks.
  thread_local std::vector<int8_t> q;
  q.resize(cols);
  quantize_groups(q.data());
  PackI4Row(q.data(), cols, out);
}

const GroupKernels& BestGroupKernels() {
  static const GroupKernels best = CpuSupportsAvx2MatMul()
                                       ? GroupKernels{&CandidateScalesAvx2, &ScaleSearchErrorsAvx2, &AbsMaxAvx2, &RoundGroupAvx2,
                                                      &QuantizeGroupFastAvx2}
                                       : GroupKernels{&CandidateScalesReference, &ScaleSearchErrorsReference, &AbsMaxReference,
                                                      &RoundGroupReference, nullptr};
  return best;
}

}  // namespace

void ScaleSearchErrorsReference(const float* w, int64_t n, const float* scales, int n_scales, float lo, float hi,
                                float* err) {
  for (int j = 0; j < n_scales; ++j) {
    const float s = scales[j], inv = 1.0f / s;
    float lane[8] = {};
    for (int64_t i = 0; i < n; ++i) {
      const float q = RoundNearest(std::clamp(w[i] * inv, lo, hi));
      const float d = std::fma(-q, s, w[i]);
      lane[i % 8] = std::fma(d, d, lane[i % 8]);
    }
    err[j] = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  }
}

void PackI4Row(const int8_t* q, int64_t cols, uint8_t* out) {
  const int64_t blocks = (cols + 31) / 32, full = cols / 32;
  // Whole blocks without bounds checks, packed into a local block (a constant trip count, and
  // stores that cannot alias q: GCC vectorises it at -O2), then the last, partial block.
  for (int64_t b = 0; b < full; ++b) {
    const int8_t* block = q + 32 * b;
    uint8_t packed[16];
    for (int j = 0; j < 16; ++j) packed[j] = static_cast<uint8_t>((block[j] + 8) | ((block[16 + j] + 8) << 4));
    std::memcpy(out + 16 * b, packed, sizeof packed);
  }
  for (int64_t b = full; b < blocks; ++b)
    for (int64_t j = 0; j < 16; ++j) {
      // Columns past the row's end (the last block's padding) hold code 0.
      const int64_t c_lo = 32 * b + j, c_hi = c_lo + 16;
      const int lo = (c_lo < cols ? q[c_lo] : 0) + 8, hi = (c_hi < cols ? q[c_hi] : 0) + 8;
      out[16 * b + j] = static_cast<uint8_t>(lo | (hi << 4));
    }
}

void QuantizeGroupCodes(DType dtype, const float* w, int64_t n, int8_t* q, uint16_t* scale) {
  if (dtype == DType::kI8)
    QuantizeGroupI8(BestGroupKernels(), w, n, q, scale);
  else
    QuantizeGroupI4(BestGroupKernels(), w, n, q, scale);
}

void QuantizeRow(DType dtype, const float* src, int64_t cols, int64_t group_size, uint8_t* out,
                 uint16_t* scales) {
  QuantizeRowWith(BestGroupKernels(), dtype, src, cols, group_size, out, scales);
}

void QuantizeRowReference(DType dtype, const float* src, int64_t cols, int64_t group_size, uint8_t* out,
                          uint16_t* scales) {
  static const GroupKernels reference{&CandidateScalesReference, &ScaleSearchErrorsReference, &AbsMaxReference,
                                      &RoundGroupReference, nullptr};
  QuantizeRowWith(reference, dtype, src, cols, group_size, out, scales);
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
