#include "coordinator/structured/cfg_grammar.h"

#include <algorithm>
#include <optional>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace glm::structured {

namespace {

constexpr uint32_t kSurrogateLo = 0xD800, kSurrogateHi = 0xDFFF;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

CodePointSet::CodePointSet(std::vector<std::pair<uint32_t, uint32_t>> ranges, bool negated) {
  // Clip to the code points UTF-8 carries, sort and merge.
  std::vector<std::pair<uint32_t, uint32_t>> clipped;
  for (auto [lo, hi] : ranges) {
    hi = std::min(hi, kMaxCodePoint);
    if (lo > hi) continue;
    if (lo < kSurrogateLo && hi > kSurrogateHi) {
      clipped.emplace_back(lo, kSurrogateLo - 1);
      clipped.emplace_back(kSurrogateHi + 1, hi);
    } else if (lo >= kSurrogateLo && hi <= kSurrogateHi) {
      continue;
    } else if (lo >= kSurrogateLo && lo <= kSurrogateHi) {
      clipped.emplace_back(kSurrogateHi + 1, hi);
    } else if (hi >= kSurrogateLo && hi <= kSurrogateHi) {
      clipped.emplace_back(lo, kSurrogateLo - 1);
    } else {
      clipped.emplace_back(lo, hi);
    }
  }
  std::sort(clipped.begin(), clipped.end());
  std::vector<std::pair<uint32_t, uint32_t>> merged;
  for (const auto& r : clipped) {
    if (!merged.empty() && r.first <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  if (!negated) {
    ranges_ = std::move(merged);
    return;
  }
  // The complement over [0, kMaxCodePoint] without the surrogates (re-clipped by the recursion).
  std::vector<std::pair<uint32_t, uint32_t>> complement;
  uint32_t next = 0;
  for (const auto& [lo, hi] : merged) {
    if (lo > next) complement.emplace_back(next, lo - 1);
    next = hi + 1;
  }
  if (next <= kMaxCodePoint) complement.emplace_back(next, kMaxCodePoint);
  *this = CodePointSet(std::move(complement), false);
}

bool CodePointSet::Contains(uint32_t cp) const { return Intersects(cp, cp); }

bool CodePointSet::Intersects(uint32_t lo, uint32_t hi) const {
  // The first range that ends at or after lo.
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), lo,
                             [](const std::pair<uint32_t, uint32_t>& r, uint32_t v) { return r.second < v; });
  return it != ranges_.end() && it->first <= hi;
}

// Recursive descent over the GBNF text into rules of alternatives of element sequences, then the
// checks (definitions, root, left recursion, a root that can finish) and the flat form.
class GbnfParser {
 public:
  GbnfParser(std::string_view text, const std::string& field) : text_(text), field_(field) {}

  absl::StatusOr<std::shared_ptr<const CfgGrammar>> Parse() {
    if (text_.size() > static_cast<size_t>(CfgGrammar::kMaxTextBytes))
      return absl::InvalidArgumentError(absl::StrCat(field_, ": the grammar is ", text_.size(), " bytes; at most ",
                                                     CfgGrammar::kMaxTextBytes, " are accepted"));
    for (;;) {
      SkipSpace(/*newlines=*/true);
      if (AtEnd()) break;
      if (auto s = ParseRule(); !s.ok()) return s;
    }
    if (rules_.empty()) return Error(0, "the grammar has no rules");
    for (size_t r = 0; r < rules_.size(); ++r)
      if (!rules_[r].defined) return Error(rules_[r].first_use, absl::StrCat("rule '", rules_[r].name, "' is not defined"));
    auto root = ids_.find("root");
    if (root == ids_.end()) return Error(0, "no rule is named root (the rule the whole output must match)");
    if (!RewriteLeftRecursion() || !RepeatOnlyNonEmpty()) return TooLarge(0);
    if (auto s = CheckLeftRecursion(); !s.ok()) return s;
    const std::vector<bool> productive = Productive();
    if (!productive[root->second])
      return Error(rules_[root->second].defined_at, "root can never finish: every alternative needs itself again");
    return Flatten(root->second, productive);
  }

 private:
  struct Rule {
    std::string name;
    std::vector<std::vector<CfgElement>> alternatives;
    bool defined = false;
    size_t defined_at = 0;
    size_t first_use = 0;
  };

  // ---- errors and positions ----
  absl::Status Error(size_t at, absl::string_view what) const {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < at && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else if ((static_cast<uint8_t>(text_[i]) & 0xC0) != 0x80) {
        ++column;
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(field_, ": line ", line, ", column ", column, ": ", what));
  }
  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek(size_t ahead = 0) const { return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0'; }

  // Spaces, tabs and comments; newlines (and \r) too when `newlines`.
  void SkipSpace(bool newlines) {
    while (!AtEnd()) {
      const char c = Peek();
      if (c == ' ' || c == '\t' || (newlines && (c == '\n' || c == '\r'))) {
        ++pos_;
      } else if (c == '#') {
        while (!AtEnd() && Peek() != '\n') ++pos_;
      } else if (c == '\r' && Peek(1) == '\n' && !newlines) {
        ++pos_;  // "\r\n" ends a line as "\n" does
      } else {
        break;
      }
    }
  }

  // ---- rules ----
  int32_t RuleId(const std::string& name, size_t at) {
    auto [it, inserted] = ids_.emplace(name, static_cast<int32_t>(rules_.size()));
    if (inserted) {
      rules_.push_back(Rule{name, {}, false, 0, at});
    }
    return it->second;
  }
  int32_t NewRule(const std::string& parent, size_t at) {
    const std::string name = absl::StrCat(parent, "/", ++generated_);
    const int32_t id = RuleId(name, at);
    rules_[id].defined = true;
    rules_[id].defined_at = at;
    return id;
  }

  absl::Status ParseRule() {
    const size_t start = pos_;
    while (!AtEnd() && IsNameChar(Peek())) ++pos_;
    if (pos_ == start) return Error(pos_, "expected a rule name");
    const std::string name(text_.substr(start, pos_ - start));
    SkipSpace(false);
    if (text_.substr(pos_, 3) != "::=") return Error(pos_, absl::StrCat("expected ::= after the rule name '", name, "'"));
    pos_ += 3;
    const int32_t id = RuleId(name, start);
    if (rules_[id].defined) return Error(start, absl::StrCat("rule '", name, "' is defined twice"));
    rules_[id].defined = true;
    rules_[id].defined_at = start;
    current_ = name;
    SkipSpace(true);
    auto alternatives = ParseAlternatives(/*nested=*/false);
    if (!alternatives.ok()) return alternatives.status();
    rules_[id].alternatives = *std::move(alternatives);
    SkipSpace(false);
    if (!AtEnd() && Peek() != '\n' && Peek() != '\r') return Error(pos_, absl::StrCat("unexpected '", std::string(1, Peek()), "'"));
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::vector<CfgElement>>> ParseAlternatives(bool nested) {
    std::vector<std::vector<CfgElement>> alternatives;
    for (;;) {
      auto sequence = ParseSequence(nested);
      if (!sequence.ok()) return sequence.status();
      alternatives.push_back(*std::move(sequence));
      SkipSpace(nested);
      if (Peek() == '|') {
        ++pos_;
        SkipSpace(true);
        continue;
      }
      if (!nested) {
        // A line that starts with '|' continues this rule.
        const size_t saved = pos_;
        SkipSpace(true);
        if (Peek() == '|') {
          ++pos_;
          SkipSpace(true);
          continue;
        }
        pos_ = saved;
      }
      return alternatives;
    }
  }

  absl::StatusOr<std::vector<CfgElement>> ParseSequence(bool nested) {
    std::vector<CfgElement> seq;
    for (;;) {
      SkipSpace(nested);
      if (AtEnd()) return seq;
      const char c = Peek();
      if (c == '|' || c == ')' || c == '\n' || c == '\r') return seq;
      const size_t item_at = pos_;
      const size_t first = seq.size();
      if (c == '"') {
        ++pos_;
        for (;;) {
          if (AtEnd() || Peek() == '\n') return Error(item_at, "unterminated literal (no closing \")");
          if (Peek() == '"') {
            ++pos_;
            break;
          }
          auto cp = ParseChar();
          if (!cp.ok()) return cp.status();
          seq.push_back({CfgElement::Type::kClass, AddSet(CodePointSet({{*cp, *cp}}, false))});
        }
      } else if (c == '[') {
        auto set = ParseClass();
        if (!set.ok()) return set.status();
        seq.push_back({CfgElement::Type::kClass, AddSet(*std::move(set))});
      } else if (c == '.') {
        ++pos_;
        seq.push_back({CfgElement::Type::kClass, AddSet(CodePointSet({}, /*negated=*/true))});
      } else if (IsNameChar(c)) {
        const size_t start = pos_;
        while (!AtEnd() && IsNameChar(Peek())) ++pos_;
        seq.push_back({CfgElement::Type::kRef, RuleId(std::string(text_.substr(start, pos_ - start)), start)});
      } else if (c == '(') {
        // The parser recurses per group: a bound keeps a hostile grammar from its stack.
        if (nesting_ == CfgGrammar::kMaxNesting)
          return Error(item_at, absl::StrCat("groups are nested more than ", CfgGrammar::kMaxNesting, " deep"));
        ++pos_;
        SkipSpace(true);
        ++nesting_;
        auto alternatives = ParseAlternatives(/*nested=*/true);
        --nesting_;
        if (!alternatives.ok()) return alternatives.status();
        SkipSpace(true);
        if (Peek() != ')') return Error(item_at, "unclosed group (no matching ')')");
        ++pos_;
        const int32_t group = NewRule(current_, item_at);
        rules_[group].alternatives = *std::move(alternatives);
        seq.push_back({CfgElement::Type::kRef, group});
      } else {
        return Error(pos_, absl::StrCat("unexpected '", std::string(1, c), "'"));
      }
      SkipSpace(nested);
      const char post = Peek();
      if (post == '*' || post == '+' || post == '?' || post == '{') {
        if (auto s = ApplyRepetition(item_at, first, &seq); !s.ok()) return s;
      }
      if ((elements_ += static_cast<int64_t>(seq.size() - first)) > CfgGrammar::kMaxElements)
        return TooLarge(item_at);
    }
  }

  absl::Status TooLarge(size_t at) const {
    return Error(at, absl::StrCat("the grammar is too large once its repetitions and left recursion are spelt out",
                                  " (over ", CfgGrammar::kMaxElements, " elements)"));
  }

  // The item seq[first..] with the postfix at pos_: one element P (a literal of several
  // characters becomes a rule of its own), then x* as R ::= P R | "", x+ as P R, x? as
  // R ::= P | "", x{m,n} as m copies of P and a chain of n - m optional ones.
  absl::Status ApplyRepetition(size_t item_at, size_t first, std::vector<CfgElement>* seq) {
    const char post = Peek();
    int64_t min = 0, max = -1;
    if (post == '*') {
      ++pos_;
    } else if (post == '+') {
      ++pos_;
      min = 1;
    } else if (post == '?') {
      ++pos_;
      max = 1;
    } else {
      const size_t brace = pos_++;
      auto number = [&]() -> int64_t {
        SkipSpace(false);
        int64_t v = -1;
        while (!AtEnd() && Peek() >= '0' && Peek() <= '9') {
          v = (v < 0 ? 0 : v) * 10 + (Peek() - '0');
          if (v > CfgGrammar::kMaxRepetition) v = CfgGrammar::kMaxRepetition + 1;
          ++pos_;
        }
        SkipSpace(false);
        return v;
      };
      min = number();
      if (min < 0) return Error(brace, "expected a count in {m}, {m,} or {m,n}");
      max = min;
      if (Peek() == ',') {
        ++pos_;
        max = number();  // -1: no upper bound
      }
      if (Peek() != '}') return Error(brace, "expected } to close the repetition");
      ++pos_;
      if (min > CfgGrammar::kMaxRepetition || max > CfgGrammar::kMaxRepetition)
        return Error(brace, absl::StrCat("a repetition count is over ", CfgGrammar::kMaxRepetition));
      if (max >= 0 && max < min) return Error(brace, absl::StrCat("{", min, ",", max, "}: the maximum is below the minimum"));
    }
    std::vector<CfgElement> item(seq->begin() + static_cast<std::ptrdiff_t>(first), seq->end());
    seq->resize(first);
    CfgElement p = item.size() == 1 ? item[0] : CfgElement{};
    if (item.size() != 1) {
      const int32_t wrapped = NewRule(current_, item_at);
      rules_[wrapped].alternatives = {std::move(item)};
      p = {CfgElement::Type::kRef, wrapped};
    }
    for (int64_t i = 0; i < min; ++i) seq->push_back(p);
    if (max < 0) {
      const int32_t star = NewRule(current_, item_at);
      rules_[star].alternatives = {{p, {CfgElement::Type::kRef, star}}, {}};
      seq->push_back({CfgElement::Type::kRef, star});
      stars_.push_back(star);
    } else if (max > min) {
      // Innermost first: O_k ::= P | "", O_i ::= P O_{i+1} | "".
      int32_t inner = -1;
      for (int64_t i = max - min; i > 0; --i) {
        const int32_t opt = NewRule(current_, item_at);
        std::vector<CfgElement> body = {p};
        if (inner >= 0) body.push_back({CfgElement::Type::kRef, inner});
        rules_[opt].alternatives = {std::move(body), {}};
        inner = opt;
      }
      seq->push_back({CfgElement::Type::kRef, inner});
      elements_ += 3 * (max - min);
    }
    if (elements_ + static_cast<int64_t>(seq->size()) > CfgGrammar::kMaxElements) return TooLarge(item_at);
    return absl::OkStatus();
  }

  // One character of a literal or class: an escape or a UTF-8 character of the text.
  absl::StatusOr<uint32_t> ParseChar() {
    const size_t at = pos_;
    const uint8_t c = static_cast<uint8_t>(Peek());
    if (c == '\\') {
      ++pos_;
      const char e = Peek();
      ++pos_;
      switch (e) {
        case 'n': return uint32_t{'\n'};
        case 'r': return uint32_t{'\r'};
        case 't': return uint32_t{'\t'};
        case '\\': case '"': case '\'': case '[': case ']': case '/': case '-': case '^':
          return static_cast<uint32_t>(e);
        case 'x': case 'u': case 'U': {
          const int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t v = 0;
          for (int i = 0; i < digits; ++i) {
            const int h = HexValue(Peek());
            if (h < 0) return Error(at, absl::StrCat("\\", std::string(1, e), " needs ", digits, " hex digits"));
            v = v * 16 + static_cast<uint32_t>(h);
            ++pos_;
          }
          if (v > CodePointSet::kMaxCodePoint || (v >= kSurrogateLo && v <= kSurrogateHi))
            return Error(at, "the escape is not a Unicode scalar value (a surrogate or past U+10FFFF)");
          return v;
        }
        default:
          return Error(at, absl::StrCat("unknown escape \\", e == '\0' ? std::string() : std::string(1, e)));
      }
    }
    // UTF-8 in the grammar text.
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || pos_ + len > text_.size()) return Error(at, "the grammar is not valid UTF-8 here");
    uint32_t v = len == 1 ? c : c & (0xFF >> (len + 1));
    for (int i = 1; i < len; ++i) {
      const uint8_t b = static_cast<uint8_t>(text_[pos_ + i]);
      if ((b & 0xC0) != 0x80) return Error(at, "the grammar is not valid UTF-8 here");
      v = (v << 6) | (b & 0x3F);
    }
    constexpr uint32_t kLeast[5] = {0, 0, 0x80, 0x800, 0x10000};  // no overlong forms
    if (v < kLeast[len] || v > CodePointSet::kMaxCodePoint || (v >= kSurrogateLo && v <= kSurrogateHi))
      return Error(at, "the grammar is not valid UTF-8 here");
    pos_ += len;
    return v;
  }

  absl::StatusOr<CodePointSet> ParseClass() {
    const size_t at = pos_++;  // '['
    bool negated = false;
    if (Peek() == '^') {
      negated = true;
      ++pos_;
    }
    std::vector<std::pair<uint32_t, uint32_t>> ranges;
    for (;;) {
      if (AtEnd() || Peek() == '\n') return Error(at, "unterminated character class (no closing ])");
      if (Peek() == ']') {
        ++pos_;
        break;
      }
      auto lo = ParseChar();
      if (!lo.ok()) return lo.status();
      uint32_t hi = *lo;
      if (Peek() == '-' && Peek(1) != ']' && Peek(1) != '\0') {
        ++pos_;
        auto end = ParseChar();
        if (!end.ok()) return end.status();
        if (*end < *lo) return Error(at, "a range in the class ends below its start");
        hi = *end;
      }
      ranges.emplace_back(*lo, hi);
    }
    return CodePointSet(std::move(ranges), negated);
  }

  int32_t AddSet(CodePointSet set) {
    sets_.push_back(std::move(set));
    return static_cast<int32_t>(sets_.size() - 1);
  }

  // ---- checks ----
  // The least fixpoint of "some alternative has every element `holds`": the rules that can be
  // empty (no class holds) or can finish (a class holds when it has a character).
  std::vector<bool> RulesWhere(bool classes_hold) const {
    std::vector<bool> rules(rules_.size(), false);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < rules_.size(); ++r) {
        if (rules[r]) continue;
        for (const auto& alt : rules_[r].alternatives) {
          if (std::all_of(alt.begin(), alt.end(), [&](const CfgElement& e) {
                return e.type == CfgElement::Type::kRef ? rules[e.value] : classes_hold && !sets_[e.value].empty();
              })) {
            rules[r] = changed = true;
            break;
          }
        }
      }
    }
    return rules;
  }
  std::vector<bool> Nullable() const { return RulesWhere(false); }
  std::vector<bool> Productive() const { return RulesWhere(true); }

  // Left recursion at the first element of alternatives, which the matcher's eager expansion
  // cannot walk, is rewritten as right recursion (the same language):
  //  - direct, the textbook form of a left-associative operator (`expr ::= expr "+" term | term`):
  //      A ::= A t1 | ... | A tm | b1 | ... | bn   becomes   A ::= b1 S | ... | bn S,
  //      S ::= T S | "",  T ::= t1 | ... | tm
  //    (one of the b, then any number of the t). S is a repetition like x*'s, so a T that can be
  //    empty (`A ::= A "x"? | "y"`) repeats only its non-empty texts (RepeatOnlyNonEmpty, after this);
  //  - through other rules (`a ::= b "x" | "w"`, `b ::= a "y" | "z"`): within each cycle of such
  //    rules, taken in a fixed order, a rule's alternatives that begin with an earlier rule of the
  //    cycle get that rule's (already rewritten) alternatives spelt out in its place, which leaves
  //    only direct left recursion (Paull's algorithm; spelling out a rule never changes a language).
  //  - through rules that can be empty (`a ::= e a "x" | "y"` with `e ::= "" | "z"`): first, in the
  //    rules of such cycles, an alternative that begins with a rule that can be empty becomes two,
  //    one with that rule's non-empty texts first (NonEmpty) and one without it, until none of
  //    their alternatives begins with such a rule: the cycle is then one of the kinds above.
  // CheckLeftRecursion then guards that none is left. False past kMaxElements.
  bool RewriteLeftRecursion() {
    if (!SplitEmptyLeads()) return false;
    std::unordered_map<int32_t, int32_t> position;  // rule -> its place in its cycle
    for (const std::vector<int32_t>& cycle : LeftCycles(nullptr)) {
      position.clear();
      for (size_t i = 0; i < cycle.size(); ++i) position[cycle[i]] = static_cast<int32_t>(i);
      for (size_t i = 0; i < cycle.size(); ++i)
        if (!SpellOutEarlier(cycle[i], static_cast<int32_t>(i), position) || !RewriteDirect(cycle[i])) return false;
    }
    return elements_ <= CfgGrammar::kMaxElements;
  }

  // In the rules on left-recursive cycles through rules that can be empty: every alternative
  // X1 X2 ... whose X1 can be empty becomes X1' X2 ... (X1' its non-empty texts) and X2 ...,
  // again until no alternative begins with a rule that can be empty (the same language).
  bool SplitEmptyLeads() {
    const std::vector<bool> nullable = Nullable();
    std::unordered_map<int32_t, int32_t> non_empty;  // rule -> its non-empty version, built once
    using Alternatives = std::vector<std::vector<CfgElement>>;
    for (const std::vector<int32_t>& cycle : LeftCycles(&nullable)) {
      for (int32_t r : cycle) {
        auto split = [&](const std::vector<CfgElement>& alt) -> std::optional<Alternatives> {
          if (alt.empty() || alt[0].type != CfgElement::Type::kRef ||
              static_cast<size_t>(alt[0].value) >= nullable.size() || !nullable[alt[0].value])
            return std::nullopt;
          std::vector<CfgElement> led = alt;
          led[0].value = NonEmpty(alt[0].value, nullable, non_empty);  // may read rule r: any version will do
          return Alternatives{std::move(led), std::vector<CfgElement>(alt.begin() + 1, alt.end())};
        };
        if (!RewriteAlternatives(r, split)) return false;
      }
    }
    return elements_ <= CfgGrammar::kMaxElements;
  }

  // Rule r's alternatives through a worklist: `expand(alt)` gives what replaces an alternative
  // (std::nullopt: it stays), and each replacement is looked at again, until none changes; the
  // alternatives keep their order. Copied first: an expansion may read rule r meanwhile (and grow
  // rules_). False past kMaxElements.
  template <typename Expand>
  bool RewriteAlternatives(int32_t r, Expand expand) {
    std::vector<std::vector<CfgElement>> pending = rules_[r].alternatives, out;
    std::reverse(pending.begin(), pending.end());  // a stack: the next one to look at is last
    while (!pending.empty()) {
      std::vector<CfgElement> alt = std::move(pending.back());
      pending.pop_back();
      auto replacements = expand(alt);
      if (!replacements) {
        out.push_back(std::move(alt));
        continue;
      }
      for (auto it = replacements->rbegin(); it != replacements->rend(); ++it) {
        elements_ += static_cast<int64_t>(it->size()) + 1;
        if (elements_ > CfgGrammar::kMaxElements) return false;
        pending.push_back(std::move(*it));
      }
    }
    rules_[r].alternatives = std::move(out);
    return true;
  }

  // Per rule, the rules its alternatives can begin with: the first element, and with `nullable`
  // also the elements after leading rules that can be empty.
  std::vector<std::vector<int32_t>> LeftEdges(const std::vector<bool>* nullable) const {
    std::vector<std::vector<int32_t>> left(rules_.size());
    for (size_t r = 0; r < rules_.size(); ++r)
      for (const auto& alt : rules_[r].alternatives)
        for (const CfgElement& e : alt) {
          if (e.type != CfgElement::Type::kRef) break;
          left[r].push_back(e.value);
          if (nullable == nullptr || static_cast<size_t>(e.value) >= nullable->size() || !(*nullable)[e.value]) break;
        }
    return left;
  }

  // The rules that can reach themselves at the left edge of their alternatives (the first
  // element; with `nullable`, also past leading rules that can be empty), in groups that reach
  // one another (strongly connected components of that graph, each in ascending rule order).
  // Iterative Tarjan: generated rule chains run thousands deep.
  std::vector<std::vector<int32_t>> LeftCycles(const std::vector<bool>* nullable) const {
    const int32_t n = static_cast<int32_t>(rules_.size());
    const std::vector<std::vector<int32_t>> next = LeftEdges(nullable);
    std::vector<int32_t> index(n, -1), low(n, 0), stack;
    std::vector<bool> on_stack(n, false);
    std::vector<std::vector<int32_t>> cycles;
    int32_t counter = 0;
    for (int32_t r0 = 0; r0 < n; ++r0) {
      if (index[r0] >= 0) continue;
      std::vector<std::pair<int32_t, size_t>> path = {{r0, 0}};  // rule, next edge
      index[r0] = low[r0] = counter++;
      stack.push_back(r0);
      on_stack[r0] = true;
      while (!path.empty()) {
        auto& [r, edge] = path.back();
        if (edge < next[r].size()) {
          const int32_t s = next[r][edge++];
          if (index[s] < 0) {
            index[s] = low[s] = counter++;
            stack.push_back(s);
            on_stack[s] = true;
            path.emplace_back(s, 0);
          } else if (on_stack[s]) {
            low[r] = std::min(low[r], index[s]);
          }
          continue;
        }
        const int32_t done = r;
        path.pop_back();
        if (!path.empty()) low[path.back().first] = std::min(low[path.back().first], low[done]);
        if (low[done] != index[done]) continue;
        std::vector<int32_t> component;
        for (int32_t s = -1; s != done;) {
          s = stack.back();
          stack.pop_back();
          on_stack[s] = false;
          component.push_back(s);
        }
        const bool self_loop = std::find(next[done].begin(), next[done].end(), done) != next[done].end();
        if (component.size() > 1 || self_loop) {
          std::sort(component.begin(), component.end());
          cycles.push_back(std::move(component));
        }
      }
    }
    return cycles;
  }

  // Rule r, at place `at` of its cycle: every alternative that begins with a rule of an earlier place
  // gets that rule's alternatives spelt out in its place, until none does. The earlier rules are
  // already rewritten, so theirs begin with rules of later places than their own: each chain of
  // spellings ends within `at` steps, and the work is bounded by the elements it makes.
  bool SpellOutEarlier(int32_t r, int32_t at, const std::unordered_map<int32_t, int32_t>& position) {
    using Alternatives = std::vector<std::vector<CfgElement>>;
    return RewriteAlternatives(r, [&](const std::vector<CfgElement>& alt) -> std::optional<Alternatives> {
      if (alt.empty() || alt[0].type != CfgElement::Type::kRef) return std::nullopt;
      const auto it = position.find(alt[0].value);
      if (it == position.end() || it->second >= at) return std::nullopt;
      Alternatives spelt = rules_[alt[0].value].alternatives;
      for (auto& a : spelt) a.insert(a.end(), alt.begin() + 1, alt.end());
      return spelt;
    });
  }

  // Direct left recursion of rule r (see RewriteLeftRecursion).
  bool RewriteDirect(int32_t r) {
    std::vector<std::vector<CfgElement>> tails, bases;
    for (auto& alt : rules_[r].alternatives) {
      if (!alt.empty() && alt[0].type == CfgElement::Type::kRef && alt[0].value == r)
        tails.emplace_back(alt.begin() + 1, alt.end());
      else
        bases.push_back(std::move(alt));
    }
    if (tails.empty()) {
      rules_[r].alternatives = std::move(bases);
      return true;
    }
    const std::string name = rules_[r].name;
    const size_t at = rules_[r].defined_at;
    const int32_t tail = NewRule(name, at);  // grows rules_: index again after
    const int32_t star = NewRule(name, at);
    for (const auto& t : tails) elements_ += static_cast<int64_t>(t.size()) + 1;
    rules_[tail].alternatives = std::move(tails);
    rules_[star].alternatives = {{{CfgElement::Type::kRef, tail}, {CfgElement::Type::kRef, star}}, {}};
    stars_.push_back(star);
    for (auto& b : bases) b.push_back({CfgElement::Type::kRef, star});
    elements_ += static_cast<int64_t>(bases.size()) + 4;
    rules_[r].alternatives = std::move(bases);
    return elements_ <= CfgGrammar::kMaxElements;
  }

  // A repetition of something that can be empty (`("a"?)*`, `(x | "")+`) repeats an empty match
  // forever, which the matcher's eager expansion cannot do: R ::= P R | "" becomes
  // R ::= P' R | "" with P' the non-empty texts of P (the same language, since P*'s empty
  // iterations add nothing). llama.cpp refuses these grammars as left-recursive; xgrammar takes them.
  // False when the non-empty versions would pass kMaxElements.
  bool RepeatOnlyNonEmpty() {
    const std::vector<bool> nullable = Nullable();  // rules made below are never empty
    std::unordered_map<int32_t, int32_t> non_empty;  // rule -> its non-empty version, built once
    for (int32_t star : stars_) {
      const CfgElement p = rules_[star].alternatives[0][0];
      if (p.type != CfgElement::Type::kRef || !nullable[p.value]) continue;
      const int32_t twin = NonEmpty(p.value, nullable, non_empty);  // grows rules_: index again after
      rules_[star].alternatives[0][0].value = twin;
    }
    return elements_ <= CfgGrammar::kMaxElements;
  }
  // Rule r without its empty text: for each alternative X1..Xn and each i whose X1..Xi-1 can all
  // be empty, Xi's non-empty texts then Xi+1..Xn (the texts whose first non-empty part is Xi).
  int32_t NonEmpty(int32_t r, const std::vector<bool>& nullable, std::unordered_map<int32_t, int32_t>& done) {
    if (auto it = done.find(r); it != done.end()) return it->second;
    const int32_t plus = NewRule(rules_[r].name, rules_[r].defined_at);
    done[r] = plus;
    std::vector<std::vector<CfgElement>> alternatives;
    const auto source = rules_[r].alternatives;  // copied: NewRule may grow rules_
    for (const auto& alt : source) {
      for (size_t i = 0; i < alt.size(); ++i) {
        std::vector<CfgElement> a;
        const bool empty_able = alt[i].type == CfgElement::Type::kRef &&
                                static_cast<size_t>(alt[i].value) < nullable.size() && nullable[alt[i].value];
        a.push_back(empty_able ? CfgElement{CfgElement::Type::kRef, NonEmpty(alt[i].value, nullable, done)} : alt[i]);
        a.insert(a.end(), alt.begin() + static_cast<std::ptrdiff_t>(i + 1), alt.end());
        elements_ += static_cast<int64_t>(a.size()) + 1;
        if (elements_ > CfgGrammar::kMaxElements) break;
        alternatives.push_back(std::move(a));
        if (!empty_able) break;  // a later first part would need this one empty
      }
    }
    rules_[plus].alternatives = std::move(alternatives);
    return plus;
  }

  // A rule that can reach itself at its left edge (through rules that can be empty) would make the
  // matcher's expansion loop forever. RewriteLeftRecursion takes every such cycle the tests know
  // of; this stays as the guard that no grammar reaches the matcher with one.
  absl::Status CheckLeftRecursion() const {
    const std::vector<bool> nullable = Nullable();
    const std::vector<std::vector<int32_t>> left = LeftEdges(&nullable);
    // Depth-first search with colours, iterative (generated rule chains run thousands deep); the
    // cycle is reported by its rules' names.
    std::vector<int> colour(rules_.size(), 0);  // 0 new, 1 on the path, 2 done
    for (size_t r0 = 0; r0 < rules_.size(); ++r0) {
      if (colour[r0] != 0) continue;
      std::vector<std::pair<int32_t, size_t>> path = {{static_cast<int32_t>(r0), 0}};  // rule, next edge
      colour[r0] = 1;
      while (!path.empty()) {
        auto& [r, edge] = path.back();
        if (edge == left[r].size()) {
          colour[r] = 2;
          path.pop_back();
          continue;
        }
        const int32_t s = left[r][edge++];
        if (colour[s] == 0) {
          colour[s] = 1;
          path.emplace_back(s, 0);
        } else if (colour[s] == 1) {
          std::vector<std::string> names;
          bool on = false;
          for (const auto& step : path) {
            on = on || step.first == s;
            if (on) names.push_back(rules_[step.first].name);
          }
          names.push_back(rules_[s].name);
          return Error(rules_[s].defined_at,
                       absl::StrCat("rule '", rules_[s].name, "' is left-recursive (", absl::StrJoin(names, " -> "),
                                    ") through rules that can match nothing; rewrite it with repetition, e.g. ",
                                    "a ::= b (\"x\" b)*"));
        }
      }
    }
    return absl::OkStatus();
  }

  // The flat form without the alternatives that can never finish (a rule that never finishes, a
  // class that holds nothing): the matcher then never enters a prefix no text completes. A rule
  // left with none is never referenced by what is kept; it stays a bare kEnd.
  std::shared_ptr<const CfgGrammar> Flatten(int32_t root, const std::vector<bool>& productive) {
    auto g = std::make_shared<CfgGrammar>();
    for (const Rule& rule : rules_) {
      g->rule_start_.push_back(static_cast<int32_t>(g->elements_.size()));
      g->names_.push_back(rule.name);
      bool first = true;
      for (const auto& alt : rule.alternatives) {
        const bool finishes = std::all_of(alt.begin(), alt.end(), [&](const CfgElement& e) {
          return e.type == CfgElement::Type::kRef ? productive[e.value] : !sets_[e.value].empty();
        });
        if (!finishes) continue;
        if (!first) g->elements_.push_back({CfgElement::Type::kAlt, -1});
        g->elements_.insert(g->elements_.end(), alt.begin(), alt.end());
        first = false;
      }
      g->elements_.push_back({CfgElement::Type::kEnd, -1});
    }
    g->sets_ = std::move(sets_);
    g->root_ = root;
    g->text_ = std::string(text_);
    return g;
  }

  std::string_view text_;
  const std::string& field_;
  size_t pos_ = 0;
  std::vector<Rule> rules_;
  std::unordered_map<std::string, int32_t> ids_;
  std::vector<CodePointSet> sets_;
  std::string current_;  // the rule being defined (generated rules are named after it)
  int64_t generated_ = 0;
  int64_t elements_ = 0;
  int nesting_ = 0;  // groups open at pos_
  std::vector<int32_t> stars_;  // the rules R ::= P R | "" that repetitions made
};

absl::StatusOr<std::shared_ptr<const CfgGrammar>> CfgGrammar::ParseGbnf(std::string_view text, const std::string& field) {
  return GbnfParser(text, field).Parse();
}

}  // namespace glm::structured
