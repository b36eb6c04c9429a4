// Memory sizes and bandwidths typed on a command line (--kv-cache-gib, --expert-memory-gib,
// --memory-budget-gib, --numa-memory-gib, --bandwidth-gbps): checked finite and in a sane range
// before any arithmetic, because inf, nan or 1e30 GiB cast to int64 bytes is undefined and came
// out as INT64_MIN budgets and 0 ms/token predictions. One place for glmctl, the coordinator and
// the planner's options, so each refuses the same values with the flag's name.
#ifndef GLM_COORDINATOR_PLACEMENT_SIZE_FLAGS_H_
#define GLM_COORDINATOR_PLACEMENT_SIZE_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace glm::placement {

// 1 PiB: above the memory of any host, and 2^50 bytes stays far inside int64.
inline constexpr double kMaxFlagGib = 1 << 20;
// 1 PB/s: above any memory system's read bandwidth.
inline constexpr double kMaxFlagGbps = 1 << 20;
// --kv-cache-gib's default, per worker rank: one value for the coordinator (which allocates it)
// and `glmctl plan` (which reserves it on top of the weights), so a plan that fits in glmctl
// fits the coordinator started with the same flags (glmctl's default was 0).
inline constexpr double kDefaultKvCacheGib = 1.0;

// `gib` is finite and in [0, kMaxFlagGib]; else InvalidArgument naming `flag` (e.g.
// "--kv-cache-gib") and the value. `zero_means` (e.g. "all routed experts resident") is added
// to the message when given.
absl::Status CheckGibFlag(absl::string_view flag, double gib, absl::string_view zero_means = "");
// The same check, then the size in bytes (truncated, as the planner always counted them).
absl::StatusOr<int64_t> GibFlagBytes(absl::string_view flag, double gib, absl::string_view zero_means = "");
// "1.5 GiB", or "17.9 MiB" below one GiB: small models and budgets printed in GiB read
// "needs 0.0 GiB ... budget 0.0 GiB".
std::string SizeText(int64_t bytes);
// `gbps` is finite and in [0, kMaxFlagGbps].
absl::Status CheckGbpsFlag(absl::string_view flag, double gbps, absl::string_view zero_means = "");

}  // namespace glm::placement

#endif  // GLM_COORDINATOR_PLACEMENT_SIZE_FLAGS_H_
