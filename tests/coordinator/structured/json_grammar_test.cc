// Schemas compiled to grammars: what each keyword lets through, and the refusals that name the
// keyword's place.
#include "coordinator/structured/json_grammar.h"

#include <random>
#include <string>

#include "absl/strings/str_cat.h"

#include "coordinator/structured/json_matcher.h"
#include "gtest/gtest.h"

namespace glm::structured {
namespace {

using ojson = nlohmann::ordered_json;

std::shared_ptr<const JsonGrammar> Compile(const std::string& schema) {
  auto g = JsonGrammar::FromSchema(ojson::parse(schema), "schema");
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *g : nullptr;
}

bool Accepts(const JsonGrammar& g, const std::string& text) {
  JsonMatcher m(&g);
  return m.Advance(text) && m.CanEnd();
}

TEST(JsonGrammarTest, PropertiesComeInTheSchemasOrderRequiredOnesAlways) {
  auto g = Compile(R"({"type":"object","properties":{"reasoning":{"type":"string"},"answer":{"type":"integer"},
      "note":{"type":"string"}},"required":["reasoning","answer"]})");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Accepts(*g, R"({"reasoning":"because","answer":42})"));
  EXPECT_TRUE(Accepts(*g, R"({ "reasoning": "x", "answer": -7, "note": "" })"));
  EXPECT_FALSE(Accepts(*g, R"({"answer":42,"reasoning":"because"})"));  // out of order
  EXPECT_FALSE(Accepts(*g, R"({"reasoning":"because"})"));              // answer missing
  EXPECT_FALSE(Accepts(*g, R"({"reasoning":"x","answer":4.5})"));       // not an integer
  EXPECT_FALSE(Accepts(*g, R"({"reasoning":"x","answer":4,"other":1})"));
  EXPECT_FALSE(Accepts(*g, R"({"reasoning":"x","answer":4,})"));
}

TEST(JsonGrammarTest, OptionalPropertiesMayBeSkippedButNotARequiredOne) {
  auto g = Compile(R"({"properties":{"a":{"type":"boolean"},"b":{"type":"null"},"c":{"const":"k"}},
      "required":["c"]})");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Accepts(*g, R"({"c":"k"})"));
  EXPECT_TRUE(Accepts(*g, R"({"a":true,"c":"k"})"));
  EXPECT_TRUE(Accepts(*g, R"({"b":null,"c":"k"})"));
  EXPECT_FALSE(Accepts(*g, R"({})"));
  EXPECT_FALSE(Accepts(*g, R"({"c":"j"})"));
  auto empty = Compile(R"({"type":"object","properties":{"a":{"type":"string"}}})");
  EXPECT_TRUE(Accepts(*empty, "{}"));
}

TEST(JsonGrammarTest, ArraysStringsEnumsAndNullable) {
  auto g = Compile(R"({"type":"object","properties":{
      "tags":{"type":"array","items":{"type":"string","maxLength":3},"minItems":1,"maxItems":2},
      "color":{"enum":["red","green",1,12]},
      "maybe":{"type":["integer","null"]},
      "either":{"anyOf":[{"type":"string","minLength":2},{"type":"number"}]}},
      "required":["tags","color","maybe","either"]})");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Accepts(*g, R"({"tags":["a","\u00e9té"],"color":"red","maybe":null,"either":"ab"})"));
  EXPECT_TRUE(Accepts(*g, R"({"tags":["abc"],"color":12,"maybe":3,"either":1.5})"));
  EXPECT_TRUE(Accepts(*g, R"({"tags":["abc"],"color":1,"maybe":3,"either":1.5})"));
  EXPECT_FALSE(Accepts(*g, R"({"tags":[],"color":"red","maybe":null,"either":"ab"})"));          // minItems
  EXPECT_FALSE(Accepts(*g, R"({"tags":["a","b","c"],"color":"red","maybe":null,"either":"ab"})"));  // maxItems
  EXPECT_FALSE(Accepts(*g, R"({"tags":["abcd"],"color":"red","maybe":null,"either":"ab"})"));    // maxLength
  EXPECT_FALSE(Accepts(*g, R"({"tags":["a"],"color":"blue","maybe":null,"either":"ab"})"));      // enum
  EXPECT_FALSE(Accepts(*g, R"({"tags":["a"],"color":123,"maybe":null,"either":"ab"})"));
  EXPECT_FALSE(Accepts(*g, R"({"tags":["a"],"color":"red","maybe":"x","either":"ab"})"));
  EXPECT_FALSE(Accepts(*g, R"({"tags":["a"],"color":"red","maybe":null,"either":"a"})"));        // minLength
}

// `pattern` matches a string's value whole: raw characters and short escapes as the characters
// they stand for; \u escapes are not written inside a patterned string.
TEST(JsonGrammarTest, PatternsMatchTheStringsValue) {
  auto g = Compile(R"({"type":"object","properties":{
      "code":{"type":"string","pattern":"^[A-Z]{2}-\\d{3}$"},
      "path":{"type":"string","pattern":"[a-z\"/\n]+","maxLength":4}},"required":["code","path"]})");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Accepts(*g, R"({"code":"AB-123","path":"a/b"})"));
  EXPECT_TRUE(Accepts(*g, R"({"code":"AB-123","path":"a\/\"\n"})"));  // escapes: / " newline
  EXPECT_FALSE(Accepts(*g, R"({"code":"AB-12","path":"a"})"));         // too short: the quote is refused
  EXPECT_FALSE(Accepts(*g, R"({"code":"ab-123","path":"a"})"));
  EXPECT_FALSE(Accepts(*g, R"({"code":"AB-1234","path":"a"})"));
  EXPECT_FALSE(Accepts(*g, R"({"code":"AB-123","path":"a\u0062"})"));  // \u inside a pattern
  EXPECT_FALSE(Accepts(*g, R"({"code":"AB-123","path":"abcde"})"));     // maxLength still holds
  EXPECT_FALSE(Accepts(*g, R"({"code":"AB-123","path":"a\tb"})"));
}

// With minLength / maxLength too, no prefix is let through that no string of the bounds finishes.
TEST(JsonGrammarTest, PatternsWithLengthBoundsHaveNoDeadEnds) {
  auto g = Compile(R"({"type":"string","pattern":"[a-z]+\\d{3}","maxLength":5})");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Accepts(*g, R"("ab123")"));
  JsonMatcher m(g.get());
  EXPECT_TRUE(m.Advance("\"ab"));
  EXPECT_FALSE(JsonMatcher(m).Advance('c'));  // "abc" + 3 digits would be 6 characters
  EXPECT_TRUE(m.Advance('1'));
  auto min = Compile(R"({"type":"string","pattern":"ab?c*","minLength":2,"maxLength":3})");
  ASSERT_NE(min, nullptr);
  EXPECT_FALSE(Accepts(*min, R"("a")"));
  EXPECT_TRUE(Accepts(*min, R"("ac")"));
  EXPECT_FALSE(Accepts(*min, R"("abcc")"));
  for (const char* schema : {R"({"type":"string","pattern":"\\d{6}","maxLength":5})",
                             R"({"type":"string","pattern":"ab?","minLength":3})",
                             R"({"type":"string","format":"uuid","maxLength":10})"}) {
    auto bad = JsonGrammar::FromSchema(ojson::parse(schema), "schema");
    ASSERT_FALSE(bad.ok()) << schema;
    EXPECT_NE(bad.status().message().find("within minLength and maxLength"), std::string::npos) << bad.status();
  }
}

// Integer bounds: every integer of a wide window is accepted exactly when it lies in the range
// (the range's regex against the arithmetic), for random ranges and at the int64 digits' edge.
TEST(JsonGrammarTest, IntegerBoundsAcceptExactlyTheRange) {
  std::mt19937_64 rng(3);
  std::vector<std::pair<int64_t, int64_t>> ranges = {{1, 10}, {0, 0}, {-15, 7}, {-300, -20}, {99, 1000}, {7, 7}};
  for (int i = 0; i < 40; ++i) {
    const int64_t a = static_cast<int64_t>(rng() % 2401) - 1200, b = static_cast<int64_t>(rng() % 2401) - 1200;
    ranges.emplace_back(std::min(a, b), std::max(a, b));
  }
  for (const auto& [lo, hi] : ranges) {
    auto g = Compile(absl::StrCat(R"({"type":"integer","minimum":)", lo, R"(,"maximum":)", hi, "}"));
    ASSERT_NE(g, nullptr);
    for (int64_t v = -1300; v <= 1300; ++v)
      ASSERT_EQ(Accepts(*g, std::to_string(v)), v >= lo && v <= hi) << lo << ".." << hi << ": " << v;
    EXPECT_FALSE(Accepts(*g, "-0"));
    EXPECT_FALSE(Accepts(*g, "01"));
  }
  auto big = Compile(R"({"type":"integer","exclusiveMinimum":999999999999999990})");
  ASSERT_NE(big, nullptr);
  EXPECT_FALSE(Accepts(*big, "999999999999999990"));
  EXPECT_TRUE(Accepts(*big, "999999999999999999"));
  EXPECT_FALSE(Accepts(*big, "1000000000000000000"));  // past the 18 digits integers have here
  auto draft4 = Compile(R"({"type":"integer","minimum":0,"exclusiveMinimum":true,"maximum":2.5})");
  ASSERT_NE(draft4, nullptr);
  EXPECT_FALSE(Accepts(*draft4, "0"));
  EXPECT_TRUE(Accepts(*draft4, "2"));
  EXPECT_FALSE(Accepts(*draft4, "3"));
}

// Number bounds: integers and decimals (up to 8 fraction digits, no exponent) inside the range.
TEST(JsonGrammarTest, NumberBoundsKeepDecimalsInside) {
  auto unit = Compile(R"({"type":"object","properties":{"p":{"type":"number","minimum":0,"maximum":1}},"required":["p"]})");
  ASSERT_NE(unit, nullptr);
  for (const char* ok : {"0", "1", "0.25", "0.12345678"}) EXPECT_TRUE(Accepts(*unit, absl::StrCat(R"({"p":)", ok, "}"))) << ok;
  for (const char* bad : {"1.5", "-0.1", "0.123456789", "1e0", "2", "-1", "0.0", "0.50"})
    EXPECT_FALSE(Accepts(*unit, absl::StrCat(R"({"p":)", bad, "}"))) << bad;
  auto mixed = Compile(R"({"type":"number","minimum":-2.5,"exclusiveMaximum":3})");
  ASSERT_NE(mixed, nullptr);
  for (const char* ok : {"-2", "-1.75", "-0.5", "0", "2.99", "1"}) EXPECT_TRUE(Accepts(*mixed, ok)) << ok;
  for (const char* bad : {"-3", "3", "3.5", "-2.75"}) EXPECT_FALSE(Accepts(*mixed, bad)) << bad;
  auto untyped = Compile(R"({"properties":{"n":{"maximum":5},"d":{"format":"date"}},"required":["n","d"]})");
  ASSERT_NE(untyped, nullptr);  // bounds and a checked format without a type still hold
  EXPECT_TRUE(Accepts(*untyped, R"({"n":4.5,"d":"2026-12-06"})"));
  EXPECT_FALSE(Accepts(*untyped, R"({"n":6,"d":"2026-12-06"})"));
  // Calendar dates only: month lengths and leap years ("3333-02-30" passed before).
  for (const char* date : {"2026-12-31", "2024-02-29", "2000-02-29", "2026-04-30", "0400-02-29"})
    EXPECT_TRUE(Accepts(*untyped, absl::StrCat(R"({"n":4,"d":")", date, R"("})"))) << date;
  for (const char* date : {"3333-02-30", "2023-02-29", "1900-02-29", "2100-02-29", "2026-04-31", "2026-06-31"})
    EXPECT_FALSE(Accepts(*untyped, absl::StrCat(R"({"n":4,"d":")", date, R"("})"))) << date;
  EXPECT_FALSE(Accepts(*untyped, R"({"n":4,"d":"today"})"));
  auto positive = Compile(R"({"type":"number","exclusiveMinimum":0})");  // > 0: never 0 itself
  ASSERT_NE(positive, nullptr);
  for (const char* ok : {"0.5", "0.01", "1", "12.25"}) EXPECT_TRUE(Accepts(*positive, ok)) << ok;
  for (const char* bad : {"0", "-0.5", "0.0", "0.00"}) EXPECT_FALSE(Accepts(*positive, bad)) << bad;
}

TEST(JsonGrammarTest, FormatsAreCheckedOrAnnotations) {
  auto g = Compile(R"({"type":"object","properties":{
      "when":{"type":"string","format":"date-time"},"id":{"type":"string","format":"uuid"},
      "ip":{"type":"string","format":"ipv4"},"mail":{"type":"string","format":"email"},
      "secret":{"type":"string","format":"password"}},"required":["when","id","ip","mail","secret"]})");
  ASSERT_NE(g, nullptr);
  const std::string good = R"({"when":"2026-12-06T07:16:00.5+01:00","id":"123e4567-e89b-12d3-a456-426614174000",)"
                           R"("ip":"192.168.0.255","mail":"a.b+c@example.co","secret":"anything at all"})";
  EXPECT_TRUE(Accepts(*g, good));
  auto with = [&](const std::string& from, const std::string& to) {
    std::string t = good;
    t.replace(t.find(from), from.size(), to);
    return t;
  };
  EXPECT_FALSE(Accepts(*g, with("2026-12-06T", "2026-13-06T")));
  EXPECT_FALSE(Accepts(*g, with("+01:00", "")));  // RFC 3339 needs the offset
  EXPECT_FALSE(Accepts(*g, with("426614174000", "42661417400")));
  EXPECT_FALSE(Accepts(*g, with("192.168.0.255", "192.168.0.256")));
  EXPECT_FALSE(Accepts(*g, with("a.b+c@example.co", "a.b+c@example")));
}

TEST(JsonGrammarTest, RegexAndChoiceGrammarsAreRawText) {
  auto regex = JsonGrammar::ForRegex("(yes|no)(, because [a-z ]{1,20})?", "guided_regex");
  ASSERT_TRUE(regex.ok()) << regex.status();
  EXPECT_TRUE(Accepts(**regex, "yes"));
  EXPECT_TRUE(Accepts(**regex, "no, because it rains"));
  EXPECT_FALSE(Accepts(**regex, "\"yes\""));
  EXPECT_FALSE(Accepts(**regex, "yes "));
  JsonMatcher m(regex->get());
  EXPECT_TRUE(m.Advance("no"));
  EXPECT_TRUE(m.CanEnd());
  EXPECT_FALSE(m.MustEnd());  // ", because ..." may follow
  auto choice = JsonGrammar::ForChoice({"Paris", "Par (is)", "London"}, "guided_choice");
  ASSERT_TRUE(choice.ok()) << choice.status();
  EXPECT_TRUE(Accepts(**choice, "Par (is)"));
  EXPECT_FALSE(Accepts(**choice, "Par"));
  JsonMatcher c(choice->get());
  EXPECT_TRUE(c.Advance("London"));
  EXPECT_TRUE(c.MustEnd());  // nothing may follow a whole choice
  EXPECT_FALSE(JsonGrammar::ForChoice({}, "guided_choice").ok());
  auto bad = JsonGrammar::ForRegex("a(?=b)", "guided_regex");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("guided_regex: pattern at offset 1: lookaround"), std::string::npos) << bad.status();
}

TEST(JsonGrammarTest, RefsResolveLocallyAndMayRecurse) {
  auto g = Compile(R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
      "kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v"]}},"$ref":"#/$defs/node"})");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Accepts(*g, R"({"v":1,"kids":[{"v":2},{"v":3,"kids":[]}]})"));
  EXPECT_FALSE(Accepts(*g, R"({"v":1,"kids":[{"w":2}]})"));
  auto defs = Compile(R"({"definitions":{"x":{"type":"string"}},"type":"array","items":{"allOf":[{"$ref":"#/definitions/x"}]}})");
  EXPECT_TRUE(Accepts(*defs, R"(["a","b"])"));
  EXPECT_FALSE(Accepts(*defs, R"([1])"));
}

TEST(JsonGrammarTest, FreeObjectsAndAnyValues) {
  auto g = Compile(R"({"type":"object","additionalProperties":{"type":"integer"}})");
  EXPECT_TRUE(Accepts(*g, R"({"x":1,"y":2})"));
  EXPECT_FALSE(Accepts(*g, R"({"x":"1"})"));
  auto closed = Compile(R"({"type":"object","additionalProperties":false})");
  EXPECT_TRUE(Accepts(*closed, "{}"));
  EXPECT_FALSE(Accepts(*closed, R"({"x":1})"));
  auto any = Compile("{}");
  EXPECT_TRUE(Accepts(*any, "[1,{\"a\":null}]"));
  EXPECT_TRUE(Accepts(*any, "12"));
  JsonMatcher number(any.get());
  EXPECT_TRUE(number.Advance("12"));
  EXPECT_TRUE(number.CanEnd());
  EXPECT_FALSE(number.MustEnd());  // 123 would be valid too
}

TEST(JsonGrammarTest, UnsupportedKeywordsAreRefusedWithTheirPlace) {
  struct Case {
    const char* schema;
    const char* message;
  };
  const Case cases[] = {
      {R"({"type":"integer","multipleOf":3})", "schema/multipleOf: 'multipleOf' is not supported"},
      {R"({"type":"string","pattern":"[a-z]+","format":"date"})", "'pattern' and a checked 'format' together"},
      {R"({"properties":{"p":{"type":"string","pattern":"(a"}}})", "schema/properties/p/pattern: pattern at offset 0: unterminated group"},
      {R"({"type":"string","pattern":7})", "schema/pattern: must be a string"},
      {R"({"properties":{"n":{"not":{"type":"string"}}}})", "schema/properties/n/not: 'not' is not supported"},
      {R"({"type":"integer","minimum":5,"maximum":4})", "schema: no integer lies within its bounds"},
      {R"({"type":"integer","minimum":"a"})", "schema/minimum: must be a number"},
      {R"({"type":"number","exclusiveMinimum":true})", "schema/exclusiveMinimum: true needs a numeric minimum"},
      {R"({"type":"strin"})", "schema/type: unknown type 'strin'"},
      {R"({"$ref":"https://example.com/s.json"})", "is not a local definition"},
      {R"({"required":["a"],"properties":{"b":{}}})", "'a' is required but not among the properties"},
      {R"(false)", "matches nothing"},
      {R"({"allOf":[{"type":"string"},{"maxLength":3}]})", "only an allOf of exactly one schema"},
      {R"({"type":"array","items":[{"type":"string"}]})", "tuple items"},
      {R"({"type":"string","minLength":3,"maxLength":2})", "is below minLength"},
  };
  for (const Case& c : cases) {
    auto g = JsonGrammar::FromSchema(ojson::parse(c.schema), "schema");
    ASSERT_FALSE(g.ok()) << c.schema;
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(g.status().message().find(c.message), std::string::npos) << g.status().message();
  }
}

// A structured-output review: enum / const overrode the keywords next to them (an enum [5, 50,
// -3] next to minimum 0 gave -3; a string-typed enum gave numbers; const [1,2,3] next to maxItems 2
// gave [1,2,3]), and oneOf was anyOf (an output matching two branches ended "stop"). Now type
// filters enum values, const must be in an enum next to it, other keywords next to them are
// refused, and oneOf compiles only where its branches cannot overlap.
TEST(JsonGrammarTest, EnumConstAndOneOfMeanWhatTheSchemaSays) {
  auto typed = Compile(R"({"type":"string","enum":["a",1,2,"b"]})");
  ASSERT_NE(typed, nullptr);
  EXPECT_TRUE(Accepts(*typed, R"("a")"));
  EXPECT_FALSE(Accepts(*typed, "1"));
  auto both = Compile(R"({"enum":[1,2,3],"const":2})");
  ASSERT_NE(both, nullptr);
  EXPECT_TRUE(Accepts(*both, "2"));
  EXPECT_FALSE(Accepts(*both, "1"));
  auto number = Compile(R"({"type":"number","enum":[1,2.5,"x"]})");
  ASSERT_NE(number, nullptr);
  EXPECT_TRUE(Accepts(*number, "1"));
  EXPECT_TRUE(Accepts(*number, "2.5"));
  EXPECT_FALSE(Accepts(*number, R"("x")"));
  for (const auto& [schema, says] : std::vector<std::pair<std::string, std::string>>{
           {R"({"type":"integer","minimum":0,"enum":[5,50,-3]})", "schema/minimum: keywords next to enum / const"},
           {R"({"maxItems":2,"const":[1,2,3]})", "schema/maxItems: keywords next to enum / const"},
           {R"({"enum":[1,2],"const":3})", "schema/const: is not one of the enum's values"},
           {R"({"type":"string","enum":[1,2]})", "schema/type: no enum / const value has this type"},
           {R"({"oneOf":[{"type":"integer"},{"type":"number"}]})", "schema/oneOf: branches 0 and 1 may both match"},
           {R"({"oneOf":[{"type":"object"},{"type":"object","properties":{"k":{"const":"a"}},"required":["k"]}]})",
            "schema/oneOf: branches 0 and 1"},
       }) {
    auto g = JsonGrammar::FromSchema(ojson::parse(schema), "schema");
    ASSERT_FALSE(g.ok()) << schema;
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(g.status().message().find(says), std::string::npos) << g.status();
  }
  // Branches that cannot overlap: other types, other const values, objects told apart by a
  // required const property (through $refs).
  auto types = Compile(R"({"oneOf":[{"type":"string"},{"type":"integer"},{"type":"null"}]})");
  ASSERT_NE(types, nullptr);
  EXPECT_TRUE(Accepts(*types, "7"));
  EXPECT_TRUE(Accepts(*types, "null"));
  ASSERT_NE(Compile(R"({"oneOf":[{"const":"a"},{"enum":["b","c"]}]})"), nullptr);
  auto tagged = Compile(R"({"oneOf":[{"$ref":"#/$defs/cat"},{"$ref":"#/$defs/dog"}],"$defs":{
      "cat":{"type":"object","properties":{"kind":{"const":"cat"},"lives":{"type":"integer"}},"required":["kind"]},
      "dog":{"type":"object","properties":{"kind":{"enum":["dog","puppy"]}},"required":["kind"]}}})");
  ASSERT_NE(tagged, nullptr);
  EXPECT_TRUE(Accepts(*tagged, R"({"kind":"cat","lives":9})"));
  EXPECT_TRUE(Accepts(*tagged, R"({"kind":"puppy"})"));
}

}  // namespace
}  // namespace glm::structured
