#include "shard_worker/comm/communicator.h"

#include <vector>

namespace glm::comm {

absl::Status Communicator::AllReduceSum(float* data, int64_t n) {
  if (size() == 1 || n == 0) return absl::OkStatus();
  std::vector<float> all(static_cast<size_t>(n) * size());
  if (auto s = AllGather(data, n * static_cast<int64_t>(sizeof(float)), all.data()); !s.ok()) return s;
  for (int64_t i = 0; i < n; ++i) {
    float acc = all[i];
    for (int r = 1; r < size(); ++r) acc += all[static_cast<size_t>(r) * n + i];
    data[i] = acc;
  }
  return absl::OkStatus();
}

}  // namespace glm::comm
