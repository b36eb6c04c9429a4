// Shared fixture: an ApiServer on 127.0.0.1 (ports chosen by the OS) over a FakeEngine and the
// bundled glm5-tiny-code tokenizer and chat template, plus a gRPC stub and an HTTP client.
#ifndef GLM_TESTS_COORDINATOR_API_API_TEST_FIXTURE_H_
#define GLM_TESTS_COORDINATOR_API_API_TEST_FIXTURE_H_

#include <httplib.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/api/api_server.h"
#include "coordinator/tokenizer/chat_template.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "grpcpp/grpcpp.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protos/inference.grpc.pb.h"
#include "tests/coordinator/api/fake_engine.h"

namespace glm::testing {

class ApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // No SIGPIPE handling on purpose: a client hanging up mid-stream must not kill the
    // process (httplib and gRPC send with MSG_NOSIGNAL), and the disconnect test proves it.
    const std::string dir = std::string(GLM_MODELS_DIR) + "/glm5-tiny-code";
    auto tok = tokenizer::Tokenizer::FromFile(dir);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = tok->release();
    auto tmpl = tokenizer::ChatTemplate::FromTokenizerConfig(dir);
    ASSERT_TRUE(tmpl.ok()) << tmpl.status();
    chat_template_ = tmpl->release();
  }

  // POST `body` (JSON) to the HTTP front end; 10 s read timeout.
  httplib::Result PostJson(const std::string& path, const std::string& body) {
    httplib::Client client("127.0.0.1", server_->http_port());
    client.set_read_timeout(10, 0);
    return client.Post(path.c_str(), body, "application/json");
  }

  void SetUp() override {
    model_.name = "glm5-tiny-code";
    model_.aliases = {"glm-tiny"};
    model_.max_context = 4096;
    model_.vocab_size = 4096;
    model_.eos_token_ids = {0};
    model_.tokenizer = tokenizer_;
    model_.chat_template = chat_template_;
    model_.placement_summary = "stage 0: layers 0-1 on rank 1";
    model_.world_size = 2;
    model_.draft_vocab = 512;
    model_.kv_cache_dtype = "bf16";
    model_.index_key_dtype = "int8";
    model_.kv_cache_tokens = 4096;
    engine_ = std::make_unique<FakeEngine>(FakeEngineOptions{});
    StartServer(/*serving=*/true);
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
    server_.reset();
    engine_.reset();
  }

  void StartServer(bool serving) {
    api::ApiOptions options;
    options.grpc_listen = "127.0.0.1:0";
    options.http_listen = "127.0.0.1:0";
    options.http_threads = 8;
    options.stream_interval = stream_interval_;
    options.api_keys = api_keys_;
    options.http_max_threads = http_max_threads_;
    auto server = api::ApiServer::Start(options, engine_.get(), &model_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    if (serving) server_->SetServing(true);
    grpc_address_ = "127.0.0.1:" + std::to_string(server_->grpc_port());
    // Reconnect within a second (gRPC's default backoff grows to 120 s after a slow connect).
    // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS stays at its default: it is also how long one connection
    // attempt may take, and at 100 ms a handshake on a loaded machine was cut off ("tcp
    // handshaker shutdown") and the first call failed.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    stub_ = glm::inference::v1::Inference::NewStub(
        grpc::CreateCustomChannel(grpc_address_, grpc::InsecureChannelCredentials(), args));
  }

  // Restarts the server with streamed messages grouped by `interval` (--stream-interval).
  void RestartWithStreamInterval(scheduler::StreamInterval interval) {
    server_->Shutdown();
    server_.reset();
    stream_interval_ = interval;
    StartServer(/*serving=*/true);
  }

  std::vector<int32_t> Encode(const std::string& text) const {
    auto ids = tokenizer_->Encode(text, false);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<int32_t>{};
  }

  // The value of one series of /metrics, given as its name and labels exactly as rendered (e.g.
  // `glm:request_failures_total{model_name="glm5-tiny-code",reason="error"}`); 0 when absent.
  double MetricValue(const std::string& series) {
    httplib::Client client("127.0.0.1", server_->http_port());
    client.set_read_timeout(10, 0);
    auto res = client.Get("/metrics");
    EXPECT_TRUE(res && res->status == 200);
    if (!res) return -1;
    const std::string body = "\n" + res->body;
    const size_t at = body.find("\n" + series + " ");
    if (at == std::string::npos) return 0;
    return std::strtod(body.c_str() + at + 1 + series.size() + 1, nullptr);
  }
  static std::string Series(const std::string& name, const std::string& label, const std::string& value) {
    return name + "{model_name=\"glm5-tiny-code\"," + label + "=\"" + value + "\"}";
  }

  // The engine answers every request with `text`'s tokens, then EOS.
  void ScriptText(const std::string& text) {
    std::vector<int32_t> ids = Encode(text);
    engine_->SetScript([ids](const scheduler::GenerationRequest&) { return ids; });
  }

  static inline tokenizer::Tokenizer* tokenizer_ = nullptr;
  static inline tokenizer::ChatTemplate* chat_template_ = nullptr;
  api::ServedModel model_;
  scheduler::StreamInterval stream_interval_;
  std::vector<std::string> api_keys_;  // --api-key of the server StartServer starts
  int http_max_threads_ = 0;           // ApiOptions::http_max_threads of the server StartServer starts
  std::unique_ptr<FakeEngine> engine_;
  std::unique_ptr<api::ApiServer> server_;
  std::string grpc_address_;
  std::unique_ptr<glm::inference::v1::Inference::Stub> stub_;
};

}  // namespace glm::testing

#endif  // GLM_TESTS_COORDINATOR_API_API_TEST_FIXTURE_H_
