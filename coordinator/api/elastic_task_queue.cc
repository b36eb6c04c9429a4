#include "coordinator/api/elastic_task_queue.h"

#include <algorithm>
#include <utility>

namespace glm::api {

ElasticTaskQueue::ElasticTaskQueue(int base, int max) : max_(std::max(1, std::max(base, max))) {
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < std::max(1, base); ++i) StartThreadLocked();
}

ElasticTaskQueue::~ElasticTaskQueue() { shutdown(); }

void ElasticTaskQueue::StartThreadLocked() {
  ++idle_;  // counted idle until it takes a job
  threads_.emplace_back([this] { Loop(); });
}

void ElasticTaskQueue::enqueue(std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return;
  jobs_.push_back(std::move(fn));
  // Every idle thread may already be claimed by a queued job: start one more while there is room.
  if (static_cast<int>(jobs_.size()) > idle_ && static_cast<int>(threads_.size()) < max_) StartThreadLocked();
}

void ElasticTaskQueue::Loop() {
  for (;;) {
    std::function<void()> job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &ElasticTaskQueue::HasWorkOrStops));
      if (jobs_.empty()) return;  // shutting down with nothing left
      job = std::move(jobs_.front());
      jobs_.pop_front();
      --idle_;
    }
    job();
    absl::MutexLock lock(&mu_);
    ++idle_;
  }
}

void ElasticTaskQueue::shutdown() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    threads.swap(threads_);
  }
  for (std::thread& t : threads)
    if (t.joinable()) t.join();
}

int ElasticTaskQueue::threads() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(threads_.size());
}

}  // namespace glm::api
