// Schemas compiled to grammars: what each keyword lets through, and the refusals that name the
// keyword's place.
#include "coordinator/structured/json_grammar.h"

#include <string>

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
      {R"({"properties":{"n":{"type":"integer","minimum":0}}})", "schema/properties/n/minimum: 'minimum' is not supported"},
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

}  // namespace
}  // namespace glm::structured
