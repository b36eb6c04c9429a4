#include "coordinator/api/elastic_task_queue.h"

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>
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

int RaiseListenBacklog(int port, int backlog) {
  int raised = 0;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    int accepting = 0;
    socklen_t len = sizeof accepting;
    if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || !accepting) continue;
    sockaddr_storage addr{};
    socklen_t addr_len = sizeof addr;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) continue;
    int bound = -1;
    if (addr.ss_family == AF_INET) bound = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (addr.ss_family == AF_INET6) bound = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    if (bound == port && listen(static_cast<int>(fd), backlog) == 0) ++raised;
  }
  closedir(dir);
  return raised;
}

}  // namespace glm::api
