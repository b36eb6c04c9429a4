#include "coordinator/scheduler/request.h"

#include <algorithm>

namespace glm::scheduler {

void RequestStream::SetInterval(const StreamInterval& interval) {
  absl::MutexLock lock(&mu_);
  interval_ = interval;
}

int32_t RequestStream::interval_tokens() const {
  absl::MutexLock lock(&mu_);
  return interval_.tokens;
}

bool RequestStream::ReadyLocked() const {
  if (events_.empty()) return false;
  if (released_ > 0 || interval_.tokens <= 1 || !taken_any_ || finished_pushed_) return true;
  return waiting_tokens_ >= interval_.tokens;
}

bool RequestStream::Next(GenerationEvent* event, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (finished_taken_) return false;
  const absl::Time deadline = absl::Now() + timeout;
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ReadyLocked(); };
  for (;;) {
    if (ReadyLocked()) break;
    // Not ready by count: the oldest waiting event's age may release the group.
    absl::Time until = deadline;
    const absl::Time now = absl::Now();
    if (!events_.empty()) {
      const absl::Time flush_at = events_.front().pushed + interval_.max_delay;
      if (now >= flush_at) break;
      until = std::min(until, flush_at);
    }
    if (now >= deadline) return false;
    mu_.AwaitWithDeadline(absl::Condition(&ready), until);
  }
  // A group is every event waiting now, except that the first event goes alone: the TTFT
  // message carries the first token even when the consumer woke after several were pushed.
  if (released_ == 0) released_ = taken_any_ ? events_.size() : 1;
  *event = std::move(events_.front().event);
  events_.pop_front();
  --released_;
  waiting_tokens_ -= static_cast<int64_t>(event->tokens.size());
  taken_any_ = true;
  if (event->finished) finished_taken_ = true;
  return true;
}

void RequestStream::Push(GenerationEvent event) {
  absl::MutexLock lock(&mu_);
  if (finished_pushed_) return;
  if (event.finished) finished_pushed_ = true;
  waiting_tokens_ += static_cast<int64_t>(event.tokens.size());
  events_.push_back(Waiting{std::move(event), absl::Now()});
}

bool RequestStream::finished() const {
  absl::MutexLock lock(&mu_);
  return finished_pushed_;
}

}  // namespace glm::scheduler
