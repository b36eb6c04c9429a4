// The end-to-end tests' cluster: a real mpiexec job (coordinator + 2 shard_worker processes)
// serving the bundled model, started once per suite (Launch, with extra coordinator flags in the
// derived suites), with gRPC helpers and the single-process references it is compared with.
#ifndef GLM_TESTS_E2E_CLUSTER_E2E_FIXTURE_H_
#define GLM_TESTS_E2E_CLUSTER_E2E_FIXTURE_H_

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"
#include "protos/inference.grpc.pb.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/runtime/generator.h"
#include "tests/e2e/logged_ports.h"
#include "tests/prompt_logprobs.h"

namespace glm::e2e {

namespace pb = glm::inference::v1;

class ClusterE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { Launch("120"); }
  // Port 0 for both servers: the coordinator binds free ports itself and logs them, so tests
  // running in parallel cannot race for the same port. `coordinator_flags` go after the
  // standard ones (later flags win).
  static void Launch(const char* step_timeout_s, const std::vector<std::string>& coordinator_flags = {}) {
    // Every suite launches its own cluster; the statics are shared by the derived suites, so a
    // run of the whole binary (not one process per test, as ctest does) must not reuse the ports
    // of the previous suite's cluster.
    grpc_port_ = http_port_ = 0;
    ready_ = false;
    log_ = "/tmp/glm_e2e_" + std::to_string(getpid()) + ".log";
    // A log left by an earlier test process with the same (recycled) pid would hand this one its
    // dead ports until the child truncates the file: the cause of rare "the cluster did not come
    // up" failures on a busy CI machine (the server up, the test connecting elsewhere).
    std::remove(log_.c_str());
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      freopen(log_.c_str(), "w", stderr);
      freopen(log_.c_str(), "a", stdout);
      setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
      setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
      // A small KV cache (0.005 GiB ≈ 2000 positions) so the admission errors can be provoked.
      std::vector<std::string> args = {GLM_MPIEXEC, "--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
                                       "--mca", "btl", "self,vader", "--mca", "btl_vader_single_copy_mechanism",
                                       "none", "-np", "1", GLM_COORDINATOR_BIN, "--model", GLM_MODEL_DIR,
                                       "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                                       "--kv-cache-gib", "0.005", "--kv-block-size", "16", "--max-waiting", "64",
                                       "--step-timeout-s", step_timeout_s};
      args.insert(args.end(), coordinator_flags.begin(), coordinator_flags.end());
      for (const char* a : {":", "-np", "2", GLM_SHARD_WORKER_BIN, "--threads", "1"}) args.emplace_back(a);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(GLM_MPIEXEC, argv.data());
      _exit(127);
    }
    // Up to 300 s for mpirun + load: it normally takes ~1 s, but a clean-clone CI run once saw a
    // cluster print its ports after ~60 s (the old bound) with nothing wrong in its log.
    for (int i = 0; i < 3000 && (grpc_port_ == 0 || http_port_ == 0); ++i) {
      ReadLoggedPorts(log_, &grpc_port_, &http_port_);
      if (waitpid(pid_, nullptr, WNOHANG) != 0) return;  // the job ended: SetUp prints the log
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (grpc_port_ == 0 || http_port_ == 0) return;
    // Reconnect within a second: gRPC's default backoff (1 s growing 1.6x to 120 s) after one
    // slow first connect on a loaded CI machine could outlast the whole readiness wait below.
    // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS stays at its default: it also bounds one connection
    // attempt, and 100 ms cut off handshakes on a loaded machine.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    channel_ = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(grpc_port_), grpc::InsecureChannelCredentials(),
                                         args);
    stub_ = pb::Inference::NewStub(channel_);
    for (int i = 0; i < 600; ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
      pb::ModelInfo info;
      if (stub_->GetModelInfo(&ctx, pb::ModelInfoRequest(), &info).ok()) {
        ready_ = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  static void TearDownTestSuite() {
    std::remove(log_.c_str());
    if (pid_ > 0) {
      kill(pid_, SIGINT);
      for (int i = 0; i < 100 && waitpid(pid_, nullptr, WNOHANG) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      kill(-pid_, SIGKILL);
      waitpid(pid_, nullptr, WNOHANG);
    }
  }
  void SetUp() override {
    if (!ready_) {
      std::ifstream in(log_);
      std::string log((std::istreambuf_iterator<char>(in)), {});
      FAIL() << "the cluster did not come up; log:\n" << log;
    }
  }

  // Streams a Generate; returns the tokens, the final message, the status.
  struct Streamed {
    std::vector<int32_t> tokens;
    pb::GenerateResponse last;
    grpc::Status status;
    int messages = 0;
  };
  static Streamed Generate(const pb::GenerateRequest& req, grpc::ClientContext* ctx = nullptr,
                           int cancel_after_messages = -1) {
    grpc::ClientContext local;
    if (ctx == nullptr) ctx = &local;
    Streamed s;
    auto reader = stub_->Generate(ctx, req);
    pb::GenerateResponse r;
    while (reader->Read(&r)) {
      s.tokens.insert(s.tokens.end(), r.token_ids().begin(), r.token_ids().end());
      s.last = r;
      if (++s.messages == cancel_after_messages) ctx->TryCancel();
    }
    s.status = reader->Finish();
    return s;
  }
  static pb::GenerateRequest Ids(std::vector<int32_t> ids, int max_tokens) {
    pb::GenerateRequest req;
    req.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
    req.mutable_sampling()->set_max_tokens(max_tokens);
    req.mutable_sampling()->set_ignore_eos(true);
    return req;
  }
  static pb::LoadResponse Load() {
    grpc::ClientContext ctx;
    pb::LoadResponse load;
    stub_->GetLoad(&ctx, pb::LoadRequest(), &load);
    return load;
  }
  static bool WaitForAllBlocksFree() {
    for (int i = 0; i < 100; ++i) {
      pb::LoadResponse l = Load();
      if (l.kv_blocks_free() == l.kv_blocks_total() && l.running() == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // A shard_worker started by this test's mpirun (other tests may run clusters concurrently).
  static pid_t OurWorker() {
    pid_t worker = -1;
    if (FILE* p = popen(("pgrep -n -P " + std::to_string(pid_) + " shard_worker").c_str(), "r")) {
      char buf[64] = {0};
      if (fgets(buf, sizeof buf, p)) worker = atoi(buf);
      pclose(p);
    }
    return worker;
  }
  static std::vector<int32_t> Prompt(int seed, int len) {
    std::vector<int32_t> p;
    for (int i = 0; i < len; ++i) p.push_back((seed * 7919 + i * 104729 + i * i) % 4000 + 20);
    return p;
  }
  static std::vector<int32_t> LocalGreedy(const std::vector<int32_t>& prompt, int n) {
    auto ckpt = model::Checkpoint::Open(GLM_MODEL_DIR);
    auto weights = model::ModelWeights::Load(**ckpt);
    kernels::ThreadPool pool(1);
    auto m = model::Glm5Model::Create(std::shared_ptr<const model::ModelWeights>(std::move(*weights)), &pool);
    runtime::GenerateOptions g;
    g.max_new_tokens = n;
    g.ignore_eos = true;
    return runtime::Generate(**m, prompt, g)->tokens;
  }

  // Log-probabilities of prompt[1..] under the single-process engine (one full forward).
  static std::vector<double> LocalPromptLogprobs(const std::vector<int32_t>& prompt) {
    auto ckpt = model::Checkpoint::Open(GLM_MODEL_DIR);
    auto weights = model::ModelWeights::Load(**ckpt);
    kernels::ThreadPool pool(1);
    auto m = model::Glm5Model::Create(std::shared_ptr<const model::ModelWeights>(std::move(*weights)), &pool);
    auto cache = (*m)->NewCache();
    std::vector<model::SequenceInput> in(1);
    in[0].cache = cache.get();
    in[0].tokens = prompt;
    auto out = (*m)->Forward(in, model::LogitRows::kAll);
    return testing::PromptLogprobsFromLogits(out->logits, (*m)->config().vocab_size, prompt);
  }

  // `glmctl generate` in one process (the command line users compare a cluster with).
  static std::vector<int32_t> GlmctlGreedy(const std::vector<int32_t>& prompt, int n, const std::string& flags,
                                           const std::string& model_dir = GLM_MODEL_DIR) {
    std::string ids;
    for (int32_t t : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(t);
    const std::string cmd = std::string(GLM_GLMCTL_BIN) + " generate --model " + model_dir + " --tokens " + ids +
                            " --max-new-tokens " + std::to_string(n) + " --ignore-eos --json --threads 1 " + flags;
    std::string out;
    if (FILE* p = popen(cmd.c_str(), "r")) {
      char buf[4096];
      while (size_t got = fread(buf, 1, sizeof buf, p)) out.append(buf, got);
      pclose(p);
    }
    auto j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
    EXPECT_TRUE(j.is_object() && j.contains("tokens")) << cmd << " printed: " << out;
    return j.is_object() && j.contains("tokens") ? j["tokens"].get<std::vector<int32_t>>() : std::vector<int32_t>{};
  }
  static std::string ClusterLog() {
    std::ifstream in(log_);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }
  static int Occurrences(const std::string& text, const std::string& what) {
    int n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  }

  static inline pid_t pid_ = -1;
  static inline int grpc_port_ = 0, http_port_ = 0;
  static inline std::string log_;
  static inline bool ready_ = false;
  static inline std::shared_ptr<grpc::Channel> channel_;
  static inline std::unique_ptr<pb::Inference::Stub> stub_;
};

}  // namespace glm::e2e

#endif  // GLM_TESTS_E2E_CLUSTER_E2E_FIXTURE_H_
