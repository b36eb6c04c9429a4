#include "coordinator/scheduler/constrained_output.h"

#include <algorithm>

namespace glm::scheduler {

std::string NextAllowedTokens(TokenConstraint& constraint, const SamplingOptions& options,
                              const std::vector<int32_t>& eos_token_ids, int64_t vocab) {
  std::string bitmap;
  constraint.AllowedTokens(vocab, &bitmap);
  bitmap.resize((vocab + 7) / 8, '\0');
  if (constraint.CanEnd()) {
    auto allow = [&](int32_t t) {
      if (t >= 0 && t < vocab) bitmap[t >> 3] = static_cast<char>(bitmap[t >> 3] | (1 << (t & 7)));
    };
    if (!options.ignore_eos) std::for_each(eos_token_ids.begin(), eos_token_ids.end(), allow);
    std::for_each(options.stop_token_ids.begin(), options.stop_token_ids.end(), allow);
  }
  return bitmap;
}

bool AnyAllowed(const std::string& bitmap) {
  return std::any_of(bitmap.begin(), bitmap.end(), [](char c) { return c != 0; });
}

absl::Status AfterConstrainedToken(TokenConstraint& constraint, int32_t token, const SamplingOptions& options,
                                   const std::vector<int32_t>& eos_token_ids, int64_t vocab, std::string* allowed,
                                   std::string* finish_reason) {
  if (absl::Status s = constraint.Accept(token); !s.ok()) return s;
  finish_reason->clear();
  if (constraint.MustEnd()) {
    *finish_reason = "stop";
    return absl::OkStatus();
  }
  *allowed = NextAllowedTokens(constraint, options, eos_token_ids, vocab);
  if (AnyAllowed(*allowed)) return absl::OkStatus();
  // Complete, and ignore_eos left no token to end it with; or the client's allowed_token_ids /
  // bad_words leave nothing to follow: the output ends there, with the token just accepted.
  if (constraint.CanEnd() || constraint.NothingFitsEndsOutput()) {
    *finish_reason = "stop";
    return absl::OkStatus();
  }
  const std::string why = constraint.WhyNothingFits();
  return absl::InternalError(why.empty() ? "the output format cannot go on with this model's vocabulary" : why);
}

}  // namespace glm::scheduler
