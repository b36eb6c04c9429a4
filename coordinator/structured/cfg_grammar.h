// A context-free grammar in GBNF, the notation of llama.cpp's `grammar` and of vLLM's
// `guided_grammar` / `structured_outputs.grammar` (xgrammar reads the same EBNF), compiled into
// the flat form CfgMatcher walks. Immutable once built; shared by every request that sends the
// same grammar text.
//
// Syntax (one rule per line; a rule may continue on the next lines inside parentheses or after a
// `|`, and a line that starts with `|` continues the rule above it):
//   name ::= alternative | alternative ...        names: letters, digits, '-' and '_'
//   "literal"   with \n \r \t \\ \" \' \[ \] \/ \xHH \uHHHH \UHHHHHHHH escapes
//   [a-z0-9_]   a character class (code points; ranges, escapes, [^...] negated)
//   .           any character
//   ( ... )     a group;  x* x+ x?  x{m} x{m,} x{m,n}  repetitions;  # comments to the line's end
// Output must match the rule `root` whole. Characters are Unicode code points written as UTF-8.
//
// Left recursion (`expr ::= expr "+" term | term`; also through other rules, `a ::= b "x" | "w"`
// with `b ::= a "y" | "z"`, and through rules that can be empty, `a ::= e a "x" | "y"` with
// `e ::= "" | "z"`), which llama.cpp refuses, is rewritten as right recursion with the same
// language: the matcher expands rules eagerly, as llama.cpp's does, and could not walk it.
// Refused with a message that names the place (line:column): syntax errors, undefined or twice-
// defined rules, no `root`, a `root` that can never finish, and grammars past the limits below
// (size, repetition counts, group nesting; the left recursion rewrite counts too).
// A repetition of something that can be empty (`("a"?)*`, which llama.cpp refuses as left
// recursion) repeats its non-empty texts: the same language.
// Alternatives that can never finish (through a rule that never does, or an empty class) are
// dropped, so the matcher never enters a prefix that no text completes.
#ifndef GLM_COORDINATOR_STRUCTURED_CFG_GRAMMAR_H_
#define GLM_COORDINATOR_STRUCTURED_CFG_GRAMMAR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace glm::structured {

// A set of code points as sorted, disjoint, non-adjacent inclusive ranges; never a surrogate
// (U+D800..U+DFFF, which UTF-8 cannot carry) and nothing past U+10FFFF.
class CodePointSet {
 public:
  static constexpr uint32_t kMaxCodePoint = 0x10FFFF;

  CodePointSet() = default;
  // From ranges in any order, overlapping or not; `negated`: every other code point instead.
  CodePointSet(std::vector<std::pair<uint32_t, uint32_t>> ranges, bool negated);

  bool Contains(uint32_t cp) const;
  // Whether any code point in [lo, hi] is in the set.
  bool Intersects(uint32_t lo, uint32_t hi) const;
  bool empty() const { return ranges_.empty(); }
  const std::vector<std::pair<uint32_t, uint32_t>>& ranges() const { return ranges_; }

 private:
  std::vector<std::pair<uint32_t, uint32_t>> ranges_;
};

// One element of a rule's flat form. A rule is its alternatives one after another, each a
// sequence of kClass / kRef elements closed by kAlt (more alternatives follow) or kEnd (the
// rule's last). An empty alternative is a bare kAlt / kEnd.
struct CfgElement {
  enum class Type : uint8_t { kEnd, kAlt, kRef, kClass };
  Type type = Type::kEnd;
  int32_t value = -1;  // kRef: the rule; kClass: the code point set
};

class CfgGrammar {
 public:
  // Limits on what a request may make the server build and walk.
  static constexpr int64_t kMaxTextBytes = 64 * 1024;
  static constexpr int32_t kMaxElements = 200000;  // after repetitions are spelt out
  static constexpr int64_t kMaxRepetition = 1000;  // m and n of x{m,n}
  static constexpr int kMaxNesting = 256;           // groups inside groups

  // Errors read "`field`: line L, column C: what" (InvalidArgument).
  static absl::StatusOr<std::shared_ptr<const CfgGrammar>> ParseGbnf(std::string_view text, const std::string& field);

  int32_t root() const { return root_; }
  int32_t num_rules() const { return static_cast<int32_t>(rule_start_.size()); }
  // All rules' elements, rule after rule; a position in a rule is an index into this.
  const std::vector<CfgElement>& elements() const { return elements_; }
  const CfgElement& element(int32_t position) const { return elements_[position]; }
  // Where rule r's first alternative starts.
  int32_t rule_start(int32_t rule) const { return rule_start_[rule]; }
  const CodePointSet& code_points(int32_t set) const { return sets_[set]; }
  // The rule's name as written; generated rules (groups, repetitions) read "name/N".
  const std::string& rule_name(int32_t rule) const { return names_[rule]; }
  // The grammar text as sent (the cache identity of what it compiles to).
  const std::string& text() const { return text_; }

 private:
  friend class GbnfParser;
  std::vector<CfgElement> elements_;
  std::vector<int32_t> rule_start_;
  std::vector<std::string> names_;
  std::vector<CodePointSet> sets_;
  int32_t root_ = -1;
  std::string text_;
};

}  // namespace glm::structured

#endif  // GLM_COORDINATOR_STRUCTURED_CFG_GRAMMAR_H_
