// The Jinja interpreter against Python jinja2 in transformers' environment (differential cases
// in tests/fixtures/tokenizer_extra/jinja_cases.json), plus error handling.
#include <fstream>
#include <sstream>
#include <string>

#include "coordinator/tokenizer/chat_template.h"
#include "coordinator/tokenizer/jinja_lexer.h"
#include "coordinator/tokenizer/jinja_template.h"
#include "coordinator/tokenizer/jinja_value.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace glm::tokenizer {
namespace {

using OJson = nlohmann::ordered_json;

TEST(JinjaTest, MatchesPythonJinja2OnHandMadeCases) {
  std::ifstream in(std::string(GLM_TEST_FIXTURES_DIR) + "/tokenizer_extra/jinja_cases.json");
  std::stringstream ss;
  ss << in.rdbuf();
  const OJson data = OJson::parse(ss.str());
  int checked = 0;
  for (const auto& c : data.at("cases")) {
    const std::string source = c.contains("template_source")
                                   ? c["template_source"].get<std::string>()
                                   : data["templates"][c["template"].get<std::string>()].get<std::string>();
    auto tmpl = ChatTemplate::FromString(source);
    ASSERT_TRUE(tmpl.ok()) << tmpl.status() << "\n" << source;
    OJson extra = c["context"];
    const OJson messages = extra["messages"];
    const OJson tools = extra["tools"];
    const bool agp = extra["add_generation_prompt"].get<bool>();
    extra.erase("messages");
    extra.erase("tools");
    extra.erase("add_generation_prompt");
    auto text = (*tmpl)->RenderOrdered(messages, tools, agp, extra);
    if (c["rendered"].is_null()) {
      EXPECT_FALSE(text.ok()) << source;
      continue;
    }
    ASSERT_TRUE(text.ok()) << text.status() << "\n" << source;
    EXPECT_EQ(*text, c["rendered"].get<std::string>()) << source << "\ncontext: " << c["context"].dump();
    ++checked;
  }
  EXPECT_GT(checked, 50);
}

absl::StatusOr<std::string> Render(const std::string& source, const OJson& vars = OJson::object()) {
  auto t = jinja::Template::Parse(source);
  if (!t.ok()) return t.status();
  return (*t)->Render(jinja::Value::FromJson(vars).dict());
}

TEST(JinjaTest, UndefinedUsedAsObjectIsAnError) {
  auto r = Render("{{ missing.attr }}");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'missing' is undefined"), std::string::npos) << r.status();
  EXPECT_FALSE(Render("{{ missing + 1 }}").ok());
  EXPECT_FALSE(Render("{{ missing() }}").ok());
  EXPECT_FALSE(Render("{{ m.a.b }}", {{"m", OJson::object()}}).ok());
  // Printing, testing and iterating undefined are fine.
  EXPECT_EQ(*Render("[{{ missing }}]{% for x in missing %}x{% endfor %}{{ missing is defined }}"),
            "[]False");
}

TEST(JinjaTest, SyntaxErrorsAreReportedWithLines) {
  for (const char* bad : {"{% if %}", "{{ 1 + }}", "{% for x in %}{% endfor %}", "{% endif %}",
                          "{{ 'unterminated }}", "{% set x %}", "{{ (1, }}", "{% foo %}",
                          "{{ a[1:2:3:4] }}", "{#", "{{", "{%"}) {
    auto r = Render(bad);
    EXPECT_FALSE(r.ok()) << bad;
  }
  auto r = Render("line1\n{% if true %}\n{{ 1 + }}\n{% endif %}");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 3"), std::string::npos) << r.status();
}

TEST(JinjaTest, SandboxRefusesMutationAndRunawayRecursion) {
  EXPECT_FALSE(Render("{% set xs = [] %}{{ xs.append(1) }}").ok());
  EXPECT_FALSE(Render("{% set d = {} %}{{ d.update({'a': 1}) }}").ok());
  EXPECT_FALSE(Render("{{ range(1000000000) | length }}").ok());
  EXPECT_FALSE(Render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").ok());
  EXPECT_FALSE(Render("{{ 1 / 0 }}").ok());
  EXPECT_FALSE(Render("{{ 'a' + 1 }}").ok());
  EXPECT_FALSE(Render("{% for x in none %}{% endfor %}").ok());
}

// Expects `status` to fail with a message containing `want`.
void ExpectError(const absl::Status& status, const std::string& want, const std::string& what) {
  ASSERT_FALSE(status.ok()) << what;
  EXPECT_NE(status.message().find(want), std::string::npos) << what << ": " << status;
}

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// Templates nested beyond the parser's cap used to overflow the stack (SIGSEGV at coordinator
// startup): they must be a clean error naming the line.
TEST(JinjaTest, DeepNestingIsAnErrorNotAStackOverflow) {
  const std::string cases[] = {
      "{{" + Repeat("(", 10000) + "1" + Repeat(")", 10000) + "}}",
      Repeat("{% if 1 %}", 20000),
      "{{ " + Repeat("[", 50000) + Repeat("]", 50000) + " }}",
      "{{ " + Repeat("-", 200000) + "1 }}",
      "{{ " + Repeat("not ", 100000) + "1 }}",
      "{{ 1" + Repeat(" + 1", 100000) + " }}",          // Left-deep: loops, not recursion.
      "{{ x" + Repeat(".a", 100000) + " }}",
      "{{ x" + Repeat("|e", 100000) + " }}",
      "{{ 1" + Repeat(" if 1 else 1", 100000) + " }}",
      "{{ " + Repeat("{'a': ", 50000) + "1" + Repeat("}", 50000) + " }}",
  };
  for (const std::string& source : cases) {
    auto t = jinja::Template::Parse("line1\n" + source);
    ExpectError(t.status(), "template nested too deeply (line 2)", source.substr(0, 40));
  }
  // Real templates nest far less; a few dozen levels still parse and render.
  EXPECT_EQ(*Render("{{" + Repeat("(", 30) + "1" + Repeat(")", 30) + "}}"), "1");
  EXPECT_EQ(*Render(Repeat("{% if 1 %}", 50) + "x" + Repeat("{% endif %}", 50)), "x");
  EXPECT_EQ(*Render("{{ 1" + Repeat(" + 1", 100) + " }}"), "101");
}

TEST(JinjaTest, PythonFloatRepr) {
  EXPECT_EQ(jinja::PythonFloatRepr(1.0), "1.0");
  EXPECT_EQ(jinja::PythonFloatRepr(0.1), "0.1");
  EXPECT_EQ(jinja::PythonFloatRepr(1e-5), "1e-05");
  EXPECT_EQ(jinja::PythonFloatRepr(0.0001), "0.0001");
  EXPECT_EQ(jinja::PythonFloatRepr(1e16), "1e+16");
  EXPECT_EQ(jinja::PythonFloatRepr(1234567890123456.0), "1234567890123456.0");
  EXPECT_EQ(jinja::PythonFloatRepr(-2.5), "-2.5");
  EXPECT_EQ(jinja::PythonFloatRepr(1.5e300), "1.5e+300");
}

TEST(JinjaTest, LexerWhitespaceControl) {
  EXPECT_EQ(*Render("a\n  {% if true %}\n  b\n  {% endif %}\nc"), "a\n  b\nc");
  EXPECT_EQ(*Render("a {{- 'b' -}} c"), "abc");
  EXPECT_EQ(*Render("a\r\nb\n"), "a\nb");
  EXPECT_EQ(*Render("  {%+ if true %}x{% endif +%}\ny"), "  x\ny");
}

}  // namespace
}  // namespace glm::tokenizer

namespace glm::tokenizer {
namespace {

// Mutated real templates must parse or fail cleanly, and render or fail cleanly.
TEST(JinjaFuzzTest, MutatedTemplatesNeverCrash) {
  std::ifstream in(std::string(GLM_TEST_FIXTURES_DIR) + "/tokenizer_extra/jinja_cases.json");
  std::stringstream ss;
  ss << in.rdbuf();
  const OJson data = OJson::parse(ss.str());
  const std::string base = data["templates"]["glm45"].get<std::string>();
  const OJson messages = data["cases"].back()["context"]["messages"];
  const char kAlphabet[] = "{}%#-+()[]|.,:'\"\n abcdefinorstx0123=<>~*/";
  uint64_t seed = 42;
  auto next = [&seed] {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<size_t>(seed >> 33);
  };
  int parsed = 0;
  for (int round = 0; round < 300; ++round) {
    std::string t = base;
    const int edits = 1 + next() % 4;
    for (int e = 0; e < edits; ++e) {
      const size_t pos = next() % t.size();
      switch (next() % 3) {
        case 0: t.erase(pos, 1 + next() % 8); break;
        case 1: t.insert(pos, 1, kAlphabet[next() % (sizeof(kAlphabet) - 1)]); break;
        default: t[pos] = kAlphabet[next() % (sizeof(kAlphabet) - 1)];
      }
    }
    auto tmpl = ChatTemplate::FromString(t);
    if (!tmpl.ok()) continue;
    ++parsed;
    (void)(*tmpl)->RenderOrdered(messages, OJson(), true);
  }
  EXPECT_GT(parsed, 10);
}

}  // namespace
}  // namespace glm::tokenizer
