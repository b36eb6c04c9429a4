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

std::string JsonTokenConstraint::WhyNothingFits() const {
  const CfgMatcher* cfg = matcher_.cfg();
  if (cfg == nullptr) {
    // One byte ahead, as below: a byte that leaves too many parses alive shows the cause.
    bool over = matcher_.over_bounds();
    for (int b = 0; b < 256 && !over; ++b) {
      JsonMatcher next = matcher_;
      next.Advance(static_cast<uint8_t>(b));
      over = next.over_bounds();
    }
    if (!over) return "";
    return absl::StrCat("the schema keeps more than ", JsonMatcher::kMaxStacks,
                        " alternatives (anyOf / $ref branches) alive at once here; make its branches fewer or "
                        "distinguishable by their first bytes");
  }
  bool over = cfg->over_bounds();
  // One byte ahead: a byte that no token starts with may still be what the grammar wants, but one
  // that throws the matcher past its bounds shows the cause (the masks dropped such tokens).
  for (int b = 0; b < 256 && !over; ++b) {
    CfgMatcher next = *cfg;
    next.Advance(static_cast<uint8_t>(b));
    over = next.over_bounds();
  }
  if (!over) return "";
  return absl::StrCat("the grammar matcher reached its limits here (more than ", CfgMatcher::kMaxStacks,
                      " parses alive at once, or nesting deeper than ", CfgMatcher::kMaxDepth,
                      "): the grammar is too ambiguous for this output (e.g. rules that can match nothing "
                      "next to each other); make it unambiguous");
}

}  // namespace glm::structured
