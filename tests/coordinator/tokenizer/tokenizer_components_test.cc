// Unit tests of the tokenizer's parts on small hand-made tokenizer.json files, plus the error
// paths (bad UTF-8, malformed files, unknown ids).
#include <string>
#include <vector>

#include "coordinator/tokenizer/decoder.h"
#include "coordinator/tokenizer/normalizer.h"
#include "coordinator/tokenizer/pre_tokenizer.h"
#include "coordinator/tokenizer/regex.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "coordinator/tokenizer/utf8.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace glm::tokenizer {
namespace {

using nlohmann::json;
using Ranges = std::vector<std::pair<size_t, size_t>>;

json MiniConfig(bool pair_merges) {
  json merges = pair_merges ? json::parse(R"([["a","b"],["ab","c"],["Ġ","a"]])")
                            : json::parse(R"(["a b","ab c","Ġ a"])");
  return {
      {"model", {{"type", "BPE"},
                 {"vocab", {{"a", 0}, {"b", 1}, {"c", 2}, {"Ġ", 3}, {"ab", 4}, {"abc", 5}, {"Ġa", 6}, {"d", 7}}},
                 {"merges", merges}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens", json::parse(R"([
        {"id": 8, "content": "<s>", "special": true, "normalized": false},
        {"id": 9, "content": "[X]", "special": false, "lstrip": true, "rstrip": true, "normalized": false},
        {"id": 10, "content": "cat", "special": false, "single_word": true, "normalized": true}])")},
      {"post_processor", json::parse(R"({"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [8], "tokens": ["<s>"]}}})")},
  };
}

std::unique_ptr<Tokenizer> Mini(json config = MiniConfig(false)) {
  auto tok = Tokenizer::FromJsonString(config.dump());
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

std::vector<int32_t> Ids(const Tokenizer& t, const std::string& s, bool special = false) {
  auto ids = t.Encode(s, special);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

TEST(BpeTest, MergesInRankOrderAndBothMergeFormatsAgree) {
  auto legacy = Mini(MiniConfig(false));
  auto pairs = Mini(MiniConfig(true));
  EXPECT_EQ(Ids(*legacy, "abc ab"), (std::vector<int32_t>{5, 3, 4}));
  EXPECT_EQ(Ids(*pairs, "abc ab"), Ids(*legacy, "abc ab"));
  EXPECT_EQ(Ids(*legacy, " a"), (std::vector<int32_t>{6}));
  // Characters outside the vocabulary (no unk token) are dropped, as Hugging Face does, and
  // their neighbours then merge.
  EXPECT_EQ(Ids(*legacy, "axb"), (std::vector<int32_t>{4}));
  // Long words take the heap path; the result must match repeated short words.
  std::string long_word;
  for (int i = 0; i < 100; ++i) long_word += "abc";
  EXPECT_EQ(Ids(*legacy, long_word), std::vector<int32_t>(100, 5));
}

TEST(AddedTokensTest, SpecialStripAndSingleWord) {
  auto tok = Mini();
  EXPECT_EQ(Ids(*tok, "a<s>b"), (std::vector<int32_t>{0, 8, 1}));
  EXPECT_EQ(Ids(*tok, "a  [X]  b"), (std::vector<int32_t>{0, 9, 1}));  // lstrip + rstrip.
  EXPECT_EQ(Ids(*tok, "a cat b"), (std::vector<int32_t>{0, 3, 10, 3, 1}));
  const auto in_word = Ids(*tok, "concatd");
  EXPECT_EQ(std::count(in_word.begin(), in_word.end(), 10), 0);  // single_word: not inside words.
  EXPECT_TRUE(tok->IsSpecial(8));
  EXPECT_FALSE(tok->IsSpecial(9));
  EXPECT_EQ(tok->TokenToId("[X]"), 9);
  EXPECT_EQ(tok->vocab_size(), 11);
}

TEST(PostProcessorTest, TemplateAddsBosOnlyWithSpecialTokens) {
  auto tok = Mini();
  EXPECT_EQ(Ids(*tok, "ab", true), (std::vector<int32_t>{8, 4}));
  EXPECT_EQ(Ids(*tok, "ab", false), (std::vector<int32_t>{4}));
}

TEST(DecodeTest, SkipSpecialUnknownIdAndLossyBytes) {
  auto tok = Mini();
  EXPECT_EQ(*tok->Decode({8, 5, 3, 4}), "<s>abc ab");
  EXPECT_EQ(*tok->Decode({8, 5, 3, 4}, true), "abc ab");
  auto bad = tok->Decode({5, 99});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown token id 99"), std::string::npos);
  EXPECT_FALSE(tok->Decode({-3}).ok());
}

TEST(SplitTest, EveryBehaviorMatchesHuggingFaceDocs) {
  // "the-final--countdown" split on "-" (tokenizers' own documentation example).
  const std::string s = "the-final--countdown";
  const Ranges matches = {{3, 4}, {9, 10}, {10, 11}};
  auto pieces = [&](SplitBehavior b, bool invert = false) {
    std::vector<std::string> out;
    for (auto [x, y] : SplitRanges(s.size(), matches, b, invert)) out.push_back(s.substr(x, y - x));
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces(SplitBehavior::kRemoved), (V{"the", "final", "countdown"}));
  EXPECT_EQ(pieces(SplitBehavior::kIsolated), (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(pieces(SplitBehavior::kMergedWithPrevious), (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(pieces(SplitBehavior::kMergedWithNext), (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(pieces(SplitBehavior::kContiguous), (V{"the", "-", "final", "--", "countdown"}));
  EXPECT_EQ(pieces(SplitBehavior::kRemoved, true), (V{"-", "-", "-"}));
}

TEST(RegexTest, OnigurumaWhitespaceAndUnicodeClasses) {
  auto re = Regex::Compile(R"(\s+(?!\S)|\s+|\p{L}+|\p{N}{1,3})");
  ASSERT_TRUE(re.ok());
  auto m = (*re)->NewMatcher();
  Ranges out;
  // \v and U+0085 are whitespace for Oniguruma (ICU's \s alone would miss them); the
  // lookahead leaves the last space before a non-space to the next match.
  ASSERT_TRUE(m->FindAll("a\v\xC2\x85" "b 12345", &out).ok());
  EXPECT_EQ(out, (Ranges{{0, 1}, {1, 2}, {2, 4}, {4, 5}, {5, 6}, {6, 9}, {9, 11}}));
  EXPECT_FALSE(Regex::Compile("(unclosed").ok());
}

// A pattern that backtracks exponentially on some text (a corrupt or hostile tokenizer.json)
// used to hang its request's thread for good, and a failed match returned the matches so far
// as if complete; the match engine's time limit now ends it with an error, and a tokenizer
// whose pre-tokenizer uses it refuses that text and still encodes others.
TEST(RegexTest, CatastrophicBacktrackingIsAnErrorNotAHang) {
  const std::string pattern = R"((\w|\w\w)+\()";
  auto re = Regex::Compile(pattern);
  ASSERT_TRUE(re.ok());
  Ranges out = {{0, 1}};
  const std::string text(60, 'a');
  absl::Status s = (*re)->NewMatcher()->FindAll(text, &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("U_REGEX_TIME_OUT"), std::string::npos) << s;
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE((*re)->NewMatcher()->FindAll("ab(", &out).ok());
  EXPECT_EQ(out, (Ranges{{0, 3}}));

  auto split = PreTokenizer::FromJson(
      {{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}});
  ASSERT_TRUE(split.ok()) << split.status();
  std::vector<Piece> pieces = {{text, -1}};
  EXPECT_FALSE((*split)->Apply(&pieces).ok());
  pieces = {{"x ab( y", -1}};
  ASSERT_TRUE((*split)->Apply(&pieces).ok());
  EXPECT_EQ(pieces.size(), 3u);
  auto replace = Normalizer::FromJson({{"type", "Replace"}, {"pattern", {{"Regex", pattern}}}, {"content", "-"}});
  ASSERT_TRUE(replace.ok()) << replace.status();
  std::string t = text;
  EXPECT_FALSE((*replace)->Normalize(&t).ok());
}

TEST(PreTokenizerTest, DigitsAndByteLevelPrefixSpace) {
  auto digits = PreTokenizer::FromJson({{"type", "Digits"}, {"individual_digits", true}});
  ASSERT_TRUE(digits.ok());
  std::vector<Piece> p = {{"ab123c", -1}};
  ASSERT_TRUE((*digits)->Apply(&p).ok());
  ASSERT_EQ(p.size(), 5u);
  EXPECT_EQ(p[1].text, "1");
  auto bl = PreTokenizer::FromJson({{"type", "ByteLevel"}, {"add_prefix_space", true}});
  ASSERT_TRUE(bl.ok());
  std::vector<Piece> q = {{"hi you", -1}};
  ASSERT_TRUE((*bl)->Apply(&q).ok());
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].text, "Ġhi");
  EXPECT_EQ(q[1].text, "Ġyou");
}

TEST(NormalizerTest, UnicodeFormsReplacePrependLowercase) {
  auto n = Normalizer::FromJson(json::parse(R"({"type": "Sequence", "normalizers": [
      {"type": "NFKC"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
      {"type": "Prepend", "prepend": "▁"}, {"type": "Lowercase"}]})"));
  ASSERT_TRUE(n.ok()) << n.status();
  std::string s = "ﬁ Å";
  ASSERT_TRUE((*n)->Normalize(&s).ok());
  EXPECT_EQ(s, "▁fi▁å");
  auto nfc = Normalizer::FromJson({{"type", "NFC"}});
  std::string t = "A\xCC\x8A";  // A + combining ring.
  ASSERT_TRUE((*nfc)->Normalize(&t).ok());
  EXPECT_EQ(t, "\xC3\x85");
  EXPECT_FALSE(Normalizer::FromJson({{"type", "Precompiled"}}).ok());
}

TEST(TokenizerErrorsTest, BadInputIsAClearError) {
  auto tok = Mini();
  auto bad = tok->Encode("ok \xFF\xFE");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("invalid UTF-8 at byte offset 3"), std::string::npos);
  EXPECT_FALSE(Tokenizer::FromJsonString("{not json").ok());
  EXPECT_FALSE(Tokenizer::FromJsonString("[]").ok());
  // A normalizer Sequence nested 100k deep: refused at load (copying it overflowed the stack).
  std::string deep = R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": )";
  for (int i = 0; i < 100000; ++i) deep += R"({"type": "Sequence", "normalizers": [)";
  deep += R"({"type": "NFC"})";
  for (int i = 0; i < 100000; ++i) deep += "]}";
  deep += "}";
  auto nested = Tokenizer::FromJsonString(deep);
  ASSERT_FALSE(nested.ok());
  EXPECT_NE(nested.status().message().find("deeper than 64 levels"), std::string::npos) << nested.status();
  EXPECT_FALSE(Tokenizer::FromJsonString(R"({"model": {"type": "Unigram", "vocab": []}})").ok());
  json c = MiniConfig(false);
  c["model"]["merges"] = json::parse(R"(["a zz"])");
  EXPECT_FALSE(Tokenizer::FromJsonString(c.dump()).ok());
  c = MiniConfig(false);
  c["pre_tokenizer"] = json::parse(R"({"type": "Split", "pattern": {"Regex": "(["}, "behavior": "Isolated"})");
  EXPECT_FALSE(Tokenizer::FromJsonString(c.dump()).ok());
  c = MiniConfig(false);
  c["model"]["vocab"] = "oops";
  EXPECT_FALSE(Tokenizer::FromJsonString(c.dump()).ok());
  EXPECT_FALSE(Tokenizer::FromFile("/nonexistent/tokenizer.json").ok());
}

// Each case must come back as an InvalidArgument naming the field, not terminate the process
// (json type errors) or allocate gigabytes (ids near 2^30 sizing the dense id tables).
TEST(TokenizerErrorsTest, MalformedFieldsAndSparseIdsAreClearErrors) {
  auto expect_error = [](const json& c, const std::string& want) {
    auto tok = Tokenizer::FromJsonString(c.dump());
    ASSERT_FALSE(tok.ok()) << want;
    EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument) << tok.status();
    EXPECT_NE(tok.status().message().find(want), std::string::npos) << tok.status();
  };
  json c = MiniConfig(false);
  c["model"]["type"] = 1;
  expect_error(c, "model.type must be a string, got number");
  c = MiniConfig(false);
  c["model"]["vocab"]["zzzq"] = 1073741824;
  expect_error(c, "model.vocab: largest id 1073741824 is far beyond the 9 entries");
  c = MiniConfig(false);
  c["model"]["vocab"]["zzzq"] = 1073741825;
  expect_error(c, "model.vocab['zzzq']: bad id 1073741825");
  c = MiniConfig(false);
  c["model"]["vocab"]["zzzq"] = "7";
  expect_error(c, "model.vocab['zzzq']: id must be an integer, got string");
  c = MiniConfig(false);
  c["model"]["vocab"]["zzzq"] = 7.5;
  expect_error(c, "model.vocab['zzzq']: id must be an integer, got number");
  c = MiniConfig(false);
  c["added_tokens"].push_back({{"id", 1073741824}, {"content", "<big>"}});
  expect_error(c, "added_tokens: largest id 1073741824 is far beyond the 12 vocabulary entries");
  c = MiniConfig(false);
  c["added_tokens"].push_back({{"id", "11"}, {"content", "<x>"}});
  expect_error(c, "added_tokens[3]: 'id' must be an integer");
  c = MiniConfig(false);
  c["added_tokens"].push_back({{"id", 11}, {"content", 5}});
  expect_error(c, "added_tokens[3]: 'content' must be a string");
  c = MiniConfig(false);
  c["added_tokens"].push_back(5);
  expect_error(c, "added_tokens[3]: expected an object");
  c = MiniConfig(false);
  c["post_processor"]["special_tokens"]["<s>"]["ids"] = json::array({99});
  expect_error(c, "post_processor: unknown token id 99");
  // Scattered ids within the slack still load: small hand-made files use them.
  c = MiniConfig(false);
  c["model"]["vocab"]["zzzq"] = 60000;
  auto tok = Tokenizer::FromJsonString(c.dump());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 60001);
  EXPECT_EQ((*tok)->TokenToId("zzzq"), 60000);
}

TEST(Utf8Test, LossyAndCompletePrefix) {
  EXPECT_EQ(LossyUtf8("a\xE2\x82" "b"), "a\xEF\xBF\xBD" "b");      // One U+FFFD per maximal subpart.
  EXPECT_EQ(LossyUtf8("\xE0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");     // Overlong: two.
  EXPECT_EQ(LossyUtf8("\xF0\x9F\xA4\x96"), "\xF0\x9F\xA4\x96");
  EXPECT_EQ(CompletePrefixLength("ab\xF0\x9F\xA4"), 2u);
  EXPECT_EQ(CompletePrefixLength("ab\x80"), 3u);
  EXPECT_EQ(CompletePrefixLength("ab\xF0\x9F\xA4\x96"), 6u);
  EXPECT_FALSE(ValidateUtf8("\xED\xA0\x80").ok());  // Surrogate.
}

// A 200K-token agent transcript (specials, thinking, tool calls, CJK, emoji) encodes and round-trips.
// Its speed is bench/tokenizer_bench's to measure (tests assert no wall-clock); a quadratic
// regression shows here as a run into ctest's timeout.
TEST(TokenizerTest, AgentTranscriptOf200kTokensRoundTrips) {
  auto tok = Tokenizer::FromFile(std::string(GLM_MODELS_DIR) + "/glm5-tiny-code");
  ASSERT_TRUE(tok.ok());
  std::string transcript;
  for (int turn = 0; transcript.size() < 700000; ++turn) {
    transcript += "<|user|>\nRun the tests in module_" + std::to_string(turn) +
                  " and fix failures 한국어 中文 🤖<|assistant|>\n<think>Plan step " +
                  std::to_string(turn * 7) + ".</think>\n<tool_call>bash\n<arg_key>cmd</arg_key>\n"
                  "<arg_value>pytest -x tests/test_" + std::to_string(turn) +
                  ".py</arg_value>\n</tool_call><|observation|>\ndef f(x):\n    return x * " +
                  std::to_string(turn) + "\n";
  }
  auto ids = (*tok)->Encode(transcript);
  ASSERT_TRUE(ids.ok());
  EXPECT_GT(ids->size(), 200000u);
  EXPECT_EQ(*(*tok)->Decode(*ids), transcript);
}

// ByteFallback: "<0xHH>" tokens are bytes (joined with the rest; the tokenizer repairs invalid
// UTF-8 afterwards), malformed ones such as "<0xZZ>" stay text. It used std::stoi, which threw on
// "<0xZZ>" and took the process down (Detokenize, echo, logprobs, streaming).
TEST(DecoderTest, ByteFallbackReadsOnlyTwoHexDigitTokens) {
  auto decoder = Decoder::FromJson({{"type", "ByteFallback"}});
  ASSERT_TRUE(decoder.ok()) << decoder.status();
  auto decode = [&](std::vector<std::string> tokens) {
    (*decoder)->DecodeChain(&tokens);
    std::string out;
    for (const auto& t : tokens) out += t;
    return out;
  };
  EXPECT_EQ(decode({"<0xE4>", "<0xB8>", "<0xAD>", "x"}), "\xE4\xB8\xAD" "x");  // 中
  EXPECT_EQ(decode({"<0x61>", "b", "<0x63>"}), "abc");
  EXPECT_EQ(decode({"<0xZZ>", "<0x1G>", "<0x4a>"}), "<0xZZ><0x1G>J");
  EXPECT_EQ(decode({"<0x41", "0x41>", "<0x414>"}), "<0x410x41><0x414>");
}

}  // namespace
}  // namespace glm::tokenizer
