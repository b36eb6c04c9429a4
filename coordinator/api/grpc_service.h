// The glm.inference.v1.Inference service over an Engine, on gRPC's synchronous API: each
// Generate runs on a server thread and streams engine events as they arrive, polling for client
// cancellation, the deadline and server shutdown between events (a short Next timeout), so a
// gone client frees its KV blocks within tens of milliseconds.
#ifndef GLM_COORDINATOR_API_GRPC_SERVICE_H_
#define GLM_COORDINATOR_API_GRPC_SERVICE_H_

#include <atomic>

#include "absl/status/status.h"
#include "coordinator/api/serving_metrics.h"
#include "coordinator/api/text_frontend.h"
#include "coordinator/scheduler/engine.h"
#include "grpcpp/grpcpp.h"
#include "protos/inference.grpc.pb.h"

namespace glm::api {

class ApiKeys;

// absl code → the gRPC code of the same number (they are the same canonical codes).
grpc::Status ToGrpcStatus(const absl::Status& status);

class GrpcInferenceService final : public glm::inference::v1::Inference::Service {
 public:
  // All pointers must outlive the service. `stopping` turns true at server shutdown: open
  // streams then abort their requests and end with UNAVAILABLE. `interval`: how Generate groups
  // tokens into messages (--stream-interval).
  // `keys` (may be null: open): the API keys every call must carry in its "authorization"
  // ("Bearer KEY") or "x-api-key" metadata; UNAUTHENTICATED otherwise.
  GrpcInferenceService(scheduler::Engine* engine, const TextFrontend* frontend, ServingMetrics* metrics,
                       const std::atomic<bool>* stopping, scheduler::StreamInterval interval = {},
                       const ApiKeys* keys = nullptr);

  grpc::Status Generate(grpc::ServerContext* context, const glm::inference::v1::GenerateRequest* request,
                        grpc::ServerWriter<glm::inference::v1::GenerateResponse>* writer) override;
  grpc::Status Abort(grpc::ServerContext* context, const glm::inference::v1::AbortRequest* request,
                     glm::inference::v1::AbortResponse* response) override;
  grpc::Status GetModelInfo(grpc::ServerContext* context, const glm::inference::v1::ModelInfoRequest* request,
                            glm::inference::v1::ModelInfo* response) override;
  grpc::Status Tokenize(grpc::ServerContext* context, const glm::inference::v1::TokenizeRequest* request,
                        glm::inference::v1::TokenizeResponse* response) override;
  grpc::Status Detokenize(grpc::ServerContext* context, const glm::inference::v1::DetokenizeRequest* request,
                          glm::inference::v1::DetokenizeResponse* response) override;
  grpc::Status GetLoad(grpc::ServerContext* context, const glm::inference::v1::LoadRequest* request,
                       glm::inference::v1::LoadResponse* response) override;
  grpc::Status GetExpertLoad(grpc::ServerContext* context, const glm::inference::v1::ExpertLoadRequest* request,
                             glm::inference::v1::ExpertLoadResponse* response) override;

 private:
  scheduler::Engine* engine_;
  const TextFrontend* frontend_;
  ServingMetrics* metrics_;
  const std::atomic<bool>* stopping_;
  scheduler::StreamInterval interval_;
  const ApiKeys* keys_;

  grpc::Status CheckKey(const grpc::ServerContext* context) const;
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_GRPC_SERVICE_H_
