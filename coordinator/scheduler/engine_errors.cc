#include "coordinator/scheduler/engine_errors.h"

#include "absl/strings/cord.h"

namespace glm::scheduler {
namespace {
constexpr char kKvCachePayload[] = "type.googleapis.com/glm.scheduler.ExceedsKvCache";
constexpr char kShuttingDownPayload[] = "type.googleapis.com/glm.scheduler.ShuttingDown";
}  // namespace

absl::Status KvCacheExceededError(const std::string& message) {
  absl::Status s = absl::ResourceExhaustedError(message);
  s.SetPayload(kKvCachePayload, absl::Cord("1"));
  return s;
}

absl::Status ShuttingDownError() {
  absl::Status s = absl::UnavailableError(kShuttingDownMessage);
  s.SetPayload(kShuttingDownPayload, absl::Cord("1"));
  return s;
}

bool IsShuttingDown(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable && status.GetPayload(kShuttingDownPayload).has_value();
}

bool ExceedsKvCache(const absl::Status& status) {
  return status.code() == absl::StatusCode::kResourceExhausted && status.GetPayload(kKvCachePayload).has_value();
}

}  // namespace glm::scheduler
