#include "coordinator/api/api_server.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/api/api_keys.h"
#include "coordinator/api/exclusive_listen.h"
#include "coordinator/api/grpc_service.h"
#include "coordinator/api/openai_http.h"
#include "coordinator/api/serving_metrics.h"
#include "coordinator/api/text_frontend.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "protos/grpc/health/v1/health.pb.h"

namespace glm::api {
namespace {

constexpr char kServiceName[] = "glm.inference.v1.Inference";
// Open streams see `stopping_` within one poll interval; this is how long Shutdown lets them
// finish their last write before gRPC cancels what is left.
constexpr auto kGrpcShutdownGrace = std::chrono::milliseconds(500);

class ApiServerImpl final : public ApiServer {
 public:
  ApiServerImpl(const ApiOptions& options, scheduler::Engine* engine, const ServedModel* model)
      : options_(options),
        engine_(engine),
        frontend_(model, options.default_max_tokens),
        metrics_(model->name, model->max_context),
        keys_(options.api_keys) {
    if (model->kv_block_size > 0)
      metrics_.SetCacheConfig(model->kv_block_size, model->kv_cache_dtype, model->kv_cache_tokens / model->kv_block_size,
                              model->prefix_caching, model->index_key_dtype);
  }
  ~ApiServerImpl() override { Shutdown(); }

  absl::Status Init() {
    if (!options_.grpc_listen.empty()) {
      // Process-wide switches; they must be set before the first ServerBuilder.
      grpc::EnableDefaultHealthCheckService(true);
      grpc::reflection::InitProtoReflectionServerBuilderPlugin();
      // Reflection describes what the generated descriptor pool holds; gRPC's own health service
      // brings no descriptor, so ours (protos/grpc/health/v1/health.proto) is linked in by this
      // reference (an unreferenced object of a static library would be left out).
      (void)grpc::health::v1::HealthCheckRequest::descriptor();
      service_ = std::make_unique<GrpcInferenceService>(engine_, &frontend_, &metrics_, &stopping_,
                                                        options_.stream_interval, &keys_);
      grpc::ServerBuilder builder;
      ListenExclusively(&builder);
      builder.AddListeningPort(options_.grpc_listen, grpc::InsecureServerCredentials(), &grpc_port_);
      builder.RegisterService(service_.get());
      // Token streams are small messages; the default 4 MiB receive limit is too small only for
      // very long token-id prompts.
      builder.SetMaxReceiveMessageSize(64 << 20);
      grpc_server_ = builder.BuildAndStart();
      if (grpc_server_ == nullptr || grpc_port_ == 0)
        return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ", options_.grpc_listen));
      UpdateHealth();
      health_thread_ = std::thread([this] { WatchDraining(); });
    }
    if (!options_.http_listen.empty()) {
      http_ = std::make_unique<OpenAiHttpServer>(engine_, &frontend_, &metrics_, &serving_, &stopping_,
                                                 options_.http_threads, options_.stream_interval, &keys_,
                                                 options_.http_max_threads);
      http_->responses().SetCapacity(options_.responses_store_bytes);
      if (auto s = http_->Start(options_.http_listen); !s.ok()) {
        Shutdown();
        return s;
      }
    }
    return absl::OkStatus();
  }

  int grpc_port() const override { return grpc_port_; }
  int http_port() const override { return http_ != nullptr ? http_->port() : 0; }

  void SetServing(bool serving) override {
    serving_.store(serving);
    UpdateHealth();
  }

  void Shutdown() override {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
    serving_.store(false);
    stopping_.store(true);
    {
      absl::MutexLock watch_lock(&watch_mu_);
      watch_stop_ = true;
    }
    if (health_thread_.joinable()) health_thread_.join();
    if (grpc_server_ != nullptr) {
      // NOT_SERVING (stopping_ is set) if health still says SERVING. Not health->Shutdown(): it
      // sends NOT_SERVING to every Watch stream again even when that is already their state.
      UpdateHealth();
      grpc_server_->Shutdown(std::chrono::system_clock::now() + kGrpcShutdownGrace);
      grpc_server_->Wait();
    }
    if (http_ != nullptr) http_->Stop();
  }

 private:
  // The engine starts draining on its own (shutdown signal, cluster failure); gRPC health has
  // to follow without the coordinator calling SetServing(false).
  // It compares with what health last published, not with the engine's state when the watch
  // began: an engine that starts draining before this thread first runs must still be seen.
  void WatchDraining() {
    absl::MutexLock lock(&watch_mu_);
    auto stop = [this] { return watch_stop_; };
    while (!watch_mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Milliseconds(100)))
      if (static_cast<int>(HealthyNow()) != published_.load()) UpdateHealth();
  }

  bool HealthyNow() const { return serving_.load() && !stopping_.load() && !engine_->draining(); }

  // Publishes only a change: gRPC's health service sends every SetServingStatus to each Watch
  // stream of that name, identical or not (SetServing(false) twice at shutdown, and the
  // all-services form on top of the two names, gave watchers the same NOT_SERVING many times).
  // Only the server ("") and the Inference service are published; other names stay unknown.
  void UpdateHealth() {
    if (grpc_server_ == nullptr) return;
    grpc::HealthCheckServiceInterface* health = grpc_server_->GetHealthCheckService();
    if (health == nullptr) return;
    absl::MutexLock lock(&health_mu_);  // SetServing and the watcher may both publish
    const bool ok = HealthyNow();
    if (published_.load() == static_cast<int>(ok)) return;
    health->SetServingStatus("", ok);
    health->SetServingStatus(kServiceName, ok);
    published_.store(ok);
  }

  ApiOptions options_;
  scheduler::Engine* engine_;
  TextFrontend frontend_;
  ServingMetrics metrics_;
  ApiKeys keys_;
  std::atomic<bool> serving_{false};
  std::atomic<bool> stopping_{false};
  std::unique_ptr<GrpcInferenceService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  int grpc_port_ = 0;
  std::unique_ptr<OpenAiHttpServer> http_;
  std::thread health_thread_;
  absl::Mutex watch_mu_;
  bool watch_stop_ = false;
  absl::Mutex health_mu_;
  std::atomic<int> published_{-1};  // the serving status health last published (-1: none yet)
  absl::Mutex shutdown_mu_;
  bool shut_down_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ApiServer>> ApiServer::Start(const ApiOptions& options, scheduler::Engine* engine,
                                                            const ServedModel* model) {
  if (engine == nullptr || model == nullptr) return absl::InvalidArgumentError("ApiServer needs an engine and a model");
  if (options.grpc_listen.empty() && options.http_listen.empty())
    return absl::InvalidArgumentError("neither grpc_listen nor http_listen is set");
  auto server = std::make_unique<ApiServerImpl>(options, engine, model);
  if (auto s = server->Init(); !s.ok()) return s;
  return std::unique_ptr<ApiServer>(std::move(server));
}

}  // namespace glm::api
