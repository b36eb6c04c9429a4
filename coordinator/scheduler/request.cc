#include "coordinator/scheduler/request.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "coordinator/scheduler/engine_errors.h"

namespace glm::scheduler {

void RequestStream::SetInterval(const StreamInterval& interval) {
  absl::MutexLock lock(&mu_);
  interval_ = interval;
}

int32_t RequestStream::interval_tokens() const {
  absl::MutexLock lock(&mu_);
  return interval_.tokens;
}

bool RequestStream::ReadyLocked() const {
  if (events_.empty()) return false;
  if (released_ > 0 || interval_.tokens <= 1 || !taken_any_ || finished_pushed_) return true;
  return waiting_tokens_ >= interval_.tokens;
}

bool RequestStream::Next(GenerationEvent* event, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (finished_taken_) return false;
  const absl::Time deadline = absl::Now() + timeout;
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ReadyLocked(); };
  for (;;) {
    if (ReadyLocked()) break;
    // Not ready by count: the oldest waiting event's age may release the group.
    absl::Time until = deadline;
    const absl::Time now = absl::Now();
    if (!events_.empty()) {
      const absl::Time flush_at = events_.front().pushed + interval_.max_delay;
      if (now >= flush_at) break;
      until = std::min(until, flush_at);
    }
    if (now >= deadline) return false;
    mu_.AwaitWithDeadline(absl::Condition(&ready), until);
  }
  // A group is every event waiting now, except that the first event goes alone: the TTFT
  // message carries the first token even when the consumer woke after several were pushed.
  if (released_ == 0) released_ = taken_any_ ? events_.size() : 1;
  *event = std::move(events_.front().event);
  events_.pop_front();
  --released_;
  waiting_tokens_ -= static_cast<int64_t>(event->tokens.size());
  taken_any_ = true;
  if (event->finished) finished_taken_ = true;
  return true;
}

void RequestStream::Push(GenerationEvent event) {
  absl::MutexLock lock(&mu_);
  if (finished_pushed_) return;
  if (event.finished) finished_pushed_ = true;
  waiting_tokens_ += static_cast<int64_t>(event.tokens.size());
  events_.push_back(Waiting{std::move(event), absl::Now()});
}

bool RequestStream::finished() const {
  absl::MutexLock lock(&mu_);
  return finished_pushed_;
}

absl::Status ValidateSampling(const SamplingOptions& p, int32_t vocab_size) {
  for (int32_t t : p.stop_token_ids)
    if (t < 0 || t >= vocab_size)
      return absl::InvalidArgumentError(absl::StrCat("stop_token_ids: ", t, " is outside the vocabulary"));
  if (p.max_tokens < 0) return absl::InvalidArgumentError("max_tokens: must be >= 0");
  if (p.temperature < 0) return absl::InvalidArgumentError("temperature: must be >= 0");
  if (!(p.top_p > 0 && p.top_p <= 1)) return absl::InvalidArgumentError("top_p: must be in (0, 1]");
  if (p.top_k < 0) return absl::InvalidArgumentError("top_k: must be >= 0");
  if (p.min_p < 0 || p.min_p > 1) return absl::InvalidArgumentError("min_p: must be in [0, 1]");
  if (p.repetition_penalty <= 0) return absl::InvalidArgumentError("repetition_penalty: must be > 0");
  if (!(p.presence_penalty >= -2 && p.presence_penalty <= 2))
    return absl::InvalidArgumentError("presence_penalty: must be in [-2, 2]");
  if (!(p.frequency_penalty >= -2 && p.frequency_penalty <= 2))
    return absl::InvalidArgumentError("frequency_penalty: must be in [-2, 2]");
  for (const auto& [token, bias] : p.logit_bias) {
    if (token < 0 || token >= vocab_size)
      return absl::InvalidArgumentError(absl::StrCat("logit_bias: token ", token, " is outside the vocabulary"));
    if (!(bias >= -100 && bias <= 100))
      return absl::InvalidArgumentError(absl::StrCat("logit_bias: the bias of token ", token, " must be in [-100, 100]"));
  }
  if (p.min_tokens < 0) return absl::InvalidArgumentError("min_tokens: must be >= 0");
  if (p.max_tokens > 0 && p.min_tokens > p.max_tokens)
    return absl::InvalidArgumentError("min_tokens: must not exceed max_tokens");
  if (p.top_logprobs < 0 || p.top_logprobs > 20) return absl::InvalidArgumentError("top_logprobs: must be in [0, 20]");
  if (p.prompt_logprobs < -1 || p.prompt_logprobs > 20)
    return absl::InvalidArgumentError("prompt_logprobs: must be in [-1, 20]");
  return absl::OkStatus();
}

absl::Status ValidateRequest(const GenerationRequest& r, const RequestLimits& limits) {
  if (r.prompt.empty()) return absl::InvalidArgumentError("prompt: must not be empty");
  for (int32_t t : r.prompt)
    if (t < 0 || t >= limits.vocab_size)
      return absl::InvalidArgumentError(absl::StrCat("prompt: token id ", t, " is outside the vocabulary [0, ",
                                                     limits.vocab_size, ")"));
  for (int32_t t : r.prediction)  // drafts: fed to the model like the prompt
    if (t < 0 || t >= limits.vocab_size)
      return absl::InvalidArgumentError(absl::StrCat("prediction: token id ", t, " is outside the vocabulary [0, ",
                                                     limits.vocab_size, ")"));
  if (absl::Status valid = ValidateSampling(r.sampling, limits.vocab_size); !valid.ok()) return valid;
  // vLLM's rule: a priority asks for an order this server would not keep, so it is refused.
  if (r.priority != 0 && !limits.priority_scheduling)
    return absl::InvalidArgumentError(absl::StrCat(
        "priority: got ", r.priority, " but priority scheduling is not enabled (--scheduling-policy priority)"));
  const int64_t prompt_len = static_cast<int64_t>(r.prompt.size());
  const int64_t max_tokens = r.sampling.max_tokens;
  if (prompt_len >= limits.max_context)
    return absl::InvalidArgumentError(absl::StrCat("prompt: ", prompt_len, " tokens leave no room in the context of ",
                                                   limits.max_context));
  if (prompt_len + max_tokens > limits.max_context)
    return absl::InvalidArgumentError(absl::StrCat("max_tokens: prompt (", prompt_len, ") + max_tokens (", max_tokens,
                                                   ") exceeds the context of ", limits.max_context));
  // A sequence must fit the KV cache whole: one that could outgrow it would, once preempted, never
  // be admitted again, and would hold up every request queued behind it.
  if (prompt_len >= limits.kv_positions)
    return KvCacheExceededError(absl::StrCat("prompt: ", prompt_len, " tokens do not fit the KV cache (",
                                             limits.kv_positions, " positions, --kv-cache-gib)"));
  if (prompt_len + max_tokens > limits.kv_positions)
    return KvCacheExceededError(absl::StrCat("max_tokens: prompt (", prompt_len, ") + max_tokens (", max_tokens,
                                             ") exceeds the KV cache (", limits.kv_positions,
                                             " positions, --kv-cache-gib)"));
  return absl::OkStatus();
}

}  // namespace glm::scheduler
