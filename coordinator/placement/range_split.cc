#include "coordinator/placement/range_split.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace glm::placement {

Range BalancedSlice(int64_t total, int parts, int index) {
  const int64_t base = total / parts, extra = total % parts;
  const int64_t begin = index * base + std::min<int64_t>(index, extra);
  return {begin, begin + base + (index < extra ? 1 : 0)};
}

Range AlignedSlice(int64_t total, int parts, int index, int64_t align) {
  if (align <= 1 || parts <= 1) return BalancedSlice(total, parts, index);
  // Each boundary is the ideal total*i/parts rounded to the nearest block edge, so the slices stay
  // as even as whole blocks allow (a partial last block does not count as a full one).
  auto boundary = [&](int64_t i) {
    const int64_t ideal = total * i / parts;
    return std::min(total, (ideal + align / 2) / align * align);
  };
  for (int i = 0; i < parts; ++i) {
    const int64_t b = i == 0 ? 0 : boundary(i), e = i + 1 == parts ? total : boundary(i + 1);
    if (e <= b) return BalancedSlice(total, parts, index);  // some part would be empty
  }
  return {index == 0 ? 0 : boundary(index), index + 1 == parts ? total : boundary(index + 1)};
}

bool AlignedSplitExists(int64_t total, int parts, int64_t align) {
  if (align <= 1 || parts <= 1) return true;
  for (int i = 0; i < parts; ++i)
    if (AlignedSlice(total, parts, i, align).begin % align != 0) return false;
  return true;
}

Range ExpertSlice(int64_t experts, int parts, int index) {
  return {experts * index / parts, experts * (index + 1) / parts};
}

std::string FormatIdRanges(std::vector<int32_t> ids) {
  if (ids.empty()) return "-";
  std::sort(ids.begin(), ids.end());
  std::string out;
  size_t i = 0;
  while (i < ids.size()) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    if (!out.empty()) out += ",";
    absl::StrAppend(&out, ids[i]);
    if (j > i) absl::StrAppend(&out, "-", ids[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace glm::placement
