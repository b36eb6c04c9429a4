#include "bench/simulated_format.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <vector>

#include "shard_worker/kernels/dtype.h"
#include "shard_worker/kernels/quantize.h"

namespace glm::bench {
namespace {

bool ParsePositive(std::string_view text, int64_t* value) {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return ec == std::errc() && end == text.data() + text.size() && *value > 0;
}

// One group: as kernels::QuantizeGroupI4 does for 4 bits, with M = 2^(B-1) codes on the negative
// side: candidates map the group's extreme value to -M, -M·(1 - 1/32), .., -M·(1 - 6/32) (the
// extreme's sign takes the extra code; a little clipping) or to +(M - 1) (symmetric).
void SimulateGroup(int bits, float* w, int64_t n) {
  const float m = static_cast<float>(int64_t{1} << (bits - 1)), lo = -m, hi = m - 1.0f;
  float extreme = 0.0f;
  for (int64_t i = 0; i < n; ++i)
    if (std::fabs(w[i]) > std::fabs(extreme)) extreme = w[i];
  if (extreme == 0.0f || !std::isfinite(extreme)) return;  // all zero (kept) or broken input (left as is)
  float scales[8];
  int usable = 0;
  for (int c = 0; c < 8; ++c) {
    const float divisor = c < 7 ? -1.0f / (m * (1.0f - static_cast<float>(c) / 32.0f)) : 1.0f / hi;
    const float s = kernels::F16ToF32(kernels::F32ToF16(extreme * divisor));
    if (s != 0.0f && std::isfinite(s)) scales[usable++] = s;
  }
  if (usable == 0) {
    std::fill(w, w + n, 0.0f);
    return;
  }
  float errors[8];
  kernels::ScaleSearchErrorsReference(w, n, scales, usable, lo, hi, errors);
  const float s = scales[std::min_element(errors, errors + usable) - errors];
  const float inv = 1.0f / s;
  for (int64_t i = 0; i < n; ++i) w[i] = std::nearbyint(std::clamp(w[i] * inv, lo, hi)) * s;
}

// Asymmetric: w ≈ s·q + m with q in 0 .. 2^B - 1 and f16 s, m. Candidates shrink the range
// [min, max] a little; each is refined by two least-squares fits of (s, m) to its codes.
void SimulateGroupAsymmetric(int bits, float* w, int64_t n) {
  const float levels = static_cast<float>((int64_t{1} << bits) - 1);
  float wmin = w[0], wmax = w[0];
  for (int64_t i = 1; i < n; ++i) wmin = std::min(wmin, w[i]), wmax = std::max(wmax, w[i]);
  if (!std::isfinite(wmin) || !std::isfinite(wmax)) return;  // broken input (left as is)
  if (wmax == wmin) {  // one value: the offset alone
    std::fill(w, w + n, kernels::F16ToF32(kernels::F32ToF16(wmin)));
    return;
  }
  std::vector<float> q(n), best(w, w + n);
  double best_err = INFINITY;
  for (int c = 0; c < 12; ++c) {
    const float shrink = 1.0f - 0.02f * c;
    const float mid = 0.5f * (wmin + wmax), half = 0.5f * (wmax - wmin) * shrink;
    float s = 2 * half / levels, m = mid - half;
    for (int iter = 0; iter < 3; ++iter) {
      s = kernels::F16ToF32(kernels::F32ToF16(s));
      m = kernels::F16ToF32(kernels::F32ToF16(m));
      if (s == 0.0f) break;
      double sq = 0, sq2 = 0, sw = 0, sqw = 0;
      for (int64_t i = 0; i < n; ++i) {
        q[i] = std::nearbyint(std::clamp((w[i] - m) / s, 0.0f, levels));
        sq += q[i], sq2 += q[i] * q[i], sw += w[i], sqw += q[i] * w[i];
      }
      double err = 0;
      for (int64_t i = 0; i < n; ++i) err += (w[i] - (s * q[i] + m)) * (w[i] - (s * q[i] + m));
      if (err < best_err) {
        best_err = err;
        for (int64_t i = 0; i < n; ++i) best[i] = s * q[i] + m;
      }
      const double det = n * sq2 - sq * sq;
      if (det <= 0) break;
      s = static_cast<float>((n * sqw - sq * sw) / det);
      m = static_cast<float>((sw - s * sq) / n);
    }
  }
  if (best_err == INFINITY) {  // a range below f16's smallest step: the group is its midpoint
    std::fill(best.begin(), best.end(), kernels::F16ToF32(kernels::F32ToF16(0.5f * (wmin + wmax))));
  }
  std::copy(best.begin(), best.end(), w);
}

// Deterministic ±1 for column c (the same for every row of a matrix, as the activations' transform
// must be): a hash of the column index.
float ColumnSign(int64_t c) {
  uint64_t x = static_cast<uint64_t>(c) * 0x9E3779B97F4A7C15ull;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return (x & 1) ? -1.0f : 1.0f;
}

// In-place orthonormal Walsh-Hadamard transform of w[0, n), n a power of two (its own inverse).
void Hadamard(float* w, int64_t n) {
  for (int64_t h = 1; h < n; h *= 2)
    for (int64_t i = 0; i < n; i += 2 * h)
      for (int64_t j = i; j < i + h; ++j) {
        const float a = w[j], b = w[j + h];
        w[j] = a + b;
        w[j + h] = a - b;
      }
  const float norm = 1.0f / std::sqrt(static_cast<float>(n));
  for (int64_t i = 0; i < n; ++i) w[i] *= norm;
}

int64_t RotationBlock(const SimulatedFormat& format, int64_t cols) {
  if (!format.rotate_full_rows) return format.rotation_block;
  int64_t block = 1;
  while (block < 4096 && cols % (block * 2) == 0) block *= 2;
  return block;
}

}  // namespace

bool ParseSimulatedFormat(std::string_view name, SimulatedFormat* format) {
  constexpr std::string_view kPrefix = "sim-int", kAsymmetricPrefix = "sim-uint";
  format->asymmetric = name.substr(0, kAsymmetricPrefix.size()) == kAsymmetricPrefix;
  if (format->asymmetric) {
    name.remove_prefix(kAsymmetricPrefix.size());
  } else {
    if (name.substr(0, kPrefix.size()) != kPrefix) return false;
    name.remove_prefix(kPrefix.size());
  }
  size_t dash = name.find('-');
  int64_t bits = 0, group = 32, rotation = 0;
  bool full_rows = false, seen_group = false, seen_rotation = false;
  if (!ParsePositive(name.substr(0, dash), &bits) || bits < 2 || bits > 8) return false;
  while (dash != std::string_view::npos) {
    name.remove_prefix(dash + 1);
    dash = name.find('-');
    const std::string_view part = name.substr(0, dash);
    if (part.size() >= 2 && part[0] == 'g' && !seen_group) {
      if (!ParsePositive(part.substr(1), &group) || group % 32 != 0) return false;
      seen_group = true;
    } else if (part == "r" && !seen_rotation) {
      full_rows = seen_rotation = true;
    } else if (part.size() >= 2 && part[0] == 'r' && !seen_rotation) {
      if (!ParsePositive(part.substr(1), &rotation) || (rotation & (rotation - 1)) != 0 || rotation < 2) return false;
      seen_rotation = true;
    } else {
      return false;
    }
  }
  format->bits = static_cast<int>(bits);
  format->group_size = group;
  format->rotation_block = rotation;
  format->rotate_full_rows = full_rows;
  return true;
}

void SimulateRow(const SimulatedFormat& format, float* row, int64_t cols) {
  // Rotated: D·H per block (D the column signs), quantised, then back (H is its own inverse).
  const int64_t block = RotationBlock(format, cols);
  const bool rotate = block > 1 && cols % block == 0;
  if (rotate)
    for (int64_t b = 0; b < cols; b += block) {
      for (int64_t i = 0; i < block; ++i) row[b + i] *= ColumnSign(b + i);
      Hadamard(row + b, block);
    }
  for (int64_t c0 = 0; c0 < cols; c0 += format.group_size)
    (format.asymmetric ? SimulateGroupAsymmetric : SimulateGroup)(format.bits, row + c0,
                                                                  std::min(format.group_size, cols - c0));
  if (rotate)
    for (int64_t b = 0; b < cols; b += block) {
      Hadamard(row + b, block);
      for (int64_t i = 0; i < block; ++i) row[b + i] *= ColumnSign(b + i);
    }
}

}  // namespace glm::bench
