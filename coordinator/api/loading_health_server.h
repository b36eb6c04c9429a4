// Health endpoints while the cluster loads. A large model takes minutes to load; for that time
// probes must see "not ready" (gRPC grpc.health.v1 NOT_SERVING, HTTP 503 on /health and every
// other path) rather than a refused connection, which a liveness probe reads as a dead server.
// It listens on the addresses the API server takes over once the model is loaded: Stop() frees
// them, and the bound ports (a requested port 0 becomes a real one) are handed on.
#ifndef GLM_COORDINATOR_API_LOADING_HEALTH_SERVER_H_
#define GLM_COORDINATOR_API_LOADING_HEALTH_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace glm::api {

// A --grpc-listen / --http-listen value: "" (off), HOST:PORT with a port 0..65535 (0 = any) or
// gRPC's "unix:PATH"; INVALID_ARGUMENT otherwise. gRPC took "127.0.0.1:99999" as port 34463
// without a word.
absl::Status CheckListenAddress(const std::string& listen);

class LoadingHealthServer {
 public:
  // "" for an address: that server is not started. UNAVAILABLE when an address cannot be bound.
  static absl::StatusOr<std::unique_ptr<LoadingHealthServer>> Start(const std::string& grpc_listen,
                                                                    const std::string& http_listen);
  virtual ~LoadingHealthServer() = default;

  // `listen` ("HOST:PORT") with the port this server bound for it (unchanged when not started).
  virtual std::string GrpcAddress(const std::string& listen) const = 0;
  virtual std::string HttpAddress(const std::string& listen) const = 0;
  // Stops both servers and frees their ports (idempotent).
  virtual void Stop() = 0;
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_LOADING_HEALTH_SERVER_H_
