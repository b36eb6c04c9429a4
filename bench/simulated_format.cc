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

}  // namespace

bool ParseSimulatedFormat(std::string_view name, SimulatedFormat* format) {
  constexpr std::string_view kPrefix = "sim-int";
  if (name.substr(0, kPrefix.size()) != kPrefix) return false;
  name.remove_prefix(kPrefix.size());
  const size_t dash = name.find('-');
  int64_t bits = 0, group = 32;
  if (!ParsePositive(name.substr(0, dash), &bits) || bits < 2 || bits > 8) return false;
  if (dash != std::string_view::npos) {
    const std::string_view rest = name.substr(dash + 1);
    if (rest.size() < 2 || rest[0] != 'g' || !ParsePositive(rest.substr(1), &group) || group % 32 != 0) return false;
  }
  format->bits = static_cast<int>(bits);
  format->group_size = group;
  return true;
}

void SimulateRow(const SimulatedFormat& format, float* row, int64_t cols) {
  for (int64_t c0 = 0; c0 < cols; c0 += format.group_size)
    SimulateGroup(format.bits, row + c0, std::min(format.group_size, cols - c0));
}

}  // namespace glm::bench
