#include "coordinator/scheduler/banned_sequences_constraint.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace glm::scheduler {

BannedSequencesConstraint::BannedSequencesConstraint(std::vector<std::vector<int32_t>> sequences,
                                                     std::shared_ptr<TokenConstraint> inner)
    : sequences_(std::move(sequences)), inner_(std::move(inner)) {
  sequences_.erase(std::remove_if(sequences_.begin(), sequences_.end(), [](const auto& s) { return s.empty(); }),
                   sequences_.end());
  for (const auto& s : sequences_) longest_ = std::max(longest_, s.size());
}

bool BannedSequencesConstraint::PrefixMatches(const std::vector<int32_t>& s) const {
  return s.size() - 1 <= tail_.size() &&
         std::equal(s.begin(), s.end() - 1, tail_.end() - static_cast<std::ptrdiff_t>(s.size() - 1));
}

bool BannedSequencesConstraint::Completes(int32_t token) const {
  return std::any_of(sequences_.begin(), sequences_.end(),
                     [&](const auto& s) { return s.back() == token && PrefixMatches(s); });
}

void BannedSequencesConstraint::AllowedTokens(int64_t vocab, std::string* bitmap) {
  const size_t bytes = static_cast<size_t>((vocab + 7) / 8);
  if (inner_ != nullptr) {
    inner_->AllowedTokens(vocab, bitmap);
    bitmap->resize(bytes, '\0');
    inner_allowed_any_ = std::any_of(bitmap->begin(), bitmap->end(), [](char c) { return c != 0; });
  } else {
    bitmap->assign(bytes, '\xff');
    if (vocab % 8 != 0) bitmap->back() = static_cast<char>((1 << (vocab % 8)) - 1);  // no bits past the vocabulary
  }
  // A sequence bans its last token where the output ends with the rest of it: one pass.
  for (const auto& s : sequences_) {
    const int32_t t = s.back();
    if (t >= 0 && t < vocab && PrefixMatches(s)) (*bitmap)[t >> 3] = static_cast<char>((*bitmap)[t >> 3] & ~(1 << (t & 7)));
  }
}

absl::Status BannedSequencesConstraint::Accept(int32_t token) {
  if (Completes(token)) return absl::InvalidArgumentError(absl::StrCat("token ", token, " completes one of bad_words"));
  if (inner_ != nullptr)
    if (absl::Status s = inner_->Accept(token); !s.ok()) return s;
  if (longest_ > 1) {
    tail_.push_back(token);
    if (tail_.size() > longest_ - 1) tail_.erase(tail_.begin());
  }
  return absl::OkStatus();
}

std::string BannedSequencesConstraint::WhyNothingFits() const {
  if (inner_ != nullptr && !inner_allowed_any_) return inner_->WhyNothingFits();
  return "bad_words: every token that may come next completes one of them";
}

bool BannedSequencesConstraint::NothingFitsEndsOutput() const {
  // Bans over the client's own token set (or over any token) may end the output; bans that cut a
  // format (a JSON schema, a grammar) short may not: the output would break the format.
  return inner_ == nullptr || inner_->NothingFitsEndsOutput();
}

std::shared_ptr<TokenConstraint> BannedSequencesConstraint::Clone() const {
  auto copy = std::make_shared<BannedSequencesConstraint>(*this);
  if (inner_ != nullptr) copy->inner_ = inner_->Clone();
  return copy;
}

}  // namespace glm::scheduler
