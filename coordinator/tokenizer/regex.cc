#include "coordinator/tokenizer/regex.h"

#include <unicode/regex.h>
#include <unicode/utext.h>

#include "absl/strings/str_cat.h"

namespace glm::tokenizer {

std::string Regex::TranslateOniguruma(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 32);
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] != '\\' || i + 1 == p.size()) {
      out.push_back(p[i]);
      continue;
    }
    const char next = p[i + 1];
    ++i;
    switch (next) {
      case 's': out += "\\p{White_Space}"; break;
      case 'S': out += "\\P{White_Space}"; break;
      // Oniguruma's \h is a hex digit; ICU's is horizontal space.
      case 'h': out += "[0-9a-fA-F]"; break;
      case 'H': out += "[^0-9a-fA-F]"; break;
      default:
        out.push_back('\\');
        out.push_back(next);
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(std::string_view pattern) {
  auto regex = std::unique_ptr<Regex>(new Regex());
  regex->pattern_ = std::string(pattern);
  const std::string translated = TranslateOniguruma(pattern);
  UErrorCode status = U_ZERO_ERROR;
  UParseError parse_error;
  regex->compiled_.reset(icu::RegexPattern::compile(
      icu::UnicodeString::fromUTF8(translated), 0, parse_error, status));
  if (U_FAILURE(status) || regex->compiled_ == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot compile regex '", std::string(pattern),
                                                   "': ", u_errorName(status), " at offset ",
                                                   parse_error.offset));
  }
  return regex;
}

Regex::~Regex() = default;

std::unique_ptr<Regex::Matcher> Regex::NewMatcher() const {
  auto m = std::unique_ptr<Matcher>(new Matcher());
  UErrorCode status = U_ZERO_ERROR;
  m->matcher_.reset(compiled_->matcher(status));
  if (m->matcher_ != nullptr) m->matcher_->setTimeLimit(kMatchTimeLimit, status);
  return m;
}

Regex::Matcher::~Matcher() {
  if (utext_ != nullptr) utext_close(utext_);
}

absl::Status Regex::Matcher::FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) {
  out->clear();
  if (text.empty()) return absl::OkStatus();
  if (matcher_ == nullptr) return absl::InternalError("regex matcher could not be created");
  UErrorCode status = U_ZERO_ERROR;
  // Matching directly on UTF-8 makes ICU's native indices byte offsets: no conversion and no
  // index mapping back from UTF-16.
  utext_ = utext_openUTF8(utext_, text.data(), static_cast<int64_t>(text.size()), &status);
  if (U_SUCCESS(status)) {
    matcher_->reset(utext_);
    while (matcher_->find(status) && U_SUCCESS(status)) {
      const int64_t start = matcher_->start64(status);
      const int64_t end = matcher_->end64(status);
      if (U_FAILURE(status)) break;
      if (end > start) out->emplace_back(static_cast<size_t>(start), static_cast<size_t>(end));
    }
  }
  if (U_SUCCESS(status)) return absl::OkStatus();
  out->clear();
  return absl::InvalidArgumentError(absl::StrCat(
      "the tokenizer's regex failed on a ", text.size(), "-byte piece of the text: ", u_errorName(status),
      status == U_REGEX_TIME_OUT ? " (the pattern backtracks catastrophically on this text)" : ""));
}

}  // namespace glm::tokenizer
