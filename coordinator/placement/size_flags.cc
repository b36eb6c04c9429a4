#include "coordinator/placement/size_flags.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace glm::placement {
namespace {

absl::Status CheckRange(absl::string_view flag, double value, double max, absl::string_view unit,
                        absl::string_view zero_means) {
  // `!(value >= 0)` also catches nan, which compares false with everything.
  if (std::isfinite(value) && value >= 0 && value <= max) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(flag, " must be a finite number of ", unit, " from 0 to ", static_cast<int64_t>(max),
                                                 zero_means.empty() ? "" : absl::StrCat(" (0 = ", zero_means, ")"),
                                                 ", got ", value));
}

}  // namespace

absl::Status CheckGibFlag(absl::string_view flag, double gib, absl::string_view zero_means) {
  return CheckRange(flag, gib, kMaxFlagGib, "GiB", zero_means);
}

absl::StatusOr<int64_t> GibFlagBytes(absl::string_view flag, double gib, absl::string_view zero_means) {
  if (auto s = CheckGibFlag(flag, gib, zero_means); !s.ok()) return s;
  return static_cast<int64_t>(gib * (1024.0 * 1024.0 * 1024.0));  // <= 2^50: exact range
}

std::string SizeText(int64_t bytes) {
  constexpr double kGib = 1024.0 * 1024.0 * 1024.0;
  if (bytes >= kGib) return absl::StrFormat("%.1f GiB", bytes / kGib);
  return absl::StrFormat("%.1f MiB", bytes / (1024.0 * 1024.0));
}

absl::Status CheckGbpsFlag(absl::string_view flag, double gbps, absl::string_view zero_means) {
  return CheckRange(flag, gbps, kMaxFlagGbps, "GB/s", zero_means);
}

}  // namespace glm::placement
