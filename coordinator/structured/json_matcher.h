// Byte-at-a-time recogniser of the JSON texts a JsonGrammar allows: after any prefix of output it
// knows whether the prefix can still become a valid text, whether it already is one, and whether
// nothing may follow. A copyable value (a few small vectors), so the token masker can branch it
// over a vocabulary.
//
// Beyond the schema, bounds keep a model from running on forever inside one value and keep
// numbers readable by every client. Whitespace is at most one space between tokens, none before
// the value: given more, small models fill every gap with runs of spaces and newlines until
// max_tokens (outlines' default is the same; "{"a": 1, "b": [true]}" stays possible). Integer
// parts of at most 18 digits (int64 holds them), fractions of at most 24, exponents of at most 2
// (doubles hold 1e123); nesting at most kMaxDepth frames deep. Strings are valid UTF-8 with no unpaired surrogate escapes, so
// any strict parser reads the result.
#ifndef GLM_COORDINATOR_STRUCTURED_JSON_MATCHER_H_
#define GLM_COORDINATOR_STRUCTURED_JSON_MATCHER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/structured/cfg_matcher.h"
#include "coordinator/structured/json_grammar.h"

namespace glm::structured {

class JsonMatcher {
 public:
  static constexpr int kMaxWhitespaceRun = 1;
  static constexpr int kMaxIntegerDigits = 18;
  static constexpr int kMaxFractionDigits = 24;
  static constexpr int kMaxExponentDigits = 2;
  static constexpr int kMaxDepth = 48;
  static constexpr size_t kMaxStacks = 256;  // parses (anyOf branches) alive at once

  // Starts before the root value. `grammar` must outlive the matcher.
  explicit JsonMatcher(const JsonGrammar* grammar);

  // Feeds bytes; false (and the matcher is dead) when they cannot continue a valid text.
  bool Advance(uint8_t byte);
  bool Advance(std::string_view bytes);

  bool dead() const { return cfg_ ? cfg_->dead() : stacks_.empty(); }
  // Died of kMaxStacks (or the GBNF matcher's bounds), not of a byte the format refuses.
  bool over_bounds() const { return cfg_ ? cfg_->over_bounds() : over_bounds_; }
  // The output so far is a whole valid text (it may end here).
  bool CanEnd() const;
  // The output is a whole text and no byte may follow (a closed object, array or string).
  bool MustEnd() const;
  // The state as bytes: equal keys, equal futures (the masker's cache key).
  std::string Key() const;
  // Inside a JSON string (a value or a free key) between characters, one parse alive: any
  // string-safe token (TokenVocabulary) of at most *room code points continues it.
  bool InPlainString(int64_t* room) const;
  // A whole-output regex (GrammarNode::Kind::kText), one parse alive: its automaton and state, so
  // the masker can step the automaton alone (a byte continues the text iff dfa->Next is not -1).
  bool InPatternText(const RegexDfa** dfa, int32_t* state) const;
  // A GBNF grammar's matcher (the masker steps it alone), or null.
  const CfgMatcher* cfg() const { return cfg_ ? &*cfg_ : nullptr; }

 private:
  // One frame of a parse stack (POD: stacks are copied per vocabulary branch).
  struct Frame {
    uint8_t kind = 0;
    uint8_t phase = 0;
    uint8_t tag_guard = 0;  // string/raw text of a tool call: how much of a closing tag's text it ends with
    int32_t node = -1;
    int64_t a = 0;     // object: next property; array: items so far; string: code points; literal/key: bytes matched
    int64_t b = 0;     // object: current property; string: escape value / UTF-8 bytes left; number: digits in part
    uint64_t set = 0;  // key/literal: candidates still possible; string: the next UTF-8 byte's range
    int32_t re = 0;    // string with a pattern, pattern text: the RegexDfa's state
    bool operator==(const Frame& o) const {
      return kind == o.kind && phase == o.phase && tag_guard == o.tag_guard && node == o.node && a == o.a && b == o.b &&
             set == o.set && re == o.re;
    }
  };
  struct Stack {
    std::vector<Frame> frames;
    int32_t whitespace_run = 0;
    bool operator==(const Stack& o) const { return whitespace_run == o.whitespace_run && frames == o.frames; }
  };
  // What a frame did with a byte: kept it; finished with it (a closing byte) or before it (a
  // number ends at the byte after it); refused it; or opened a child frame that reads the byte
  // (kPush) or reads what follows it (kConsumedPush, e.g. a value after ':').
  enum class Step { kConsumed, kDoneConsumed, kDoneNotConsumed, kReject, kPush, kConsumedPush };

  // Advances one stack by `byte`, appending the surviving successors to `out` (anyOf branches).
  void AdvanceStack(Stack stack, uint8_t byte, std::vector<Stack>* out) const;
  // A value of `node` starting with `byte`: the frames it opens (one per matching anyOf branch).
  // `seen`: the anyOf options expanded so far (each once).
  void StartValue(int32_t node, uint8_t byte, std::vector<Frame>* starts, std::vector<int32_t>* seen,
                  int depth = 0) const;
  Step StepFrame(Frame& f, uint8_t byte, Frame* push) const;
  // The parent of a finished child: what it expects next; true when that finishes the parent too.
  bool ChildDone(Frame& parent, const Frame& child) const;
  // Whether the top frame can end here without consuming (numbers, prefix literals).
  bool AcceptsEnd(const Frame& f) const;
  bool WhitespaceAllowed(const Frame& f) const;

  const JsonGrammar* grammar_;
  bool guard_tags_ = false;  // a tool call: text may not spell GLM's closing tags (see TagGuardStep)
  std::vector<Stack> stacks_;
  bool over_bounds_ = false;
  std::optional<CfgMatcher> cfg_;  // a GBNF grammar (GrammarNode::Kind::kCfg root) instead of JSON
};

}  // namespace glm::structured

#endif  // GLM_COORDINATOR_STRUCTURED_JSON_MATCHER_H_
