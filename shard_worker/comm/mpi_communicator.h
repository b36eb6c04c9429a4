// Communicator over an MPI communicator (the only file pair that includes <mpi.h>). Waits poll
// with short sleeps instead of MPI's busy spin, so idle workers and oversubscribed test runs
// leave the cores to ranks that compute.
#ifndef GLM_SHARD_WORKER_COMM_MPI_COMMUNICATOR_H_
#define GLM_SHARD_WORKER_COMM_MPI_COMMUNICATOR_H_

#include <memory>

#include "shard_worker/comm/communicator.h"

namespace glm::comm {

// MPI_Init_thread / MPI_Finalize for a process (RAII).
class MpiSession {
 public:
  static absl::StatusOr<std::unique_ptr<MpiSession>> Init(int* argc, char*** argv);
  ~MpiSession();
  // MPI_COMM_WORLD.
  std::unique_ptr<Communicator> World() const;
  // Ends every rank of the job (after a fatal error the coordinator cannot recover from).
  [[noreturn]] static void Abort(int code);

 private:
  MpiSession() = default;
};

class MpiCommunicator;

}  // namespace glm::comm

#endif  // GLM_SHARD_WORKER_COMM_MPI_COMMUNICATOR_H_
