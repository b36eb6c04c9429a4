#include "coordinator/scheduler/engine_errors.h"

#include "absl/strings/cord.h"

namespace glm::scheduler {
namespace {
constexpr char kKvCachePayload[] = "type.googleapis.com/glm.scheduler.ExceedsKvCache";
}  // namespace

absl::Status KvCacheExceededError(const std::string& message) {
  absl::Status s = absl::ResourceExhaustedError(message);
  s.SetPayload(kKvCachePayload, absl::Cord("1"));
  return s;
}

bool ExceedsKvCache(const absl::Status& status) {
  return status.code() == absl::StatusCode::kResourceExhausted && status.GetPayload(kKvCachePayload).has_value();
}

}  // namespace glm::scheduler
