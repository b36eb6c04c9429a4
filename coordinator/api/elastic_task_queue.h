// The HTTP server's connection threads (cpp-httplib runs each connection on a task queue's
// thread for its whole life, a streamed generation included). A fixed pool let long generations
// take every thread, so /health, /metrics and the 429 for a full queue waited behind them. This
// pool starts `base` threads and adds one whenever a connection arrives with none idle, up to
// `max`; beyond that connections wait for a thread.
#ifndef GLM_COORDINATOR_API_ELASTIC_TASK_QUEUE_H_
#define GLM_COORDINATOR_API_ELASTIC_TASK_QUEUE_H_

#include <httplib.h>

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace glm::api {

class ElasticTaskQueue final : public httplib::TaskQueue {
 public:
  ElasticTaskQueue(int base, int max);
  ~ElasticTaskQueue() override;

  void enqueue(std::function<void()> fn) override;
  void shutdown() override;

  int threads() const;  // started so far

 private:
  void StartThreadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasWorkOrStops() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return shutting_down_ || !jobs_.empty(); }
  void Loop();

  const int max_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  int idle_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_ELASTIC_TASK_QUEUE_H_
