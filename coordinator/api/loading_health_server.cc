#include "coordinator/api/loading_health_server.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "coordinator/api/exclusive_listen.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "httplib.h"

namespace glm::api {
namespace {

constexpr char kServiceName[] = "glm.inference.v1.Inference";
constexpr char kLoadingError[] =
    R"({"error":{"message":"the model is loading","type":"unavailable","param":null,"code":"loading"}})";

// "HOST:PORT" split; false when it is not one.
bool SplitListen(const std::string& listen, std::string* host, int* port) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), port) || *port < 0 || *port > 65535)
    return false;
  *host = listen.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  if (host->empty()) *host = "0.0.0.0";
  return true;
}

std::string WithPort(const std::string& listen, int port) {
  const size_t colon = listen.rfind(':');
  return port <= 0 || colon == std::string::npos ? listen : absl::StrCat(listen.substr(0, colon), ":", port);
}

// Every gRPC method but health's while loading: UNAVAILABLE, which clients retry (gRPC's default
// for an unregistered method, UNIMPLEMENTED, tells them the call will never work).
class LoadingGenericService final : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* /*context*/) override {
    class Unavailable final : public grpc::ServerGenericBidiReactor {
     public:
      Unavailable() { Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the model is loading; retry shortly")); }
      void OnDone() override { delete this; }
    };
    return new Unavailable;
  }
};

class LoadingHealthServerImpl final : public LoadingHealthServer {
 public:
  ~LoadingHealthServerImpl() override { Stop(); }

  absl::Status Init(const std::string& grpc_listen, const std::string& http_listen) {
    if (!grpc_listen.empty()) {
      grpc::EnableDefaultHealthCheckService(true);  // process-wide, before the first builder
      grpc::ServerBuilder builder;
      ListenExclusively(&builder);
      builder.AddListeningPort(grpc_listen, grpc::InsecureServerCredentials(), &grpc_port_);
      builder.RegisterCallbackGenericService(&loading_service_);
      grpc_server_ = builder.BuildAndStart();
      if (grpc_server_ == nullptr || grpc_port_ == 0)
        return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ", grpc_listen));
      if (grpc::HealthCheckServiceInterface* health = grpc_server_->GetHealthCheckService()) {
        health->SetServingStatus(false);
        health->SetServingStatus("", false);
        health->SetServingStatus(kServiceName, false);
      }
    }
    if (!http_listen.empty()) {
      std::string host;
      int port = 0;
      if (!SplitListen(http_listen, &host, &port))
        return absl::InvalidArgumentError(absl::StrCat("http_listen '", http_listen, "' is not HOST:PORT"));
      http_ = std::make_unique<httplib::Server>();
      ListenExclusively(http_.get());
      http_->new_task_queue = [] { return new httplib::ThreadPool(2); };
      http_->set_keep_alive_max_count(1);  // probes reconnect: nothing holds the port at the hand-over
      http_->Get("/health", [](const httplib::Request&, httplib::Response& res) {
        res.status = 503;
        res.set_content("loading\n", "text/plain");
      });
      // Everything else: the OpenAI error shape, 503 (clients retry).
      http_->set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
        if (req.method == "GET" && req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
        res.status = 503;
        res.set_header("Retry-After", "5");
        res.set_content(kLoadingError, "application/json");
        return httplib::Server::HandlerResponse::Handled;
      });
      http_port_ = port == 0 ? http_->bind_to_any_port(host) : (http_->bind_to_port(host, port) ? port : -1);
      if (http_port_ <= 0) return absl::UnavailableError(absl::StrCat("cannot bind HTTP on ", http_listen, " (in use?)"));
      http_thread_ = std::thread([this] {
        http_->listen_after_bind();
        listen_returned_ = true;
      });
    }
    return absl::OkStatus();
  }

  std::string GrpcAddress(const std::string& listen) const override { return WithPort(listen, grpc_port_); }
  std::string HttpAddress(const std::string& listen) const override { return WithPort(listen, http_port_); }

  void Stop() override {
    if (grpc_server_ != nullptr) {
      // No health->Shutdown(): everything is NOT_SERVING already, and it would send that to every
      // Watch stream once more.
      grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
      grpc_server_->Wait();
      grpc_server_.reset();
    }
    if (http_ != nullptr) {
      // stop() is lost until the accept loop runs (see OpenAiHttpServer::Stop).
      while (http_thread_.joinable() && !http_->is_running() && !listen_returned_)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      http_->stop();
      if (http_thread_.joinable()) http_thread_.join();
      http_.reset();
    }
  }

 private:
  LoadingGenericService loading_service_;  // outlives grpc_server_ (declared first)
  std::unique_ptr<grpc::Server> grpc_server_;
  int grpc_port_ = 0;
  std::unique_ptr<httplib::Server> http_;
  std::thread http_thread_;
  std::atomic<bool> listen_returned_{false};
  int http_port_ = 0;
};

}  // namespace

absl::Status CheckListenAddress(const std::string& listen) {
  if (listen.empty() || absl::StartsWith(listen, "unix:")) return absl::OkStatus();
  std::string host;
  int port = 0;
  if (!SplitListen(listen, &host, &port))
    return absl::InvalidArgumentError(
        absl::StrCat("'", listen, "' is not HOST:PORT with a port in 0..65535 (0 = any free port)"));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LoadingHealthServer>> LoadingHealthServer::Start(const std::string& grpc_listen,
                                                                               const std::string& http_listen) {
  auto server = std::make_unique<LoadingHealthServerImpl>();
  if (auto s = server->Init(grpc_listen, http_listen); !s.ok()) return s;
  return std::unique_ptr<LoadingHealthServer>(std::move(server));
}

}  // namespace glm::api
