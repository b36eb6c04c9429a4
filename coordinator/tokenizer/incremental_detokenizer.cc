#include "coordinator/tokenizer/incremental_detokenizer.h"

#include "absl/strings/str_cat.h"
#include "coordinator/tokenizer/utf8.h"

namespace glm::tokenizer {
namespace {

bool EndsWithReplacement(const std::string& s) {
  return s.size() >= 3 && s.compare(s.size() - 3, 3, "\xEF\xBF\xBD") == 0;
}

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer* tokenizer,
                                               bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

absl::StatusOr<std::string> IncrementalDetokenizer::Push(int32_t id) {
  if (id < 0 || id >= tokenizer_->vocab_size() || !tokenizer_->IdToToken(id).has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown token id ", id, " (vocabulary size ",
                                                   tokenizer_->vocab_size(), ")"));
  }
  if (tokenizer_->decodes_per_token()) {
    if (skip_special_tokens_ && tokenizer_->IsSpecial(id)) return std::string();
    pending_ += tokenizer_->TokenBytes(id);
    const size_t n = CompletePrefixLength(pending_);
    std::string out = LossyUtf8(std::string_view(pending_).substr(0, n));
    pending_.erase(0, n);
    return out;
  }
  if (prefix_.empty() && !ids_.empty()) {
    auto p = tokenizer_->Decode(ids_, skip_special_tokens_);
    if (!p.ok()) return p.status();
    if (!EndsWithReplacement(*p)) {
      prefix_ = *std::move(p);
      prefix_index_ = ids_.size();
    }
  }
  ids_.push_back(id);
  auto text = tokenizer_->Decode(ids_, skip_special_tokens_);
  if (!text.ok()) {
    ids_.pop_back();
    return text.status();
  }
  if (text->size() <= prefix_.size() || EndsWithReplacement(*text) ||
      text->compare(0, prefix_.size(), prefix_) != 0) {
    return std::string();
  }
  std::string out = text->substr(prefix_.size());
  // Keep only the ids after the old prefix as context for the next window.
  const size_t new_prefix_index = ids_.size() - prefix_index_;
  ids_.erase(ids_.begin(), ids_.begin() + prefix_index_);
  auto p = tokenizer_->Decode(ids_, skip_special_tokens_);
  prefix_ = p.ok() ? *std::move(p) : std::string();
  prefix_index_ = new_prefix_index;
  return out;
}

std::string IncrementalDetokenizer::Flush() {
  if (tokenizer_->decodes_per_token()) {
    std::string out = LossyUtf8(pending_);
    pending_.clear();
    return out;
  }
  std::string out;
  auto text = tokenizer_->Decode(ids_, skip_special_tokens_);
  if (text.ok() && text->size() > prefix_.size() && text->compare(0, prefix_.size(), prefix_) == 0) {
    out = text->substr(prefix_.size());
  }
  ids_.clear();
  prefix_.clear();
  prefix_index_ = 0;
  return out;
}

}  // namespace glm::tokenizer
