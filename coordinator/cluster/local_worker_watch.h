// The shard worker processes that run on the coordinator's own host, watched through /proc: a
// worker killed mid-step (kill -9, the OOM killer) otherwise leaves the coordinator waiting for
// the step's result until --step-timeout-s, while mpirun tears the job down within a second and
// clients see dropped connections instead of UNAVAILABLE / HTTP 503. ClusterClient runs Check
// from the communicator's waits (Communicator::SetWaitCheck), so the step fails at once.
#ifndef GLM_COORDINATOR_CLUSTER_LOCAL_WORKER_WATCH_H_
#define GLM_COORDINATOR_CLUSTER_LOCAL_WORKER_WATCH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "protos/shard.pb.h"

namespace glm::cluster {

class LocalWorkerWatch {
 public:
  // `this_host`: the coordinator's hostname. `expected_name`: the process name a watched worker
  // must have (/proc/PID/comm), so an unrelated process with the same id (another PID namespace
  // behind an equal hostname) is never watched.
  explicit LocalWorkerWatch(std::string this_host, std::string expected_name = "shard_worker")
      : this_host_(std::move(this_host)), expected_name_(std::move(expected_name)) {}

  // Watches the worker of `hello` if it runs on this host (same hostname, and its pid is a live
  // process of the expected name now); returns whether it is watched.
  bool Add(const shard::WorkerHello& hello);
  // OK while every watched worker runs; UNAVAILABLE naming the first that exited (its process is
  // gone, a zombie, or its pid now belongs to a process started later).
  absl::Status Check() const;
  int watched() const { return static_cast<int>(watched_.size()); }

  // /proc/PID/stat's start time (clock ticks after boot) of a live process, or -1 when there is
  // no such process or it has exited (a zombie).
  static int64_t StartTimeOfLiveProcess(int64_t pid);

 private:
  struct Watched {
    int rank = 0;
    int64_t pid = 0;
    int64_t start_time = 0;
  };
  std::string this_host_, expected_name_;
  std::vector<Watched> watched_;
};

}  // namespace glm::cluster

#endif  // GLM_COORDINATOR_CLUSTER_LOCAL_WORKER_WATCH_H_
