// A compiled Unicode regular expression with Oniguruma-compatible semantics (the engine Hugging
// Face tokenizers uses), implemented on ICU. Patterns from tokenizer.json are rewritten where
// the two engines disagree: ICU's \s is [\t\n\f\r\p{Z}] while Oniguruma's is White_Space (adds
// \v and U+0085), so \s/\S become \p{White_Space}/\P{White_Space}.
#ifndef GLM_COORDINATOR_TOKENIZER_REGEX_H_
#define GLM_COORDINATOR_TOKENIZER_REGEX_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <unicode/regex.h>

namespace glm::tokenizer {

class Regex {
 public:
  // ICU's time limit for one match, in steps of its match engine (of the order of a
  // millisecond each): far above what any tokenizer pattern takes on real text (microseconds),
  // yet a catastrophically backtracking one stops within seconds instead of hanging the
  // coordinator's request thread.
  static constexpr int32_t kMatchTimeLimit = 5000;

  // Per-thread matching state. ICU matchers are not thread-safe, so each encode call makes its
  // own and reuses it for every piece (making one per piece would dominate encode time).
  class Matcher {
   public:
    ~Matcher();
    Matcher(const Matcher&) = delete;
    Matcher& operator=(const Matcher&) = delete;
    // Byte ranges [start, end) of the successive non-empty matches in `text` (valid UTF-8).
    // InvalidArgument when the match engine fails, e.g. one match runs past kMatchTimeLimit
    // (a pattern that backtracks catastrophically on this text) or its stack limit: a partial
    // list would tokenise the rest of the text differently without a word.
    absl::Status FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* out);

   private:
    friend class Regex;
    Matcher() = default;
    std::unique_ptr<icu::RegexMatcher> matcher_;
    UText* utext_ = nullptr;
  };

  static absl::StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern);
  ~Regex();

  std::unique_ptr<Matcher> NewMatcher() const;
  const std::string& pattern() const { return pattern_; }

  // The rewrite described above; exposed for tests.
  static std::string TranslateOniguruma(std::string_view pattern);

 private:
  Regex() = default;
  std::string pattern_;
  std::unique_ptr<icu::RegexPattern> compiled_;
};

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_REGEX_H_
