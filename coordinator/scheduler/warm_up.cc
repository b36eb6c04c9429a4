#include "coordinator/scheduler/warm_up.h"

#include "absl/strings/str_cat.h"

namespace glm::scheduler {

absl::StatusOr<WarmUpResult> WarmUp(Engine* engine, int32_t vocab_size, const WarmUpOptions& options) {
  if (vocab_size <= 0) return absl::InvalidArgumentError("warm-up: the vocabulary is empty");
  if (options.prompt_tokens <= 0 || options.new_tokens <= 0)
    return absl::InvalidArgumentError("warm-up: prompt_tokens and new_tokens must be positive");
  const absl::Time start = absl::Now();
  GenerationRequest r;
  r.request_id = absl::StrCat("glm-internal-warm-up-", absl::ToUnixNanos(start));
  r.internal = true;
  // Ids spread over the vocabulary (a stride coprime with common vocabulary sizes), so the
  // embedding rows and routed experts touched are varied rather than one row over and over.
  for (int32_t i = 0; i < options.prompt_tokens; ++i)
    r.prompt.push_back(static_cast<int32_t>((static_cast<int64_t>(i) * 7919 + 13) % vocab_size));
  r.sampling.max_tokens = options.new_tokens;
  r.sampling.ignore_eos = true;
  auto stream = engine->Submit(std::move(r));
  if (!stream.ok()) return stream.status();
  WarmUpResult result;
  result.prompt_tokens = options.prompt_tokens;
  const absl::Time deadline = start + options.timeout;
  for (;;) {
    GenerationEvent e;
    if (!(*stream)->Next(&e, absl::Milliseconds(100))) {
      if (options.cancel != nullptr && options.cancel->load()) return absl::CancelledError("warm-up: the engine stopped");
      if (absl::Now() < deadline) continue;
      engine->AbortStream(**stream);
      return absl::DeadlineExceededError(
          absl::StrCat("warm-up: no end after ", absl::FormatDuration(options.timeout)));
    }
    result.new_tokens += static_cast<int32_t>(e.tokens.size());
    if (!e.finished) continue;
    if (!e.error.ok()) return e.error;
    if (e.finish_reason != "length")
      return absl::AbortedError(absl::StrCat("warm-up: ended with '", e.finish_reason, "'"));
    result.took = absl::Now() - start;
    return result;
  }
}

}  // namespace glm::scheduler
