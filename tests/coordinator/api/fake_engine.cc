#include "tests/coordinator/api/fake_engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "shard_worker/runtime/speculative_sampling.h"

namespace glm::testing {

FakeEngine::FakeEngine(FakeEngineOptions options) : options_(std::move(options)) {}

FakeEngine::~FakeEngine() {
  Shutdown(false);
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
}

absl::StatusOr<std::shared_ptr<scheduler::RequestStream>> FakeEngine::Submit(scheduler::GenerationRequest request) {
  absl::MutexLock lock(&mu_);
  if (draining_ || shutdown_) return absl::UnavailableError("the engine is draining");
  if (request.prompt.empty()) return absl::InvalidArgumentError("prompt is empty");
  for (int32_t id : request.prompt)
    if (id < 0 || id >= options_.vocab_size)
      return absl::InvalidArgumentError(absl::StrCat("prompt token ", id, " is out of range"));
  if (static_cast<int64_t>(request.prompt.size()) + request.sampling.max_tokens > options_.max_context)
    return absl::InvalidArgumentError("prompt + max_tokens exceeds the context");
  // The real engine's parser and messages ("speculative: ..."), which name the field.
  auto spec = runtime::ParseSpeculative(request.speculative);
  if (!spec.ok()) return absl::InvalidArgumentError(absl::StrCat("speculative: ", spec.status().message()));
  if (spec->method == runtime::SpeculativeConfig::Method::kMtp && !options_.has_mtp)
    return absl::InvalidArgumentError("speculative: this model has no MTP layer");
  if (live_.count(request.request_id)) return absl::InvalidArgumentError("request_id: already running");
  if (static_cast<int32_t>(live_.size()) >= options_.max_live)
    return absl::ResourceExhaustedError(absl::StrCat("the queue is full (", live_.size(), " requests)"));
  std::vector<int32_t> script;
  if (options_.script) {
    script = options_.script(request);
  } else {
    for (int i = 0; i < 10; ++i) script.push_back(100 + i);
  }
  auto live = std::make_shared<Live>();
  live->stream = std::make_shared<scheduler::RequestStream>(request.request_id);
  live_[request.request_id] = live;
  requests_.push_back(request);
  prompt_tokens_ += static_cast<int64_t>(request.prompt.size());
  threads_.emplace_back([this, request, script = std::move(script), live]() mutable {
    Run(std::move(request), std::move(script), live);
  });
  return live->stream;
}

void FakeEngine::Run(scheduler::GenerationRequest request, std::vector<int32_t> script, std::shared_ptr<Live> live) {
  const scheduler::SamplingOptions& s = request.sampling;
  int64_t limit = options_.max_context - static_cast<int64_t>(request.prompt.size());
  if (s.max_tokens > 0) limit = std::min<int64_t>(limit, s.max_tokens);
  int fail_after;
  absl::Status fail_error;
  absl::Duration delay;
  {
    absl::MutexLock lock(&mu_);
    fail_after = fail_after_;
    fail_error = fail_error_;
    delay = options_.token_delay;
  }
  auto finish = [&](scheduler::GenerationEvent e) {
    live->stream->Push(std::move(e));
    absl::MutexLock lock(&mu_);
    live_.erase(request.request_id);
  };
  // Predicted outputs: an output token equal to the prediction's at its position counts as an
  // accepted prediction token, a different one as rejected (the real engine counts verified drafts).
  int32_t accepted = 0, rejected = 0;
  for (int64_t i = 0;; ++i) {
    bool aborted;
    {
      absl::MutexLock lock(&mu_);
      auto stop = [&] { return live->abort || shutdown_; };
      mu_.AwaitWithTimeout(absl::Condition(&stop), delay);
      aborted = live->abort || shutdown_;
    }
    if (aborted) {
      scheduler::GenerationEvent e;
      e.prompt_tokens = static_cast<int32_t>(request.prompt.size());
      e.completion_tokens = static_cast<int32_t>(i);
      e.finished = true;
      e.finish_reason = "abort";
      finish(std::move(e));
      return;
    }
    scheduler::GenerationEvent e;
    e.prompt_tokens = static_cast<int32_t>(request.prompt.size());
    if (fail_after >= 0 && i == fail_after) {
      e.finished = true;
      e.error = fail_error;
      finish(std::move(e));
      return;
    }
    int32_t token;
    if (i < static_cast<int64_t>(script.size())) {
      token = script[i];
    } else if (!options_.eos_token_ids.empty() && !s.ignore_eos) {
      token = options_.eos_token_ids[0];
    } else {
      token = 100 + static_cast<int32_t>(i % 50);
    }
    e.tokens = {token};
    if (i < static_cast<int64_t>(request.prediction.size())) ++(request.prediction[i] == token ? accepted : rejected);
    e.accepted_prediction_tokens = accepted;
    e.rejected_prediction_tokens = rejected;
    if (s.logprobs || s.top_logprobs > 0) {
      scheduler::TokenLogprob lp;
      lp.token = token;
      lp.logprob = -0.25f;
      for (int k = 0; k < s.top_logprobs; ++k) lp.top.emplace_back(k == 0 ? token : 100 + k, -0.25f - k);
      e.logprobs.push_back(lp);
    }
    e.completion_tokens = static_cast<int32_t>(i + 1);
    if (i == 0) {
      const absl::Time now = absl::Now();
      e.times = {now, now, now};  // no queue, no prefill time
    }
    if (i == 0 && s.prompt_logprobs >= 0) {
      // Prompt scoring: position p's logprob is -p / 8, its rank 10 + p, its alternatives the token
      // itself then 200, 201, ...
      for (size_t p = 1; p < request.prompt.size(); ++p) {
        scheduler::TokenLogprob lp;
        lp.token = request.prompt[p];
        lp.logprob = -static_cast<float>(p) / 8;
        lp.rank = 10 + static_cast<int32_t>(p);
        for (int k = 0; k < s.prompt_logprobs; ++k) lp.top.emplace_back(k == 0 ? lp.token : 199 + k, lp.logprob - k);
        e.prompt_logprobs.push_back(lp);
      }
    }
    {
      absl::MutexLock lock(&mu_);
      ++generation_tokens_;
    }
    const bool eos = !s.ignore_eos &&
                     std::find(options_.eos_token_ids.begin(), options_.eos_token_ids.end(), token) !=
                         options_.eos_token_ids.end();
    const bool stop_token = std::find(s.stop_token_ids.begin(), s.stop_token_ids.end(), token) != s.stop_token_ids.end();
    if (eos || stop_token || i + 1 >= limit) {
      e.finished = true;
      e.finish_reason = (eos || stop_token) ? "stop" : "length";
      finish(std::move(e));
      return;
    }
    live->stream->Push(std::move(e));
  }
}

bool FakeEngine::Abort(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  abort_calls_.push_back(request_id);
  auto it = live_.find(request_id);
  if (it == live_.end() || it->second->abort) return false;
  it->second->abort = true;
  return true;
}

scheduler::EngineLoad FakeEngine::GetLoad() const {
  absl::MutexLock lock(&mu_);
  scheduler::EngineLoad load;
  load.running = static_cast<int32_t>(live_.size());
  load.waiting = 0;
  load.kv_blocks_total = 100;
  load.kv_blocks_used = static_cast<int64_t>(live_.size());
  load.prompt_tokens_total = prompt_tokens_;
  load.generation_tokens_total = generation_tokens_;
  load.prefix_cache_queries = prompt_tokens_;
  load.steps = generation_tokens_;
  load.step_seconds_total = 0.5;
  // Speculative counters: position 0 drafted 10 times (8 kept), position 1 4 times (1 kept).
  load.spec_num_drafts = 10;
  load.spec_draft_tokens = 14;
  load.spec_accepted_tokens = 9;
  load.spec_drafted_per_pos = {10, 4};
  load.spec_accepted_per_pos = {8, 1};
  // Two worker ranks of a 2-stage pipeline, as the real engine collects them.
  for (int rank : {1, 2}) {
    shard::RankStats r;
    r.set_rank(rank);
    r.set_stage(rank - 1);
    r.set_steps(load.steps);
    r.set_step_seconds(0.25 * rank);
    r.set_comm_seconds(0.125);
    r.set_expert_bytes_read(1000 * rank);
    load.expert_bytes_total += r.expert_bytes_read();
    load.ranks.push_back(r);
  }
  return load;
}

absl::Status FakeEngine::RunLoop() {
  absl::MutexLock lock(&mu_);
  auto done = [this] { return shutdown_; };
  mu_.Await(absl::Condition(&done));
  return absl::OkStatus();
}

void FakeEngine::Shutdown(bool drain) {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  if (!drain) shutdown_ = true;
}

bool FakeEngine::draining() const {
  absl::MutexLock lock(&mu_);
  return draining_;
}

void FakeEngine::SetScript(std::function<std::vector<int32_t>(const scheduler::GenerationRequest&)> script) {
  absl::MutexLock lock(&mu_);
  options_.script = std::move(script);
}

void FakeEngine::SetTokenDelay(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  options_.token_delay = delay;
}

void FakeEngine::SetDraining(bool draining) {
  absl::MutexLock lock(&mu_);
  draining_ = draining;
}

void FakeEngine::SetMaxLive(int32_t max_live) {
  absl::MutexLock lock(&mu_);
  options_.max_live = max_live;
}

void FakeEngine::FailAfter(int after_tokens, absl::Status error) {
  absl::MutexLock lock(&mu_);
  fail_after_ = after_tokens;
  fail_error_ = std::move(error);
}

std::vector<scheduler::GenerationRequest> FakeEngine::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

scheduler::GenerationRequest FakeEngine::last_request() const {
  absl::MutexLock lock(&mu_);
  return requests_.empty() ? scheduler::GenerationRequest{} : requests_.back();
}

std::vector<std::string> FakeEngine::abort_calls() const {
  absl::MutexLock lock(&mu_);
  return abort_calls_;
}

bool FakeEngine::WaitForAbort(const std::string& request_id, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto seen = [&] {
    return std::find(abort_calls_.begin(), abort_calls_.end(), request_id) != abort_calls_.end();
  };
  return mu_.AwaitWithTimeout(absl::Condition(&seen), timeout);
}

int FakeEngine::live() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(live_.size());
}

}  // namespace glm::testing
