// A scheduler::Engine for API tests: no cluster, one thread per request emitting a scripted
// token sequence with a configurable per-token delay. It honours max_tokens, stop_token_ids,
// EOS/ignore_eos, logprobs, prompt_logprobs (synthetic values) and Abort, and fails Submit with the codes the real engine uses
// (engine.h). It records what the front ends did (requests, aborts) for assertions.
#ifndef GLM_TESTS_COORDINATOR_API_FAKE_ENGINE_H_
#define GLM_TESTS_COORDINATOR_API_FAKE_ENGINE_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/scheduler/engine.h"

namespace glm::testing {

struct FakeEngineOptions {
  int32_t vocab_size = 4096;
  int64_t max_context = 4096;
  std::vector<int32_t> eos_token_ids = {0};
  absl::Duration token_delay = absl::Milliseconds(1);
  int32_t max_live = 64;  // live requests beyond this: RESOURCE_EXHAUSTED
  bool has_mtp = false;   // speculative "mtp:K" is refused without it, as the real engine does
  // The tokens a request produces before EOS; after the script, EOS is emitted (or, with
  // ignore_eos or without EOS ids, filler tokens until max_tokens). Default: 100, 101, ...
  std::function<std::vector<int32_t>(const scheduler::GenerationRequest&)> script;
};

class FakeEngine final : public scheduler::Engine {
 public:
  explicit FakeEngine(FakeEngineOptions options);
  ~FakeEngine() override;

  absl::StatusOr<std::shared_ptr<scheduler::RequestStream>> Submit(scheduler::GenerationRequest request) override;
  bool Abort(const std::string& request_id) override;
  scheduler::EngineLoad GetLoad() const override;
  std::map<int64_t, std::vector<int64_t>> ExpertRouting() const override {
    absl::MutexLock lock(&mu_);
    return routing_;
  }
  absl::Status RunLoop() override;
  void Shutdown(bool drain) override;
  bool draining() const override;

  // Test controls.
  void SetScript(std::function<std::vector<int32_t>(const scheduler::GenerationRequest&)> script);
  void SetTokenDelay(absl::Duration delay);
  void SetDraining(bool draining);
  void SetMaxLive(int32_t max_live);
  void SetExpertRouting(std::map<int64_t, std::vector<int64_t>> routing) {
    absl::MutexLock lock(&mu_);
    routing_ = std::move(routing);
  }
  // The next requests fail with `error` after `after_tokens` tokens (a cluster failure).
  void FailAfter(int after_tokens, absl::Status error);

  // Observations.
  std::vector<scheduler::GenerationRequest> requests() const;
  scheduler::GenerationRequest last_request() const;
  std::vector<std::string> abort_calls() const;
  // Waits until Abort(request_id) was called (true) or `timeout` passed (false).
  bool WaitForAbort(const std::string& request_id, absl::Duration timeout) const;
  int live() const;

 private:
  struct Live {
    std::shared_ptr<scheduler::RequestStream> stream;
    bool abort = false;
  };
  void Run(scheduler::GenerationRequest request, std::vector<int32_t> script, std::shared_ptr<Live> live);

  mutable absl::Mutex mu_;
  FakeEngineOptions options_;
  bool draining_ = false;
  bool shutdown_ = false;
  int fail_after_ = -1;
  absl::Status fail_error_;
  std::map<std::string, std::shared_ptr<Live>> live_;
  std::vector<scheduler::GenerationRequest> requests_;
  std::vector<std::string> abort_calls_;
  int64_t prompt_tokens_ = 0;
  int64_t generation_tokens_ = 0;
  std::vector<std::thread> threads_;
  std::map<int64_t, std::vector<int64_t>> routing_;  // ExpertRouting()
};

}  // namespace glm::testing

#endif  // GLM_TESTS_COORDINATOR_API_FAKE_ENGINE_H_
