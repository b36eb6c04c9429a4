#include "coordinator/structured/json_matcher.h"

#include <algorithm>
#include <bit>
#include <utility>

namespace glm::structured {
namespace {

using Kind = GrammarNode::Kind;

enum FrameKind : uint8_t {
  kValue, kObject, kKey, kArray, kString, kNumber, kLiteral, kToolCall, kToolArgs, kRawText, kToolCallList,
  kPatternText  // the whole output, raw text matched by the root's RegexDfa
};
// kToolCallList phases: before a call (the first, or after the newline between two), after one.
enum CallListPhase : uint8_t { kListBeforeCall, kListAfterCall };
// kToolArgs phases: before an argument (or the closing tag), inside its value, after the value.
enum ToolArgsPhase : uint8_t { kArgsNext, kArgsInValue, kArgsAfterValue };

// Object phases: before '{', after '{', after a key, inside a value, after a value, after ','.
enum ObjectPhase : uint8_t { kObjOpen, kObjFirst, kObjAfterKey, kObjInValue, kObjAfterValue, kObjAfterComma };
// Array phases: before '[', after '[', inside an item, after an item, after ','.
enum ArrayPhase : uint8_t { kArrOpen, kArrFirst, kArrInItem, kArrAfterItem, kArrAfterComma };
// String phases: before '"', inside, after '\', then the 4 hex digits of \u (kStrHex + digits seen).
enum StringPhase : uint8_t { kStrOpen, kStrIn, kStrEscape, kStrHex };
// Number phases (JSON's grammar); the accepting ones are kNumZero, kNumInt, kNumFrac, kNumExp.
enum NumberPhase : uint8_t { kNumStart, kNumMinus, kNumZero, kNumInt, kNumDot, kNumFrac, kNumE, kNumExpSign, kNumExp };

bool IsWhitespace(uint8_t c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
bool IsDigit(uint8_t c) { return c >= '0' && c <= '9'; }
int HexValue(uint8_t c) {
  if (IsDigit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
uint64_t Range(uint8_t lo, uint8_t hi) { return (uint64_t{lo} << 8) | hi; }
// The byte a JSON short escape (the character after '\\') stands for.
uint8_t EscapedByte(uint8_t c) {
  switch (c) {
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    default: return c;  // " \\ /
  }
}

}  // namespace

JsonMatcher::JsonMatcher(const JsonGrammar* grammar) : grammar_(grammar), guard_tags_(grammar->is_tool_call()) {
  if (const GrammarNode& r = grammar->node(grammar->root()); r.kind == Kind::kCfg) {
    cfg_.emplace(r.cfg.get());  // a GBNF grammar: CfgMatcher does all the work; stacks_ stay empty
    return;
  }
  Stack root;
  Frame f;
  f.kind = grammar->node(grammar->root()).kind == Kind::kText ? kPatternText : kValue;
  f.node = grammar->root();
  root.frames.push_back(f);
  stacks_.push_back(std::move(root));
}

bool JsonMatcher::Advance(std::string_view bytes) {
  for (char c : bytes)
    if (!Advance(static_cast<uint8_t>(c))) return false;
  return true;
}

bool JsonMatcher::Advance(uint8_t byte) {
  if (cfg_) return cfg_->Advance(byte);
  // Most bytes (string contents, digits, keys) only move the top frame of a single stack: done in
  // place, without the copies the general path makes (the token masker advances millions a mask).
  if (stacks_.size() == 1 && !stacks_[0].frames.empty()) {
    Stack& s = stacks_[0];
    Frame& top = s.frames.back();
    if (top.kind != kValue && !(IsWhitespace(byte) && WhitespaceAllowed(top))) {
      const Frame saved = top;
      Frame push;
      if (StepFrame(top, byte, &push) == Step::kConsumed) {
        s.whitespace_run = 0;
        return true;
      }
      top = saved;
    }
  }
  std::vector<Stack> next;
  for (Stack& s : stacks_) AdvanceStack(std::move(s), byte, &next);
  // anyOf branches that converged are one state; past kMaxStacks alive the matcher stops.
  std::vector<Stack> unique;
  for (Stack& s : next)
    if (std::find(unique.begin(), unique.end(), s) == unique.end()) unique.push_back(std::move(s));
  over_bounds_ = over_bounds_ || unique.size() > kMaxStacks;
  stacks_ = over_bounds_ ? std::vector<Stack>() : std::move(unique);
  return !stacks_.empty();
}

bool JsonMatcher::CanEnd() const {
  if (cfg_) return cfg_->CanEnd();
  for (const Stack& s : stacks_)
    if (s.frames.empty() || (s.frames.size() == 1 && AcceptsEnd(s.frames[0]))) return true;
  return false;
}

bool JsonMatcher::MustEnd() const {
  if (cfg_) return cfg_->MustEnd();
  if (stacks_.empty()) return false;
  for (const Stack& s : stacks_) {
    if (s.frames.empty()) continue;
    const Frame& f = s.frames[0];
    if (s.frames.size() != 1 || f.kind != kPatternText) return false;
    const RegexDfa& dfa = *grammar_->node(f.node).pattern;
    if (!dfa.Accepting(f.re) || dfa.HasExits(f.re)) return false;
  }
  return true;
}

std::string JsonMatcher::Key() const {
  if (cfg_) return cfg_->Key();
  std::string key;
  auto put = [&key](const void* p, size_t n) { key.append(static_cast<const char*>(p), n); };
  for (const Stack& s : stacks_) {
    const uint32_t n = static_cast<uint32_t>(s.frames.size());
    put(&n, sizeof n);
    put(&s.whitespace_run, sizeof s.whitespace_run);
    for (Frame f : s.frames) {
      // Counts that no bound reads any more do not change the future: an unbounded string past
      // its minLength is the same state at every length (else every string byte missed the cache).
      const GrammarNode* g = f.node >= 0 ? &grammar_->node(f.node) : nullptr;
      if ((f.kind == kString || f.kind == kRawText) && (g == nullptr || g->kind != Kind::kString || g->max_length < 0))
        f.a = std::min<int64_t>(f.a, g != nullptr && g->kind == Kind::kString ? g->min_length : 0);
      if (f.kind == kArray && (g->kind != Kind::kArray || g->max_items < 0))
        f.a = std::min<int64_t>(f.a, g->kind == Kind::kArray ? g->min_items : 0);
      put(&f.kind, sizeof f.kind);
      put(&f.phase, sizeof f.phase);
      put(&f.tag_guard, sizeof f.tag_guard);
      put(&f.node, sizeof f.node);
      put(&f.a, sizeof f.a);
      put(&f.b, sizeof f.b);
      put(&f.set, sizeof f.set);
      put(&f.re, sizeof f.re);
    }
    key.push_back('|');
  }
  return key;
}

bool JsonMatcher::InPlainString(int64_t* room) const {
  if (stacks_.size() != 1 || stacks_[0].frames.empty()) return false;
  const Frame& f = stacks_[0].frames.back();
  if (f.kind != kString || f.phase != kStrIn || f.b != 0 || f.tag_guard != 0) return false;
  const GrammarNode* g = f.node >= 0 ? &grammar_->node(f.node) : nullptr;
  if (g != nullptr && g->pattern != nullptr) return false;  // every byte steps the pattern
  const bool bounded = g != nullptr && g->kind == Kind::kString && g->max_length >= 0;
  *room = bounded ? g->max_length - f.a : INT64_MAX;
  return true;
}

bool JsonMatcher::InPatternText(const RegexDfa** dfa, int32_t* state) const {
  if (stacks_.size() != 1 || stacks_[0].frames.size() != 1 || stacks_[0].frames[0].kind != kPatternText) return false;
  *dfa = grammar_->node(stacks_[0].frames[0].node).pattern.get();
  *state = stacks_[0].frames[0].re;
  return true;
}

void JsonMatcher::StartValue(int32_t node, uint8_t byte, std::vector<Frame>* starts, std::vector<int32_t>* seen,
                             int depth) const {
  if (depth > 512) return;  // a bound on the recursion (`seen` already ends cycles)
  const GrammarNode& g = grammar_->node(node);
  Frame f;
  f.node = node;
  switch (g.kind) {
    case Kind::kAnyOf:
      // An option reached twice (anyOf / $ref diamonds) opens the same frames: expanded once, or
      // a chain of n two-way choices cost 2^n (26 of them took minutes and 8 GB).
      for (int32_t o : g.options) {
        if (std::find(seen->begin(), seen->end(), o) != seen->end()) continue;
        seen->push_back(o);
        StartValue(o, byte, starts, seen, depth + 1);
      }
      return;
    case Kind::kAny:
      if (byte == '{') {
        f.kind = kObject;
      } else if (byte == '[') {
        f.kind = kArray;
      } else if (byte == '"') {
        f.kind = kString;
      } else if (byte == '-' || IsDigit(byte)) {
        f.kind = kNumber;
      } else if (byte == 't' || byte == 'f' || byte == 'n') {
        f.kind = kLiteral;
        f.node = grammar_->keyword_literals();
        f.set = (uint64_t{1} << grammar_->node(f.node).literals.size()) - 1;
      } else {
        return;
      }
      break;
    case Kind::kObject:
      if (byte != '{') return;
      f.kind = kObject;
      break;
    case Kind::kArray:
      if (byte != '[') return;
      f.kind = kArray;
      break;
    case Kind::kString:
      if (byte != '"') return;
      f.kind = kString;
      break;
    case Kind::kNumber:
    case Kind::kInteger:
      if (byte != '-' && !IsDigit(byte)) return;
      f.kind = kNumber;
      break;
    case Kind::kLiterals:
      f.kind = kLiteral;
      f.set = g.literals.size() >= 64 ? ~uint64_t{0} : (uint64_t{1} << g.literals.size()) - 1;
      break;
    case Kind::kToolCall:
      if (byte != static_cast<uint8_t>(JsonGrammar::kSpecialMark)) return;
      f.kind = kToolCall;
      f.set = g.literals.size() >= 64 ? ~uint64_t{0} : (uint64_t{1} << g.literals.size()) - 1;
      break;
    case Kind::kToolCallList:
      if (byte != static_cast<uint8_t>(JsonGrammar::kSpecialMark)) return;
      f.kind = kToolCallList;
      f.phase = kListBeforeCall;
      break;
    case Kind::kToolArgs:
    case Kind::kText:
    case Kind::kCfg:
      return;  // only inside a kToolCall; only the root (kCfg: CfgMatcher)
  }
  starts->push_back(f);
}

bool JsonMatcher::WhitespaceAllowed(const Frame& f) const {
  switch (f.kind) {
    case kValue:
      return true;
    case kObject:
      return f.phase == kObjFirst || f.phase == kObjAfterKey || f.phase == kObjAfterValue || f.phase == kObjAfterComma;
    case kArray:
      return f.phase == kArrFirst || f.phase == kArrAfterItem || f.phase == kArrAfterComma;
    default:
      return false;
  }
}

bool JsonMatcher::AcceptsEnd(const Frame& f) const {
  if (f.kind == kToolCallList) return f.phase == kListAfterCall;
  if (f.kind == kPatternText) return grammar_->node(f.node).pattern->Accepting(f.re);
  if (f.kind == kNumber) {
    const GrammarNode& g = grammar_->node(f.node);  // a bounded number's node holds its automaton
    if (g.pattern != nullptr) return f.phase != kNumStart && g.pattern->Accepting(f.re);
    return f.phase == kNumZero || f.phase == kNumInt || f.phase == kNumFrac || f.phase == kNumExp;
  }
  if (f.kind == kLiteral) {
    const auto& lits = grammar_->node(f.node).literals;
    for (size_t i = 0; i < lits.size() && i < 64; ++i)
      if ((f.set >> i & 1) && static_cast<int64_t>(lits[i].size()) == f.a) return true;
  }
  return false;
}

void JsonMatcher::AdvanceStack(Stack stack, uint8_t byte, std::vector<Stack>* out) const {
  while (true) {
    if (stack.frames.empty()) return;  // the root value is closed: nothing may follow
    Frame& top = stack.frames.back();
    if (IsWhitespace(byte) && WhitespaceAllowed(top)) {
      const bool before_root = stack.frames.size() == 1 && top.kind == kValue;
      if (byte != ' ' || before_root || stack.whitespace_run >= kMaxWhitespaceRun) return;
      ++stack.whitespace_run;
      out->push_back(std::move(stack));
      return;
    }
    if (top.kind == kValue) {
      std::vector<Frame> starts;
      std::vector<int32_t> seen;
      StartValue(top.node, byte, &starts, &seen);
      for (size_t i = 0; i < starts.size(); ++i) {
        Stack branch = i + 1 == starts.size() ? std::move(stack) : stack;
        branch.frames.back() = starts[i];
        AdvanceStack(std::move(branch), byte, out);
      }
      return;
    }
    Frame push;
    const Step step = StepFrame(top, byte, &push);
    switch (step) {
      case Step::kReject:
        return;
      case Step::kConsumed:
        stack.whitespace_run = 0;
        out->push_back(std::move(stack));
        return;
      case Step::kPush:
      case Step::kConsumedPush:
        if (static_cast<int>(stack.frames.size()) >= kMaxDepth) return;
        stack.frames.push_back(push);
        if (step == Step::kPush) continue;  // the new frame reads the byte
        stack.whitespace_run = 0;
        out->push_back(std::move(stack));
        return;
      case Step::kDoneConsumed:
      case Step::kDoneNotConsumed: {
        const Frame child = top;
        stack.frames.pop_back();
        if (stack.frames.empty()) {
          if (step == Step::kDoneNotConsumed) return;  // a byte after the root value
          stack.whitespace_run = 0;
          out->push_back(std::move(stack));
          return;
        }
        // A finished child can finish its parent too (a tool call's closing tag), and so on up.
        Frame finished = child;
        while (!stack.frames.empty() && ChildDone(stack.frames.back(), finished)) {
          finished = stack.frames.back();
          stack.frames.pop_back();
        }
        if (stack.frames.empty() && step == Step::kDoneNotConsumed) return;
        if (step == Step::kDoneNotConsumed) continue;  // the parent reads the byte
        stack.whitespace_run = 0;
        out->push_back(std::move(stack));
        return;
      }
    }
  }
}

namespace {

// Property indices an object may write next from `from` on: each optional one up to and
// including the first required one (the schema's order; a required property is never skipped).
uint64_t KeyCandidates(const GrammarNode& g, int64_t from) {
  uint64_t set = 0;
  for (size_t i = static_cast<size_t>(from); i < g.properties.size(); ++i) {
    set |= uint64_t{1} << i;
    if (g.properties[i].required) break;
  }
  return set;
}

bool RequiredLeft(const GrammarNode& g, int64_t from) {
  for (size_t i = static_cast<size_t>(from); i < g.properties.size(); ++i)
    if (g.properties[i].required) return true;
  return false;
}

// One byte of UTF-8 text in a string or raw-text frame: code points counted at their lead byte
// (a), continuation bytes still expected (b) in the range [set >> 8, set & 0xff]. False for
// bytes no valid UTF-8 has there (overlongs, surrogates, past U+10FFFF).
bool Utf8Step(int64_t& a, int64_t& b, uint64_t& set, uint8_t c) {
  if (b > 0) {
    if (c < (set >> 8) || c > (set & 0xff)) return false;
    --b;
    set = Range(0x80, 0xBF);
    return true;
  }
  ++a;
  if (c < 0x80) return true;
  if (c >= 0xC2 && c <= 0xDF) {
    b = 1, set = Range(0x80, 0xBF);
  } else if (c == 0xE0) {
    b = 2, set = Range(0xA0, 0xBF);
  } else if (c == 0xED) {
    b = 2, set = Range(0x80, 0x9F);  // no UTF-16 surrogates
  } else if (c >= 0xE1 && c <= 0xEF) {
    b = 2, set = Range(0x80, 0xBF);
  } else if (c == 0xF0) {
    b = 3, set = Range(0x90, 0xBF);
  } else if (c >= 0xF1 && c <= 0xF3) {
    b = 3, set = Range(0x80, 0xBF);
  } else if (c == 0xF4) {
    b = 3, set = Range(0x80, 0x8F);
  } else {
    return false;
  }
  return true;
}

// GLM's tool-call parser ends an argument at the first "</arg_value>" of the text and the call at
// the first "</tool_call>", special token or not: text inside a forced call (a raw string
// argument, a JSON string) must not spell either, or the call the client gets would be cut
// short. guard: the last (guard & 15) bytes are that many of the first bytes of "</arg_value>"
// (bit 4 clear) or "</tool_call>" (bit 4 set); false for the byte that would complete one.
bool TagGuardStep(uint8_t& guard, uint8_t c) {
  static constexpr std::string_view kTags[2] = {"</arg_value>", "</tool_call>"};
  static_assert(kTags[0].size() == kTags[1].size());
  const int len = guard & 15;
  const int which = guard >> 4;
  int next_len = 0, next_which = 0;
  if (len == 2 && (c == kTags[0][2] || c == kTags[1][2])) {
    next_which = c == kTags[1][2] ? 1 : 0;
    next_len = 3;
  } else if (len != 2 && len > 0 && static_cast<uint8_t>(kTags[which][len]) == c) {
    next_which = which;
    next_len = len + 1;
  } else if (c == '<') {
    next_len = 1;  // neither tag has a '<' past its first byte, so no longer overlap restarts
  }
  if (next_len == static_cast<int>(kTags[0].size())) return false;
  guard = static_cast<uint8_t>(next_len | (next_which << 4));
  return true;
}

// The candidates of `set` whose text (text(i)) has byte c at offset a; `complete` is one that
// ends with it (-1: none).
template <typename TextOf>
uint64_t Continuing(uint64_t set, int64_t a, uint8_t c, const TextOf& text, int* complete) {
  uint64_t next = 0;
  for (uint64_t s = set; s != 0; s &= s - 1) {
    const int i = std::countr_zero(s);
    const std::string& t = text(i);
    if (static_cast<int64_t>(t.size()) <= a || static_cast<uint8_t>(t[a]) != c) continue;
    next |= uint64_t{1} << i;
    if (static_cast<int64_t>(t.size()) == a + 1) *complete = i;
  }
  return next;
}

}  // namespace

JsonMatcher::Step JsonMatcher::StepFrame(Frame& f, uint8_t c, Frame* push) const {
  auto utf8 = [](Frame& fr, uint8_t byte) { return Utf8Step(fr.a, fr.b, fr.set, byte); };
  const GrammarNode& g = grammar_->node(f.node);
  switch (f.kind) {
    case kObject: {
      // A kAny node's object: free keys, any values (the node itself).
      const bool free = g.kind == Kind::kAny || g.free_keys;
      const int32_t additional = g.kind == Kind::kAny ? f.node : g.additional;
      auto start_key = [&]() {
        if (free) {
          if (additional < 0) return Step::kReject;
          push->kind = kString;
          push->node = -1;
          return Step::kPush;
        }
        const uint64_t cands = KeyCandidates(g, f.a);
        if (cands == 0) return Step::kReject;
        push->kind = kKey;
        push->node = f.node;
        push->set = cands;
        return Step::kPush;
      };
      switch (f.phase) {
        case kObjOpen:
          if (c != '{') return Step::kReject;
          f.phase = kObjFirst;
          return Step::kConsumed;
        case kObjFirst:
          if (c == '}') return !free && RequiredLeft(g, 0) ? Step::kReject : Step::kDoneConsumed;
          if (c == '"') return start_key();
          return Step::kReject;
        case kObjAfterKey:
          if (c != ':') return Step::kReject;
          f.phase = kObjInValue;
          push->kind = kValue;
          push->node = free ? additional : g.properties[f.b].node;
          return Step::kConsumedPush;
        case kObjAfterValue:
          if (c == '}') return !free && RequiredLeft(g, f.a) ? Step::kReject : Step::kDoneConsumed;
          if (c == ',') {
            if (!free && KeyCandidates(g, f.a) == 0) return Step::kReject;
            f.phase = kObjAfterComma;
            return Step::kConsumed;
          }
          return Step::kReject;
        case kObjAfterComma:
          if (c == '"') return start_key();
          return Step::kReject;
        default:
          return Step::kReject;
      }
    }
    case kKey: {  // keys are distinct and end in '"': at most one completes, and then alone
      int complete = -1;
      const uint64_t next = Continuing(f.set, f.a, c, [&](int i) -> const std::string& { return g.properties[i].key_literal; },
                                       &complete);
      if (next == 0) return Step::kReject;
      f.set = complete >= 0 ? uint64_t{1} << complete : next;
      ++f.a;
      return complete >= 0 ? Step::kDoneConsumed : Step::kConsumed;
    }
    case kArray: {
      const bool any = g.kind == Kind::kAny;
      const int64_t min_items = any ? 0 : g.min_items;
      const int64_t max_items = any ? -1 : g.max_items;
      const int32_t items = any ? f.node : g.items;
      switch (f.phase) {
        case kArrOpen:
          if (c != '[') return Step::kReject;
          f.phase = kArrFirst;
          return Step::kConsumed;
        case kArrFirst:
          if (c == ']') return min_items == 0 ? Step::kDoneConsumed : Step::kReject;
          if (max_items == 0) return Step::kReject;
          [[fallthrough]];
        case kArrAfterComma:
          if (c == ']') return Step::kReject;
          f.phase = kArrInItem;
          push->kind = kValue;
          push->node = items;
          return Step::kPush;
        case kArrAfterItem:
          if (c == ']') return f.a >= min_items ? Step::kDoneConsumed : Step::kReject;
          if (c == ',' && (max_items < 0 || f.a < max_items)) {
            f.phase = kArrAfterComma;
            return Step::kConsumed;
          }
          return Step::kReject;
        default:
          return Step::kReject;
      }
    }
    case kString: {
      const bool bounded = f.node >= 0 && g.kind == Kind::kString;
      const int64_t min_length = bounded ? g.min_length : 0;
      const int64_t max_length = bounded ? g.max_length : -1;
      const bool room = max_length < 0 || f.a < max_length;
      // A pattern reads the string's value: raw bytes as they come, an escape as the byte it stands
      // for (\u escapes are refused there: the value's characters are written raw).
      const RegexDfa* pattern = bounded ? g.pattern.get() : nullptr;
      // The value's next byte (f.a counts its character already) keeps a match within the bounds.
      auto matches = [&](uint8_t value_byte) {
        if (pattern == nullptr) return true;
        f.re = pattern->Next(f.re, value_byte);
        return pattern->CanEndWithin(f.re, f.a, min_length, max_length);
      };
      if (guard_tags_ && f.phase != kStrOpen && !TagGuardStep(f.tag_guard, c)) return Step::kReject;
      switch (f.phase) {
        case kStrOpen:
          if (c != '"') return Step::kReject;
          f.phase = kStrIn;
          return Step::kConsumed;
        case kStrIn:
          if (f.b > 0) return utf8(f, c) && matches(c) ? Step::kConsumed : Step::kReject;
          if (c == '"')
            return f.a >= min_length && (pattern == nullptr || pattern->Accepting(f.re)) ? Step::kDoneConsumed : Step::kReject;
          if (c < 0x20 || !room) return Step::kReject;
          if (c == '\\') {
            ++f.a;
            f.phase = kStrEscape;
            if (pattern == nullptr) return Step::kConsumed;
            for (char e : std::string_view("\"\\/bfnrt"))  // some escape must continue the match
              if (pattern->CanEndWithin(pattern->Next(f.re, EscapedByte(e)), f.a, min_length, max_length))
                return Step::kConsumed;
            return Step::kReject;
          }
          return utf8(f, c) && matches(c) ? Step::kConsumed : Step::kReject;
        case kStrEscape:
          if (c == 'u' && pattern == nullptr) {
            f.phase = kStrHex;
            f.b = 0;
            return Step::kConsumed;
          }
          if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') {
            f.phase = kStrIn;
            return matches(EscapedByte(c)) ? Step::kConsumed : Step::kReject;
          }
          return Step::kReject;
        default: {  // \u hex digits: phase - kStrHex seen so far
          const int v = HexValue(c);
          if (v < 0) return Step::kReject;
          f.b = f.b * 16 + v;
          ++f.phase;
          // Refuse surrogates (D800-DFFF) at the second digit, so no state is a dead end.
          if (f.phase == kStrHex + 2 && f.b >= 0xD8 && f.b <= 0xDF) return Step::kReject;
          if (f.phase == kStrHex + 4) {
            f.phase = kStrIn;
            f.b = 0;
          }
          return Step::kConsumed;
        }
      }
    }
    case kNumber: {
      if (g.pattern != nullptr) {  // bounds: the digits follow the range's automaton
        if (const int32_t next = g.pattern->Next(f.re, c); next >= 0) {
          f.re = next;
          f.phase = kNumInt;
          return Step::kConsumed;
        }
        return f.phase != kNumStart && g.pattern->Accepting(f.re) ? Step::kDoneNotConsumed : Step::kReject;
      }
      const bool integer = g.kind == Kind::kInteger;
      switch (f.phase) {
        case kNumStart:
          if (c == '-') {
            f.phase = kNumMinus;
            return Step::kConsumed;
          }
          [[fallthrough]];
        case kNumMinus:
          if (c == '0') {
            f.phase = kNumZero;
            return Step::kConsumed;
          }
          if (c >= '1' && c <= '9') {
            f.phase = kNumInt;
            f.b = 1;
            return Step::kConsumed;
          }
          return Step::kReject;
        case kNumZero:
        case kNumInt:
          if (IsDigit(c)) {
            if (f.phase == kNumZero || f.b >= kMaxIntegerDigits) return Step::kReject;
            ++f.b;
            return Step::kConsumed;
          }
          if (c == '.' && !integer) {
            f.phase = kNumDot;
            return Step::kConsumed;
          }
          if ((c == 'e' || c == 'E') && !integer) {
            f.phase = kNumE;
            return Step::kConsumed;
          }
          return Step::kDoneNotConsumed;
        case kNumDot:
          if (!IsDigit(c)) return Step::kReject;
          f.phase = kNumFrac;
          f.b = 1;
          return Step::kConsumed;
        case kNumFrac:
          if (IsDigit(c)) {
            if (f.b >= kMaxFractionDigits) return Step::kReject;
            ++f.b;
            return Step::kConsumed;
          }
          if (c == 'e' || c == 'E') {
            f.phase = kNumE;
            return Step::kConsumed;
          }
          return Step::kDoneNotConsumed;
        case kNumE:
          if (c == '+' || c == '-') {
            f.phase = kNumExpSign;
            return Step::kConsumed;
          }
          [[fallthrough]];
        case kNumExpSign:
          if (!IsDigit(c)) return Step::kReject;
          f.phase = kNumExp;
          f.b = 1;
          return Step::kConsumed;
        case kNumExp:
          if (IsDigit(c)) {
            if (f.b >= kMaxExponentDigits) return Step::kReject;
            ++f.b;
            return Step::kConsumed;
          }
          return Step::kDoneNotConsumed;
        default:
          return Step::kReject;
      }
    }
    case kToolCall: {  // a tool's opening "<tool_call>NAME..." up to the next tag's mark (prefix-free)
      int complete = -1;
      const uint64_t next = Continuing(f.set, f.a, c, [&](int i) -> const std::string& { return g.literals[i]; }, &complete);
      if (next == 0) return Step::kReject;
      if (complete < 0) {
        f.set = next;
        ++f.a;
        return Step::kConsumed;
      }
      const int32_t args = g.options[complete];
      f = Frame();
      f.kind = kToolArgs;
      f.node = args;
      return Step::kConsumed;
    }
    case kToolCallList: {  // the next call's opening (a special token), or the newline before it
      if (f.phase == kListAfterCall && c == '\n') {
        f.phase = kListBeforeCall;
        return Step::kConsumed;
      }
      if (c != static_cast<uint8_t>(JsonGrammar::kSpecialMark)) return Step::kReject;
      push->kind = kValue;
      push->node = g.items;
      return Step::kPush;
    }
    case kToolArgs: {
      switch (f.phase) {
        case kArgsNext: {
          const uint64_t cands = KeyCandidates(g, f.a);
          if (cands == 0) return Step::kReject;
          push->kind = kKey;
          push->node = f.node;
          push->set = cands;
          return Step::kPush;
        }
        case kArgsInValue: {
          const GrammarNode::Property& p = g.properties[f.b];
          push->node = p.node;
          if (!p.raw_text) {
            push->kind = kValue;
          } else if (grammar_->node(p.node).kind == Kind::kLiterals) {
            const size_t n = grammar_->node(p.node).literals.size();
            push->kind = kLiteral;
            push->set = n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
          } else {
            push->kind = kRawText;
            push->phase = kStrIn;
          }
          return Step::kPush;
        }
        default:
          push->kind = kLiteral;
          push->node = g.close_literal;
          push->set = 1;
          return Step::kPush;
      }
    }
    case kRawText: {  // a string argument's text, up to the special token that closes it
      const bool bounded = f.node >= 0 && g.kind == Kind::kString;
      const RegexDfa* pattern = bounded ? g.pattern.get() : nullptr;
      if (c == static_cast<uint8_t>(JsonGrammar::kSpecialMark) && f.b == 0)
        return f.a >= (bounded ? g.min_length : 0) && (pattern == nullptr || pattern->Accepting(f.re))
                   ? Step::kDoneNotConsumed
                   : Step::kReject;
      if (f.b == 0 && c == 0) return Step::kReject;
      if (f.b == 0 && bounded && g.max_length >= 0 && f.a >= g.max_length) return Step::kReject;
      if (!TagGuardStep(f.tag_guard, c)) return Step::kReject;
      if (!utf8(f, c)) return Step::kReject;
      if (pattern == nullptr) return Step::kConsumed;
      f.re = pattern->Next(f.re, c);
      return pattern->CanEndWithin(f.re, f.a, g.min_length, g.max_length) ? Step::kConsumed : Step::kReject;
    }
    case kPatternText:  // the DFA holds only valid UTF-8 and never the special-token mark
      f.re = g.pattern->Next(f.re, c);
      return f.re >= 0 ? Step::kConsumed : Step::kReject;
    case kLiteral: {
      uint64_t next = 0;
      bool ended = false;  // a candidate is complete before this byte
      for (uint64_t s = f.set; s != 0; s &= s - 1) {
        const int i = std::countr_zero(s);
        const std::string& lit = g.literals[i];
        if (static_cast<int64_t>(lit.size()) == f.a) ended = true;
        if (static_cast<int64_t>(lit.size()) > f.a && static_cast<uint8_t>(lit[f.a]) == c) next |= uint64_t{1} << i;
      }
      if (next == 0) return ended ? Step::kDoneNotConsumed : Step::kReject;
      f.set = next;
      ++f.a;
      for (uint64_t s = next; s != 0; s &= s - 1)
        if (static_cast<int64_t>(g.literals[std::countr_zero(s)].size()) > f.a) return Step::kConsumed;
      return Step::kDoneConsumed;  // every candidate left is complete: nothing can extend it
    }
    default:
      return Step::kReject;
  }
}

bool JsonMatcher::ChildDone(Frame& parent, const Frame& child) const {
  if (parent.kind == kToolCallList) {  // a call is complete: the list is too at its most calls
    ++parent.a;
    parent.phase = kListAfterCall;
    const int64_t max_calls = grammar_->node(parent.node).max_items;
    return max_calls >= 0 && parent.a >= max_calls;
  }
  if (parent.kind == kToolArgs) {
    const GrammarNode& g = grammar_->node(parent.node);
    switch (parent.phase) {
      case kArgsNext: {
        const int prop = std::countr_zero(child.set);
        if (g.properties[prop].node < 0) return true;  // the closing tag: the call is complete
        parent.b = prop;
        parent.phase = kArgsInValue;
        return false;
      }
      case kArgsInValue:
        parent.phase = kArgsAfterValue;
        return false;
      default:  // the value's closing tag
        parent.phase = kArgsNext;
        parent.a = parent.b + 1;
        return false;
    }
  }
  if (parent.kind == kObject) {
    if (parent.phase == kObjInValue) {
      parent.phase = kObjAfterValue;
      const GrammarNode& g = grammar_->node(parent.node);
      if (g.kind != Kind::kAny && !g.free_keys) parent.a = parent.b + 1;
    } else {  // a key
      parent.phase = kObjAfterKey;
      parent.b = child.kind == kKey ? std::countr_zero(child.set) : -1;
    }
  } else if (parent.kind == kArray) {
    parent.phase = kArrAfterItem;
    ++parent.a;
  }
  return false;
}

}  // namespace glm::structured
