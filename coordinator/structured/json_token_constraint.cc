#include "coordinator/structured/json_token_constraint.h"

#include "absl/strings/str_cat.h"

namespace glm::structured {

JsonTokenConstraint::JsonTokenConstraint(std::shared_ptr<OutputFormat> format)
    : format_(std::move(format)), matcher_(&format_->grammar()) {}

void JsonTokenConstraint::AllowedTokens(int64_t vocab, std::string* bitmap) {
  *bitmap = *format_->Mask(matcher_, vocab);
}

absl::Status JsonTokenConstraint::Accept(int32_t token) {
  const TokenVocabulary& v = format_->vocabulary();
  if (token < 0 || token >= v.size() || v.bytes(token).empty())
    return absl::InternalError(absl::StrCat("token ", token, " cannot appear in the requested output format"));
  if (!matcher_.Advance(v.bytes(token)))
    return absl::InternalError(absl::StrCat("token ", token, " breaks the requested output format"));
  return absl::OkStatus();
}

}  // namespace glm::structured
