#include "coordinator/scheduler/token_set_constraint.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace glm::scheduler {

TokenSetConstraint::TokenSetConstraint(std::vector<int32_t> ids) : ids_(std::move(ids)) {
  std::sort(ids_.begin(), ids_.end());
  ids_.erase(std::unique(ids_.begin(), ids_.end()), ids_.end());
}

void TokenSetConstraint::AllowedTokens(int64_t vocab, std::string* bitmap) {
  bitmap->assign(static_cast<size_t>((vocab + 7) / 8), '\0');
  for (int32_t id : ids_)
    if (id >= 0 && id < vocab) (*bitmap)[id >> 3] = static_cast<char>((*bitmap)[id >> 3] | (1 << (id & 7)));
}

absl::Status TokenSetConstraint::Accept(int32_t token) {
  if (std::binary_search(ids_.begin(), ids_.end(), token)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("token ", token, " is not among allowed_token_ids"));
}

}  // namespace glm::scheduler
