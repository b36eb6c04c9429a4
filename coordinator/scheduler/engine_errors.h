// Submit errors the front ends must tell apart beyond their status code.
#ifndef GLM_COORDINATOR_SCHEDULER_ENGINE_ERRORS_H_
#define GLM_COORDINATOR_SCHEDULER_ENGINE_ERRORS_H_

#include <string>

#include "absl/status/status.h"

namespace glm::scheduler {

// RESOURCE_EXHAUSTED `message` for a request that can never fit the KV cache (a retry cannot
// succeed, unlike a full queue's): ExceedsKvCache() is true for it.
absl::Status KvCacheExceededError(const std::string& message);
// Whether a Submit error is KvCacheExceededError's: the OpenAI front end answers it 400
// context_length_exceeded, not 429, which clients retry for ever.
bool ExceedsKvCache(const absl::Status& status);

inline constexpr char kShuttingDownMessage[] = "the server is shutting down";
// UNAVAILABLE kShuttingDownMessage: what requests the server ends or refuses because it
// stops get. IsShuttingDown() is true for it (a client's abort for the metrics, not a failure).
absl::Status ShuttingDownError();
bool IsShuttingDown(const absl::Status& status);

}  // namespace glm::scheduler

#endif  // GLM_COORDINATOR_SCHEDULER_ENGINE_ERRORS_H_
