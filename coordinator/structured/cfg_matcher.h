// Byte-at-a-time recogniser of a CfgGrammar's language: after any prefix of output, whether it
// can still become a text `root` matches, whether it already is one, and whether nothing may
// follow. A copyable value, like JsonMatcher (which holds one for a GBNF grammar), so the token
// masker can branch it over a vocabulary.
//
// The state is the set of parse stacks that fit the bytes so far (llama.cpp's method): a stack
// is the positions still to match, the next one on top, always a code point set (rules are
// expanded as soon as they come up, which is why CfgGrammar refuses left recursion). A rule that
// ends its parent's sequence does not stay on the stack, so `list ::= item list | item` matches
// any length in constant stack depth. Bytes are strict UTF-8 (no overlong forms, surrogates or
// code points past U+10FFFF); a byte inside a multi-byte character keeps only the stacks whose
// set holds some character with that prefix, so a prefix is alive exactly when some text
// continues it.
//
// Bounds: a stack deeper than kMaxDepth (nesting in the output, e.g. parentheses) or more than
// kMaxStacks parses alive at once (a highly ambiguous grammar) end the match: the output stops
// there (the engine reports that the format cannot go on) instead of growing without limit.
#ifndef GLM_COORDINATOR_STRUCTURED_CFG_MATCHER_H_
#define GLM_COORDINATOR_STRUCTURED_CFG_MATCHER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/structured/cfg_grammar.h"

namespace glm::structured {

class CfgMatcher {
 public:
  static constexpr size_t kMaxDepth = 512;
  static constexpr size_t kMaxStacks = 1024;

  // Before any output. `grammar` must outlive the matcher.
  explicit CfgMatcher(const CfgGrammar* grammar);

  // Feeds bytes; false (and the matcher is dead) when they cannot continue a text of the grammar.
  bool Advance(uint8_t byte);
  bool Advance(std::string_view bytes);

  bool dead() const { return count_ == 0; }
  // Dead at a bound (kMaxDepth, kMaxStacks or the expansion work of one byte), not because the
  // bytes cannot continue a text of the grammar.
  bool over_bounds() const { return over_bounds_; }
  // The output so far is a whole text of the grammar.
  bool CanEnd() const;
  // It is, and no byte may follow.
  bool MustEnd() const;
  // The state as bytes: equal keys, equal futures (the masker's cache key).
  std::string Key() const;

 private:
  // Depth-first expansion of the stack in `stack` (changed, then restored) until each branch's top
  // is a code point set or the stack is empty (the text may end); every result is appended to
  // `out` as its length then its positions. False when a bound is exceeded.
  bool ExpandInto(std::vector<int32_t>& stack, std::vector<int32_t>& out, int64_t& budget) const;
  // Replaces the stacks with those in `out` (as ExpandInto writes them), sorted and unique.
  void SetStacks(const std::vector<int32_t>& out);
  void Die();
  void DieOverBounds() {
    Die();
    over_bounds_ = true;
  }

  const CfgGrammar* grammar_;
  // The parse stacks, one after another: each its length, then its positions bottom first (the
  // top, last, is the next to match). Sorted (shorter first among equal prefixes, so an empty
  // stack leads), no duplicates: equal states are equal vectors. One flat vector keeps a copy
  // to one allocation (the masker copies matchers per vocabulary branch).
  std::vector<int32_t> stacks_;
  int32_t count_ = 0;  // stacks in stacks_
  bool over_bounds_ = false;
  // A multi-byte character in progress: its bits so far and the continuation bytes still due.
  uint32_t partial_ = 0;
  int32_t partial_left_ = 0;
  int32_t partial_total_ = 0;  // the character's continuation bytes in all
};

}  // namespace glm::structured

#endif  // GLM_COORDINATOR_STRUCTURED_CFG_MATCHER_H_
