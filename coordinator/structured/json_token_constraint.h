// The engine's TokenConstraint for one request whose output must be JSON of a grammar: a
// JsonMatcher fed with the bytes of each generated token, masks from the shared OutputFormat.
#ifndef GLM_COORDINATOR_STRUCTURED_JSON_TOKEN_CONSTRAINT_H_
#define GLM_COORDINATOR_STRUCTURED_JSON_TOKEN_CONSTRAINT_H_

#include <memory>
#include <string>

#include "coordinator/scheduler/token_constraint.h"
#include "coordinator/structured/json_matcher.h"
#include "coordinator/structured/output_format.h"

namespace glm::structured {

class JsonTokenConstraint : public scheduler::TokenConstraint {
 public:
  explicit JsonTokenConstraint(std::shared_ptr<OutputFormat> format);

  void AllowedTokens(int64_t vocab, std::string* bitmap) override;
  bool CanEnd() const override { return matcher_.CanEnd(); }
  bool MustEnd() const override { return matcher_.MustEnd(); }
  absl::Status Accept(int32_t token) override;
  std::shared_ptr<scheduler::TokenConstraint> Clone() const override {
    return std::make_shared<JsonTokenConstraint>(*this);
  }
  // A GBNF grammar's matcher that is, or after some byte would be, past its bounds
  // (CfgMatcher::over_bounds: an ambiguous grammar, deep nesting) says so.
  std::string WhyNothingFits() const override;

 private:
  std::shared_ptr<OutputFormat> format_;
  JsonMatcher matcher_;
};

}  // namespace glm::structured

#endif  // GLM_COORDINATOR_STRUCTURED_JSON_TOKEN_CONSTRAINT_H_
