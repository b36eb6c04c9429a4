#include "coordinator/structured/regex_dfa.h"

#include <algorithm>
#include <climits>
#include <deque>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace glm::structured {
namespace {

// Sorted, disjoint, non-adjacent ranges of code points.
using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;
constexpr uint32_t kMaxCodePoint = 0x10FFFF;

Ranges Normalize(Ranges r) {
  std::sort(r.begin(), r.end());
  Ranges out;
  for (const auto& [lo, hi] : r) {
    if (!out.empty() && lo <= out.back().second + 1) out.back().second = std::max(out.back().second, hi);
    else out.emplace_back(lo, hi);
  }
  return out;
}

Ranges Complement(const Ranges& r) {
  Ranges out;
  uint32_t next = 0;
  for (const auto& [lo, hi] : r) {
    if (lo > next) out.emplace_back(next, lo - 1);
    next = hi + 1;
  }
  if (next <= kMaxCodePoint) out.emplace_back(next, kMaxCodePoint);
  return out;
}

Ranges Intersect(const Ranges& a, const Ranges& b) {
  Ranges out;
  for (size_t i = 0, j = 0; i < a.size() && j < b.size();) {
    const uint32_t lo = std::max(a[i].first, b[j].first), hi = std::min(a[i].second, b[j].second);
    if (lo <= hi) out.emplace_back(lo, hi);
    if (a[i].second < b[j].second) ++i;
    else ++j;
  }
  return out;
}

const Ranges& Digits() {
  static const Ranges r = {{'0', '9'}};
  return r;
}
const Ranges& WordChars() {
  static const Ranges r = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
  return r;
}
const Ranges& Spaces() {
  static const Ranges r = {{'\t', '\r'}, {' ', ' '}};
  return r;
}

// The byte-range sequences whose concatenations are exactly the UTF-8 encodings of [lo, hi]
// (surrogates left out): split until, at every continuation position, the range either shares
// the bits above it or covers them whole, so each position's bytes form one range.
void Utf8Sequences(uint32_t lo, uint32_t hi, std::vector<std::vector<std::pair<uint8_t, uint8_t>>>* out) {
  if (lo > hi) return;
  if (lo <= 0xDFFF && hi >= 0xD800) {
    if (lo < 0xD800) Utf8Sequences(lo, 0xD7FF, out);
    if (hi > 0xDFFF) Utf8Sequences(0xE000, hi, out);
    return;
  }
  static constexpr uint32_t kLast[] = {0x7F, 0x7FF, 0xFFFF};
  for (uint32_t last : kLast)
    if (lo <= last && hi > last) {
      Utf8Sequences(lo, last, out);
      Utf8Sequences(last + 1, hi, out);
      return;
    }
  if (hi <= 0x7F) {
    out->push_back({{static_cast<uint8_t>(lo), static_cast<uint8_t>(hi)}});
    return;
  }
  for (int i = 1; i < 4; ++i) {
    const uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) == (hi & ~m)) continue;
    if ((lo & m) != 0) {
      Utf8Sequences(lo, lo | m, out);
      Utf8Sequences((lo | m) + 1, hi, out);
      return;
    }
    if ((hi & m) != m) {
      Utf8Sequences(lo, (hi & ~m) - 1, out);
      Utf8Sequences(hi & ~m, hi, out);
      return;
    }
  }
  auto encode = [](uint32_t c, uint8_t* b) {
    if (c <= 0x7FF) {
      b[0] = static_cast<uint8_t>(0xC0 | (c >> 6)), b[1] = static_cast<uint8_t>(0x80 | (c & 0x3F));
      return 2;
    }
    if (c <= 0xFFFF) {
      b[0] = static_cast<uint8_t>(0xE0 | (c >> 12)), b[1] = static_cast<uint8_t>(0x80 | ((c >> 6) & 0x3F));
      b[2] = static_cast<uint8_t>(0x80 | (c & 0x3F));
      return 3;
    }
    b[0] = static_cast<uint8_t>(0xF0 | (c >> 18)), b[1] = static_cast<uint8_t>(0x80 | ((c >> 12) & 0x3F));
    b[2] = static_cast<uint8_t>(0x80 | ((c >> 6) & 0x3F)), b[3] = static_cast<uint8_t>(0x80 | (c & 0x3F));
    return 4;
  };
  uint8_t a[4], b[4];
  const int n = encode(lo, a);
  encode(hi, b);
  std::vector<std::pair<uint8_t, uint8_t>> seq;
  for (int i = 0; i < n; ++i) seq.emplace_back(a[i], b[i]);
  out->push_back(std::move(seq));
}

struct Ast {
  enum Kind : uint8_t { kEmpty, kSet, kConcat, kAlt, kRepeat };
  Kind kind = kEmpty;
  Ranges set;
  std::vector<int> kids;
  int min = 0, max = 0;  // kRepeat; max -1: unbounded
};

int HexDigit(uint32_t c) {
  if (c >= '0' && c <= '9') return static_cast<int>(c - '0');
  if (c >= 'a' && c <= 'f') return static_cast<int>(c - 'a' + 10);
  if (c >= 'A' && c <= 'F') return static_cast<int>(c - 'A' + 10);
  return -1;
}

}  // namespace

// Pattern text → syntax tree → NFA over bytes (Thompson) → DFA (subsets) → dead ends pruned.
class RegexCompiler {
 public:
  RegexCompiler(std::string_view pattern, RegexDfa::Options options) : pattern_(pattern), options_(options) {}

  absl::StatusOr<std::shared_ptr<const RegexDfa>> Compile() {
    if (pattern_.size() > RegexDfa::kMaxPatternBytes)
      return absl::InvalidArgumentError(absl::StrCat("the pattern is longer than ", RegexDfa::kMaxPatternBytes, " bytes"));
    if (auto s = Decode(); !s.ok()) return s;
    end_ = cps_.size();
    if (end_ > 0 && cps_[0] == '^') pos_ = 1;
    if (end_ > pos_ && cps_[end_ - 1] == '$') {
      size_t backslashes = 0;
      for (size_t i = end_ - 1; i > pos_ && cps_[i - 1] == '\\'; --i) ++backslashes;
      if (backslashes % 2 == 0) --end_;
    }
    auto root = Alternation();
    if (!root.ok()) return root.status();
    if (pos_ != end_) return Error(pos_, cps_[pos_] == ')' ? "unbalanced ')'" : "unexpected character");
    return Build(*root);
  }

 private:
  absl::Status Error(size_t at, std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("pattern at offset ", at < offsets_.size() ? offsets_[at] : pattern_.size(), ": ", std::string(what)));
  }

  absl::Status Decode() {
    for (size_t i = 0; i < pattern_.size();) {
      const uint8_t c = static_cast<uint8_t>(pattern_[i]);
      int n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
      if (n == 0 || i + n > pattern_.size()) return absl::InvalidArgumentError("the pattern is not valid UTF-8");
      uint32_t cp = n == 1 ? c : c & (0x7F >> n);
      for (int k = 1; k < n; ++k) {
        const uint8_t d = static_cast<uint8_t>(pattern_[i + k]);
        if ((d & 0xC0) != 0x80) return absl::InvalidArgumentError("the pattern is not valid UTF-8");
        cp = cp << 6 | (d & 0x3F);
      }
      static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      if (cp < kMin[n] || cp > kMaxCodePoint || (cp >= 0xD800 && cp <= 0xDFFF))
        return absl::InvalidArgumentError("the pattern is not valid UTF-8");
      cps_.push_back(cp);
      offsets_.push_back(i);
      i += n;
    }
    return absl::OkStatus();
  }

  bool At(uint32_t c) const { return pos_ < end_ && cps_[pos_] == c; }
  int Add(Ast a) {
    ast_.push_back(std::move(a));
    return static_cast<int>(ast_.size() - 1);
  }
  int AddSet(Ranges r) {
    Ast a;
    a.kind = Ast::kSet;
    a.set = Normalize(std::move(r));
    return Add(std::move(a));
  }

  absl::StatusOr<int> Alternation() {
    if (++depth_ > 200) return Error(pos_, "groups nest too deeply");
    std::vector<int> kids;
    while (true) {
      auto c = Concatenation();
      if (!c.ok()) return c.status();
      kids.push_back(*c);
      if (!At('|')) break;
      ++pos_;
    }
    --depth_;
    if (kids.size() == 1) return kids[0];
    Ast a;
    a.kind = Ast::kAlt;
    a.kids = std::move(kids);
    return Add(std::move(a));
  }

  absl::StatusOr<int> Concatenation() {
    std::vector<int> kids;
    while (pos_ < end_ && !At('|') && !At(')')) {
      auto r = Repetition();
      if (!r.ok()) return r.status();
      kids.push_back(*r);
    }
    if (kids.empty()) return Add(Ast{});
    if (kids.size() == 1) return kids[0];
    Ast a;
    a.kind = Ast::kConcat;
    a.kids = std::move(kids);
    return Add(std::move(a));
  }

  // A {n}, {n,} or {n,m} quantifier at pos_: its bounds and length; false when the text there is
  // not one (then '{' is a literal, as in Python).
  bool Braces(int64_t* lo, int64_t* hi, size_t* len) const {
    size_t i = pos_ + 1;
    auto number = [&](int64_t* v) {
      const size_t from = i;
      *v = 0;
      while (i < end_ && cps_[i] >= '0' && cps_[i] <= '9') *v = std::min<int64_t>(*v * 10 + (cps_[i++] - '0'), 1 << 30);
      return i > from;
    };
    if (!number(lo)) return false;
    *hi = *lo;
    if (i < end_ && cps_[i] == ',') {
      ++i;
      if (!number(hi)) *hi = -1;
    }
    if (i >= end_ || cps_[i] != '}') return false;
    *len = i + 1 - pos_;
    return true;
  }

  absl::StatusOr<int> Repetition() {
    auto atom = Atom();
    if (!atom.ok()) return atom.status();
    int node = *atom;
    bool quantified = false;
    while (pos_ < end_) {
      int64_t lo = 0, hi = 0;
      size_t len = 1;
      const uint32_t c = cps_[pos_];
      if (c == '*') lo = 0, hi = -1;
      else if (c == '+') lo = 1, hi = -1;
      else if (c == '?') lo = 0, hi = 1;
      else if (c != '{' || !Braces(&lo, &hi, &len)) break;
      if (quantified) return Error(pos_, "a quantifier cannot follow another");
      if (lo > RegexDfa::kMaxRepeat || hi > RegexDfa::kMaxRepeat)
        return Error(pos_, absl::StrCat("repetition counts above ", RegexDfa::kMaxRepeat, " are not supported"));
      if (hi >= 0 && hi < lo) return Error(pos_, "the repetition's maximum is below its minimum");
      pos_ += len;
      if (At('?')) ++pos_;  // lazy: the same language
      quantified = true;
      Ast a;
      a.kind = Ast::kRepeat;
      a.kids = {node};
      a.min = static_cast<int>(lo);
      a.max = static_cast<int>(hi);
      node = Add(std::move(a));
    }
    return node;
  }

  absl::StatusOr<int> Atom() {
    const size_t at = pos_;
    const uint32_t c = cps_[pos_++];
    switch (c) {
      case '(': {
        if (At('?')) {
          ++pos_;
          if (At(':')) {
            ++pos_;
          } else if (At('=') || At('!') || (At('<') && pos_ + 1 < end_ && (cps_[pos_ + 1] == '=' || cps_[pos_ + 1] == '!'))) {
            return Error(at, "lookaround assertions are not supported");
          } else if (At('<') || (At('P') && pos_ + 1 < end_ && cps_[pos_ + 1] == '<')) {
            while (pos_ < end_ && cps_[pos_] != '>') ++pos_;
            if (pos_ == end_) return Error(at, "unterminated group name");
            ++pos_;
          } else {
            return Error(at, "inline flags and (?...) groups other than (?:...) and named groups are not supported");
          }
        }
        auto inner = Alternation();
        if (!inner.ok()) return inner.status();
        if (!At(')')) return Error(at, "unterminated group");
        ++pos_;
        return *inner;
      }
      case '[':
        return Class(at);
      case '.':
        return AddSet(Complement({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}));
      case '\\': {
        Ranges set;
        if (auto s = Escape(at, false, &set); !s.ok()) return s;
        return AddSet(std::move(set));
      }
      case '^':
        return Error(at, "^ is supported only at the start of the pattern");
      case '$':
        return Error(at, "$ is supported only at the end of the pattern");
      case '*':
      case '+':
      case '?':
        return Error(at, "nothing to repeat");
      case '{': {
        int64_t lo, hi;
        size_t len;
        --pos_;
        const bool quantifier = Braces(&lo, &hi, &len);
        ++pos_;
        if (quantifier) return Error(at, "nothing to repeat");
        return AddSet({{c, c}});
      }
      default:
        return AddSet({{c, c}});
    }
  }

  // After '\\' (at `at`): the characters it stands for. In a class \b is a backspace.
  absl::Status Escape(size_t at, bool in_class, Ranges* out) {
    if (pos_ >= end_) return Error(at, "the pattern ends in a lone backslash");
    const uint32_t c = cps_[pos_++];
    auto one = [out](uint32_t v) { *out = {{v, v}}; };
    switch (c) {
      case 'd': *out = Digits(); return absl::OkStatus();
      case 'D': *out = Complement(Digits()); return absl::OkStatus();
      case 'w': *out = WordChars(); return absl::OkStatus();
      case 'W': *out = Complement(WordChars()); return absl::OkStatus();
      case 's': *out = Spaces(); return absl::OkStatus();
      case 'S': *out = Complement(Spaces()); return absl::OkStatus();
      case 'n': one('\n'); return absl::OkStatus();
      case 't': one('\t'); return absl::OkStatus();
      case 'r': one('\r'); return absl::OkStatus();
      case 'f': one('\f'); return absl::OkStatus();
      case 'v': one('\v'); return absl::OkStatus();
      case '0':
        if (pos_ < end_ && cps_[pos_] >= '0' && cps_[pos_] <= '9') return Error(at, "octal escapes are not supported");
        one(0);
        return absl::OkStatus();
      case 'b':
        if (!in_class) return Error(at, "word boundaries (\\b) are not supported");
        one('\b');
        return absl::OkStatus();
      case 'x':
      case 'u': {
        uint32_t v = 0;
        if (c == 'u' && At('{')) {
          ++pos_;
          int digits = 0;
          while (pos_ < end_ && HexDigit(cps_[pos_]) >= 0 && digits < 7) v = v * 16 + HexDigit(cps_[pos_++]), ++digits;
          if (digits == 0 || !At('}')) return Error(at, "malformed \\u{...} escape");
          ++pos_;
        } else {
          const int digits = c == 'x' ? 2 : 4;
          for (int k = 0; k < digits; ++k) {
            if (pos_ >= end_ || HexDigit(cps_[pos_]) < 0) return Error(at, absl::StrCat("malformed \\", c == 'x' ? "x" : "u", " escape"));
            v = v * 16 + HexDigit(cps_[pos_++]);
          }
          // A UTF-16 surrogate pair written as two \u escapes is one character.
          if (c == 'u' && v >= 0xD800 && v <= 0xDBFF && pos_ + 5 < end_ && cps_[pos_] == '\\' && cps_[pos_ + 1] == 'u') {
            uint32_t low = 0;
            bool ok = true;
            for (int k = 0; k < 4; ++k) {
              const int h = HexDigit(cps_[pos_ + 2 + k]);
              ok &= h >= 0;
              low = low * 16 + std::max(h, 0);
            }
            if (ok && low >= 0xDC00 && low <= 0xDFFF) {
              v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00);
              pos_ += 6;
            }
          }
        }
        if (v > kMaxCodePoint || (v >= 0xD800 && v <= 0xDFFF))
          return Error(at, "the escape is not a Unicode scalar value");
        one(v);
        return absl::OkStatus();
      }
      case 'p':
      case 'P':
        return Error(at, "Unicode property classes (\\p{...}) are not supported");
      case 'k':
        return Error(at, "backreferences are not supported");
      case 'B':
        return Error(at, "word boundaries (\\B) are not supported");
      default:
        if (c >= '1' && c <= '9') return Error(at, "backreferences are not supported");
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
          return Error(at, absl::StrCat("unknown escape \\", std::string(1, static_cast<char>(c))));
        one(c);  // escaped punctuation (or any other character) stands for itself
        return absl::OkStatus();
    }
  }

  absl::StatusOr<int> Class(size_t at) {
    const bool negate = At('^');
    if (negate) ++pos_;
    if (At(']')) return Error(at, "an empty class ([] or [^]); write \\] for a literal ]");
    Ranges set;
    // One class member: a single character (*single) or a set (\d ...).
    auto member = [&](uint32_t* single, Ranges* multi) -> absl::Status {
      const size_t here = pos_;
      const uint32_t c = cps_[pos_++];
      if (c != '\\') {
        *single = c;
        return absl::OkStatus();
      }
      Ranges r;
      if (auto s = Escape(here, true, &r); !s.ok()) return s;
      if (r.size() == 1 && r[0].first == r[0].second) *single = r[0].first;
      else *multi = std::move(r);
      return absl::OkStatus();
    };
    while (true) {
      if (pos_ >= end_) return Error(at, "unterminated [");
      if (At(']')) break;
      const size_t here = pos_;
      uint32_t lo = 0;
      Ranges multi;
      if (auto s = member(&lo, &multi); !s.ok()) return s;
      if (!multi.empty()) {
        set.insert(set.end(), multi.begin(), multi.end());
        if (At('-') && pos_ + 1 < end_ && cps_[pos_ + 1] != ']') return Error(here, "a range cannot start with a class escape");
        continue;
      }
      if (At('-') && pos_ + 1 < end_ && cps_[pos_ + 1] != ']') {
        ++pos_;
        uint32_t hi = 0;
        if (auto s = member(&hi, &multi); !s.ok()) return s;
        if (!multi.empty()) return Error(here, "a range cannot end with a class escape");
        if (hi < lo) return Error(here, "a range out of order");
        set.emplace_back(lo, hi);
      } else {
        set.emplace_back(lo, lo);
      }
    }
    ++pos_;  // ']'
    set = Normalize(std::move(set));
    return AddSet(negate ? Complement(set) : set);
  }

  // --- NFA ---
  struct NfaState {
    std::vector<std::pair<std::pair<uint8_t, uint8_t>, int>> edges;  // byte range → state
    std::vector<int> eps;
  };
  int NewState() {
    nfa_.emplace_back();
    return static_cast<int>(nfa_.size() - 1);
  }
  // The fragment of `node` from `from`; returns its end state (-1 once the NFA is too large).
  int Fragment(int node, int from) {
    if (static_cast<int>(nfa_.size()) > RegexDfa::kMaxNfaStates) return -1;
    const Ast& a = ast_[node];
    switch (a.kind) {
      case Ast::kEmpty:
        return from;
      case Ast::kSet: {
        Ranges r = options_.json_string ? Intersect(a.set, JsonStringChars()) : a.set;
        std::vector<std::vector<std::pair<uint8_t, uint8_t>>> seqs;
        for (const auto& [lo, hi] : r) Utf8Sequences(lo, hi, &seqs);
        const int end = NewState();
        for (const auto& seq : seqs) {
          int cur = from;
          for (size_t k = 0; k < seq.size(); ++k) {
            const int next = k + 1 == seq.size() ? end : NewState();
            nfa_[cur].edges.push_back({seq[k], next});
            cur = next;
          }
        }
        return end;
      }
      case Ast::kConcat: {
        int cur = from;
        for (int kid : a.kids) {
          cur = Fragment(kid, cur);
          if (cur < 0) return -1;
        }
        return cur;
      }
      case Ast::kAlt: {
        const int end = NewState();
        for (int kid : a.kids) {
          const int start = NewState();
          nfa_[from].eps.push_back(start);
          const int e = Fragment(kid, start);
          if (e < 0) return -1;
          nfa_[e].eps.push_back(end);
        }
        return end;
      }
      case Ast::kRepeat: {
        int cur = from;
        for (int i = 0; i < a.min; ++i) {
          const int start = NewState();
          nfa_[cur].eps.push_back(start);
          cur = Fragment(a.kids[0], start);
          if (cur < 0) return -1;
        }
        const int end = NewState();
        if (a.max < 0) {  // a loop: loop → body → loop, loop → end
          const int loop = NewState(), start = NewState();
          nfa_[cur].eps.push_back(loop);
          nfa_[loop].eps.push_back(start);
          nfa_[loop].eps.push_back(end);
          const int e = Fragment(a.kids[0], start);
          if (e < 0) return -1;
          nfa_[e].eps.push_back(loop);
          return end;
        }
        for (int i = a.min; i < a.max; ++i) {  // optional copies, each may skip to the end
          const int start = NewState();
          nfa_[cur].eps.push_back(end);
          nfa_[cur].eps.push_back(start);
          cur = Fragment(a.kids[0], start);
          if (cur < 0) return -1;
        }
        nfa_[cur].eps.push_back(end);
        return end;
      }
    }
    return -1;
  }

  static const Ranges& JsonStringChars() {
    static const Ranges r = {{'\b', '\n'}, {'\f', '\r'}, {0x20, kMaxCodePoint}};
    return r;
  }

  // The states reachable from `states` by epsilon edges, sorted.
  std::vector<int> Closure(std::vector<int> states) {
    if (mark_.size() < nfa_.size()) mark_.assign(nfa_.size(), 0);
    ++stamp_;
    std::vector<int> out, stack = std::move(states);
    while (!stack.empty()) {
      const int s = stack.back();
      stack.pop_back();
      if (mark_[s] == stamp_) continue;
      mark_[s] = stamp_;
      out.push_back(s);
      work_ += 1 + static_cast<int64_t>(nfa_[s].eps.size());
      for (int t : nfa_[s].eps) stack.push_back(t);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  absl::StatusOr<std::shared_ptr<const RegexDfa>> Build(int root) {
    const int start = NewState();
    const int accept = Fragment(root, start);
    if (accept < 0)
      return absl::InvalidArgumentError(
          absl::StrCat("the pattern is too large (its automaton passes ", RegexDfa::kMaxNfaStates, " states)"));
    auto dfa = std::make_shared<RegexDfa>();
    std::map<std::vector<int>, int32_t> index;
    std::vector<std::vector<int>> sets;
    auto intern = [&](std::vector<int> set) -> int32_t {
      auto [it, fresh] = index.emplace(set, static_cast<int32_t>(sets.size()));
      if (fresh) sets.push_back(std::move(set));
      return it->second;
    };
    intern(Closure({start}));
    std::vector<std::vector<int>> targets(256);
    for (size_t d = 0; d < sets.size(); ++d) {
      if (sets.size() > static_cast<size_t>(RegexDfa::kMaxDfaStates))
        return absl::InvalidArgumentError(
            absl::StrCat("the pattern is too complex (its automaton passes ", RegexDfa::kMaxDfaStates, " states)"));
      // A budget on the construction's steps as well: sets of many NFA states make each DFA
      // state costly long before the state limit ((.{0,30}){30} took 0.4 s without it).
      if (work_ > kMaxWork)
        return absl::InvalidArgumentError("the pattern is too complex (its automaton takes too long to build)");
      for (auto& t : targets) t.clear();
      for (int s : sets[d])
        for (const auto& [range, to] : nfa_[s].edges) {
          work_ += range.second - range.first + 1;
          for (int b = range.first; b <= range.second; ++b) targets[b].push_back(to);
        }
      dfa->next_.resize((d + 1) * 256, -1);
      for (int b = 0; b < 256; ++b) {
        if (targets[b].empty()) continue;
        if (b > 0 && targets[b] == targets[b - 1]) {
          dfa->next_[d * 256 + b] = dfa->next_[d * 256 + b - 1];
          continue;
        }
        dfa->next_[d * 256 + b] = intern(Closure(targets[b]));
      }
      dfa->accepting_.push_back(std::binary_search(sets[d].begin(), sets[d].end(), accept));
    }
    // Dead ends: states from which no accepting state is reachable lose their incoming edges.
    const size_t n = sets.size();
    std::vector<std::vector<int32_t>> into(n);
    for (size_t d = 0; d < n; ++d)
      for (int b = 0; b < 256; ++b)
        if (const int32_t t = dfa->next_[d * 256 + b]; t >= 0) into[t].push_back(static_cast<int32_t>(d));
    std::vector<bool> live(n, false);
    std::vector<int32_t> queue;
    for (size_t d = 0; d < n; ++d)
      if (dfa->accepting_[d]) live[d] = true, queue.push_back(static_cast<int32_t>(d));
    while (!queue.empty()) {
      const int32_t t = queue.back();
      queue.pop_back();
      for (int32_t d : into[t])
        if (!live[d]) live[d] = true, queue.push_back(d);
    }
    if (!live[0])
      return absl::InvalidArgumentError(options_.json_string ? "the pattern matches no text a JSON string can hold"
                                                             : "the pattern matches no text");
    dfa->has_exits_.assign(n, false);
    for (size_t d = 0; d < n; ++d)
      for (int b = 0; b < 256; ++b) {
        int32_t& t = dfa->next_[d * 256 + b];
        if (t >= 0 && !live[t]) t = -1;
        if (t >= 0) dfa->has_exits_[d] = true;
      }
    CountChars(dfa.get());
    return std::shared_ptr<const RegexDfa>(std::move(dfa));
  }

  // A byte that starts a character (not a UTF-8 continuation byte) counts one.
  static int CharWeight(int byte) { return (byte & 0xC0) == 0x80 ? 0 : 1; }

  // min_chars_: shortest paths to an accepting state (0-1 weights, a deque walk backwards).
  // max_chars_: -1 where a cycle is reachable (every live state reaches a match, so the cycle
  // makes matches of any length); elsewhere the longest path, the graph being acyclic there.
  static void CountChars(RegexDfa* dfa) {
    const int32_t n = dfa->num_states();
    constexpr int64_t kUnknown = INT64_MAX;
    std::vector<std::vector<std::pair<int32_t, int>>> into(n);  // (from, weight)
    for (int32_t d = 0; d < n; ++d) {
      const int32_t* next = &dfa->next_[static_cast<size_t>(d) * 256];
      for (int b = 0; b < 256; ++b) {
        const bool repeat = b > 0 && next[b] == next[b - 1] && CharWeight(b) == CharWeight(b - 1);
        if (next[b] >= 0 && !repeat) into[next[b]].emplace_back(d, CharWeight(b));
      }
    }
    dfa->min_chars_.assign(n, kUnknown);
    std::deque<int32_t> queue;
    for (int32_t d = 0; d < n; ++d)
      if (dfa->accepting_[d]) dfa->min_chars_[d] = 0, queue.push_back(d);
    while (!queue.empty()) {
      const int32_t t = queue.front();
      queue.pop_front();
      for (const auto& [from, w] : into[t]) {
        if (dfa->min_chars_[t] + w >= dfa->min_chars_[from]) continue;
        dfa->min_chars_[from] = dfa->min_chars_[t] + w;
        if (w == 0) queue.push_front(from);
        else queue.push_back(from);
      }
    }
    // Longest paths by depth-first search; a state met again while on the stack closes a cycle.
    enum : uint8_t { kNew, kOnStack, kDone };
    std::vector<uint8_t> mark(n, kNew);
    dfa->max_chars_.assign(n, 0);
    std::vector<std::pair<int32_t, int>> stack;  // (state, next byte to look at)
    for (int32_t root = 0; root < n; ++root) {
      if (mark[root] != kNew || dfa->min_chars_[root] == kUnknown) continue;
      stack.emplace_back(root, 0);
      mark[root] = kOnStack;
      while (!stack.empty()) {
        const auto [d, byte] = stack.back();
        if (byte == 256) {
          mark[d] = kDone;
          stack.pop_back();
          continue;
        }
        const int32_t t = dfa->next_[static_cast<size_t>(d) * 256 + byte];
        if (t >= 0 && mark[t] == kNew) {  // this byte is looked at again once t is done
          mark[t] = kOnStack;
          stack.emplace_back(t, 0);
          continue;
        }
        stack.back().second = byte + 1;
        if (t < 0) continue;
        int64_t& best = dfa->max_chars_[d];
        if (mark[t] == kOnStack || dfa->max_chars_[t] < 0 || best < 0) best = -1;
        else best = std::max(best, dfa->max_chars_[t] + CharWeight(byte));
      }
    }
  }

  std::string_view pattern_;
  RegexDfa::Options options_;
  std::vector<uint32_t> cps_;
  std::vector<size_t> offsets_;  // byte offset of each code point
  size_t pos_ = 0, end_ = 0;
  int depth_ = 0;
  std::vector<Ast> ast_;
  std::vector<NfaState> nfa_;
  std::vector<uint32_t> mark_;
  uint32_t stamp_ = 0;
  static constexpr int64_t kMaxWork = 20'000'000;  // ~20-40 ms of construction
  int64_t work_ = 0;
};

absl::StatusOr<std::shared_ptr<const RegexDfa>> RegexDfa::Compile(std::string_view pattern, Options options) {
  return RegexCompiler(pattern, options).Compile();
}

bool RegexDfa::Matches(std::string_view text) const {
  int32_t s = start();
  for (char c : text) {
    s = Next(s, static_cast<uint8_t>(c));
    if (s < 0) return false;
  }
  return Accepting(s);
}

std::string RegexEscape(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (std::string_view("\\^$.|?*+()[]{}/-").find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace glm::structured
