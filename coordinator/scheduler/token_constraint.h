// A request whose output must follow a format (structured outputs: a JSON schema): before each
// sampled token the engine asks which tokens may come next, and it feeds back the one chosen.
// Implemented above the scheduler (coordinator/structured), which knows token texts; the engine
// knows only ids. Used by one thread at a time: the API thread that submits the request, then
// the engine's loop.
#ifndef GLM_COORDINATOR_SCHEDULER_TOKEN_CONSTRAINT_H_
#define GLM_COORDINATOR_SCHEDULER_TOKEN_CONSTRAINT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"

namespace glm::scheduler {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // The tokens that may come next as a bitmap over the model's vocabulary: ceil(vocab / 8) bytes,
  // token t is bit t % 8 of byte t / 8 (the StepPlan's allowed_tokens). End-of-sequence tokens
  // are the engine's to add (see CanEnd).
  virtual void AllowedTokens(int64_t vocab, std::string* bitmap) = 0;
  // The output so far is complete: it may end here (the engine then allows its stop tokens).
  virtual bool CanEnd() const = 0;
  // The output is complete and nothing may follow it: the engine ends the request ("stop").
  virtual bool MustEnd() const = 0;
  // Feeds the token chosen (one AllowedTokens allowed). An error means it breaks the format.
  virtual absl::Status Accept(int32_t token) = 0;
  // An independent copy in the same state: a constraint holds one output's progress, so each of
  // a request's n choices needs its own.
  virtual std::shared_ptr<TokenConstraint> Clone() const = 0;
  // When AllowedTokens left nothing and the output cannot end: why, if the format knows better
  // than "no token of the vocabulary fits" (e.g. its matcher reached a bound); "" otherwise.
  // Called only on that failure path, so it may take some time.
  virtual std::string WhyNothingFits() const { return ""; }
  // When AllowedTokens left nothing and the output cannot end: true where the client's own token
  // rules ran out (allowed_token_ids, bad_words) — the engine then ends the output ("stop", as
  // for a format that must end), since nothing may follow under them; false where a format cannot
  // go on with the vocabulary (an error). WhyNothingFits then names the request's field.
  virtual bool NothingFitsEndsOutput() const { return false; }
};

}  // namespace glm::scheduler

#endif  // GLM_COORDINATOR_SCHEDULER_TOKEN_CONSTRAINT_H_
