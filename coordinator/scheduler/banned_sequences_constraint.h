// vLLM's bad_words as a TokenConstraint: token sequences the output must never contain. A
// sequence of one token is never sampled; a longer one's last token is not sampled right after
// the output's last tokens spell the rest of it (the output's own tokens: vLLM does not look
// into the prompt). Wraps the request's other constraint (a format, allowed_token_ids), if any:
// the tokens it allows, less the banned ones; it decides where the output may or must end.
#ifndef GLM_COORDINATOR_SCHEDULER_BANNED_SEQUENCES_CONSTRAINT_H_
#define GLM_COORDINATOR_SCHEDULER_BANNED_SEQUENCES_CONSTRAINT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/scheduler/token_constraint.h"

namespace glm::scheduler {

class BannedSequencesConstraint : public TokenConstraint {
 public:
  // `sequences`: non-empty token sequences (ids past the model's vocabulary never match);
  // `inner`: the other constraint, or null (any token; the output may always end).
  BannedSequencesConstraint(std::vector<std::vector<int32_t>> sequences, std::shared_ptr<TokenConstraint> inner);

  void AllowedTokens(int64_t vocab, std::string* bitmap) override;
  bool CanEnd() const override { return inner_ == nullptr || inner_->CanEnd(); }
  bool MustEnd() const override { return inner_ != nullptr && inner_->MustEnd(); }
  absl::Status Accept(int32_t token) override;
  std::shared_ptr<TokenConstraint> Clone() const override;
  std::string WhyNothingFits() const override;
  bool NothingFitsEndsOutput() const override;

 private:
  // Whether the output so far ends with all of `s` but its last token.
  bool PrefixMatches(const std::vector<int32_t>& s) const;
  // Whether `token` would complete a banned sequence after the output so far.
  bool Completes(int32_t token) const;

  std::vector<std::vector<int32_t>> sequences_;
  std::shared_ptr<TokenConstraint> inner_;
  size_t longest_ = 0;          // tokens of the longest sequence
  std::vector<int32_t> tail_;   // the output's last longest_ - 1 tokens, oldest first
  bool inner_allowed_any_ = true;  // the last AllowedTokens: the inner constraint allowed a token
};

}  // namespace glm::scheduler

#endif  // GLM_COORDINATOR_SCHEDULER_BANNED_SEQUENCES_CONSTRAINT_H_
