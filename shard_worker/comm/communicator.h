// Message passing between ranks, behind one interface so the same execution code runs over MPI
// (mpi_communicator, the only place <mpi.h> is included) or over in-process queues between
// threads (in_process_communicator, for unit tests without MPI).
#ifndef GLM_SHARD_WORKER_COMM_COMMUNICATOR_H_
#define GLM_SHARD_WORKER_COMM_COMMUNICATOR_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace glm::comm {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Point to point, blocking. Messages between a pair of ranks with the same tag arrive in order.
  virtual absl::Status Send(int dest, int tag, const void* data, int64_t bytes) = 0;
  virtual absl::Status Recv(int src, int tag, void* data, int64_t bytes) = 0;
  virtual absl::Status SendString(int dest, int tag, const std::string& bytes) = 0;
  virtual absl::Status RecvString(int src, int tag, std::string* bytes) = 0;
  // Waits at most `timeout` (the coordinator uses it to notice a dead or stuck worker).
  virtual absl::Status RecvStringWithTimeout(int src, int tag, std::string* bytes, absl::Duration timeout) = 0;

  // Sends without waiting for the receiver to take the message: the coordinator's step plans,
  // which a worker still busy with an earlier step takes later (the coordinator must go on to
  // receive that step's result meanwhile, or both would wait for each other). The bytes are kept
  // until delivered. In order with this rank's other messages to `dest` on `tag`; a delivery that
  // failed is reported by a later PostString or by FlushPosted.
  virtual absl::Status PostString(int dest, int tag, std::string bytes) { return SendString(dest, tag, bytes); }
  // Waits (at most `timeout`) until every posted message has been taken.
  virtual absl::Status FlushPosted(absl::Duration) { return absl::OkStatus(); }
  // A check the waits of this rank run now and then (every ~50 ms of a wait that is not over at
  // once): a non-OK status ends the wait with that status. The coordinator watches its host's
  // worker processes with it, so a worker killed mid-step fails the step at once instead of after
  // the step timeout. Null: no check. Not every implementation runs it (the in-process one does not).
  virtual void SetWaitCheck(std::function<absl::Status()> check) { (void)check; }
  // RecvString for a wait expected to be long (a worker between steps): sleeps sooner.
  virtual absl::Status RecvStringWhenIdle(int src, int tag, std::string* bytes) { return RecvString(src, tag, bytes); }

  // Everyone gets root's bytes. Idle ranks waiting here sleep rather than spin.
  virtual absl::Status BroadcastString(int root, std::string* bytes) = 0;
  // recv holds size() blocks of `bytes` each, in rank order.
  virtual absl::Status AllGather(const void* send, int64_t bytes, void* recv) = 0;
  // Every rank ends with Σ_r data_r, added in rank order (0 + 1 + 2 ...), so the result is
  // bit-identical on every rank and from run to run.
  absl::Status AllReduceSum(float* data, int64_t n);
  virtual absl::Status Barrier() = 0;

  // A sub-group of ranks with equal `color`, ordered by `key` (collective over all ranks).
  virtual absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) = 0;

  // Seconds spent inside communication calls so far (waiting included).
  double comm_seconds() const { return comm_seconds_; }
  void ResetCommSeconds() { comm_seconds_ = 0; }
  // Durations of the collectives since the last ClearCollectiveLog(), in call order (matched
  // across the ranks of the group, so the per-call minimum over ranks is the transfer cost
  // without the waiting for late ranks).
  const std::vector<double>& collective_log() const { return collective_log_; }
  void ClearCollectiveLog() { collective_log_.clear(); }

 protected:
  // Adds the lifetime of a scope to a seconds counter (time spent in communication calls).
  class ScopedTimer {
   public:
    explicit ScopedTimer(double* total) : total_(total), start_(std::chrono::steady_clock::now()) {}
    ~ScopedTimer() { *total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

   private:
    double* total_;
    std::chrono::steady_clock::time_point start_;
  };

  double comm_seconds_ = 0;
  std::vector<double> collective_log_;
};

}  // namespace glm::comm

#endif  // GLM_SHARD_WORKER_COMM_COMMUNICATOR_H_
