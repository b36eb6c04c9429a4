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
      {R"({"type":"string","format":"date-time"})", "schema/format: 'format' is not supported"},
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
