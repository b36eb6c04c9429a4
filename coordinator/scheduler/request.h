// A generation request as the scheduler sees it (token ids in, token ids out), and the stream
// of events it produces. The API layers (gRPC, OpenAI HTTP) tokenize, render chat templates,
// detokenize, match stop strings and parse tool calls around it.
#ifndef GLM_COORDINATOR_SCHEDULER_REQUEST_H_
#define GLM_COORDINATOR_SCHEDULER_REQUEST_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/scheduler/token_constraint.h"

namespace glm::scheduler {

struct SamplingOptions {
  float temperature = 0.0f;  // 0 = greedy
  float top_p = 1.0f;
  int32_t top_k = 0;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;   // prompt and output tokens
  float presence_penalty = 0.0f;     // output tokens, once each
  float frequency_penalty = 0.0f;    // output tokens, per occurrence
  std::vector<std::pair<int32_t, float>> logit_bias;  // (token, added to its logit)
  std::optional<uint64_t> seed;      // unset: the engine picks one (reported back)
  int32_t max_tokens = 0;            // 0 = until EOS or the context is full
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  // vLLM's min_tokens: none of the first min_tokens output tokens is a stop token (EOS,
  // stop_token_ids), and stop strings end the output only from its min_tokens-th token on.
  int32_t min_tokens = 0;
  int32_t top_logprobs = 0;          // alternatives per token
  bool logprobs = false;             // report the chosen token's log-probability
  // >= 0: also score the prompt — the log-probability of every prompt token after the first,
  // with this many alternatives (completions `echo`). Such a prompt is computed in full (no
  // prefix-cache reuse: a cached position has no logits).
  int32_t prompt_logprobs = -1;
};

// The sampling options' ranges: an InvalidArgument naming the first field out of range.
absl::Status ValidateSampling(const SamplingOptions& p, int32_t vocab_size);

struct GenerationRequest {
  std::string request_id;            // unique among live requests
  std::vector<int32_t> prompt;
  SamplingOptions sampling;
  absl::Time deadline = absl::InfiniteFuture();
  std::string speculative;  // "" = the server's default, "none", "mtp:K" or "ngram:K"
  // OpenAI's predicted outputs (`prediction`): tokens the output is expected to resemble. They
  // are drafts for prompt lookup: a request with a prediction and no method of its own speculates
  // with ngram:8 (MTP refuses one; "none" keeps none). The output is what it is without it.
  std::vector<int32_t> prediction;
  // The server's own request (the startup warm-up): left out of the request counters (prompt and
  // generation tokens, prefix-cache queries and hits, speculative acceptance).
  bool internal = false;
  // vLLM's cache_salt: the prefix cache is shared only among requests of the same salt.
  std::string cache_salt;
  // Structured outputs: the format the output must follow (none: free text). Such a request
  // does not speculate; it ends ("stop") once the format is complete.
  std::shared_ptr<TokenConstraint> constraint;
  // The request field that carried the format ("response_format", "guided_regex", "text.format",
  // "tool_choice", ...), which an admission error names.
  std::string constraint_field = "response_format";
  // vLLM's priority, under --scheduling-policy priority: lower values are admitted first, and a
  // running request of a higher value gives its slot and KV blocks up to a waiting one of a lower
  // value. Equal values keep arrival order. Must be 0 under the default fcfs policy.
  int32_t priority = 0;
};

// What a request must fit (ValidateRequest).
struct RequestLimits {
  int32_t vocab_size = 0;
  int64_t max_context = 0;     // prompt + max_tokens
  int64_t kv_positions = 0;    // the whole KV cache: a sequence must fit it alone
  bool priority_scheduling = false;  // --scheduling-policy priority (else a priority is refused)
};

// Engine::Submit's checks of a request before it queues: INVALID_ARGUMENT whose message starts
// with the request field ("prompt: ...", "max_tokens: ...", "priority: ..."), or
// KvCacheExceededError when the sequence could never fit the KV cache.
absl::Status ValidateRequest(const GenerationRequest& r, const RequestLimits& limits);

// When the engine queued a request (Submit), first scheduled it (its first admission) and produced
// its first token: TTFT without the API thread's wake-up, and vLLM's queue / prefill / decode
// time histograms. InfinitePast = not known.
struct RequestTimes {
  absl::Time queued = absl::InfinitePast();
  absl::Time scheduled = absl::InfinitePast();
  absl::Time first_token = absl::InfinitePast();
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // (token, logprob), best first
  int32_t rank = 0;  // prompt scoring: 1 + the tokens more likely there (0 elsewhere: not computed)
};

// One step's news for a request. The last event has finished = true.
struct GenerationEvent {
  std::vector<int32_t> tokens;       // new tokens (usually one)
  std::vector<TokenLogprob> logprobs;  // one per token when asked for
  // SamplingOptions::prompt_logprobs: on the first event, prompt positions 1 .. prompt_tokens-1.
  std::vector<TokenLogprob> prompt_logprobs;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;     // running count
  int32_t cached_tokens = 0;         // prompt tokens served from the prefix cache
  // Drafts taken from the request's prediction so far: kept in the output, and rejected.
  int32_t accepted_prediction_tokens = 0;
  int32_t rejected_prediction_tokens = 0;
  bool finished = false;
  std::string finish_reason;         // "stop" | "length" | "abort" (set when finished)
  absl::Status error;                // a failed request (finished = true)
  RequestTimes times;                // set on the event that carries the first token
};

// --stream-interval: how a consumer takes a request's events. A streamed token costs a thread
// wake-up, a message and a client wake-up; at sub-millisecond decode steps and many streams those
// cost more CPU than the step itself on a small host, so a consumer may take tokens in groups.
struct StreamInterval {
  // New tokens a consumer waits for before taking them; 1 = every event as it comes. The first
  // event (TTFT) and the finished one never wait.
  int32_t tokens = 1;
  // The longest a token waits for the group to fill (slow models keep streaming).
  absl::Duration max_delay = absl::Milliseconds(50);
};

// The consumer side of a request: events in order, then a finished one. Thread-safe.
class RequestStream {
 public:
  explicit RequestStream(std::string request_id) : request_id_(std::move(request_id)) {}
  const std::string& request_id() const { return request_id_; }

  // How Next groups events (default: each at once). Set by the consumer before it reads.
  void SetInterval(const StreamInterval& interval);
  int32_t interval_tokens() const;

  // Blocks until an event is ready or `timeout` passes (false). An event is ready when it is the
  // first or the finished one, or when the interval's tokens are waiting, or when the oldest
  // waiting event is the interval's max_delay old; the events waiting then are released together
  // (the first event alone: the TTFT message holds the first token however late the consumer
  // woke) and later calls return them without waiting (a consumer drains them with a zero timeout
  // and sends them as one message). After the finished event has been taken, returns false at once.
  bool Next(GenerationEvent* event, absl::Duration timeout = absl::InfiniteDuration());

  // Producer side (the engine).
  void Push(GenerationEvent event);
  bool finished() const;

 private:
  struct Waiting {
    GenerationEvent event;
    absl::Time pushed;
  };
  bool ReadyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::string request_id_;
  mutable absl::Mutex mu_;
  std::deque<Waiting> events_ ABSL_GUARDED_BY(mu_);
  StreamInterval interval_ ABSL_GUARDED_BY(mu_);
  int64_t waiting_tokens_ ABSL_GUARDED_BY(mu_) = 0;  // tokens in events_
  size_t released_ ABSL_GUARDED_BY(mu_) = 0;         // front events Next returns without waiting
  bool taken_any_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_pushed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_taken_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace glm::scheduler

#endif  // GLM_COORDINATOR_SCHEDULER_REQUEST_H_
