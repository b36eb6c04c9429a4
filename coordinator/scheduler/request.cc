#include "coordinator/scheduler/request.h"

namespace glm::scheduler {

bool RequestStream::Next(GenerationEvent* event, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (finished_taken_) return false;
  auto ready = [this]() { return !events_.empty(); };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return false;
  *event = std::move(events_.front());
  events_.pop_front();
  if (event->finished) finished_taken_ = true;
  return true;
}

void RequestStream::Push(GenerationEvent event) {
  absl::MutexLock lock(&mu_);
  if (finished_pushed_) return;
  if (event.finished) finished_pushed_ = true;
  events_.push_back(std::move(event));
}

bool RequestStream::finished() const {
  absl::MutexLock lock(&mu_);
  return finished_pushed_;
}

}  // namespace glm::scheduler
