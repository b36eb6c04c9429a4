// A regular expression compiled to a deterministic automaton over UTF-8 bytes, matched against a
// whole text: JSON Schema `pattern` and `format` of strings, and whole-output regexes (vLLM's
// guided_regex / structured_outputs.regex, guided_choice). The token masker steps it byte by byte,
// so a state is one int and every state can still reach a match (dead ends are pruned: a
// constrained output never walks into a state it cannot finish).
//
// Syntax, the subset ECMA-262 and Python share: literals; `.` (any character but \n, \r, U+2028,
// U+2029); classes [a-z], [^...]; \d \w \s and \D \W \S (ASCII, in classes too); escapes \n \t \r
// \f \v \0 \xHH \uHHHH \u{H...} and escaped punctuation; groups (...), (?:...), (?<name>...),
// (?P<name>...); alternation |; quantifiers * + ? {n} {n,} {n,m} and their lazy forms (the same
// language). The match is always of the whole text (what constrained decoders do), so ^ at the
// start and $ at the end are accepted and change nothing. Refused with a message that says why:
// backreferences, lookaround, \b \B, \p{...}, inline flags, anchors elsewhere, and patterns whose
// automaton would pass the size limits.
#ifndef GLM_COORDINATOR_STRUCTURED_REGEX_DFA_H_
#define GLM_COORDINATOR_STRUCTURED_REGEX_DFA_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace glm::structured {

class RegexDfa {
 public:
  static constexpr int kMaxPatternBytes = 8192;
  static constexpr int kMaxRepeat = 1000;       // n and m of {n,m}
  static constexpr int kMaxNfaStates = 200000;  // after repeats are expanded
  static constexpr int kMaxDfaStates = 4096;    // 1 KiB of transitions each

  struct Options {
    // The text is a JSON string's value: only characters a JSON string writes raw or with a short
    // escape (\b \f \n \r \t) may match, so no state waits for a character the writer cannot give.
    bool json_string = false;
  };

  // Errors are InvalidArgument and say what in the pattern is refused, with its offset.
  static absl::StatusOr<std::shared_ptr<const RegexDfa>> Compile(std::string_view pattern, Options options);
  static absl::StatusOr<std::shared_ptr<const RegexDfa>> Compile(std::string_view pattern) {
    return Compile(pattern, Options{});
  }

  // The state before any byte.
  int32_t start() const { return 0; }
  // The state after `byte`, or -1 when no match can follow.
  int32_t Next(int32_t state, uint8_t byte) const { return next_[static_cast<size_t>(state) * 256 + byte]; }
  // The bytes so far are a whole match.
  bool Accepting(int32_t state) const { return accepting_[state]; }
  // Some byte may follow.
  bool HasExits(int32_t state) const { return has_exits_[state]; }
  int32_t num_states() const { return static_cast<int32_t>(accepting_.size()); }
  // The fewest and the most characters (UTF-8 sequences; -1: no limit) from `state` to a match:
  // with a string's minLength / maxLength they keep a writer from running into a dead end.
  int64_t MinChars(int32_t state) const { return min_chars_[state]; }
  int64_t MaxChars(int32_t state) const { return max_chars_[state]; }
  // Whether a text of `chars` characters so far, in `state`, can still end in a match of
  // [min_chars, max_chars] characters in all (max_chars -1: any). Lengths a pattern skips (the
  // odd ones of (aa)*) are not seen: such a bound can still end in a refusal, never in a
  // mismatch.
  bool CanEndWithin(int32_t state, int64_t chars, int64_t min_chars, int64_t max_chars) const {
    if (state < 0 || (max_chars >= 0 && chars + MinChars(state) > max_chars)) return false;
    return MaxChars(state) < 0 || chars + MaxChars(state) >= min_chars;
  }
  // Whether the whole of `text` matches.
  bool Matches(std::string_view text) const;

 private:
  friend class RegexCompiler;
  std::vector<int32_t> next_;  // [state * 256 + byte]
  std::vector<bool> accepting_, has_exits_;
  std::vector<int64_t> min_chars_, max_chars_;
};

// `text` as a regex that matches it literally (guided_choice's alternatives).
std::string RegexEscape(std::string_view text);

}  // namespace glm::structured

#endif  // GLM_COORDINATOR_STRUCTURED_REGEX_DFA_H_
