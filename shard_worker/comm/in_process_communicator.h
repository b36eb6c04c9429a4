// Ranks as threads of one process: a shared hub of mailboxes. Runs the distributed code paths in
// unit tests without MPI.
#ifndef GLM_SHARD_WORKER_COMM_IN_PROCESS_COMMUNICATOR_H_
#define GLM_SHARD_WORKER_COMM_IN_PROCESS_COMMUNICATOR_H_

#include <map>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "shard_worker/comm/communicator.h"

namespace glm::comm {

class InProcessHub;

class InProcessCommunicator : public Communicator {
 public:
  // size communicators sharing one hub; hand one to each thread.
  static std::vector<std::unique_ptr<Communicator>> CreateGroup(int size);

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(members_.size()); }
  absl::Status Send(int dest, int tag, const void* data, int64_t bytes) override;
  absl::Status Recv(int src, int tag, void* data, int64_t bytes) override;
  absl::Status SendString(int dest, int tag, const std::string& bytes) override;
  absl::Status RecvString(int src, int tag, std::string* bytes) override;
  absl::Status RecvStringWithTimeout(int src, int tag, std::string* bytes, absl::Duration timeout) override;
  absl::Status BroadcastString(int root, std::string* bytes) override;
  absl::Status AllGather(const void* send, int64_t bytes, void* recv) override;
  absl::Status Barrier() override;
  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) override;

  InProcessCommunicator(std::shared_ptr<InProcessHub> hub, uint64_t context, std::vector<int> members, int rank)
      : hub_(std::move(hub)), context_(context), members_(std::move(members)), rank_(rank) {}

 private:
  std::shared_ptr<InProcessHub> hub_;
  uint64_t context_;          // separates the traffic of split groups
  std::vector<int> members_;  // hub-global ids, by rank
  int rank_;
  uint64_t collective_seq_ = 0;
};

}  // namespace glm::comm

#endif  // GLM_SHARD_WORKER_COMM_IN_PROCESS_COMMUNICATOR_H_
