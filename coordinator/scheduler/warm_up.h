// The startup warm-up: one server-side request (GenerationRequest::internal) through the whole
// serving path — coordinator, MPI, every worker's step, sampling, the MTP layer when speculation
// is on — before the server reports SERVING.
//
// Why: the first request after startup pays for first touches — per-thread scratch growing to
// a prompt's size and its page faults (a hypervisor exit each on the VMs here), the workers'
// step-path choosers' untimed first steps, cold code. On the bundled model, 2 vCPUs, a 512-token
// prompt's TTFT was 147 ms for the first request after startup and 46-51 ms for the next ones;
// after the default 512-token warm-up (134 ms at startup) the first one took 47 ms.
#ifndef GLM_COORDINATOR_SCHEDULER_WARM_UP_H_
#define GLM_COORDINATOR_SCHEDULER_WARM_UP_H_

#include <atomic>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/scheduler/engine.h"

namespace glm::scheduler {

struct WarmUpOptions {
  int32_t prompt_tokens = 512;  // the prompt (token ids spread over the vocabulary)
  int32_t new_tokens = 8;       // decode steps after it (greedy, EOS ignored)
  absl::Duration timeout = absl::Minutes(10);
  // Turned true when the engine loop has ended: stop waiting (CANCELLED) within ~0.1 s.
  const std::atomic<bool>* cancel = nullptr;
};

struct WarmUpResult {
  int32_t prompt_tokens = 0;
  int32_t new_tokens = 0;
  absl::Duration took;
};

// Runs the warm-up request on `engine` (whose loop must be running on another thread) and waits
// for it. The engine leaves it out of its request counters. Errors: the engine's Submit status,
// the request's own failure, DEADLINE_EXCEEDED after options.timeout (the request is aborted),
// CANCELLED once options.cancel is set.
absl::StatusOr<WarmUpResult> WarmUp(Engine* engine, int32_t vocab_size, const WarmUpOptions& options);

}  // namespace glm::scheduler

#endif  // GLM_COORDINATOR_SCHEDULER_WARM_UP_H_
