// The matcher against nlohmann's strict parser: random JSON texts and their mutations must get
// the same verdict (a whole valid object, or not), and every prefix of a valid text must stay
// alive with a way to go on.
#include "coordinator/structured/json_matcher.h"

#include <cctype>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "coordinator/structured/json_grammar.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace glm::structured {
namespace {

// Random JSON text within the matcher's bounds (whitespace runs, digits, depth).
class TextGenerator {
 public:
  explicit TextGenerator(uint64_t seed) : rng_(seed) {}
  std::string Object(int depth = 0) {
    std::string s = "{" + Ws();
    const int n = Int(0, depth > 3 ? 1 : 4);
    for (int i = 0; i < n; ++i) {
      if (i > 0) s += "," + Ws();
      s += String() + Ws() + ":" + Ws() + Value(depth + 1) + Ws();
    }
    return s + "}";
  }
  std::string Value(int depth) {
    switch (Int(0, depth > 3 ? 3 : 5)) {
      case 0: return String();
      case 1: return Number();
      case 2: {
        static const char* kWords[] = {"true", "false", "null"};
        return kWords[Int(0, 2)];
      }
      case 3: return Number();
      case 4: return Object(depth);
      default: {
        std::string s = "[" + Ws();
        const int n = Int(0, 3);
        for (int i = 0; i < n; ++i) s += (i > 0 ? "," + Ws() : "") + Value(depth + 1) + Ws();
        return s + "]";
      }
    }
  }
  std::string String() {
    static const char* kPieces[] = {"a", "key", " ", "\\n", "\\\"", "\\\\", "\\u00e9", "\\u2603", "\xc3\xa9",
                                    "\xe2\x98\x83", "\xf0\x9f\x98\x80", "/", "\\/", "0", "{", "}", "[", ":"};
    std::string s = "\"";
    const int n = Int(0, 5);
    for (int i = 0; i < n; ++i) s += kPieces[Int(0, static_cast<int>(std::size(kPieces)) - 1)];
    return s + "\"";
  }
  std::string Number() {
    std::string s = Int(0, 3) == 0 ? "-" : "";
    s += Int(0, 4) == 0 ? "0" : std::to_string(Int(1, 99999));
    if (Int(0, 2) == 0) s += "." + std::to_string(Int(0, 999));
    if (Int(0, 4) == 0) s += std::string(Int(0, 1) ? "e" : "E") + (Int(0, 1) ? "-" : "") + std::to_string(Int(0, 9));
    return s;
  }
  std::string Ws() { return Int(0, 2) == 0 ? " " : ""; }
  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
};

bool MatcherAccepts(const JsonGrammar& g, const std::string& text) {
  JsonMatcher m(&g);
  return m.Advance(text) && m.CanEnd();
}

// Whether the text outside strings keeps to the matcher's bounds (whitespace, exponent digits).
bool WithinBounds(const std::string& text) {
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      // One space between tokens, none before or after the value.
      if (c != ' ' || i == 0 || i + 1 == text.size() || std::isspace(static_cast<unsigned char>(text[i + 1])))
        return false;
    } else if (c == 'e' || c == 'E') {
      size_t j = i + 1, digits = 0;
      if (j < text.size() && (text[j] == '+' || text[j] == '-')) ++j;
      while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j]))) ++j, ++digits;
      if (digits > JsonMatcher::kMaxExponentDigits) return false;
    }
  }
  return true;
}

// The parser's verdict, less texts past the matcher's bounds.
bool ParserAcceptsObject(const std::string& text) {
  if (!WithinBounds(text)) return false;
  if (!nlohmann::json::accept(text)) return false;
  return nlohmann::json::parse(text).is_object();
}

// anyOf / $ref diamonds: a chain of 40 two-way choices of the same next definition expanded
// 2^40 paths (26 took minutes and 8 GB of the coordinator); each option is now expanded once.
// Schemas that keep more than kMaxStacks parses alive stop the matcher (over_bounds) instead of
// costing the square of that per byte.
TEST(JsonMatcherTest, AnyOfDiamondsAreLinearAndTooManyLiveBranchesAreBounded) {
  nlohmann::ordered_json schema = {{"$ref", "#/$defs/a0"}, {"$defs", nlohmann::ordered_json::object()}};
  constexpr int kLevels = 40;
  for (int i = 0; i < kLevels; ++i) {
    const std::string next = absl::StrCat("#/$defs/a", i + 1);
    schema["$defs"][absl::StrCat("a", i)] = {{"anyOf", {{{"$ref", next}}, {{"$ref", next}}}}};
  }
  schema["$defs"][absl::StrCat("a", kLevels)] = {{"type", "string"}, {"maxLength", 5}};
  auto chain = JsonGrammar::FromSchema(schema, "schema");
  ASSERT_TRUE(chain.ok()) << chain.status();
  JsonMatcher m(chain->get());
  EXPECT_TRUE(m.Advance(std::string_view("\"abc\"")));
  EXPECT_TRUE(m.CanEnd());
  EXPECT_FALSE(m.over_bounds());

  nlohmann::ordered_json wide = {{"anyOf", nlohmann::ordered_json::array()}};
  for (size_t i = 0; i < JsonMatcher::kMaxStacks + 10; ++i)
    wide["anyOf"].push_back({{"type", "object"},
                             {"properties", {{absl::StrCat("key", i), {{"type", "integer"}}}}},
                             {"required", {absl::StrCat("key", i)}}});
  auto many = JsonGrammar::FromSchema(wide, "schema");
  ASSERT_TRUE(many.ok()) << many.status();
  JsonMatcher w(many->get());
  EXPECT_FALSE(w.Advance(std::string_view("{\"key")));
  EXPECT_TRUE(w.over_bounds());
  EXPECT_TRUE(w.dead());
}

TEST(JsonMatcherTest, RandomObjectsAndTheirMutationsGetTheParsersVerdict) {
  auto grammar = JsonGrammar::AnyObject();
  TextGenerator gen(7);
  static const char kAlphabet[] = "{}[],:\"\\ 0123456789.eE+-truefalsnul\n\x01\xc3\xa9\xff";
  int valid = 0, invalid = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string text = gen.Object();
    ASSERT_TRUE(ParserAcceptsObject(text)) << text;
    ASSERT_TRUE(MatcherAccepts(*grammar, text)) << text;
    // Every prefix is alive and can go on or end.
    JsonMatcher m(grammar.get());
    for (size_t k = 0; k < text.size(); ++k) {
      ASSERT_TRUE(m.Advance(static_cast<uint8_t>(text[k]))) << text << " at " << k;
      ASSERT_EQ(m.MustEnd(), k + 1 == text.size()) << text << " at " << k;
    }
    for (int j = 0; j < 4; ++j) {
      std::string mutated = text;
      const size_t at = static_cast<size_t>(gen.Int(0, static_cast<int>(mutated.size())));
      const char c = kAlphabet[gen.Int(0, static_cast<int>(sizeof kAlphabet) - 2)];
      switch (gen.Int(0, 2)) {
        case 0: mutated.insert(mutated.begin() + static_cast<std::ptrdiff_t>(at), c); break;
        case 1: if (at < mutated.size()) mutated.erase(at, 1); break;
        default: if (at < mutated.size()) mutated[at] = c; break;
      }
      const bool expected = ParserAcceptsObject(mutated);
      EXPECT_EQ(MatcherAccepts(*grammar, mutated), expected) << mutated;
      (expected ? valid : invalid)++;
    }
  }
  EXPECT_GT(valid, 1000);
  EXPECT_GT(invalid, 1000);
}

TEST(JsonMatcherTest, StringsAreValidUtf8WithoutLoneSurrogates) {
  auto grammar = JsonGrammar::AnyObject();
  EXPECT_TRUE(MatcherAccepts(*grammar, "{\"\xf0\x9f\x98\x80\":\"\\u00e9\"}"));
  EXPECT_FALSE(MatcherAccepts(*grammar, "{\"\xc0\xaf\":1}"));          // overlong
  EXPECT_FALSE(MatcherAccepts(*grammar, "{\"\xed\xa0\x80\":1}"));      // a surrogate in UTF-8
  EXPECT_FALSE(MatcherAccepts(*grammar, "{\"\xf4\x90\x80\x80\":1}"));  // past U+10FFFF
  EXPECT_FALSE(MatcherAccepts(*grammar, "{\"a\xe2\x98\":1}"));          // cut short
  JsonMatcher m(grammar.get());
  EXPECT_TRUE(m.Advance("{\"\\ud7"));
  JsonMatcher s(grammar.get());
  EXPECT_FALSE(s.Advance("{\"\\ud8"));  // refused at the second digit: no dead end later
  EXPECT_FALSE(MatcherAccepts(*grammar, "{\"a\x01\":1}"));  // raw control character
}

TEST(JsonMatcherTest, BoundsKeepAModelFromRunningOn) {
  auto grammar = JsonGrammar::AnyObject();
  JsonMatcher ws(grammar.get());
  EXPECT_TRUE(ws.Advance("{ \"a\" : [ 1 , 2 ] }"));
  EXPECT_FALSE(JsonMatcher(grammar.get()).Advance(" {"));
  EXPECT_FALSE(JsonMatcher(grammar.get()).Advance("{  "));
  EXPECT_FALSE(JsonMatcher(grammar.get()).Advance("{\n"));
  JsonMatcher digits(grammar.get());
  EXPECT_TRUE(digits.Advance("{\"a\":" + std::string(JsonMatcher::kMaxIntegerDigits, '7')));
  JsonMatcher exponent = digits;
  EXPECT_FALSE(digits.Advance("7"));  // past int64 range
  EXPECT_TRUE(exponent.Advance(".5e99"));
  EXPECT_FALSE(exponent.Advance("9"));  // past double range
  JsonMatcher fraction(grammar.get());
  EXPECT_TRUE(fraction.Advance("{\"a\":0." + std::string(JsonMatcher::kMaxFractionDigits, '1')));
  EXPECT_FALSE(fraction.Advance("1"));
  JsonMatcher deep(grammar.get());
  EXPECT_TRUE(deep.Advance("{\"a\":" + std::string(JsonMatcher::kMaxDepth - 1, '[')));
  EXPECT_FALSE(deep.Advance("["));
}

TEST(JsonMatcherTest, EndingAndKeys) {
  auto grammar = JsonGrammar::AnyObject();
  JsonMatcher m(grammar.get());
  EXPECT_FALSE(m.CanEnd());
  EXPECT_TRUE(m.Advance("{\"a\": [1, 2.5e3, \"x\"]"));
  EXPECT_FALSE(m.CanEnd());
  const std::string open_key = m.Key();
  EXPECT_TRUE(m.Advance("}"));
  EXPECT_TRUE(m.CanEnd());
  EXPECT_TRUE(m.MustEnd());
  EXPECT_FALSE(m.Advance(" "));  // nothing after the root value
  // An unbounded string has one state at every length (the masks' cache key).
  JsonMatcher a(grammar.get()), b(grammar.get());
  a.Advance("{\"k\":\"ab");
  b.Advance("{\"k\":\"abcdefgh");
  EXPECT_EQ(a.Key(), b.Key());
  EXPECT_NE(a.Key(), open_key);
}

}  // namespace
}  // namespace glm::structured
