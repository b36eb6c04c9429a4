// CfgGrammar::ParseGbnf and CodePointSet: the GBNF syntax the parser takes (literals and their
// escapes, classes, `.`, groups, repetitions, comments, rules over several lines), checked by
// what the compiled grammar matches under the memoised recogniser of cfg_reference.h (so a fault
// in CfgMatcher cannot hide or fake one in the parser); code point sets against a by-hand
// definition; and the refusals, which must name the field and the place.
#include "coordinator/structured/cfg_grammar.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/coordinator/structured/cfg_reference.h"

namespace glm::structured {
namespace {

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

constexpr uint32_t kSurrogateLo = 0xD800, kSurrogateHi = 0xDFFF;

using cfg_reference::Decode;
using cfg_reference::MustParse;
using cfg_reference::InSet;
using Recogniser = cfg_reference::Reference;

struct SyntaxCase {
  const char* grammar;
  std::vector<std::string> accepted;
  std::vector<std::string> refused;
};

void ExpectLanguage(const SyntaxCase& c) {
  auto grammar = MustParse(c.grammar);
  ASSERT_NE(grammar, nullptr) << c.grammar;
  Recogniser recogniser(*grammar);
  for (const std::string& text : c.accepted) EXPECT_TRUE(recogniser.Accepts(text)) << c.grammar << "\ntext '" << text << "'";
  for (const std::string& text : c.refused) EXPECT_FALSE(recogniser.Accepts(text)) << c.grammar << "\ntext '" << text << "'";
}

TEST(CfgGrammarTest, LiteralsAndTheirEscapes) {
  const SyntaxCase cases[] = {
      {R"(root ::= "abc")", {"abc"}, {"", "ab", "abcc", "abd"}},
      {R"(root ::= "a\nb\tc\rd")", {"a\nb\tc\rd"}, {"anbtcrd", "a\\nb\\tc\\rd"}},
      {R"(root ::= "\\\"\'\[\]\/")", {"\\\"'[]/"}, {"\\\\\"'[]/"}},
      {R"(root ::= "\x41\x7a")", {"Az"}, {"\\x41\\x7a"}},
      {R"(root ::= "\xe9")", {"\xc3\xa9"}, {"\xe9"}},  // U+00E9 as UTF-8, not the byte 0xE9
      {R"(root ::= "\u00e9\u2603")", {"\xc3\xa9\xe2\x98\x83"}, {"\xc3\xa9"}},
      {R"(root ::= "\U0001F600")", {"\xf0\x9f\x98\x80"}, {"\xf0\x9f\x98"}},
      {"root ::= \"\xce\xbb-\xf0\x9f\x98\x80\"", {"\xce\xbb-\xf0\x9f\x98\x80"}, {"\xce\xbb-"}},  // raw UTF-8
      {R"(root ::= "" "a" "")", {"a"}, {""}},
      {R"(root ::= "a#b")", {"a#b"}, {"a"}},  // '#' inside a literal is no comment
  };
  for (const SyntaxCase& c : cases) ExpectLanguage(c);
}

TEST(CfgGrammarTest, CharacterClassesRangesNegationAndDot) {
  const SyntaxCase cases[] = {
      {"root ::= [a-cx-z0-9_]", {"a", "b", "c", "x", "z", "0", "5", "_"}, {"d", "w", "A", "", "ab", "-"}},
      {"root ::= [^a-c]", {"d", "A", "\n", "\xc3\xa9", "\xf0\x9f\x98\x80"}, {"a", "b", "c", "", "dd"}},
      {R"(root ::= [\[\]\\])", {"[", "]", "\\"}, {"a", "\\\\"}},
      {R"(root ::= [\n\t"])", {"\n", "\t", "\""}, {"n", "t", " "}},
      {R"(root ::= [\x41-\x43\u00e0-\u00ff])", {"A", "B", "C", "\xc3\xa0", "\xc3\xa9", "\xc3\xbf"}, {"D", "@", "\xc4\x80"}},
      {R"(root ::= [^"\\\n]*)", {"", "abc", "\xc3\xa9'", "a\tb"}, {"\"", "a\\", "a\nb"}},
      {"root ::= [\xce\xb1-\xcf\x89]+", {"\xce\xb1", "\xce\xbb\xce\xbc", "\xcf\x89"}, {"a", "\xce\x91", "\xcf\x8a", ""}},
      {"root ::= . . .", {"abc", "\xc3\xa9\xe2\x98\x83\xf0\x9f\x98\x80", "a b"}, {"ab", "abcd"}},
      {R"(root ::= [^\x00-\x7f])", {"\xc3\xa9", "\xf4\x8f\xbf\xbf"}, {"a", "\x7f"}},
  };
  for (const SyntaxCase& c : cases) ExpectLanguage(c);
}

TEST(CfgGrammarTest, GroupsAndRepetitions) {
  const SyntaxCase cases[] = {
      {R"(root ::= "a"* "b")", {"b", "ab", "aaaab"}, {"", "a", "ba", "abb"}},
      {R"(root ::= "a"+)", {"a", "aaaa"}, {""}},
      {R"(root ::= "a"? "b")", {"b", "ab"}, {"aab", ""}},
      {R"(root ::= ("ab" | "c")* "d")", {"d", "abd", "cabcd", "ccd"}, {"ad", "abc", ""}},
      {R"(root ::= "a"{3})", {"aaa"}, {"aa", "aaaa", ""}},
      {R"(root ::= "a"{2,})", {"aa", "aaa", std::string(50, 'a')}, {"a", ""}},
      {R"(root ::= "a"{1,3} "b")", {"ab", "aab", "aaab"}, {"b", "aaaab"}},
      {R"(root ::= "a"{0,2} "b")", {"b", "ab", "aab"}, {"aaab"}},
      {R"(root ::= ("ab"){2} [xy]{1,2})", {"ababx", "ababyx"}, {"abx", "ababxyx", "abab"}},
      {R"(root ::= (("a" | "b") "c"?)+)", {"a", "ac", "bcab", "abc"}, {"c", "acc", ""}},
      {R"(root ::= "x" ("a" ("b" "c")? )* "y")", {"xy", "xay", "xabcay"}, {"xaby", "xy y"}},
      {R"(root ::= "a"{1000})", {std::string(1000, 'a')}, {std::string(999, 'a'), std::string(1001, 'a')}},
  };
  for (const SyntaxCase& c : cases) ExpectLanguage(c);
}

TEST(CfgGrammarTest, RulesCommentsAndLines) {
  const SyntaxCase cases[] = {
      // Rules refer to rules defined later; names take '-' and '_' and digits.
      {"root ::= my-rule_2 other\nmy-rule_2 ::= \"x\"\nother ::= [0-9]", {"x5"}, {"x", "5"}},
      // Comments on their own lines and after a rule.
      {"# a comment\nroot ::= \"a\" b # trailing \"c\"\n# another\nb ::= \"b\"  #\n", {"ab"}, {"abc", "a"}},
      // Inside parentheses a rule spans lines, comments included.
      {"root ::= (\n  \"a\"   # first\n  \"b\"\n  | \"c\"\n)\n", {"ab", "c"}, {"a", "abc"}},
      // A line ending in '|' continues.
      {"root ::= \"a\" |\n  \"b\"\n", {"a", "b"}, {"ab"}},
      // A line starting with '|' continues the rule above.
      {"root ::= \"a\"\n  | \"b\"\n| \"c\" x\nx ::= \"d\"", {"a", "b", "cd"}, {"c", "d"}},
      // A newline right after '::='.
      {"root ::=\n  \"a\" x\nx ::=\n  \"b\"\n", {"ab"}, {"a", "b"}},
      // Blank lines, tabs, and CRLF line ends.
      {"\n\nroot\t::=\t\"a\"\t\"b\"\n\n", {"ab"}, {"a b"}},
      {"root ::= \"a\" x\r\nx ::= \"b\" |\r\n  \"c\"\r\n", {"ab", "ac"}, {"a"}},
      // Empty alternatives.
      {"root ::= \"a\" e \"b\"\ne ::= \"\" | \"z\"", {"ab", "azb"}, {"azzb"}},
  };
  for (const SyntaxCase& c : cases) ExpectLanguage(c);
}

TEST(CfgGrammarTest, FlatFormNamesAndText) {
  const std::string text = "root ::= \"ab\" | [c-d] x\nx ::= (\"e\" | \"f\")*\n";
  auto grammar = MustParse(text);
  ASSERT_NE(grammar, nullptr);
  EXPECT_EQ(grammar->text(), text);
  EXPECT_EQ(grammar->rule_name(grammar->root()), "root");
  std::vector<CfgElement::Type> types;
  for (int32_t p = grammar->rule_start(grammar->root());; ++p) {
    types.push_back(grammar->element(p).type);
    if (types.back() == CfgElement::Type::kEnd) break;
  }
  using T = CfgElement::Type;
  EXPECT_EQ(types, (std::vector<T>{T::kClass, T::kClass, T::kAlt, T::kClass, T::kRef, T::kEnd}));
  const int32_t first = grammar->rule_start(grammar->root());
  EXPECT_EQ(grammar->code_points(grammar->element(first).value).ranges(), (Ranges{{'a', 'a'}}));
  EXPECT_EQ(grammar->code_points(grammar->element(first + 3).value).ranges(), (Ranges{{'c', 'd'}}));
  const int32_t x = grammar->element(first + 4).value;
  ASSERT_GE(x, 0);
  ASSERT_LT(x, grammar->num_rules());
  EXPECT_EQ(grammar->rule_name(x), "x");
  // The group and the star are rules of their own, named after the rule they were written in.
  int generated = 0;
  for (int32_t r = 0; r < grammar->num_rules(); ++r) generated += grammar->rule_name(r).rfind("x/", 0) == 0;
  EXPECT_GE(generated, 1);
  // Every rule's elements are well formed: refs to rules, classes to sets, closed by kEnd.
  for (int32_t r = 0; r < grammar->num_rules(); ++r) {
    for (int32_t p = grammar->rule_start(r);; ++p) {
      ASSERT_LT(p, static_cast<int32_t>(grammar->elements().size()));
      const CfgElement& e = grammar->element(p);
      if (e.type == CfgElement::Type::kEnd) break;
      if (e.type == CfgElement::Type::kRef) {
        EXPECT_TRUE(e.value >= 0 && e.value < grammar->num_rules());
      } else if (e.type == CfgElement::Type::kClass) {
        EXPECT_GE(e.value, 0);
      }
    }
  }
}

TEST(CodePointSetTest, RangesAreSortedAndMerged) {
  EXPECT_TRUE(CodePointSet().empty());
  EXPECT_FALSE(CodePointSet().Contains(0));
  EXPECT_FALSE(CodePointSet().Intersects(0, CodePointSet::kMaxCodePoint));
  // Any order, adjacent ranges merge, overlapping ranges merge, duplicates vanish.
  EXPECT_EQ(CodePointSet(Ranges{{'x', 'x'}, {'c', 'e'}, {'a', 'b'}}, false).ranges(), (Ranges{{'a', 'e'}, {'x', 'x'}}));
  EXPECT_EQ(CodePointSet(Ranges{{10, 20}, {15, 30}, {5, 12}, {15, 30}}, false).ranges(), (Ranges{{5, 30}}));
  EXPECT_EQ(CodePointSet(Ranges{{1, 1}, {3, 3}, {2, 2}}, false).ranges(), (Ranges{{1, 3}}));
  EXPECT_EQ(CodePointSet(Ranges{{1, 1}, {3, 3}}, false).ranges(), (Ranges{{1, 1}, {3, 3}}));
  const CodePointSet set(Ranges{{5, 12}, {10, 30}, {40, 40}}, false);
  EXPECT_FALSE(set.Contains(4));
  EXPECT_TRUE(set.Contains(5));
  EXPECT_TRUE(set.Contains(30));
  EXPECT_FALSE(set.Contains(31));
  EXPECT_TRUE(set.Contains(40));
  EXPECT_FALSE(set.Intersects(0, 4));
  EXPECT_TRUE(set.Intersects(0, 5));
  EXPECT_TRUE(set.Intersects(21, 29));
  EXPECT_TRUE(set.Intersects(30, 100));
  EXPECT_FALSE(set.Intersects(31, 39));
  EXPECT_TRUE(set.Intersects(31, 40));
  EXPECT_TRUE(set.Intersects(40, 40));
  EXPECT_FALSE(set.Intersects(41, CodePointSet::kMaxCodePoint));
}

TEST(CodePointSetTest, NegationAndSurrogates) {
  const Ranges everything = {{0, 0xD7FF}, {0xE000, 0x10FFFF}};
  EXPECT_EQ(CodePointSet({}, true).ranges(), everything);
  const CodePointSet not_az(Ranges{{'a', 'z'}}, true);
  EXPECT_EQ(not_az.ranges(), (Ranges{{0, 'a' - 1}, {'z' + 1, 0xD7FF}, {0xE000, 0x10FFFF}}));
  EXPECT_FALSE(not_az.Contains('a'));
  EXPECT_FALSE(not_az.Contains('m'));
  EXPECT_TRUE(not_az.Contains('A'));
  EXPECT_TRUE(not_az.Contains(0));
  EXPECT_TRUE(not_az.Contains(0x10FFFF));
  EXPECT_FALSE(not_az.Contains(0x110000));
  EXPECT_FALSE(not_az.Contains(0xFFFFFFFF));
  for (uint32_t cp : {0xD800u, 0xDBFFu, 0xDC00u, 0xDFFFu}) EXPECT_FALSE(not_az.Contains(cp)) << std::hex << cp;
  EXPECT_FALSE(not_az.Intersects(kSurrogateLo, kSurrogateHi));
  EXPECT_TRUE(not_az.Intersects(0xD7FF, 0xD800));
  EXPECT_TRUE(not_az.Intersects(0xDFFF, 0xE000));
  EXPECT_FALSE(not_az.Intersects('b', 'y'));
  // Negating everything is empty; a range across the surrogates leaves them out.
  EXPECT_TRUE(CodePointSet(Ranges{{0, 0x10FFFF}}, true).empty());
  const CodePointSet across(Ranges{{0xD000, 0xE100}}, false);
  EXPECT_EQ(across.ranges(), (Ranges{{0xD000, 0xD7FF}, {0xE000, 0xE100}}));
  EXPECT_FALSE(across.Contains(0xD900));
}

// Random sets against the definition: their ranges() are the maximal runs of members.
TEST(CodePointSetTest, RandomSetsAgreeWithTheirDefinition) {
  const std::vector<uint32_t> points = {0, 1, 'a', 'z', 0x7F, 0x80, 0x7FF, 0x800, 0xD7FE, 0xD7FF, 0xD800,
                                        0xDABC, 0xDFFF, 0xE000, 0xE001, 0xFFFF, 0x10000, 0x10FFFE, 0x10FFFF};
  std::mt19937_64 rng(3);
  auto point = [&] { return rng() % 3 == 0 ? static_cast<uint32_t>(rng() % 300) : points[rng() % points.size()]; };
  for (int i = 0; i < 2000; ++i) {
    Ranges input;
    const int n = static_cast<int>(rng() % 5);
    for (int k = 0; k < n; ++k) {
      uint32_t lo = point(), hi = point();
      if (lo > hi) std::swap(lo, hi);
      input.push_back({lo, hi});
    }
    const bool negated = rng() % 2 == 0;
    auto member = [&](uint32_t cp) {
      if (cp > 0x10FFFF || (cp >= kSurrogateLo && cp <= kSurrogateHi)) return false;
      bool in = false;
      for (const auto& [lo, hi] : input) in |= cp >= lo && cp <= hi;
      return in != negated;
    };
    // Membership is constant between consecutive boundaries.
    std::vector<uint32_t> bounds = {0, kSurrogateLo, kSurrogateHi + 1, 0x110000};
    for (const auto& [lo, hi] : input) bounds.insert(bounds.end(), {lo, hi + 1});
    std::sort(bounds.begin(), bounds.end());
    bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
    Ranges expected;
    for (size_t b = 0; b + 1 < bounds.size(); ++b) {
      if (!member(bounds[b])) continue;
      if (!expected.empty() && expected.back().second + 1 == bounds[b]) expected.back().second = bounds[b + 1] - 1;
      else expected.push_back({bounds[b], bounds[b + 1] - 1});
    }
    const CodePointSet set(input, negated);
    ASSERT_EQ(set.ranges(), expected) << "case " << i;
    EXPECT_EQ(set.empty(), expected.empty());
    for (int t = 0; t < 40; ++t) {
      const uint32_t cp = t % 2 ? point() : point() + static_cast<uint32_t>(rng() % 3) - 1;
      EXPECT_EQ(set.Contains(cp), member(cp)) << "case " << i << " cp " << cp;
      uint32_t lo = point(), hi = point();
      if (lo > hi) std::swap(lo, hi);
      bool any = false;
      for (const auto& [a, b] : expected) any |= a <= hi && lo <= b;
      EXPECT_EQ(set.Intersects(lo, hi), any) << "case " << i << " [" << lo << ", " << hi << "]";
    }
  }
}

struct Refusal {
  std::string grammar;
  std::string message;  // a piece the message must hold, e.g. "line 2"
  std::string also = "";
};

TEST(CfgGrammarTest, RefusalsNameTheFieldAndThePlace) {
  // 250 rules of 1000 characters each, spelt out: past kMaxElements in about 6 KB of text.
  std::string many_rules = "root ::= r0", rules;
  for (int r = 0; r < 250; ++r) {
    if (r > 0) many_rules += " | r" + std::to_string(r);
    rules += "\nr" + std::to_string(r) + " ::= \"a\"{1000}";
  }
  many_rules += rules;
  const std::vector<Refusal> cases = {
      {"", ""},
      {"main ::= \"a\"\n", "root"},
      {"# only a comment\n", "line 1"},
      {"root ::= x\nx ::= \"a\" undefined-rule\n", "line 2", "undefined-rule"},
      {"root ::= \"a\"\nroot ::= \"b\"\n", "line 2", "root"},
      {"root ::= x\nx ::= \"b\"\n\nx ::= \"c\"\n", "line 4", "x"},
      // Syntax.
      {"root ::= x\nx ::= \"abc\n", "line 2"},
      {"root ::= x\nx ::= \"abc", "line 2"},
      {"root ::= x\nx ::= [abc\n", "line 2"},
      {"root ::= x\nx ::= [a-\n", "line 2"},
      {"root ::= x\nx ::= \"a\"{3,2}\n", "line 2"},
      {"root ::= x\nx ::= \"a\"{1001}\n", "line 2"},
      {"root ::= x\nx ::= \"a\"{2,1001}\n", "line 2"},
      {"root ::= x\nx ::= (\"a\" \"b\"\n", "line 2"},
      {"root ::= x\nx ::= \"a\")\n", "line 2"},
      {"root ::= x\nx ::= \"\\q\"\n", "line 2"},
      {"root ::= x\nx ::= \"\\x4\"\n", "line 2"},
      {"root ::= x\nx \"a\"\n", "line 2"},
      {"root ::= x\nx ::= | * \"a\"\n", "line 2"},
      // A root that can never finish.
      {"root ::= \"a\" root\n", "line 1"},
      // Past the size limits.
      {"root ::= \"" + std::string(CfgGrammar::kMaxTextBytes, 'a') + "\"", ""},
      {many_rules, ""},
  };
  for (const Refusal& c : cases) {
    const std::string shown = c.grammar.substr(0, 120);
    auto grammar = CfgGrammar::ParseGbnf(c.grammar, "guided_grammar");
    ASSERT_FALSE(grammar.ok()) << shown;
    EXPECT_EQ(grammar.status().code(), absl::StatusCode::kInvalidArgument) << shown;
    const std::string message(grammar.status().message());
    EXPECT_EQ(message.rfind("guided_grammar: ", 0), 0u) << shown << "\n-> " << message;
    EXPECT_NE(message.find(c.message), std::string::npos) << shown << "\n-> " << message;
    EXPECT_NE(message.find(c.also), std::string::npos) << shown << "\n-> " << message;
    if (c.message.rfind("line ", 0) == 0) {
      EXPECT_NE(message.find("column "), std::string::npos) << message;
    }
  }
  // The field is whatever the caller names.
  auto other = CfgGrammar::ParseGbnf("root ::= [", "structured_outputs.grammar");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(std::string(other.status().message()).rfind("structured_outputs.grammar: line 1", 0), 0u)
      << other.status().message();
  // Just under the text limit is fine.
  auto big = CfgGrammar::ParseGbnf("root ::= \"" + std::string(CfgGrammar::kMaxTextBytes - 12, 'a') + "\"", "g");
  EXPECT_TRUE(big.ok()) << big.status();
}

// Nesting as deep as the text limit allows is compiled or refused, never a crash (a request
// must not be able to exhaust the parser's stack).
TEST(CfgGrammarTest, DeepNestingWithinTheTextLimitIsCompiledOrRefused) {
  const int depth = static_cast<int>((CfgGrammar::kMaxTextBytes - 64) / 2);
  auto grammar = CfgGrammar::ParseGbnf("root ::= " + std::string(depth, '(') + "\"a\"" + std::string(depth, ')'), "g");
  if (grammar.ok()) {
    EXPECT_TRUE(Recogniser(**grammar).Accepts("a"));
  } else {
    EXPECT_EQ(grammar.status().code(), absl::StatusCode::kInvalidArgument) << grammar.status();
  }
}

// Left recursion is rewritten as right recursion with the same language: left-associative
// operators, a tail that can be empty, an empty base, a rule that is its own alternative, a rule
// whose tail holds itself again, and cycles through other rules (mutual, a rule that is only
// another one, three rules, a group).
TEST(CfgGrammarTest, LeftRecursionKeepsItsLanguage) {
  const SyntaxCase cases[] = {
      {"root ::= root \"a\" | \"b\"", {"b", "ba", "baaa"}, {"", "a", "ab", "bab"}},
      {"root ::= e\ne ::= e [-+] t | t\nt ::= t \"*\" f | f\nf ::= [0-9] | \"(\" e \")\"",
       {"1", "1+2", "1+2*3-4", "(1-2)*3", "((1))", "2*(3+4)*5"},
       {"", "+", "1+", "1**2", "(1", "1)", "()"}},
      {"root ::= root \"x\"? | \"y\"", {"y", "yx", "yxxx"}, {"", "x", "yy"}},
      {"root ::= root \"x\" | \"\"", {"", "x", "xxx"}, {"y", "xy"}},
      {"root ::= root | \"z\"", {"z"}, {"", "zz"}},
      {"root ::= root root | \"a\" | \"b\"", {"a", "ab", "bba"}, {"", "c"}},
      {"root ::= x\nx ::= x \"a\" x | \"b\"", {"b", "bab", "babab"}, {"", "ba", "bb", "abab"}},
      {"root ::= a\na ::= b \"x\" | \"w\"\nb ::= a \"y\" | \"z\"", {"w", "zx", "wyx", "zxyxyx"}, {"", "z", "wy", "wx"}},
      {"root ::= x\nx ::= y \"a\" | \"b\"\ny ::= x", {"b", "ba", "baaa"}, {"", "a", "bb"}},
      {"root ::= p\np ::= q \"1\" | \"a\"\nq ::= r \"2\" | \"b\"\nr ::= p \"3\" | \"c\"",
       {"a", "b1", "c21", "a321", "b1321"}, {"", "a3", "a32", "1"}},
      {"root ::= (root \",\")? [0-9]", {"1", "1,2", "1,2,3"}, {"", ",1", "1,", "12"}},
      // Through rules that can be empty.
      {"root ::= e root \"x\" | \"y\"\ne ::= \"\" | \"z\"", {"y", "yx", "zyx", "zzyxx", "zyxx"}, {"", "zy", "x", "yz"}},
      {"root ::= a\na ::= e b\nb ::= a \"x\" | \"y\"\ne ::= \"\" | \"z\"", {"y", "zy", "yx", "zzyxx"}, {"", "z", "yy"}},
      {"root ::= \"q\"* root | \"y\"", {"y", "qy", "qqqy"}, {"", "q", "yq"}},
      {"root ::= \"q\"{0,3} root \"x\" | \"y\"", {"y", "yx", "qyx", "qqqyx", "qyxx"}, {"", "qy", "yq"}},
      {"root ::= r \"!\"\nr ::= r \"x\" | \"\"", {"!", "x!", "xxx!"}, {"", "x", "!x"}},
  };
  for (const SyntaxCase& c : cases) ExpectLanguage(c);
}

// A long cycle of left-recursive rules (the rewrite spells rules out into one another) is
// compiled or refused as too large, never a hang or a crash; what compiles keeps its language.
TEST(CfgGrammarTest, LongLeftRecursiveCyclesAreCompiledOrRefused) {
  for (const int n : {10, 300, 2500}) {
    std::string text = "root ::= r0\n";
    for (int i = 0; i < n; ++i)
      text += "r" + std::to_string(i) + " ::= r" + std::to_string((i + 1) % n) + " \"a\"" +
              (i + 1 < n ? " | \"b\"" : "") + "\n";
    ASSERT_LE(text.size(), static_cast<size_t>(CfgGrammar::kMaxTextBytes));
    auto grammar = CfgGrammar::ParseGbnf(text, "grammar");
    if (!grammar.ok()) {
      EXPECT_EQ(grammar.status().code(), absl::StatusCode::kInvalidArgument) << grammar.status();
      EXPECT_NE(n, 10) << grammar.status();
      continue;
    }
    // r0 is "b", or some r_i's "b" followed by i a's (one per rule back to r0), then whole turns.
    Recogniser recogniser(**grammar);
    EXPECT_TRUE(recogniser.Accepts("b")) << n;
    EXPECT_TRUE(recogniser.Accepts("ba")) << n;
    EXPECT_TRUE(recogniser.Accepts("b" + std::string(n, 'a'))) << n;
    EXPECT_FALSE(recogniser.Accepts("")) << n;
    EXPECT_FALSE(recogniser.Accepts("ab")) << n;
  }
}

// Left-recursive cycles through rules that can be empty, long and highly ambiguous ones (the
// rewrite splits alternatives and spells rules out): compiled or refused as too large, never a hang.
TEST(CfgGrammarTest, AmbiguousLeftRecursionThroughEmptyRulesIsCompiledOrRefused) {
  for (const int n : {3, 40, 1500}) {
    for (const bool ambiguous : {false, true}) {
      std::string text = "root ::= r0\ne ::= \"\" | \"z\"\n";
      for (int i = 0; i < n; ++i) {
        const std::string r = "r" + std::to_string(i), next = "r" + std::to_string((i + 1) % n);
        text += ambiguous ? r + " ::= r0 " + next + " | " + next + " r0 | \"b\" | \"\"\n"
                          : r + " ::= e " + next + " \"a\" | \"b\"\n";
      }
      auto grammar = CfgGrammar::ParseGbnf(text, "grammar");
      if (!grammar.ok()) {
        EXPECT_NE(grammar.status().message().find("too large"), std::string::npos) << grammar.status();
        continue;
      }
      Recogniser recogniser(**grammar);
      EXPECT_TRUE(recogniser.Accepts("b")) << n;
      EXPECT_TRUE(recogniser.Accepts(ambiguous ? "bb" : "zba")) << n;
      EXPECT_FALSE(recogniser.Accepts(ambiguous ? "a" : "")) << n;
    }
  }
}

// Right recursion, recursion behind a character, and nullable rules that are not left recursive
// are all fine.
TEST(CfgGrammarTest, RecursionThatIsNotLeftRecursionIsAccepted) {
  const SyntaxCase cases[] = {
      {"root ::= \"a\" root | \"a\"", {"a", "aaaa"}, {""}},
      {"root ::= (\"(\" root \")\")*", {"", "()", "(())()"}, {"(", "())"}},
      {"root ::= e \"x\" root | e\ne ::= \"\" | \"z\"", {"", "z", "x", "zxzxz", "xx"}, {"zz", "y"}},
      {"root ::= a\na ::= \"[\" b? \"]\"\nb ::= a (\",\" a)*", {"[]", "[[],[[]]]"}, {"[", "[,]"}},
      {"root ::= x x x\nx ::= \"\" | \"a\"", {"", "a", "aaa"}, {"aaaa"}},
  };
  for (const SyntaxCase& c : cases) ExpectLanguage(c);
}

}  // namespace
}  // namespace glm::structured
