// GLM tool-call and <think> parsing, whole and split at every possible boundary.
#include "coordinator/tokenizer/tool_call_parser.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace glm::tokenizer {
namespace {

struct Result {
  std::string content, reasoning;
  std::vector<ToolCall> calls;
};

Result Parse(const std::vector<std::string>& pieces, ToolCallParser::Options options = {}) {
  ToolCallParser parser(options);
  Result r;
  auto add = [&](const ParsedDelta& d) {
    r.content += d.content;
    r.reasoning += d.reasoning;
    r.calls.insert(r.calls.end(), d.tool_calls.begin(), d.tool_calls.end());
  };
  for (const auto& p : pieces) {
    auto d = parser.Push(p);
    EXPECT_TRUE(d.ok()) << d.status();
    if (d.ok()) add(*d);
  }
  auto d = parser.Finish();
  EXPECT_TRUE(d.ok()) << d.status();
  if (d.ok()) add(*d);
  return r;
}

// Every split of `text` into two pieces, and one-byte pieces, must give the same result.
void ExpectSplitInvariant(const std::string& text, ToolCallParser::Options options = {}) {
  const Result whole = Parse({text}, options);
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    const Result r = Parse({text.substr(0, cut), text.substr(cut)}, options);
    EXPECT_EQ(r.content, whole.content) << "cut " << cut;
    EXPECT_EQ(r.reasoning, whole.reasoning) << "cut " << cut;
    ASSERT_EQ(r.calls.size(), whole.calls.size()) << "cut " << cut;
    for (size_t i = 0; i < r.calls.size(); ++i) {
      EXPECT_EQ(r.calls[i].name, whole.calls[i].name);
      EXPECT_EQ(r.calls[i].arguments, whole.calls[i].arguments);
    }
  }
  std::vector<std::string> bytes;
  for (char c : text) bytes.emplace_back(1, c);
  const Result r = Parse(bytes, options);
  EXPECT_EQ(r.content, whole.content);
  EXPECT_EQ(r.reasoning, whole.reasoning);
  EXPECT_EQ(r.calls.size(), whole.calls.size());
}

const char kTwoCalls[] =
    "\n<think>Need weather.\nTwo cities.</think>\nLet me check.\n"
    "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>東京</arg_value>\n"
    "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n<arg_key>opts</arg_key>\n"
    "<arg_value>{\"unit\": \"c\", \"hourly\": [1, 2]}</arg_value>\n</tool_call>\n"
    "<tool_call>get_time\n</tool_call>";

TEST(ToolCallParserTest, ParsesReasoningContentAndCalls) {
  const Result r = Parse({kTwoCalls});
  EXPECT_EQ(r.reasoning, "Need weather.\nTwo cities.");
  EXPECT_EQ(r.content, "Let me check.\n");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].id, "call_0");
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(r.calls[0].arguments,
            R"({"city":"東京","days":3,"opts":{"unit":"c","hourly":[1,2]}})");
  EXPECT_EQ(r.calls[1].id, "call_1");
  EXPECT_EQ(r.calls[1].name, "get_time");
  EXPECT_EQ(r.calls[1].arguments, "{}");
}

TEST(ToolCallParserTest, SplitAnywhereGivesTheSameResult) {
  ExpectSplitInvariant(kTwoCalls);
  ExpectSplitInvariant("plain text with < and <t and </ but no tags <think");
  ExpectSplitInvariant("<think></think>answer");
  ExpectSplitInvariant("reasoning first</think>then answer", {.starts_in_reasoning = true});
}

TEST(ToolCallParserTest, ValueTyping) {
  ToolCallParser parser;
  auto call = parser.ParseToolCallBody(
      "f\n<arg_key>s</arg_key><arg_value>hello world</arg_value>"
      "<arg_key>n</arg_key><arg_value> 42 </arg_value>"
      "<arg_key>b</arg_key><arg_value>true</arg_value>"
      "<arg_key>nul</arg_key><arg_value>null</arg_value>"
      "<arg_key>q</arg_key><arg_value>\"quoted\"</arg_value>"
      "<arg_key>l</arg_key><arg_value>[1, \"x\"]</arg_value>"
      "<arg_key>e</arg_key><arg_value></arg_value>"
      "<arg_key>ml</arg_key><arg_value>line1\nline2 \"q\"</arg_value>");
  ASSERT_TRUE(call.ok()) << call.status();
  EXPECT_EQ(nlohmann::ordered_json::parse(call->arguments),
            nlohmann::ordered_json::parse(
                R"({"s":"hello world","n":42,"b":true,"nul":null,"q":"quoted","l":[1,"x"],"e":"","ml":"line1\nline2 \"q\""})"));
}

TEST(ToolCallParserTest, SchemaStringTypeKeepsStrings) {
  ToolCallParser::Options options;
  options.tools = nlohmann::json::parse(
      R"([{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"zip":{"type":"string"},"n":{"type":"integer"}}}}}])");
  ToolCallParser parser(options);
  auto call = parser.ParseToolCallBody("f<arg_key>zip</arg_key><arg_value>01234</arg_value><arg_key>n</arg_key><arg_value>7</arg_value>");
  ASSERT_TRUE(call.ok());
  EXPECT_EQ(call->arguments, R"({"zip":"01234","n":7})");
}

// `tools` is client JSON: wrong types anywhere in it must not throw (json::value() threw a
// type_error for "name": null, which escaped while a reply was being generated).
TEST(ToolCallParserTest, MistypedToolsNeverThrow) {
  ToolCallParser::Options options;
  options.tools = nlohmann::json::parse(R"([
      {"type":"function","function":{"name":null}},
      {"type":"function","function":{"name":7,"parameters":"x"}},
      {"type":"function","function":"not an object"},
      "not a tool", 3, null,
      {"type":"function","function":{"name":"g","parameters":{"properties":[1]}}},
      {"type":"function","function":{"name":"h","parameters":{"properties":{"zip":"string"}}}},
      {"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"zip":{"type":"string"}}}}}])");
  for (const char* body : {"f<arg_key>zip</arg_key><arg_value>1234</arg_value>",
                           "g<arg_key>zip</arg_key><arg_value>1234</arg_value>",
                           "h<arg_key>zip</arg_key><arg_value>1234</arg_value>",
                           "other<arg_key>zip</arg_key><arg_value>1234</arg_value>"}) {
    ToolCallParser parser(options);
    absl::StatusOr<ToolCall> call;
    ASSERT_NO_THROW(call = parser.ParseToolCallBody(body)) << body;
    ASSERT_TRUE(call.ok()) << body;
    // Only f's schema (found past the mistyped entries) says the value stays a string.
    EXPECT_EQ(call->arguments, call->name == "f" ? R"({"zip":"1234"})" : R"({"zip":1234})") << body;
  }
}

TEST(ToolCallParserTest, NoReasoningNoCalls) {
  const Result r = Parse({"Just ", "an ", "answer."});
  EXPECT_EQ(r.content, "Just an answer.");
  EXPECT_TRUE(r.reasoning.empty());
  EXPECT_TRUE(r.calls.empty());
}

TEST(ToolCallParserTest, LeadingBlankLinesGoTheFirstLinesIndentationStays) {
  // A code reply: GLM's newline after <|assistant|> goes, the first line's indentation stays.
  EXPECT_EQ(Parse({"\n    return x\n"}).content, "    return x\n");
  EXPECT_EQ(Parse({"\n", "  ", "  ", "return x"}).content, "    return x");
  EXPECT_EQ(Parse({" \r\n\n\tx = 1"}).content, "\tx = 1");
  EXPECT_EQ(Parse({"<think>\n  plan</think>\n\n  code"}).reasoning, "  plan");
  EXPECT_EQ(Parse({"<think>\n  plan</think>\n\n  code"}).content, "  code");
  EXPECT_EQ(Parse({"<tool_call>f\n</tool_call>\n\n  after"}).content, "  after");
  // Whitespace alone: the blank lines go, what follows the last newline stays.
  EXPECT_EQ(Parse({"\n\n"}).content, "");
  EXPECT_EQ(Parse({"   "}).content, "   ");
  EXPECT_EQ(Parse({"\n", "\n  "}).content, "  ");
  ExpectSplitInvariant("\n \n    def f():\n        pass\n");
  ExpectSplitInvariant("<think>\n  a\n</think>\n\t\n  b<tool_call>g\n</tool_call>\n   c");
}

// Only the reply's start is trimmed: a stray </think> in content, or a reasoning block after
// content, keeps the line breaks that follow it (they used to go: "f\nf\nf" came out "fff").
TEST(ToolCallParserTest, LineBreaksAfterMidReplyThinkTagsStay) {
  ToolCallParser::Options reasoning_first;
  reasoning_first.starts_in_reasoning = true;
  EXPECT_EQ(Parse({"\n</think>\nf</think>\nf</think>\nf</think>\n"}, reasoning_first).content, "f\nf\nf\n");
  const Result r = Parse({"r</think>code\n<think>more</think>\n\n    indented"}, reasoning_first);
  EXPECT_EQ(r.reasoning, "rmore");
  EXPECT_EQ(r.content, "code\n\n\n    indented");
  // Before any content the reply's start is still trimmed, whatever tags came first.
  EXPECT_EQ(Parse({"</think>\n\n  x"}).content, "  x");
  EXPECT_EQ(Parse({"\n<think>a</think>\n<think>b</think>\n\n  x"}).content, "  x");
  ExpectSplitInvariant("r</think>code\n<think>more</think>\n\n    indented", reasoning_first);
  ExpectSplitInvariant("a</think>\n b</think>\n\nc");
}

// A prefill (the prompt ends inside the assistant's message): the reply continues it, so its
// leading newlines are content; after a later </think> or call the usual trimming applies.
TEST(ToolCallParserTest, AContinuedMessageKeepsItsLeadingNewlines) {
  ToolCallParser::Options continued;
  continued.trim_reply_start = false;
  EXPECT_EQ(Parse({"\n    return x\n"}, continued).content, "\n    return x\n");
  EXPECT_EQ(Parse({"\n", "\n  ", "y"}, continued).content, "\n\n  y");
  EXPECT_EQ(Parse({"\n<tool_call>f\n</tool_call>\n\n  after"}, continued).content, "\n  after");
  ExpectSplitInvariant("\n \n    def f():\n        pass\n", continued);
}

// A call without </tool_call> at the end of generation (max_tokens, a stop string) used to come
// back as a call with whatever name and arguments it had reached, e.g. {"q":"ca"}; clients run
// what is in tool_calls, so it is content now, wherever the cut fell.
TEST(ToolCallParserTest, UnterminatedCallAtEndIsContent) {
  for (const std::string text : {"<tool_call>search\n<arg_key>q</arg_key>\n<arg_value>cats</arg_value>\n",
                                 "<tool_call>search\n<arg_key>q</arg_key>\n<arg_value>ca",  // inside a value
                                 "<tool_call>sea",                                         // inside the name
                                 "<tool_call>search\n",                                   // after the name
                                 "<tool_call>search\n<arg_key>q</arg_key>\n<arg_value>cats</arg_value>\n</tool_"}) {
    const Result r = Parse({"Looking.", text});
    EXPECT_TRUE(r.calls.empty()) << text;
    EXPECT_EQ(r.content, "Looking." + text) << text;
    ExpectSplitInvariant("Looking." + text);
  }
  // A closed call before the cut one is still a call.
  const Result r = Parse({"<tool_call>f\n</tool_call>\n<tool_call>g\n<arg_key>a</arg_key>"});
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "f");
  EXPECT_EQ(r.content, "<tool_call>g\n<arg_key>a</arg_key>");
}

TEST(ToolCallParserTest, MalformedCallBodiesAreErrors) {
  ToolCallParser parser;
  EXPECT_FALSE(parser.ParseToolCallBody("\n<arg_key>a</arg_key><arg_value>1</arg_value>").ok());
  EXPECT_FALSE(parser.ParseToolCallBody("f<arg_key>a</arg_key>").ok());
  EXPECT_FALSE(parser.ParseToolCallBody("f<arg_key>a").ok());
}

// A call the model got wrong, or one cut off by max_tokens, is not the client's error: its text
// comes out as content (it used to fail the whole request with INVALID_ARGUMENT), and the calls
// around it still parse.
TEST(ToolCallParserTest, MalformedCallsComeOutAsContent) {
  Result empty = Parse({"<tool_call></tool_call>"});
  EXPECT_EQ(empty.content, "<tool_call></tool_call>");
  EXPECT_TRUE(empty.calls.empty());
  Result cut = Parse({"Checking.<tool_call>get_weather\n<arg_key>ci"});
  EXPECT_EQ(cut.content, "Checking.<tool_call>get_weather\n<arg_key>ci");
  EXPECT_TRUE(cut.calls.empty());
  Result mixed = Parse({"<tool_call>f<arg_key>a</arg_key></tool_call>",
                        "<tool_call>g<arg_key>b</arg_key><arg_value>2</arg_value></tool_call>"});
  EXPECT_EQ(mixed.content, "<tool_call>f<arg_key>a</arg_key></tool_call>");
  ASSERT_EQ(mixed.calls.size(), 1u);
  EXPECT_EQ(mixed.calls[0].name, "g");
  EXPECT_EQ(mixed.calls[0].arguments, R"({"b":2})");
  ExpectSplitInvariant("x<tool_call>get_weather\n<arg_key>city</arg_key> oops</tool_call>y");
}

// Without tools in the request the markup is the model's text, not a call (vLLM parses calls only
// for requests with tools); reasoning is still split off.
TEST(ToolCallParserTest, ToolCallParsingOff) {
  ToolCallParser::Options options;
  options.parse_tool_calls = false;
  const Result r = Parse({kTwoCalls}, options);
  EXPECT_EQ(r.reasoning, "Need weather.\nTwo cities.");
  EXPECT_TRUE(r.calls.empty());
  const std::string text = kTwoCalls;
  EXPECT_EQ(r.content, text.substr(text.find("Let me check.")));
  ExpectSplitInvariant(kTwoCalls, options);
}

TEST(ToolCallParserTest, OpenAiShape) {
  const Result r = Parse({kTwoCalls});
  const auto j = ToolCallParser::ToOpenAi(r.calls);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["type"], "function");
  EXPECT_EQ(j[0]["function"]["name"], "get_weather");
  EXPECT_TRUE(j[0]["function"]["arguments"].is_string());
  EXPECT_EQ(j[1]["function"]["arguments"], "{}");
}

}  // namespace
}  // namespace glm::tokenizer
