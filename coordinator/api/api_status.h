// Validation errors that remember which request field they are about, so the HTTP front end can
// fill OpenAI's `param` and every message names the field. The field rides as a Status payload.
#ifndef GLM_COORDINATOR_API_API_STATUS_H_
#define GLM_COORDINATOR_API_API_STATUS_H_

#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace glm::api {

// INVALID_ARGUMENT "`field`: message" carrying `field`.
absl::Status InvalidField(absl::string_view field, absl::string_view message);
// An InvalidField status for a request that does not fit the model's context (prompt, or prompt +
// max_tokens): the OpenAI front end gives it OpenAI's code "context_length_exceeded", which
// client libraries (LiteLLM, LangChain) look for to trim the conversation or fall back.
// `overflow` carries the numbers, so another API can word the error its own way.
struct ContextOverflow {
  int64_t prompt_tokens = 0;
  int64_t max_tokens = 0;       // the completion asked for; 0 when the prompt alone does not fit
  int64_t context_tokens = 0;   // the model's context
};
absl::Status ContextLengthExceeded(absl::string_view field, absl::string_view message, ContextOverflow overflow);
bool ExceedsContext(const absl::Status& status);
// The numbers of a ContextLengthExceeded status (nullopt for any other).
std::optional<ContextOverflow> ContextOverflowOf(const absl::Status& status);
// The field of an InvalidField status, or of an engine request error (INVALID_ARGUMENT or
// RESOURCE_EXHAUSTED whose message starts "field: ", scheduler/engine.h); "" otherwise.
std::string FieldOf(const absl::Status& status);

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_API_STATUS_H_
