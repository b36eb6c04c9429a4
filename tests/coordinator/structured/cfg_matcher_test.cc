// CfgMatcher against a reference (cfg_reference.h): a memoised recogniser over code points that reads
// the grammar's flat form directly and decides whole-text membership. On random texts and texts
// derived from each grammar (and their mutations) the matcher fed byte by byte must end with the
// reference's verdict, keep every prefix of an accepted text alive, end only where nothing may
// follow (MustEnd), and give equal keys only to states the reference cannot tell apart. Then
// strict UTF-8, partial characters, copies, keys, and the bounds on depth.
#include "coordinator/structured/cfg_matcher.h"

#include <algorithm>
#include <climits>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/coordinator/structured/cfg_reference.h"

namespace glm::structured {
namespace {

using Type = CfgElement::Type;

using cfg_reference::Alternatives;
using cfg_reference::Decode;
using cfg_reference::MustParse;
using cfg_reference::Encode;
using cfg_reference::InSet;
using cfg_reference::Reference;

// Random texts of the grammar: random alternatives down to a depth, then the shallowest ones.
class Deriver {
 public:
  Deriver(const CfgGrammar& grammar, std::mt19937_64& rng) : g_(grammar), rng_(rng) {
    height_.assign(g_.num_rules(), INT_MAX);
    for (bool changed = true; changed;) {
      changed = false;
      for (int32_t r = 0; r < g_.num_rules(); ++r)
        for (const auto& alt : Alternatives(g_, r)) {
          const int h = AltHeight(alt);
          if (h < height_[r]) height_[r] = h, changed = true;
        }
    }
  }
  std::string Text() {
    std::string out;
    Rule(g_.root(), 0, out);
    return out;
  }

 private:
  static constexpr int kDepth = 14;
  int AltHeight(std::pair<int32_t, int32_t> alt) const {
    int h = 1;
    for (int32_t p = alt.first; p < alt.second; ++p) {
      const CfgElement& e = g_.element(p);
      if (e.type != Type::kRef) continue;
      if (height_[e.value] == INT_MAX) return INT_MAX;
      h = std::max(h, height_[e.value] + 1);
    }
    return h;
  }
  void Rule(int32_t rule, int depth, std::string& out) {
    std::vector<std::pair<int32_t, int32_t>> alts;  // past the depth, only the shallowest
    for (const auto& alt : Alternatives(g_, rule)) {
      const int h = AltHeight(alt);
      if (h != INT_MAX && (depth < kDepth || h == height_[rule])) alts.push_back(alt);
    }
    const auto [begin, end] = alts[rng_() % alts.size()];
    for (int32_t p = begin; p < end; ++p) {
      const CfgElement& e = g_.element(p);
      if (e.type == Type::kRef) {
        Rule(e.value, depth + 1, out);
        continue;
      }
      const auto& ranges = g_.code_points(e.value).ranges();
      const auto [lo, hi] = ranges[rng_() % ranges.size()];
      const uint32_t span = rng_() % 2 ? std::min<uint32_t>(hi - lo, 15) : hi - lo;
      out += Encode(lo + static_cast<uint32_t>(rng_() % (static_cast<uint64_t>(span) + 1)));
    }
  }

  const CfgGrammar& g_;
  std::mt19937_64& rng_;
  std::vector<int> height_;  // fewest nested rules to finish
};

// Whether some byte continues the matcher.
bool AnyByteContinues(const CfgMatcher& m) {
  for (int b = 0; b < 256; ++b) {
    CfgMatcher copy = m;
    if (copy.Advance(static_cast<uint8_t>(b))) return true;
  }
  return false;
}

// The shortest text that finishes the matcher's state, searched over candidate characters: ASCII
// and one or two of every class the grammars below use, so that a search that runs out of states
// means no text finishes it. nullopt with *exhausted false: the search gave up (too many states).
std::optional<std::string> Completion(const CfgMatcher& start, size_t max_states, bool* exhausted) {
  static const std::vector<std::string> candidates = [] {
    std::vector<std::string> c;
    for (int b = 0; b < 0x80; ++b) c.push_back(std::string(1, static_cast<char>(b)));
    for (const char* m : {"\xc3\xa9", "\xce\xb1", "\xcf\x89", "\xe2\x98\x83", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf"})
      c.push_back(m);
    return c;
  }();
  *exhausted = false;
  std::deque<std::pair<CfgMatcher, std::string>> queue = {{start, ""}};
  std::set<std::string> seen = {start.Key()};
  while (!queue.empty()) {
    auto [m, suffix] = std::move(queue.front());
    queue.pop_front();
    if (m.CanEnd()) return suffix;
    for (const std::string& c : candidates) {
      CfgMatcher next = m;
      if (!next.Advance(c) || !seen.insert(next.Key()).second) continue;
      if (seen.size() > max_states) return std::nullopt;
      queue.emplace_back(std::move(next), suffix + c);
    }
  }
  *exhausted = true;
  return std::nullopt;
}

std::string Shown(const std::string& text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (unsigned char c : text)
    s += c >= 0x20 && c < 0x7F && c != '\\' ? std::string(1, static_cast<char>(c))
                                             : std::string{'\\', 'x', kHex[c >> 4], kHex[c & 15]};
  return s;
}

TEST(CfgMatcherTest, AgreesWithAReferenceRecogniserOnRandomAndDerivedTexts) {
  const std::vector<std::string> grammars = {
      R"g(root ::= "a"* "b")g",
      R"g(root ::= ("(" root ")")*)g",
      R"g(root ::= value
value ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ws ( member ( "," ws member )* )? "}"
member ::= string ws ":" ws value ws
array ::= "[" ws ( value ws ( "," ws value ws )* )? "]"
string ::= "\"" [^"\\]* "\""
number ::= "-"? [0-9]+ ("." [0-9]+)?
ws ::= [ ]?)g",
      R"g(root ::= expr
expr ::= term ([-+] expr)?
term ::= factor ([*/] term)?
factor ::= [0-9]+ | "(" expr ")" | "-" factor)g",
      R"g(root ::= "ab" | "abc" | "a" x
x ::= "bd" | "c"+ | "")g",
      R"g(root ::= e "a" e | e e "b" | e
e ::= "" | "c" | d
d ::= "d"?)g",
      R"g(root ::= "a"{2} "b"{1,3} "c"{2,} ("d" | "e"){0,2})g",
      R"g(root ::= ("a"? "b"?)* "c" (e | "d" e)+
e ::= "" | "b")g",
      "root ::= [\xce\xb1-\xcf\x89]+ [^a] | \"\xc3\xa9\" . | ([^a-z] \"b\")*",
      R"g(root ::= item ("," item)*
item ::= [a-c]+ | "[" root? "]")g",
      R"g(root ::= x "a" | x "b" | y
x ::= "a" x | ""
y ::= "a"* "c")g",
      R"g(root ::= "\x41" | "\u00e9"+ | [\t\n] "\U0001F600" | "\u2603"{1,2} "a")g",
      R"g(root ::= . .? "z" | [^\x00-\x7f]{2})g",
  };
  // Pieces of random texts: the grammars' characters, multi-byte characters, and broken UTF-8.
  const std::vector<std::string> pieces = {
      "a", "b", "c", "d", "e", "z", "A", "(", ")", "[", "]", "{", "}", ",", ":", "\"", "\\", " ", "0", "7", ".",
      "-", "+", "*", "/", "t", "true", "null", "\t", "\n", "\xc3\xa9", "\xce\xb1", "\xce\xbb", "\xcf\x89",
      "\xe2\x98\x83", "\xf0\x9f\x98\x80", "\xce", "\xe2\x98", "\x80", "\xff", "\xc0\x80", "\xed\xa0\x80"};
  std::mt19937_64 rng(5);
  for (const std::string& text_of_grammar : grammars) {
    auto grammar = MustParse(text_of_grammar);
    ASSERT_NE(grammar, nullptr);
    Reference reference(*grammar);
    Deriver deriver(*grammar, rng);
    std::map<std::string, std::string> prefix_of_key;  // first prefix seen with each key
    int accepted = 0, refused = 0, key_checks = 0, completions = 0;
    for (int i = 0; i < 3000; ++i) {
      std::string text;
      if (i % 3 == 2) {
        const int n = static_cast<int>(rng() % 8);
        for (int k = 0; k < n; ++k) text += pieces[rng() % pieces.size()];
      } else {
        text = deriver.Text();
        if (i % 3 == 1 && !text.empty()) {  // one mutation
          const size_t at = rng() % (text.size() + 1);
          const std::string& piece = pieces[rng() % pieces.size()];
          if (rng() % 3 == 0) text.insert(at, piece);
          else if (at < text.size()) text.erase(at, 1);
          else text += piece;
        }
      }
      const bool expected = reference.Accepts(text);
      (expected ? accepted : refused)++;
      if (i % 3 == 0) {
        ASSERT_TRUE(expected) << "derived text refused by the reference: " << Shown(text);
      }
      CfgMatcher m(grammar.get());
      for (size_t k = 0; k < text.size() && !m.dead(); ++k) {
        const bool ok = m.Advance(static_cast<uint8_t>(text[k]));
        ASSERT_EQ(ok, !m.dead()) << text_of_grammar << "\ntext " << Shown(text);
        if (expected) {
          ASSERT_TRUE(ok) << text_of_grammar << "\nprefix " << Shown(text.substr(0, k + 1)) << " of " << Shown(text);
        }
        if (!ok || key_checks >= 400) continue;
        // Equal keys, equal futures: the rest of this text and a random tail get one verdict.
        const std::string prefix = text.substr(0, k + 1);
        auto [it, fresh] = prefix_of_key.emplace(m.Key(), prefix);
        if (fresh || it->second == prefix) continue;
        ++key_checks;
        std::string tail;
        for (int t = static_cast<int>(rng() % 4); t > 0; --t) tail += pieces[rng() % pieces.size()];
        for (const std::string& rest : {text.substr(k + 1), tail, text.substr(k + 1) + tail}) {
          ASSERT_EQ(reference.Accepts(prefix + rest), reference.Accepts(it->second + rest))
              << text_of_grammar << "\nequal keys after " << Shown(prefix) << " and " << Shown(it->second)
              << " but not after appending " << Shown(rest);
        }
      }
      ASSERT_EQ(m.CanEnd(), expected) << text_of_grammar << "\ntext " << Shown(text);
      if (i % 5 == 0) {
        ASSERT_EQ(m.MustEnd(), m.CanEnd() && !AnyByteContinues(m)) << text_of_grammar << "\ntext " << Shown(text);
      }
      // Alive means some text still finishes it (no dead ends to steer a model into).
      std::vector<uint32_t> cps;
      if (!m.dead() && !m.CanEnd() && completions < 60 && Decode(text, cps)) {
        bool exhausted = false;
        const auto suffix = Completion(m, 3000, &exhausted);
        ASSERT_FALSE(exhausted) << text_of_grammar << "\nalive after " << Shown(text) << " but no text finishes it";
        if (suffix) {
          ++completions;
          ASSERT_TRUE(reference.Accepts(text + *suffix)) << text_of_grammar << "\n" << Shown(text) << " + " << Shown(*suffix);
        }
      }
    }
    EXPECT_GE(accepted, 1000) << text_of_grammar;
    EXPECT_GT(key_checks, 20) << text_of_grammar;
    EXPECT_GT(completions, 10) << text_of_grammar;
    EXPECT_GT(refused, 300) << text_of_grammar;
  }
}

// A rule that can never finish, or a class that holds no character, must not leave the matcher
// alive with nothing able to finish it: the grammar is refused, or the prefix is dead.
TEST(CfgMatcherTest, NoDeadEndsThroughRulesOrClassesThatCannotFinish) {
  struct Case {
    const char* grammar;
    const char* dead_after;   // a prefix that no text continues
    const char* alive_after;  // one that some text does
  };
  const Case cases[] = {
      {"root ::= \"a\" | \"b\" x\nx ::= \"c\" x", "b", "a"},
      {"root ::= \"ab\" | x\nx ::= \"a\" x", "aa", "a"},
      {"root ::= \"a\" | \"b\" [^\\x00-\\U0010FFFF]", "b", ""},
      {"root ::= \"a\" | \"b\" [^\\x00-\\uD7FF\\uE000-\\U0010FFFF]", "b", ""},
      {"root ::= \"a\" (\"b\" y)?\ny ::= \"c\" | \"d\" y | z\nz ::= \"e\" z", "abe", "abdd"},
  };
  for (const Case& c : cases) {
    auto grammar = CfgGrammar::ParseGbnf(c.grammar, "grammar");
    if (!grammar.ok()) {
      EXPECT_EQ(grammar.status().code(), absl::StatusCode::kInvalidArgument) << c.grammar;
      continue;
    }
    CfgMatcher dead(grammar->get()), alive(grammar->get());
    EXPECT_FALSE(dead.Advance(c.dead_after)) << c.grammar << "\nalive after '" << c.dead_after << "'";
    EXPECT_TRUE(alive.Advance(c.alive_after)) << c.grammar;
  }
  // Nor may a class that holds nothing keep MustEnd from saying that nothing may follow.
  auto ends = CfgGrammar::ParseGbnf("root ::= \"a\" | \"a\" [^\\x00-\\U0010FFFF]", "grammar");
  if (ends.ok()) {
    CfgMatcher m(ends->get());
    EXPECT_TRUE(m.Advance("a") && m.MustEnd());
  }
}

TEST(CfgMatcherTest, DeadBytesAndEnding) {
  auto ab = MustParse(R"g(root ::= "ab")g");
  CfgMatcher m(ab.get());
  EXPECT_FALSE(m.dead());
  EXPECT_FALSE(m.CanEnd());
  EXPECT_FALSE(m.MustEnd());
  EXPECT_TRUE(m.Advance('a'));
  EXPECT_FALSE(m.CanEnd());
  EXPECT_FALSE(m.MustEnd());
  CfgMatcher wrong = m;
  EXPECT_FALSE(wrong.Advance('x'));
  EXPECT_TRUE(wrong.dead());
  EXPECT_FALSE(wrong.CanEnd());
  EXPECT_FALSE(wrong.MustEnd());
  EXPECT_FALSE(wrong.Advance('b'));  // dead stays dead
  EXPECT_TRUE(m.Advance('b'));
  EXPECT_TRUE(m.CanEnd());
  EXPECT_TRUE(m.MustEnd());
  EXPECT_FALSE(m.Advance('b'));
  EXPECT_TRUE(m.dead());
  // The string form stops at the first byte that cannot go on.
  CfgMatcher s(ab.get());
  EXPECT_FALSE(s.Advance("axb"));
  EXPECT_TRUE(s.dead());
  EXPECT_TRUE(CfgMatcher(ab.get()).Advance("ab"));

  auto plus = MustParse(R"g(root ::= "a"+)g");
  CfgMatcher p(plus.get());
  EXPECT_TRUE(p.Advance("a") && p.CanEnd());
  EXPECT_FALSE(p.MustEnd());
  auto either = MustParse(R"g(root ::= "a" | "ab" | "a" "c"{2})g");
  CfgMatcher e(either.get());
  EXPECT_TRUE(e.Advance("a"));
  EXPECT_TRUE(e.CanEnd());
  EXPECT_FALSE(e.MustEnd());
  CfgMatcher e2 = e;
  EXPECT_TRUE(e2.Advance("c"));
  EXPECT_FALSE(e2.CanEnd());
  EXPECT_TRUE(e2.Advance("c") && e2.MustEnd());
  EXPECT_TRUE(e.Advance("b") && e.MustEnd());
  auto empty = MustParse(R"g(root ::= "")g");
  CfgMatcher n(empty.get());
  EXPECT_TRUE(n.CanEnd());
  EXPECT_TRUE(n.MustEnd());
  EXPECT_FALSE(n.Advance(' '));
  auto bounded = MustParse(R"g(root ::= [0-9]{1,3})g");
  CfgMatcher d(bounded.get());
  EXPECT_TRUE(d.Advance("12"));
  EXPECT_FALSE(d.MustEnd());
  EXPECT_TRUE(d.Advance("3") && d.MustEnd());
}

TEST(CfgMatcherTest, KeysTellStatesApartAndMeetWhereFuturesMeet) {
  auto ab_star = MustParse(R"g(root ::= ("a" | "b")* "c")g");
  CfgMatcher a(ab_star.get()), b(ab_star.get()), ba(ab_star.get()), c(ab_star.get());
  EXPECT_TRUE(a.Advance("a"));
  EXPECT_TRUE(b.Advance("b"));
  EXPECT_TRUE(ba.Advance("bab"));
  EXPECT_TRUE(c.Advance("ac"));
  EXPECT_EQ(a.Key(), b.Key());
  EXPECT_EQ(a.Key(), ba.Key());
  EXPECT_NE(a.Key(), c.Key());

  auto abc = MustParse(R"g(root ::= "a" "b" "c")g");
  std::set<std::string> keys;
  CfgMatcher m(abc.get());
  keys.insert(m.Key());
  for (char ch : std::string("abc")) {
    EXPECT_TRUE(m.Advance(static_cast<uint8_t>(ch)));
    keys.insert(m.Key());
  }
  EXPECT_EQ(keys.size(), 4u);

  auto parens = MustParse(R"g(root ::= ("(" root ")")*)g");
  CfgMatcher one(parens.get()), two(parens.get()), closed(parens.get());
  EXPECT_TRUE(one.Advance("("));
  EXPECT_TRUE(two.Advance("(("));
  EXPECT_TRUE(closed.Advance("(()"));
  EXPECT_NE(one.Key(), two.Key());
  EXPECT_EQ(one.Key(), closed.Key());  // one parenthesis open either way

  auto any = MustParse("root ::= .*");
  CfgMatcher x(any.get()), eacute(any.get()), half(any.get());
  EXPECT_TRUE(x.Advance("x"));
  EXPECT_TRUE(eacute.Advance("\xc3\xa9"));
  EXPECT_TRUE(half.Advance("\xc3"));
  EXPECT_EQ(x.Key(), eacute.Key());
  EXPECT_NE(x.Key(), half.Key());  // inside a character
  EXPECT_TRUE(x.CanEnd() && !half.CanEnd());
}

TEST(CfgMatcherTest, CopiesAreIndependent) {
  auto parens = MustParse(R"g(root ::= ("(" root ")")*)g");
  CfgMatcher original(parens.get());
  ASSERT_TRUE(original.Advance("(("));
  const std::string key = original.Key();
  CfgMatcher copy = original;
  EXPECT_EQ(copy.Key(), key);
  EXPECT_TRUE(copy.Advance("))") && copy.CanEnd());
  EXPECT_FALSE(original.CanEnd());
  EXPECT_EQ(original.Key(), key);
  CfgMatcher killed = original;
  EXPECT_FALSE(killed.Advance("x"));
  EXPECT_FALSE(original.dead());
  EXPECT_EQ(original.Key(), key);
  CfgMatcher assigned(parens.get());
  assigned = killed;
  EXPECT_TRUE(assigned.dead());
  assigned = original;
  EXPECT_TRUE(assigned.Advance("))") && assigned.CanEnd());
  EXPECT_EQ(original.Key(), key);
}

TEST(CfgMatcherTest, BytesAreStrictUtf8) {
  auto any = MustParse("root ::= .*");
  auto alive_after = [&](const std::string& bytes) {
    CfgMatcher m(any.get());
    return m.Advance(bytes);
  };
  EXPECT_TRUE(alive_after("a\xc3\xa9\xe2\x98\x83\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\xee\x80\x80"));
  EXPECT_FALSE(alive_after("\xc0\x80"));      // overlong NUL
  EXPECT_FALSE(alive_after("\xc0"));          // no character starts so
  EXPECT_FALSE(alive_after("\xc1\xbf"));      // overlong
  EXPECT_FALSE(alive_after("\xe0\x80\x80"));  // overlong, three bytes
  EXPECT_FALSE(alive_after("\xe0\x9f"));      // already overlong at the second byte
  EXPECT_TRUE(alive_after("\xe0\xa0"));
  EXPECT_FALSE(alive_after("\xf0\x8f"));      // overlong, four bytes
  EXPECT_TRUE(alive_after("\xed"));           // U+D000.. still possible
  EXPECT_TRUE(alive_after("\xed\x9f\xbf"));   // U+D7FF
  EXPECT_FALSE(alive_after("\xed\xa0"));      // a surrogate, whatever follows
  EXPECT_FALSE(alive_after("\xed\xa0\x80"));
  EXPECT_TRUE(alive_after("\xf4\x8f"));
  EXPECT_FALSE(alive_after("\xf4\x90"));      // past U+10FFFF
  EXPECT_FALSE(alive_after("\xf5"));
  EXPECT_FALSE(alive_after("\xff"));
  EXPECT_FALSE(alive_after("\x80"));          // a lone continuation byte
  EXPECT_FALSE(alive_after("a\xbf"));
  EXPECT_FALSE(alive_after("\xc3\xa9\x80"));
  EXPECT_FALSE(alive_after("\xc3" "a"));      // cut short
  EXPECT_FALSE(alive_after("\xe2\x98" "a"));
  CfgMatcher mid(any.get());
  EXPECT_TRUE(mid.Advance("\xf0\x9f\x98"));
  EXPECT_FALSE(mid.CanEnd());  // inside a character
  EXPECT_TRUE(mid.Advance("\x80"));
  EXPECT_TRUE(mid.CanEnd());
}

TEST(CfgMatcherTest, PartialCharactersLiveOnlyIfTheClassCanFinishThem) {
  auto e_acute = MustParse(R"g(root ::= [\u00e9])g");
  auto alive = [](const CfgGrammar* g, const std::string& bytes) { return CfgMatcher(g).Advance(bytes); };
  EXPECT_TRUE(alive(e_acute.get(), "\xc3"));
  EXPECT_FALSE(alive(e_acute.get(), "\xc2"));
  EXPECT_FALSE(alive(e_acute.get(), "\xc3\xa8"));
  CfgMatcher m(e_acute.get());
  EXPECT_TRUE(m.Advance("\xc3"));
  EXPECT_FALSE(m.CanEnd());
  EXPECT_FALSE(m.MustEnd());
  EXPECT_TRUE(m.Advance("\xa9"));
  EXPECT_TRUE(m.MustEnd());

  auto greek = MustParse("root ::= [\xce\xb1-\xcf\x89]");  // [α-ω]: U+03B1..U+03C9
  EXPECT_TRUE(alive(greek.get(), "\xce"));
  EXPECT_FALSE(alive(greek.get(), "\xce\xb0"));
  EXPECT_TRUE(alive(greek.get(), "\xce\xb1"));
  EXPECT_TRUE(alive(greek.get(), "\xcf"));
  EXPECT_TRUE(alive(greek.get(), "\xcf\x89"));
  EXPECT_FALSE(alive(greek.get(), "\xcf\x8a"));
  EXPECT_FALSE(alive(greek.get(), "\xcd"));
  EXPECT_FALSE(alive(greek.get(), "\xd0"));
  EXPECT_FALSE(alive(greek.get(), "a"));

  auto snowman_or_emoji = MustParse(R"g(root ::= "\u2603" | [\U0001F600-\U0001F64F])g");
  EXPECT_TRUE(alive(snowman_or_emoji.get(), "\xe2\x98"));
  EXPECT_FALSE(alive(snowman_or_emoji.get(), "\xe2\x99"));
  EXPECT_TRUE(alive(snowman_or_emoji.get(), "\xf0\x9f\x99"));
  EXPECT_FALSE(alive(snowman_or_emoji.get(), "\xf0\x9f\x9a"));
  EXPECT_FALSE(alive(snowman_or_emoji.get(), "\xf0\x9e"));
  // [^a] takes every character but 'a', including the highest.
  auto not_a = MustParse("root ::= [^a]");
  EXPECT_FALSE(alive(not_a.get(), "a"));
  EXPECT_TRUE(alive(not_a.get(), "\xf4\x8f\xbf\xbf"));
  EXPECT_FALSE(alive(not_a.get(), "\xed\xbf"));
}

TEST(CfgMatcherTest, BoundsEndTheMatchInsteadOfGrowing) {
  auto nested = MustParse(R"g(root ::= "(" root ")" | "x")g");
  CfgMatcher m(nested.get());
  ASSERT_TRUE(m.Advance(std::string(100, '(') + "x" + std::string(100, ')')));
  EXPECT_TRUE(m.MustEnd());
  CfgMatcher deep(nested.get());
  size_t opened = 0;
  while (opened < 4 * CfgMatcher::kMaxDepth + 8 && deep.Advance('(')) ++opened;
  EXPECT_TRUE(deep.dead());
  EXPECT_GE(opened, CfgMatcher::kMaxDepth / 4);
  EXPECT_LE(opened, CfgMatcher::kMaxDepth + 1);

  auto parens = MustParse(R"g(root ::= ("(" root ")")*)g");
  CfgMatcher p(parens.get());
  EXPECT_FALSE(p.Advance(std::string(4 * CfgMatcher::kMaxDepth, '(')));

  // Every 'a' doubles the parses (each may close with 'b' or 'c'): past kMaxStacks the match ends.
  auto ambiguous = MustParse(R"g(root ::= "a" root "b" | "a" root "c" | "")g");
  CfgMatcher a(ambiguous.get());
  int as = 0;
  while (as < 40 && a.Advance('a')) ++as;
  EXPECT_TRUE(a.dead());
  EXPECT_GE(as, 5);
  EXPECT_LE(1u << as, 4 * CfgMatcher::kMaxStacks);
  CfgMatcher few(ambiguous.get());
  EXPECT_TRUE(few.Advance("aaaabcbc") && few.CanEnd());
}

TEST(CfgMatcherTest, RightRecursionKeepsItsDepth) {
  auto list = MustParse(R"g(root ::= "a" root | "a")g");
  CfgMatcher m(list.get());
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(m.Advance('a')) << i;
  EXPECT_TRUE(m.CanEnd());
  EXPECT_FALSE(m.MustEnd());
  auto items = MustParse("root ::= item (\",\" item)*\nitem ::= [0-9]+");
  CfgMatcher n(items.get());
  std::string text = "1";
  for (int i = 0; i < 5000; ++i) text += ",22";
  EXPECT_TRUE(n.Advance(text) && n.CanEnd());
}

// Each (GBNF, regex) pair: the grammar against std::regex of the same language (below).
void ExpectRegexLanguages(const std::vector<std::pair<const char*, const char*>>& cases);

// A repetition of something that can be empty is the repetition of its non-empty texts.

TEST(CfgMatcherTest, RepetitionsOfWhatCanBeEmptyMatchTheirLanguage) {
  ExpectRegexLanguages({
      {R"(root ::= ("a"?)*)", "a*"},
      {R"(root ::= ("a" | "b"?)+)", "[ab]*"},
      {R"(root ::= ("x" "y"?)* "b")", "(xy?)*b"},
      {R"(root ::= ("a"? "b"?)*)", "[ab]*"},
      {R"(root ::= (("a"?)* "x"?)*)", "[ax]*"},
      {"root ::= (e \"x\" | e)*\ne ::= \"\" | \"y\"", "(y?x|y)*"},
      {R"(root ::= ("a"?){2,}"b")", "a*b"},
  });
}

// Left recursion, rewritten as right recursion (CfgGrammar), matches its language.
TEST(CfgMatcherTest, LeftRecursionMatchesItsLanguage) {
  ExpectRegexLanguages({
      {R"(root ::= root "a" | "b")", "ba*"},
      {R"(root ::= root ("x" | "y") | "a" | root "b"?)", "a[xyb]*"},
      {R"(root ::= root root | "a" | "b")", "[ab]+"},
      {"root ::= x\nx ::= x \"a\" x | \"b\"", "b(ab)*"},
      {R"(root ::= root "x" | "")", "x*"},
      {R"(root ::= root | "y")", "y"},
      {"root ::= s\ns ::= s \"a\" t | t\nt ::= t \"b\" | \"x\" | \"y\"", "[xy]b*(a[xy]b*)*"},
      {"root ::= s\ns ::= t \"x\" | \"a\"\nt ::= s \"y\" | \"b\"", "(a|bx)(yx)*"},
      {"root ::= s\ns ::= t \"x\" | \"a\"\nt ::= s \"y\" | s | \"b\"", "(a|bx)(y?x)*"},
      {"root ::= p\np ::= q \"a\" | \"x\"\nq ::= r \"b\" | p \"y\"\nr ::= p | q \"x\"", "x([by](xb)*a)*"},
      {R"(root ::= (root "a")? "b" | root root)", "(ba)*b(b|(ba)*b)*"},
  });
}

// Random grammars over {a, b} with left recursion everywhere (direct, mutual, through empty
// alternatives): each one matches what a recogniser of the grammar as written accepts (the end
// positions of each rule from each start, as a least fixpoint, which left recursion cannot loop),
// on every text of up to 6 characters; the only refusals are roots that can never finish.
TEST(CfgMatcherTest, RandomLeftRecursiveGrammarsKeepTheirLanguage) {
  std::mt19937_64 rng(20261206);
  // Rule r: alternatives of elements, 'a' / 'b' a character, '0'..'3' rule r.
  using Source = std::vector<std::vector<std::string>>;
  int compiled = 0, refused = 0;
  int64_t compared = 0, bounded = 0;
  for (int round = 0; round < 400; ++round) {
    const int n_rules = 1 + static_cast<int>(rng() % 4);
    Source rules(n_rules);
    std::string text = "root ::= r0\n";
    for (int r = 0; r < n_rules; ++r) {
      const int n_alts = 1 + static_cast<int>(rng() % 3);
      text += "r" + std::to_string(r) + " ::=";
      for (int a = 0; a < n_alts; ++a) {
        std::string alt;
        const int len = static_cast<int>(rng() % 4);
        for (int k = 0; k < len; ++k) {
          const int pick = static_cast<int>(rng() % (2 + n_rules));
          alt += pick < 2 ? static_cast<char>('a' + pick) : static_cast<char>('0' + pick - 2);
        }
        rules[r].push_back(alt);
        text += a > 0 ? " |" : "";
        if (alt.empty()) text += " \"\"";
        for (char c : alt) text += c >= 'a' ? std::string(" \"") + c + "\"" : std::string(" r") + c;
      }
      text += "\n";
    }
    // ends[r][i]: where rule r, begun at i, can end in `t`; grown until nothing changes.
    auto accepts = [&](const std::string& t) {
      const size_t n = t.size();
      std::vector<std::vector<std::set<size_t>>> ends(n_rules, std::vector<std::set<size_t>>(n + 1));
      for (bool changed = true; changed;) {
        changed = false;
        for (int r = 0; r < n_rules; ++r)
          for (size_t i = 0; i <= n; ++i)
            for (const std::string& alt : rules[r]) {
              std::set<size_t> at = {i};
              for (char c : alt) {
                std::set<size_t> next;
                for (size_t j : at) {
                  if (c >= 'a') {
                    if (j < n && t[j] == c) next.insert(j + 1);
                  } else {
                    next.insert(ends[c - '0'][j].begin(), ends[c - '0'][j].end());
                  }
                }
                at = std::move(next);
              }
              for (size_t j : at) changed |= ends[r][i].insert(j).second;
            }
      }
      return ends[0][0].count(n) > 0;
    };
    auto grammar = CfgGrammar::ParseGbnf(text, "grammar");
    if (!grammar.ok()) {
      const std::string why(grammar.status().message());
      EXPECT_NE(why.find("can never finish"), std::string::npos) << text << why;
      ++refused;
      continue;
    }
    ++compiled;
    std::vector<std::string> texts = {""};
    for (size_t begin = 0, end = 1; texts.back().size() < 6;) {
      for (size_t i = begin; i < end; ++i)
        for (char c : std::string("ab")) texts.push_back(texts[i] + c);
      begin = end;
      end = texts.size();
    }
    for (const std::string& t : texts) {
      CfgMatcher m(grammar->get());
      bool alive = true;
      for (char c : t) alive = alive && m.Advance(static_cast<uint8_t>(c));
      // A grammar ambiguous enough to pass the matcher's bounds (kMaxStacks parses) ends the text
      // there: a stop, not a verdict.
      if (m.over_bounds()) {
        ++bounded;
        continue;
      }
      ++compared;
      ASSERT_EQ(alive && m.CanEnd(), accepts(t)) << text << "on '" << t << "'";
    }
  }
  // Most compile (the rewrite takes direct and mutual left recursion), and most texts are judged.
  EXPECT_GT(compiled, 3 * refused) << compiled << " compiled, " << refused << " refused";
  EXPECT_GT(compared, 10 * bounded) << compared << " texts compared, " << bounded << " past the bounds";
}

// Each grammar against std::regex of the same language on every text over {a, b, x, y} of up to
// 6 characters (every prefix of an accepted text stays alive on the way).
void ExpectRegexLanguages(const std::vector<std::pair<const char*, const char*>>& cases) {
  for (const auto& [gbnf, pattern] : cases) {
    auto grammar = MustParse(gbnf);
    ASSERT_NE(grammar, nullptr) << gbnf;
    const std::regex judge(pattern);
    std::vector<std::string> texts = {""};
    for (size_t begin = 0, end = 1; end > begin && texts.back().size() < 6;) {
      for (size_t i = begin; i < end; ++i)
        for (char c : std::string("abxy")) texts.push_back(texts[i] + c);
      begin = end;
      end = texts.size();
    }
    for (const std::string& text : texts) {
      CfgMatcher m(grammar.get());
      bool alive = true;
      for (char c : text) alive = alive && m.Advance(static_cast<uint8_t>(c));
      const bool expected = std::regex_match(text, judge);
      EXPECT_EQ(alive && m.CanEnd(), expected) << gbnf << " on '" << text << "'";
    }
  }
}

}  // namespace
}  // namespace glm::structured
