// Token masks over the bundled model's real vocabulary: the prefix-sharing walk and the cache
// against the token-by-token reference, and random generations through the masks that must
// parse and fit their schema.
#include "coordinator/structured/output_format.h"

#include <cctype>
#include <functional>
#include <random>
#include <regex>
#include <string>

#include "coordinator/structured/json_token_constraint.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace glm::structured {
namespace {

std::shared_ptr<const TokenVocabulary> BundledVocabulary() {
  static const std::shared_ptr<const TokenVocabulary> vocabulary = [] {
    auto tok = tokenizer::Tokenizer::FromFile(std::string(GLM_MODELS_DIR) + "/glm5-tiny-code");
    EXPECT_TRUE(tok.ok()) << tok.status();
    std::vector<std::string> bytes((*tok)->vocab_size());
    for (int32_t id = 0; id < (*tok)->vocab_size(); ++id)
      bytes[id] = glm::structured::TokenVocabulary::Spelling((*tok)->TokenBytes(id), (*tok)->IsSpecial(id),
                                                             (*tok)->IdToToken(id).value_or(""), glm::structured::JsonGrammar::kSpecialMark);
    return std::make_shared<const TokenVocabulary>(std::move(bytes));
  }();
  return vocabulary;
}

bool Allowed(const std::string& bitmap, int32_t id) { return (bitmap[id >> 3] >> (id & 7)) & 1; }

// Generates through the masks: a random allowed token each step, closing bytes favoured so
// texts end; stops when the matcher must end, sometimes when it can.
std::string Generate(OutputFormat& format, int64_t vocab, std::mt19937_64& rng, bool* complete,
                     const std::string& closers = "\"}]0") {
  JsonTokenConstraint c(std::shared_ptr<OutputFormat>(&format, [](OutputFormat*) {}));
  const TokenVocabulary& v = format.vocabulary();
  std::string text, mask;
  for (int step = 0; step < 300; ++step) {
    if (c.MustEnd() || (c.CanEnd() && rng() % 3 == 0)) break;
    c.AllowedTokens(vocab, &mask);
    std::vector<int32_t> allowed, closing;
    for (int32_t id = 0; id < vocab; ++id) {
      if (!Allowed(mask, id)) continue;
      allowed.push_back(id);
      const std::string& b = v.bytes(id);
      if (b.size() == 1 && closers.find(b[0]) != std::string::npos) closing.push_back(id);
    }
    EXPECT_FALSE(allowed.empty()) << "a dead end after: " << text;
    if (allowed.empty()) break;
    const auto& pool = !closing.empty() && rng() % 5 < 2 ? closing : allowed;
    const int32_t id = pool[rng() % pool.size()];
    EXPECT_TRUE(c.Accept(id).ok());
    text += v.bytes(id);
  }
  *complete = c.CanEnd();
  return text;
}

TEST(OutputFormatTest, MasksEqualTheTokenByTokenReference) {
  OutputFormat format(JsonGrammar::AnyObject(), BundledVocabulary());
  const int64_t vocab = BundledVocabulary()->size() + 5;  // a model vocabulary padded past the tokenizer's
  const std::string texts[] = {"{\"key\": [1, -2.5e3, true, null, \"x\\u00e9\\n\"], \"o\": {\"p\": {}}}",
                               "{ \"\xe2\x98\x83 snow\": \"\\\\\" }"};
  int states = 0;
  for (const std::string& text : texts) {
    JsonMatcher m(&format.grammar());
    for (size_t k = 0; k <= text.size(); ++k) {
      const std::string expected = format.MaskReference(m, vocab);
      EXPECT_EQ(*format.Mask(m, vocab), expected) << "after " << text.substr(0, k);
      EXPECT_EQ(*format.Mask(m, vocab), expected);  // from the cache
      ++states;
      if (k < text.size()) {
        ASSERT_TRUE(m.Advance(static_cast<uint8_t>(text[k])));
      }
    }
  }
  EXPECT_GT(format.stats().hits, states - 1);
  // Inside an unbounded string every position has the same state: one computed mask.
  JsonMatcher a(&format.grammar()), b(&format.grammar());
  a.Advance("{\"k\":\"abc");
  b.Advance("{\"k\":\"abcdefghij");
  EXPECT_EQ(format.Mask(a, vocab), format.Mask(b, vocab));
}

// A full cache evicts the least recently used masks and keeps to its bytes; masks stay right.
TEST(OutputFormatTest, TheCacheKeepsToItsBytes) {
  const int64_t vocab = BundledVocabulary()->size();
  const int64_t mask_bytes = (vocab + 7) / 8;
  OutputFormat format(JsonGrammar::AnyObject(), BundledVocabulary(), 3 * mask_bytes + 200);
  const std::string text = "{\"a\": [1, true], \"b\": null}";
  JsonMatcher m(&format.grammar());
  for (size_t k = 0; k <= text.size(); ++k) {
    EXPECT_EQ(*format.Mask(m, vocab), format.MaskReference(m, vocab));
    EXPECT_LE(format.stats().entries, 3);
    if (k < text.size()) {
      ASSERT_TRUE(m.Advance(static_cast<uint8_t>(text[k])));
    }
  }
  EXPECT_GT(format.stats().misses, 10);
}

// Byte by byte along `text` (a whole value of the format): every state's mask equals the
// token-by-token reference.
void ExpectMasksAlong(OutputFormat& format, const std::string& text, bool must_end = true) {
  const int64_t vocab = BundledVocabulary()->size();
  JsonMatcher m(&format.grammar());
  for (size_t k = 0; k <= text.size(); ++k) {
    EXPECT_EQ(*format.Mask(m, vocab), format.MaskReference(m, vocab)) << "after " << text.substr(0, k);
    if (k < text.size()) {
      ASSERT_TRUE(m.Advance(static_cast<uint8_t>(text[k]))) << text.substr(0, k + 1);
    }
  }
  EXPECT_TRUE(m.CanEnd());
  EXPECT_EQ(m.MustEnd(), must_end);
}

// Bounded strings: inside them the string-safe tokens are taken without a walk only while they
// fit the maxLength left; keys, escapes and minLength through the walk.
TEST(OutputFormatTest, BoundedStringMasksEqualTheReference) {
  auto grammar = JsonGrammar::FromSchema(nlohmann::ordered_json::parse(R"({"type":"object","properties":{
      "s":{"type":"string","maxLength":6},"k":{"type":"string","minLength":3},"e":{"enum":["ab","abc"]}},
      "required":["s","k","e"]})"), "schema");
  ASSERT_TRUE(grammar.ok()) << grammar.status();
  OutputFormat format(*grammar, BundledVocabulary());
  const std::string text = "{\"s\": \"a b\xc3\xa9\\n\", \"k\": \"\\u00e9yz\", \"e\": \"abc\"}";
  ExpectMasksAlong(format, text);
}

// Forced tool calls (two): raw and JSON string arguments through near misses of the closing tags
// (which their text may not spell): the masks, fast path and walk, equal the reference.
TEST(OutputFormatTest, ToolCallMasksEqualTheReference) {
  auto grammar = JsonGrammar::ForToolCalls(
      {{"edit", nlohmann::ordered_json::parse(R"({"type":"object","properties":{"path":{"type":"string"},
          "opts":{"type":"object"}},"required":["path"]})"), ""}}, "tools", 2);
  ASSERT_TRUE(grammar.ok()) << grammar.status();
  OutputFormat format(*grammar, BundledVocabulary());
  const std::string mark(1, JsonGrammar::kSpecialMark);
  const std::string text = mark + "<tool_call>edit\n" + mark + "<arg_key>path" + mark + "</arg_key>\n" + mark +
                           "<arg_value>a<b></arg_valu</tool_cal" + mark + "</arg_value>\n" + mark + "<arg_key>opts" +
                           mark + "</arg_key>\n" + mark + "<arg_value>{\"x</arg_val\": \"</tool_cal<\"}" + mark +
                           "</arg_value>\n" + mark + "</tool_call>\n" + mark + "<tool_call>edit\n" + mark + "<arg_key>path" +
                           mark + "</arg_key>\n" + mark + "<arg_value>b" + mark + "</arg_value>\n" + mark + "</tool_call>";
  ExpectMasksAlong(format, text);  // two calls, the most: then it must end
}

// 60 random generations through `format`'s masks; `check` sees each complete one, which must parse.
void ForCompleteGenerations(OutputFormat& format, uint64_t seed,
                            const std::function<void(const std::string&, const nlohmann::ordered_json&)>& check) {
  std::mt19937_64 rng(seed);
  int complete_count = 0;
  for (int i = 0; i < 60; ++i) {
    bool complete = false;
    const std::string text = Generate(format, BundledVocabulary()->size(), rng, &complete);
    if (!complete) continue;
    ++complete_count;
    ASSERT_TRUE(nlohmann::json::accept(text)) << text;
    check(text, nlohmann::ordered_json::parse(text));
  }
  EXPECT_GT(complete_count, 30);
}

TEST(OutputFormatTest, RandomGenerationsThroughTheMasksParseAsObjects) {
  OutputFormat format(JsonGrammar::AnyObject(), BundledVocabulary());
  ForCompleteGenerations(format, 11, [](const std::string& text, const nlohmann::ordered_json& j) {
    EXPECT_TRUE(j.is_object()) << text;
  });
}

TEST(OutputFormatTest, RandomGenerationsFitTheirSchema) {
  auto grammar = JsonGrammar::FromSchema(nlohmann::ordered_json::parse(R"({"type":"object","properties":{
      "name":{"type":"string","maxLength":12},"age":{"type":"integer"},"kind":{"enum":["cat","dog"]},
      "tags":{"type":"array","items":{"type":"string"},"maxItems":3},"ok":{"type":["boolean","null"]}},
      "required":["name","age","kind"]})"), "schema");
  ASSERT_TRUE(grammar.ok()) << grammar.status();
  OutputFormat format(*grammar, BundledVocabulary());
  ForCompleteGenerations(format, 5, [](const std::string& text, const nlohmann::ordered_json& j) {
    ASSERT_TRUE(j.is_object()) << text;
    ASSERT_TRUE(j.contains("name") && j["name"].is_string()) << text;
    EXPECT_LE(j["name"].get<std::string>().size(), 12u * 4) << text;  // 12 code points of up to 4 bytes
    ASSERT_TRUE(j.contains("age") && j["age"].is_number_integer()) << text;
    ASSERT_TRUE(j.contains("kind") && (j["kind"] == "cat" || j["kind"] == "dog")) << text;
    if (j.contains("tags")) {
      ASSERT_TRUE(j["tags"].is_array()) << text;
      EXPECT_LE(j["tags"].size(), 3u);
      for (const auto& t : j["tags"]) EXPECT_TRUE(t.is_string()) << text;
    }
    if (j.contains("ok")) {
      EXPECT_TRUE(j["ok"].is_boolean() || j["ok"].is_null()) << text;
    }
    std::vector<std::string> keys;
    for (const auto& [k, v] : j.items()) keys.push_back(k);
    EXPECT_EQ(keys.front(), "name") << text;  // the schema's order
  });
}

// 40 random generations through a raw-text format's masks (closing bytes `closers` favoured):
// `check` sees each complete one; returns how many were complete.
int ForCompleteTexts(OutputFormat& format, uint64_t seed, const std::string& closers,
                     const std::function<void(const std::string&)>& check) {
  std::mt19937_64 rng(seed);
  int complete = 0;
  for (int i = 0; i < 40; ++i) {
    bool done = false;
    const std::string text = Generate(format, BundledVocabulary()->size(), rng, &done, closers);
    if (!done) continue;
    ++complete;
    check(text);
  }
  return complete;
}

// Patterned strings and whole-output regexes: the walk (no string fast path there) equals the
// reference, and random generations through the masks match their pattern (std::regex as judge).
TEST(OutputFormatTest, PatternMasksEqualTheReferenceAndGenerationsMatch) {
  auto schema = JsonGrammar::FromSchema(nlohmann::ordered_json::parse(R"({"type":"object","properties":{
      "id":{"type":"string","pattern":"[a-z]{2,4}_\\d+"},"day":{"type":"string","format":"date"},
      "n":{"type":"integer","minimum":-5,"maximum":120},"x":{"type":"number","exclusiveMinimum":0,"maximum":2}},
      "required":["id","day","n","x"]})"), "schema");
  ASSERT_TRUE(schema.ok()) << schema.status();
  OutputFormat format(*schema, BundledVocabulary());
  ExpectMasksAlong(format, "{\"id\": \"ab_12\", \"day\": \"2026-12-06\", \"n\": -5, \"x\": 1.25}");
  const std::regex id("[a-z]{2,4}_\\d+"), day("\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])");
  ForCompleteGenerations(format, 3, [&](const std::string& text, const nlohmann::ordered_json& j) {
    ASSERT_TRUE(j.contains("id") && j.contains("day")) << text;
    EXPECT_TRUE(std::regex_match(j["id"].get<std::string>(), id)) << text;
    EXPECT_TRUE(std::regex_match(j["day"].get<std::string>(), day)) << text;
    ASSERT_TRUE(j.contains("n") && j["n"].is_number_integer() && j.contains("x") && j["x"].is_number()) << text;
    EXPECT_TRUE(j["n"].get<int64_t>() >= -5 && j["n"].get<int64_t>() <= 120) << text;
    EXPECT_TRUE(j["x"].get<double>() > 0 && j["x"].get<double>() <= 2) << text;
  });

  const std::string pattern = "(def|class) [a-z_]{1,12}\\((self)?\\):";
  auto regex = JsonGrammar::ForRegex(pattern, "guided_regex");
  ASSERT_TRUE(regex.ok()) << regex.status();
  OutputFormat text_format(*regex, BundledVocabulary());
  ExpectMasksAlong(text_format, "def run(self):");
  const std::regex judge(pattern);
  EXPECT_GT(ForCompleteTexts(text_format, 5, "\"}]0",
                             [&](const std::string& text) { EXPECT_TRUE(std::regex_match(text, judge)) << text; }),
            20);
}

// Judge of the grammar below: expr ::= term ((" + " | " * ") term)*, term ::= [0-9]{1,3} | "(" expr ")".
bool ParseExpr(const std::string& s, size_t& i);
bool ParseTerm(const std::string& s, size_t& i) {
  if (i < s.size() && s[i] == '(') {
    ++i;
    if (!ParseExpr(s, i) || i >= s.size() || s[i] != ')') return false;
    ++i;
    return true;
  }
  size_t digits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) && digits < 3) ++i, ++digits;
  return digits > 0 && !(i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])));
}
bool ParseExpr(const std::string& s, size_t& i) {
  if (!ParseTerm(s, i)) return false;
  while (s.compare(i, 3, " + ") == 0 || s.compare(i, 3, " * ") == 0) {
    i += 3;
    if (!ParseTerm(s, i)) return false;
  }
  return true;
}

// A GBNF grammar (recursive: nested parentheses): the walk equals the reference along a text,
// and random generations through the masks never dead-end and parse by the grammar's judge.
TEST(OutputFormatTest, GrammarMasksEqualTheReferenceAndGenerationsParse) {
  auto grammar = JsonGrammar::ForGbnf(R"g(root ::= expr
expr ::= term ((" + " | " * ") term)*
term ::= [0-9]{1,3} | "(" expr ")")g", "grammar");
  ASSERT_TRUE(grammar.ok()) << grammar.status();
  OutputFormat format(*grammar, BundledVocabulary());
  ExpectMasksAlong(format, "((1 + 23) * 456) + 7", /*must_end=*/false);  // " + ..." may follow
  EXPECT_GT(ForCompleteTexts(format, 11, ")0",
                             [](const std::string& text) {
                               size_t at = 0;
                               EXPECT_TRUE(ParseExpr(text, at) && at == text.size()) << text;
                             }),
            10);
}

// The walk's table of grammar states has a bound (OutputFormat's walk_states): a trie of rules
// whose 1- and 2-letter prefixes over 16 letters are states of their own (274 in all) against a
// vocabulary of every prefix up to 3 letters gives the same masks, equal to the reference, with
// the table's bound above and below that (the plain walk takes over).
TEST(OutputFormatTest, GrammarMasksWithAndPastTheWalkTableBoundEqualTheReference) {
  const std::string letters = "abcdefghijklmnop";
  std::string gbnf = "root ::= r";
  std::vector<std::string> rules = {""}, vocabulary;
  for (int depth = 0; depth < 3; ++depth) {
    std::vector<std::string> next;
    for (const std::string& prefix : rules) {
      gbnf += "\nr" + prefix + " ::= ";
      for (size_t i = 0; i < letters.size(); ++i) {
        const std::string child = prefix + letters[i];
        gbnf += (i ? " | \"" : "\"") + std::string(1, letters[i]) + "\"" + (depth < 2 ? " r" + child : "");
        vocabulary.push_back(child);
        next.push_back(child);
      }
    }
    rules = std::move(next);
  }
  auto grammar = JsonGrammar::ForGbnf(gbnf, "grammar");
  ASSERT_TRUE(grammar.ok()) << grammar.status();
  const auto tokens = std::make_shared<const TokenVocabulary>(vocabulary);
  OutputFormat tabled(*grammar, tokens), bounded(*grammar, tokens, OutputFormat::kDefaultCacheBytes, 50);
  const int64_t vocab = static_cast<int64_t>(vocabulary.size());
  JsonMatcher m(&tabled.grammar());
  for (const char c : std::string("ab")) {
    const std::string mask = *tabled.Mask(m, vocab);
    EXPECT_EQ(mask, tabled.MaskReference(m, vocab));
    EXPECT_EQ(mask, *bounded.Mask(m, vocab));
    EXPECT_NE(mask, std::string(mask.size(), '\0'));
    ASSERT_TRUE(m.Advance(static_cast<uint8_t>(c)));
  }
}

// A grammar so ambiguous that the matcher reaches its parse bound after a few bytes: the
// constraint names that cause (instead of blaming the vocabulary) once the next byte would pass
// the bound, and says nothing otherwise (JSON, or a grammar far from its bounds).
TEST(JsonTokenConstraintTest, WhyNothingFitsNamesTheMatchersBounds) {
  auto grammar = JsonGrammar::ForGbnf(
      "root ::= r0 \"!\"\nr0 ::= r2 r3 \"a\" | \"\" | \"b\" r2\nr1 ::= \"a\" r1 r1 | \"\"\n"
      "r2 ::= r0 r1\nr3 ::= r1 | \"b\" r2",
      "grammar");
  ASSERT_TRUE(grammar.ok()) << grammar.status();
  auto format = std::make_shared<OutputFormat>(*grammar, BundledVocabulary());
  const TokenVocabulary& v = format->vocabulary();
  int32_t b = -1;
  for (int32_t id = 0; id < v.size() && b < 0; ++id)
    if (v.bytes(id) == "b") b = id;
  ASSERT_GE(b, 0);
  JsonTokenConstraint c(format);
  EXPECT_EQ(c.WhyNothingFits(), "");
  std::string why;
  for (int i = 0; i < 12 && why.empty(); ++i) {
    ASSERT_TRUE(c.Accept(b).ok()) << i;
    why = c.WhyNothingFits();
  }
  EXPECT_NE(why.find("the grammar matcher reached its limits"), std::string::npos) << why;
  JsonTokenConstraint json(std::make_shared<OutputFormat>(JsonGrammar::AnyObject(), BundledVocabulary()));
  EXPECT_EQ(json.WhyNothingFits(), "");
}

}  // namespace
}  // namespace glm::structured
