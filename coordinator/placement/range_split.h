// Balanced contiguous splits of an index range among the ranks of a stage: the arithmetic both
// the planner and the validator agree on.
#ifndef GLM_COORDINATOR_PLACEMENT_RANGE_SPLIT_H_
#define GLM_COORDINATOR_PLACEMENT_RANGE_SPLIT_H_

#include <cstdint>
#include <string>
#include <vector>

namespace glm::placement {

struct Range {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const Range&) const = default;
};

// Part `index` of `total` split into `parts` contiguous slices whose sizes differ by at most
// one, the earlier parts taking the extra.
Range BalancedSlice(int64_t total, int parts, int index);

// Like BalancedSlice, but with every boundary moved to the nearest multiple of `align` (FP8
// block columns, so no block is split between ranks) when that still leaves every part
// non-empty; otherwise the plain balanced split.
Range AlignedSlice(int64_t total, int parts, int index, int64_t align);
// Whether AlignedSlice keeps every boundary on a multiple of `align` (no fallback to the plain split).
bool AlignedSplitExists(int64_t total, int parts, int64_t align);

// Expert ids [E*i/P, E*(i+1)/P) of part i (the expert-parallel split the engine uses).
Range ExpertSlice(int64_t experts, int parts, int index);

// "0-31,64-95,100" from sorted or unsorted ids; "-" when empty.
std::string FormatIdRanges(std::vector<int32_t> ids);

}  // namespace glm::placement

#endif  // GLM_COORDINATOR_PLACEMENT_RANGE_SPLIT_H_
