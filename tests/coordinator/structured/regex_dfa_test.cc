// RegexDfa: whole-text matches against std::regex (ECMAScript, the reference twin) on random
// strings, UTF-8 classes, no dead ends, and the refusals that say what in a pattern is refused.
#include "coordinator/structured/regex_dfa.h"

#include <random>
#include <regex>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace glm::structured {
namespace {

std::shared_ptr<const RegexDfa> MustCompile(const std::string& pattern, RegexDfa::Options options = {}) {
  auto dfa = RegexDfa::Compile(pattern, options);
  EXPECT_TRUE(dfa.ok()) << pattern << ": " << dfa.status();
  return dfa.ok() ? *dfa : nullptr;
}

// Random texts over the characters the patterns use agree with std::regex_match on every one.
TEST(RegexDfaTest, WholeMatchesAgreeWithStdRegexOnRandomTexts) {
  const std::vector<std::string> patterns = {
      "abc",          "a|b|cd",        "(ab)*c",          "a+b?c*",         "[a-c]{2,3}",     "x{3}",
      "(a|b){0,2}c",  "[^ab]+",        "\\d{1,3}(\\.\\d+)?", "\\w+-\\w*",   "(?:a|bc)+d",     "a.c",
      "[a\\-c]+",     "\\s*x\\s*",     "(a*)*b",          "(a|ab)(c|bcd)",  "[0-9a-f]+",      "a{2,}",
      "\\(a\\)",      "[\\]\\[]+",     "a*?b+?",          "(?:ab)+",        "[.]x",           "\\D\\W\\S",
      "(|a)b",        "((a|b)c){1,2}", "a\\/b",           "[\\d\\s]+",      "^ab$",           "a{0}b",
  };
  const std::string alphabet = "abcdx0189.-_ ()[]/\t\n";
  std::mt19937_64 rng(7);
  for (const std::string& pattern : patterns) {
    auto dfa = MustCompile(pattern);
    ASSERT_NE(dfa, nullptr);
    const std::regex reference(pattern, std::regex::ECMAScript);
    int matched = 0;
    for (const std::string text : {"", "abc", "(a)", "a/b", "ab", "aab", " x ", "12.5", "ab-c", "[]", "abcd", "bcd",
                                   "a\nc", "d1_"}) {
      const bool expected = std::regex_match(text, reference);
      EXPECT_EQ(dfa->Matches(text), expected) << "pattern " << pattern << " text '" << text << "'";
      matched += expected;
    }
    for (int i = 0; i < 4000; ++i) {
      std::string text;
      const int len = static_cast<int>(rng() % 7);
      for (int k = 0; k < len; ++k) text.push_back(alphabet[rng() % alphabet.size()]);
      // Some texts built from the pattern's own letters, so that matches are common.
      if (i % 2 == 0)
        for (char& c : text) c = "abcd01x"[rng() % 7];
      const bool expected = std::regex_match(text, reference);
      EXPECT_EQ(dfa->Matches(text), expected) << "pattern " << pattern << " text '" << text << "'";
      matched += expected;
    }
    EXPECT_GT(matched, 0) << pattern;  // the comparison saw matches, not only refusals
  }
}

// Random patterns from the syntax's pieces: compiling never crashes or hangs, and where both
// this compiler and std::regex take a pattern, they agree on random texts.
TEST(RegexDfaTest, RandomPatternsCompileOrAreRefusedAndAgreeWithStdRegex) {
  const std::vector<std::string> pieces = {"a", "b", "c", ".", "|", "(", ")", "(?:", "*", "+", "?", "{2}", "{1,3}", "{,2}",
                                           "[ab]", "[^a]", "[a-c]", "\\d", "\\w", "\\s", "\\.", "^", "$", "{", "}", "-",
                                           "]", "[", "\\", "*?", "0", "1"};
  const std::string alphabet = "abc01 .-{}";
  std::mt19937_64 rng(17);
  int compared = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string pattern;
    const int n = 1 + static_cast<int>(rng() % 8);
    for (int k = 0; k < n; ++k) pattern += pieces[rng() % pieces.size()];
    auto dfa = RegexDfa::Compile(pattern);
    if (!dfa.ok()) {
      EXPECT_EQ(dfa.status().code(), absl::StatusCode::kInvalidArgument) << pattern;
      continue;
    }
    std::regex reference;
    try {
      reference = std::regex(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error&) {
      continue;  // a pattern std::regex reads differently (Python's literal '{', a stray ']')
    }
    // Anchors and braces that the two read differently are left out of the comparison.
    if (pattern.find_first_of("^${}]") != std::string::npos) continue;
    ++compared;
    for (int t = 0; t < 200; ++t) {
      std::string text;
      const int len = static_cast<int>(rng() % 6);
      for (int k = 0; k < len; ++k) text.push_back(alphabet[rng() % alphabet.size()]);
      ASSERT_EQ((*dfa)->Matches(text), std::regex_match(text, reference)) << "pattern " << pattern << " text '" << text << "'";
    }
  }
  EXPECT_GT(compared, 300);
}

TEST(RegexDfaTest, ClassesAndDotCoverUtf8Characters) {
  auto greek = MustCompile("[\xce\xb1-\xcf\x89]+");  // [α-ω]+
  EXPECT_TRUE(greek->Matches("\xce\xbb\xce\xbc"));  // λμ
  EXPECT_FALSE(greek->Matches("a"));
  auto dot = MustCompile("a.b");
  EXPECT_TRUE(dot->Matches("a\xc3\xa9" "b"));      // é: two bytes, one character
  EXPECT_TRUE(dot->Matches("a\xf0\x9f\x98\x80" "b"));  // an emoji: four bytes
  EXPECT_FALSE(dot->Matches("a\nb"));
  EXPECT_FALSE(dot->Matches("a\xc3\xa9\xc3\xa9" "b"));
  auto not_a = MustCompile("[^a]");
  EXPECT_TRUE(not_a->Matches("\xe2\x82\xac"));   // €
  EXPECT_FALSE(not_a->Matches("\xed\xa0\x80"));  // an encoded surrogate is not UTF-8
  EXPECT_FALSE(not_a->Matches("\xc0\x80"));      // nor an overlong
  auto escapes = MustCompile("\\u00e9\\x41\\u{1F600}\\uD83D\\uDE00");
  EXPECT_TRUE(escapes->Matches("\xc3\xa9" "A\xf0\x9f\x98\x80\xf0\x9f\x98\x80"));
  // Every state reached by some prefix can still finish: accepting or with a way out.
  for (const auto& dfa : {greek, dot, not_a, escapes})
    for (int32_t s = 0; s < dfa->num_states(); ++s) EXPECT_TRUE(dfa->Accepting(s) || dfa->HasExits(s));
}

TEST(RegexDfaTest, AnyUtf8TextMatchesDotStarAndNothingElseDoes) {
  auto any = MustCompile("[\\s\\S]*");
  std::mt19937_64 rng(11);
  for (int i = 0; i < 2000; ++i) {
    std::string bytes;
    for (int k = 0; k < 4; ++k) bytes.push_back(static_cast<char>(rng() % 256));
    // Valid UTF-8 (checked here by hand) matches; invalid never does.
    bool valid = true;
    for (size_t k = 0; k < bytes.size() && valid;) {
      const auto c = static_cast<uint8_t>(bytes[k]);
      const int n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
      if (n == 0 || k + n > bytes.size()) {
        valid = false;
        break;
      }
      uint32_t cp = n == 1 ? c : c & (0x7F >> n);
      for (int j = 1; j < n; ++j) {
        const auto d = static_cast<uint8_t>(bytes[k + j]);
        valid &= (d & 0xC0) == 0x80;
        cp = cp << 6 | (d & 0x3F);
      }
      static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      valid &= cp >= kMin[n] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
      k += n;
    }
    EXPECT_EQ(any->Matches(bytes), valid) << i;
  }
}

// Fewest and most characters to a match, counted in characters (not bytes), -1 for no limit.
TEST(RegexDfaTest, CountsTheCharactersLeftToAMatch) {
  struct Case {
    const char* pattern;
    int64_t min, max;
  };
  for (const Case& c : {Case{"ab?c*", 1, -1}, Case{"a{2,4}", 2, 4}, Case{"(\\u00e9|xy)z", 2, 3}, Case{"", 0, 0},
                        Case{"(ab|c)(d|efg)?", 1, 5}, Case{"[\\s\\S]{3}", 3, 3}}) {
    auto dfa = MustCompile(c.pattern);
    ASSERT_NE(dfa, nullptr);
    EXPECT_EQ(dfa->MinChars(dfa->start()), c.min) << c.pattern;
    EXPECT_EQ(dfa->MaxChars(dfa->start()), c.max) << c.pattern;
  }
  auto dfa = MustCompile("(\\u00e9|xy)z");
  const int32_t mid = dfa->Next(dfa->start(), 0xC3);  // inside é: its character is counted
  EXPECT_EQ(dfa->MinChars(mid), 1);
  EXPECT_EQ(dfa->MaxChars(mid), 1);
  EXPECT_TRUE(dfa->CanEndWithin(dfa->start(), 0, 2, 2));
  EXPECT_FALSE(dfa->CanEndWithin(dfa->start(), 0, 4, -1));
  EXPECT_FALSE(dfa->CanEndWithin(dfa->start(), 0, 0, 1));
  EXPECT_FALSE(dfa->CanEndWithin(-1, 0, 0, -1));
}

TEST(RegexDfaTest, JsonStringPatternsLeaveOutCharactersAStringCannotWrite) {
  auto tab = MustCompile("a[\\t\\x01]b", {.json_string = true});
  EXPECT_TRUE(tab->Matches("a\tb"));
  EXPECT_FALSE(tab->Matches("a\x01" "b"));
  auto none = RegexDfa::Compile("\\x01+", {.json_string = true});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("matches no text a JSON string can hold"), std::string::npos);
}

TEST(RegexDfaTest, RefusalsSayWhatAndWhere) {
  struct Case {
    const char* pattern;
    const char* message;
  };
  const Case cases[] = {
      {"(a)\\1", "offset 3: backreferences"},
      {"a(?=b)", "offset 1: lookaround"},
      {"a(?<!b)", "lookaround"},
      {"\\bword", "word boundaries"},
      {"(?i)abc", "inline flags"},
      {"a**", "offset 2: a quantifier cannot follow another"},
      {"*a", "offset 0: nothing to repeat"},
      {"ab)", "offset 2: unbalanced ')'"},
      {"(ab", "offset 0: unterminated group"},
      {"[ab", "offset 0: unterminated ["},
      {"[]", "an empty class"},
      {"x{3,2}", "maximum is below its minimum"},
      {"x{1001}", "above 1000"},
      {"a^b", "^ is supported only at the start"},
      {"a$b", "$ is supported only at the end"},
      {"[z-a]", "out of order"},
      {"\\p{L}", "Unicode property classes"},
      {"\\q", "unknown escape \\q"},
      {"a\\", "lone backslash"},
      {"\\x4", "malformed \\x escape"},
      {"\\uD800", "not a Unicode scalar value"},
      {"(a|b)*a(a|b){14}", "too complex"},
      {"((a{1000}){1000}){1000}", "too large"},
      {"\xff", "not valid UTF-8"},
  };
  for (const Case& c : cases) {
    auto dfa = RegexDfa::Compile(c.pattern);
    ASSERT_FALSE(dfa.ok()) << c.pattern;
    EXPECT_EQ(dfa.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(dfa.status().message().find(c.message), std::string::npos) << c.pattern << ": " << dfa.status().message();
  }
  // A literal '{' that is no quantifier, and escaped specials, are fine.
  EXPECT_TRUE(MustCompile("a{b}")->Matches("a{b}"));
  EXPECT_TRUE(MustCompile(RegexEscape("a+b(c)?[d]{e}|f\\g/h-i.j$^"))->Matches("a+b(c)?[d]{e}|f\\g/h-i.j$^"));
}

}  // namespace
}  // namespace glm::structured
