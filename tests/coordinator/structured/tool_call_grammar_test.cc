// Forced tool calls: GLM's tool-call format with the tools' argument schemas, special tokens
// spelt with the special mark (here '~' in the test texts).
#include <string>

#include "coordinator/structured/json_grammar.h"
#include "coordinator/structured/json_matcher.h"
#include "gtest/gtest.h"

namespace glm::structured {
namespace {

using ojson = nlohmann::ordered_json;

std::string Marked(std::string text) {
  for (char& c : text)
    if (c == '~') c = JsonGrammar::kSpecialMark;
  return text;
}

std::shared_ptr<const JsonGrammar> Tools() {
  std::vector<ToolSpec> tools = {
      {"get_weather", ojson::parse(R"({"type":"object","properties":{"city":{"type":"string"},
          "unit":{"type":"string","enum":["c","f"]},"days":{"type":"integer"}},"required":["city"]})"), ""},
      {"get", ojson::parse(R"({"type":"object","properties":{"q":{"type":["string","null"]}}})"), ""},
      {"now", nullptr, ""},
  };
  auto g = JsonGrammar::ForToolCalls(tools, "tools");
  EXPECT_TRUE(g.ok()) << g.status();
  return *g;
}

bool Accepts(const JsonGrammar& g, const std::string& text, bool* must_end = nullptr) {
  JsonMatcher m(&g);
  const bool ok = m.Advance(Marked(text)) && m.CanEnd();
  if (must_end != nullptr) *must_end = m.MustEnd();
  return ok;
}

TEST(ToolCallGrammarTest, OneCallOfANamedToolWithItsArguments) {
  auto g = Tools();
  ASSERT_TRUE(g->is_tool_call());
  bool must_end = false;
  EXPECT_TRUE(Accepts(*g, "~<tool_call>get_weather\n~<arg_key>city~</arg_key>\n~<arg_value>Paris, \xc3\xa9 <b>\n"
                          "~</arg_value>\n~</tool_call>", &must_end));
  EXPECT_TRUE(must_end);
  EXPECT_TRUE(Accepts(*g, "~<tool_call>get_weather\n~<arg_key>city~</arg_key>\n~<arg_value>Oslo~</arg_value>\n"
                          "~<arg_key>unit~</arg_key>\n~<arg_value>f~</arg_value>\n"
                          "~<arg_key>days~</arg_key>\n~<arg_value>3~</arg_value>\n~</tool_call>"));
  EXPECT_TRUE(Accepts(*g, "~<tool_call>get\n~<arg_key>q~</arg_key>\n~<arg_value>\"x\"~</arg_value>\n~</tool_call>"));
  EXPECT_TRUE(Accepts(*g, "~<tool_call>get\n~<arg_key>q~</arg_key>\n~<arg_value>null~</arg_value>\n~</tool_call>"));
  EXPECT_TRUE(Accepts(*g, "~<tool_call>get\n~</tool_call>"));
  EXPECT_TRUE(Accepts(*g, "~<tool_call>now\n~</tool_call>"));
}

TEST(ToolCallGrammarTest, WhatTheSchemasRefuse) {
  auto g = Tools();
  EXPECT_FALSE(Accepts(*g, "~<tool_call>get_weather\n~</tool_call>"));  // city is required
  EXPECT_FALSE(Accepts(*g, "~<tool_call>get_weather\n~<arg_key>unit~</arg_key>\n~<arg_value>c~</arg_value>\n"
                           "~<arg_key>city~</arg_key>\n~<arg_value>Oslo~</arg_value>\n~</tool_call>"));  // order
  EXPECT_FALSE(Accepts(*g, "~<tool_call>get_weather\n~<arg_key>city~</arg_key>\n~<arg_value>Oslo~</arg_value>\n"
                           "~<arg_key>unit~</arg_key>\n~<arg_value>k~</arg_value>\n~</tool_call>"));  // enum
  EXPECT_FALSE(Accepts(*g, "~<tool_call>get_weather\n~<arg_key>city~</arg_key>\n~<arg_value>Oslo~</arg_value>\n"
                           "~<arg_key>days~</arg_key>\n~<arg_value>two~</arg_value>\n~</tool_call>"));  // integer
  EXPECT_FALSE(Accepts(*g, "~<tool_call>get\n~<arg_key>q~</arg_key>\n~<arg_value>x~</arg_value>\n~</tool_call>"));
  EXPECT_FALSE(Accepts(*g, "~<tool_call>send\n~</tool_call>"));                       // not a tool
  EXPECT_FALSE(Accepts(*g, "<tool_call>now\n</tool_call>"));                           // tags as plain text
  EXPECT_FALSE(Accepts(*g, "Sure! ~<tool_call>now\n~</tool_call>"));                   // nothing before the call
  EXPECT_FALSE(Accepts(*g, "~<tool_call>now\n~</tool_call>~<tool_call>now\n~</tool_call>"));  // one call
  // JSON never matches a special token.
  auto json_object = JsonGrammar::AnyObject();
  EXPECT_FALSE(Accepts(*json_object, "{\"a\": \"~<tool_call>\"}"));
}

// Parallel calls (tool_choice "required" with parallel tool calls allowed): one or more, an
// optional newline between two, up to the most asked for; the list may end after any call.
TEST(ToolCallGrammarTest, SeveralCallsUpToTheMost) {
  std::vector<ToolSpec> tools = {{"now", nullptr, ""},
                                 {"get", ojson::parse(R"({"type":"object","properties":{"q":{"type":"string"}}})"), ""}};
  auto any = JsonGrammar::ForToolCalls(tools, "tools", -1);
  auto two = JsonGrammar::ForToolCalls(tools, "tools", 2);
  ASSERT_TRUE(any.ok() && two.ok());
  const std::string now = "~<tool_call>now\n~</tool_call>";
  const std::string get = "~<tool_call>get\n~<arg_key>q~</arg_key>\n~<arg_value>x~</arg_value>\n~</tool_call>";
  bool must_end = true;
  EXPECT_TRUE(Accepts(**any, now, &must_end));
  EXPECT_FALSE(must_end);  // another call may follow
  EXPECT_TRUE(Accepts(**any, now + get + "\n" + now + "\n" + get));
  EXPECT_FALSE(Accepts(**any, now + "\n"));            // a newline promises another call
  EXPECT_FALSE(Accepts(**any, now + "\n\n" + get));   // one newline between calls
  EXPECT_FALSE(Accepts(**any, now + " " + get));       // nothing else
  EXPECT_FALSE(Accepts(**any, ""));                    // at least one call
  EXPECT_TRUE(Accepts(**two, now + "\n" + get, &must_end));
  EXPECT_TRUE(must_end);                               // the most calls: nothing may follow
  EXPECT_FALSE(Accepts(**two, now + now + now));
  EXPECT_TRUE(Accepts(*Tools(), "~<tool_call>now\n~</tool_call>", &must_end));
  EXPECT_TRUE(must_end);  // one call (the default)
  EXPECT_FALSE(JsonGrammar::ForToolCalls(tools, "tools", 0).ok());
}

// GLM's parser ends an argument at the first "</arg_value>" text and the call at the first
// "</tool_call>", special token or not: the text of a forced call may not spell them, or the
// client would get a call cut short. Other tags and near misses are ordinary text.
TEST(ToolCallGrammarTest, TextNeverSpellsAClosingTag) {
  auto g = Tools();
  auto city = [](const std::string& value) {
    return "~<tool_call>get_weather\n~<arg_key>city~</arg_key>\n~<arg_value>" + value + "~</arg_value>\n~</tool_call>";
  };
  auto q = [](const std::string& value) {
    return "~<tool_call>get\n~<arg_key>q~</arg_key>\n~<arg_value>" + value + "~</arg_value>\n~</tool_call>";
  };
  EXPECT_FALSE(Accepts(*g, city("a</arg_value>b")));
  EXPECT_FALSE(Accepts(*g, city("</tool_call>")));
  EXPECT_FALSE(Accepts(*g, city("<</arg_value>")));
  EXPECT_FALSE(Accepts(*g, q("\"a</tool_call>\"")));  // in a JSON string argument too
  EXPECT_FALSE(Accepts(*g, q("\"</arg_value>\"")));
  EXPECT_TRUE(Accepts(*g, city("<div></div></arg_valu></tool_cal> <</ </arg_value </tool_call")));
  EXPECT_TRUE(Accepts(*g, city("</arg_key></tool></arg_value_>")));
  EXPECT_TRUE(Accepts(*g, q("\"<\\/tool_call> \\u003c/arg_value>\"")));  // escaped: not the tag's text
  // Byte by byte: one byte short of the tag, only its last byte is refused.
  JsonMatcher m(g.get());
  ASSERT_TRUE(m.Advance(Marked("~<tool_call>get_weather\n~<arg_key>city~</arg_key>\n~<arg_value>x </arg_valu")));
  EXPECT_FALSE(JsonMatcher(m).Advance("e>"));
  EXPECT_TRUE(JsonMatcher(m).Advance("E>"));
  // A schema that would make the call write one is refused.
  auto tagged = JsonGrammar::ForToolCalls(
      {{"f", ojson::parse(R"({"properties":{"k":{"type":"string","enum":["a</tool_call>"]}}})"), ""}}, "tools");
  ASSERT_FALSE(tagged.ok());
  EXPECT_NE(tagged.status().message().find("</tool_call>"), std::string::npos) << tagged.status();
}

// A string argument with a pattern (written raw, as GLM's template writes strings) matches it whole.
TEST(ToolCallGrammarTest, RawStringArgumentsFollowTheirPattern) {
  auto g = JsonGrammar::ForToolCalls({{"book", ojson::parse(R"({"type":"object","properties":{
      "code":{"type":"string","pattern":"[A-Z]{3}\\d?","maxLength":3}},"required":["code"]})"), ""}}, "tools");
  ASSERT_TRUE(g.ok()) << g.status();
  const std::string open = "~<tool_call>book\n~<arg_key>code~</arg_key>\n~<arg_value>";
  EXPECT_TRUE(Accepts(**g, open + "OSL~</arg_value>\n~</tool_call>"));
  EXPECT_FALSE(Accepts(**g, open + "OS~</arg_value>\n~</tool_call>"));
  EXPECT_FALSE(Accepts(**g, open + "osl~</arg_value>\n~</tool_call>"));
  EXPECT_FALSE(Accepts(**g, open + "OSL1~</arg_value>\n~</tool_call>"));  // maxLength
}

TEST(ToolCallGrammarTest, RefusesToolsItCannotForce) {
  auto bad = JsonGrammar::ForToolCalls({{"f", ojson::parse(R"({"properties":{"d":{"type":"integer","multipleOf":2}}})"), ""}},
                                       "tools");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tools[0].parameters/properties/d/multipleOf"), std::string::npos) << bad.status();
  EXPECT_FALSE(JsonGrammar::ForToolCalls({}, "tools").ok());
  EXPECT_FALSE(JsonGrammar::ForToolCalls({{"a<b", nullptr, ""}}, "tools").ok());
  auto missing = JsonGrammar::ForToolCalls({{"f", ojson::parse(R"({"properties":{},"required":["x"]})"), ""}}, "tools");
  EXPECT_FALSE(missing.ok());
  // Top-level keywords other than the properties' were ignored (an anyOf of required sets gave
  // a call of no arguments); they are refused, naming the keyword.
  for (const auto& [schema, says] : std::vector<std::pair<std::string, std::string>>{
           {R"({"type":"object","properties":{"a":{},"b":{}},"anyOf":[{"required":["a"]},{"required":["b"]}]})",
            "tools[0].parameters/anyOf: is not supported at the top"},
           {R"({"properties":{"a":{}},"minProperties":1})", "tools[0].parameters/minProperties"},
           {R"({"type":"array"})", "tools[0].parameters/type: a tool's parameters must be an object schema"},
       }) {
    auto refused = JsonGrammar::ForToolCalls({{"f", ojson::parse(schema), ""}}, "tools");
    ASSERT_FALSE(refused.ok()) << schema;
    EXPECT_NE(refused.status().message().find(says), std::string::npos) << refused.status();
  }
}

// GLM-4.7 and GLM-5 write a call without newlines: the name runs straight into <arg_key>, so
// tool names that are prefixes of each other ("get", "get_weather") are told apart only by the
// tag that follows. The grammar takes the layout the served template writes and nothing else.
TEST(ToolCallGrammarTest, CompactLayoutOfGlm47) {
  std::vector<ToolSpec> tools = {
      {"get_weather", ojson::parse(R"({"type":"object","properties":{"city":{"type":"string"},
          "days":{"type":"integer"}},"required":["city"]})"), ""},
      {"get", ojson::parse(R"({"type":"object","properties":{"q":{"type":"string"}}})"), ""},
      {"now", nullptr, ""},
  };
  auto compact = JsonGrammar::ForToolCalls(tools, "tools", -1, ToolCallLayout::Compact());
  ASSERT_TRUE(compact.ok()) << compact.status();
  const JsonGrammar& g = **compact;
  bool must_end = true;
  EXPECT_TRUE(Accepts(g, "~<tool_call>get_weather~<arg_key>city~</arg_key>~<arg_value>Oslo~</arg_value>"
                         "~<arg_key>days~</arg_key>~<arg_value>3~</arg_value>~</tool_call>", &must_end));
  EXPECT_FALSE(must_end);
  EXPECT_TRUE(Accepts(g, "~<tool_call>get~<arg_key>q~</arg_key>~<arg_value>x~</arg_value>~</tool_call>"));
  EXPECT_TRUE(Accepts(g, "~<tool_call>get~</tool_call>\n~<tool_call>get_weather~<arg_key>city~</arg_key>"
                         "~<arg_value>Rome~</arg_value>~</tool_call>~<tool_call>now~</tool_call>"));
  EXPECT_FALSE(Accepts(g, "~<tool_call>get_weather~</tool_call>"));        // city is required
  EXPECT_FALSE(Accepts(g, "~<tool_call>get_weath~</tool_call>"));          // not a tool
  EXPECT_FALSE(Accepts(g, "~<tool_call>get\n~</tool_call>"));              // GLM-4.5's newline
  EXPECT_FALSE(Accepts(g, "~<tool_call>get~<arg_key>q~</arg_key>\n~<arg_value>x~</arg_value>~</tool_call>"));
  EXPECT_FALSE(Accepts(g, "~<tool_call>get~<arg_key>q~</arg_key>~<arg_value>x~</arg_value>\n~</tool_call>"));
  // Byte by byte, "get" is not complete until the next tag's mark: "_" still continues it.
  JsonMatcher m(&g);
  ASSERT_TRUE(m.Advance(Marked("~<tool_call>get")));
  EXPECT_TRUE(JsonMatcher(m).Advance("_"));
  EXPECT_TRUE(JsonMatcher(m).Advance(Marked("~</tool_call>")));
  EXPECT_FALSE(JsonMatcher(m).Advance("x"));
  // The same tools in GLM-4.5's layout take only its newlines.
  auto spaced = JsonGrammar::ForToolCalls(tools, "tools", -1);
  ASSERT_TRUE(spaced.ok());
  EXPECT_TRUE(Accepts(**spaced, "~<tool_call>get\n~<arg_key>q~</arg_key>\n~<arg_value>x~</arg_value>\n~</tool_call>"));
  EXPECT_FALSE(Accepts(**spaced, "~<tool_call>get~<arg_key>q~</arg_key>~<arg_value>x~</arg_value>~</tool_call>"));
  EXPECT_NE(g.fingerprint(), (*spaced)->fingerprint());  // masks are cached per layout
  // A mixed layout (a template's own spacing) is taken as it is.
  auto mixed = JsonGrammar::ForToolCalls(tools, "tools", 1, ToolCallLayout{"\n", "", " "});
  ASSERT_TRUE(mixed.ok());
  EXPECT_TRUE(Accepts(**mixed, "~<tool_call>get\n~<arg_key>q~</arg_key>~<arg_value>x~</arg_value> ~</tool_call>"));
  // Only whitespace separates the tags.
  auto bad = JsonGrammar::ForToolCalls(tools, "tools", 1, ToolCallLayout{"\n", "x", "\n"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("whitespace only"), std::string::npos) << bad.status();
}

// The API compiles a forced call before it knows the served template; InToolCallLayout gives the
// same calls in the template's layout (the grammar itself when it already is, or is no call).
TEST(ToolCallGrammarTest, InToolCallLayoutRecompilesTheSameCalls) {
  auto spaced = Tools();
  auto same = JsonGrammar::InToolCallLayout(spaced, ToolCallLayout{});
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->get(), spaced.get());
  auto compact = JsonGrammar::InToolCallLayout(spaced, ToolCallLayout::Compact());
  ASSERT_TRUE(compact.ok());
  ASSERT_NE(compact->get(), spaced.get());
  EXPECT_TRUE((*compact)->is_tool_call());
  EXPECT_TRUE(Accepts(**compact, "~<tool_call>get_weather~<arg_key>city~</arg_key>~<arg_value>Oslo~</arg_value>"
                                 "~<arg_key>unit~</arg_key>~<arg_value>f~</arg_value>~</tool_call>"));
  EXPECT_FALSE(Accepts(**compact, "~<tool_call>get_weather~<arg_key>unit~</arg_key>~<arg_value>f~</arg_value>"
                                  "~</tool_call>"));  // still: city is required, one call at most
  EXPECT_FALSE(Accepts(**compact, "~<tool_call>now~</tool_call>~<tool_call>now~</tool_call>"));
  auto object = JsonGrammar::AnyObject();
  auto untouched = JsonGrammar::InToolCallLayout(object, ToolCallLayout::Compact());
  ASSERT_TRUE(untouched.ok());
  EXPECT_EQ(untouched->get(), object.get());
}

}  // namespace
}  // namespace glm::structured
