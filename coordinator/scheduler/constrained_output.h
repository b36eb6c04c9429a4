// The engine's side of structured outputs (GenerationRequest::constraint): the allowed-token
// bitmap each sample of a constrained sequence goes out with, and what a sampled token does to
// the format.
#ifndef GLM_COORDINATOR_SCHEDULER_CONSTRAINED_OUTPUT_H_
#define GLM_COORDINATOR_SCHEDULER_CONSTRAINED_OUTPUT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/scheduler/request.h"

namespace glm::scheduler {

// The tokens the next sample may take: the constraint's, plus the request's stop tokens (the
// model's EOS unless ignore_eos, and stop_token_ids) where the output may end there. A bitmap
// of `vocab` bits; all zero when nothing may follow.
std::string NextAllowedTokens(TokenConstraint& constraint, const SamplingOptions& options,
                              const std::vector<int32_t>& eos_token_ids, int64_t vocab);
bool AnyAllowed(const std::string& bitmap);

// After a constrained sequence's sampled token (not a stop token) went into the constraint:
// "" to go on (and *allowed holds the next bitmap), "stop" when the format is complete, or an
// error when the format cannot go on (a vocabulary without the bytes it needs next).
absl::Status AfterConstrainedToken(TokenConstraint& constraint, int32_t token, const SamplingOptions& options,
                                   const std::vector<int32_t>& eos_token_ids, int64_t vocab, std::string* allowed,
                                   std::string* finish_reason);

}  // namespace glm::scheduler

#endif  // GLM_COORDINATOR_SCHEDULER_CONSTRAINED_OUTPUT_H_
