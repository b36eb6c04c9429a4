// vLLM's allowed_token_ids as a TokenConstraint: every sampled token is one of a fixed set. The
// set is the whole choice: the stop tokens end the output only where the set holds them (CanEnd
// stays false, so the engine adds none), as vLLM masks every other logit.
#ifndef GLM_COORDINATOR_SCHEDULER_TOKEN_SET_CONSTRAINT_H_
#define GLM_COORDINATOR_SCHEDULER_TOKEN_SET_CONSTRAINT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/scheduler/token_constraint.h"

namespace glm::scheduler {

class TokenSetConstraint : public TokenConstraint {
 public:
  // `ids`: non-negative token ids (those past the model's vocabulary are never allowed).
  explicit TokenSetConstraint(std::vector<int32_t> ids);

  void AllowedTokens(int64_t vocab, std::string* bitmap) override;
  bool CanEnd() const override { return false; }
  bool MustEnd() const override { return false; }
  absl::Status Accept(int32_t token) override;
  std::shared_ptr<TokenConstraint> Clone() const override { return std::make_shared<TokenSetConstraint>(*this); }
  std::string WhyNothingFits() const override {
    return "allowed_token_ids: none of the ids is in this model's vocabulary";
  }
  bool NothingFitsEndsOutput() const override { return true; }

 private:
  std::vector<int32_t> ids_;  // sorted, unique
};

}  // namespace glm::scheduler

#endif  // GLM_COORDINATOR_SCHEDULER_TOKEN_SET_CONSTRAINT_H_
