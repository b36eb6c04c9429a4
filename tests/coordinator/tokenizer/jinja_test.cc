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

// JSON integers past INT64_MAX (tool arguments, schema bounds) print as given, as Python's
// unbounded ints do (they wrapped to negative numbers: 18446744073709551615 printed -1).
TEST(JinjaTest, IntegersPastInt64PrintExactly) {
  const OJson vars = OJson::parse(R"({"big": 12345678901234567890, "max": 18446744073709551615,
                                      "edge": 9223372036854775807, "args": {"n": 18446744073709551615}})");
  EXPECT_EQ(*Render("{{ big }} {{ max }} {{ edge }}", vars), "12345678901234567890 18446744073709551615 9223372036854775807");
  EXPECT_EQ(*Render("{{ args | tojson }}", vars), R"({"n": 18446744073709551615})");
  EXPECT_EQ(*Render("{{ big == max }} {{ max == max }} {{ big == edge }}", vars), "False True False");
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

// The interpreter bounds what the parser cannot see: values nested at render time and
// recursion through macros.
TEST(JinjaTest, RenderTimeNestingAndRunawayLoopsAreErrors) {
  ExpectError(Render("{% set ns = namespace(x=[]) %}{% for i in range(5000) %}"
                     "{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}").status(),
              "value nested more than 512 levels deep", "list wrapping");
  ExpectError(Render("{% set ns = namespace() %}{% set ns.self = ns %}{{ ns|tojson }}").status(),
              "tojson: value nested more than 512 levels deep", "self-containing namespace");
  ExpectError(Render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").status(),
              "macro recursion too deep", "macro recursion");
  // A chain of namespaces linked by attribute assignment is invisible to any depth count; it
  // must still be freed without recursing once per link.
  EXPECT_EQ(*Render("{% set ns = namespace(tail=namespace()) %}{% set head = ns.tail %}"
                    "{% for i in range(3) %}{% for j in range(100000) %}{% set n = namespace() %}"
                    "{% set t = ns.tail %}{% set t.next = n %}{% set ns.tail = n %}"
                    "{% endfor %}{% endfor %}ok"),
            "ok");
  // Deep request data is refused before it is converted.
  OJson deep = OJson::array();
  for (int i = 0; i < 100000; ++i) deep = OJson::array({std::move(deep)});
  auto tmpl = ChatTemplate::FromString("{{ messages }}");
  ASSERT_TRUE(tmpl.ok());
  ExpectError((*tmpl)->RenderOrdered(deep, OJson(), false).status(),
              "messages nested more than 256 levels deep", "deep messages");
}

// Renders that would run for hours stop at the step budget (a few seconds).
TEST(JinjaTest, RunawayLoopsAndMacroCallsHitTheStepBudget) {
  ExpectError(Render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                     "{% endfor %}").status(),
              "loop iterations and macro calls in one render", "nested loops");
}

TEST(JinjaTest, ExponentialMacroCallsHitTheStepBudget) {
  ExpectError(Render("{% macro m(n) %}{% if n > 0 %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}"
                     "{% endmacro %}{{ m(60) }}").status(),
              "loop iterations and macro calls in one render", "exponential macro");
}

// Size-amplifying operations are priced before they allocate: these used to abort
// (length_error, bad_alloc) or loop for ever on every chat request.
TEST(JinjaTest, SizeAmplifyingOperationsAreCapped) {
  ExpectError(Render("{{ 'a' * 100000000000 }}").status(),
              "'*' would repeat a 1-byte string 100000000000 times, over the limit of 16777216 bytes",
              "string repetition");
  ExpectError(Render("{{ [1] * 1000000000000 }}").status(),
              "'*' would repeat a 1-item list 1000000000000 times", "list repetition");
  EXPECT_EQ(*Render("{{ '' * 1000000000000000000 }}|{{ [] * 1000000000000000000 }}|{{ 'ab' * -3 }}"),
            "|[]|");
  EXPECT_EQ(*Render("{{ 'ab' * 3 }}{{ 2 * 'c' }}{{ [1] * 2 }}"), "abababcc[1, 1]");
  EXPECT_EQ(*Render("{{ 'x\ny'|indent(-1) }}"), "x\ny");
  EXPECT_EQ(*Render("{{ 'x\ny'|indent(2) }}"), "x\n  y");
  ExpectError(Render("{{ 'x'|indent(10000000000) }}").status(), "indent width would produce",
              "indent");
  ExpectError(Render("{% set s = 'a' * 16000000 %}{{ s ~ s }}").status(),
              "'~' would produce 32000000 bytes", "concat");
  ExpectError(Render("{% set s = 'a' * 16000000 %}{{ s + s }}").status(),
              "'+' would produce 32000000 bytes", "plus");
  ExpectError(Render("{% set s = 'a' * 1000000 %}{{ [s] * 100 }}").status(),
              "'*' would repeat a 1-item list 100 times", "list of big strings");
  ExpectError(Render("{% set s = 'a' * 1000000 %}{{ range(100)|join(s) }}").status(),
              "join would produce", "join filter");
  ExpectError(Render("{% set s = 'a' * 1000000 %}{{ s.join(range(100)|map('string')) }}").status(),
              "join would produce", "str.join");
  ExpectError(Render("{% set s = 'a' * 1000000 %}{{ s|replace('a', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb') }}").status(),
              "replace would produce", "replace");
  ExpectError(Render("{% set s = 'a' * 1000000 %}{% for i in range(100) %}{{ s }}{% endfor %}").status(),
              "template output would produce", "output");
  ExpectError(Render("{{ [1]|tojson(indent=100000) }}").status(), "tojson indent 100000", "tojson");
  EXPECT_FALSE(Render("{{ range(1000000000000) }}").ok());
}

// Integer edge cases that trapped (SIGFPE), threw or indexed out of bounds.
TEST(JinjaTest, IntegerEdgesAreErrorsNotTraps) {
  ExpectError(Render("{{ (-9223372036854775807 - 1) // -1 }}").status(), "integer overflow in //",
              "floordiv");
  EXPECT_EQ(*Render("{{ (-9223372036854775807 - 1) % -1 }}|{{ 7 // -1 }}|{{ 7 % -1 }}"), "0|-7|0");
  EXPECT_EQ(*Render("{{ (-9223372036854775807 - 1) is divisibleby(-1) }}"), "True");
  ExpectError(Render("{{ 9223372036854775807 + 1 }}").status(), "integer overflow in +", "add");
  ExpectError(Render("{{ -9223372036854775807 - 2 }}").status(), "integer overflow in -", "sub");
  ExpectError(Render("{{ 3 ** 100 }}").status(), "integer overflow in **", "pow");
  // Negating or abs() of INT64_MIN, and floats out of int64's range made ints, were undefined
  // behaviour (a wrapped or arbitrary value).
  ExpectError(Render("{{ -(-9223372036854775807 - 1) }}").status(), "integer overflow in unary -", "neg");
  ExpectError(Render("{{ (-9223372036854775807 - 1)|abs }}").status(), "integer overflow in abs()", "abs");
  EXPECT_EQ(*Render("{{ 1e300|int }}|{{ (-1e300)|int }}|{{ '1e300'|int }}|{{ 2.9|int }}|{{ (-2.9)|int }}"),
            "9223372036854775807|-9223372036854775808|9223372036854775807|2|-2");
  EXPECT_EQ(*Render("{{ 2 ** 10 }}|{{ (-1) ** 1000000000000000001 }}|{{ 1 ** 1000000000000000000 }}"),
            "1024|-1|1");
  EXPECT_EQ(*Render("{{ 'abc'[2::9223372036854775807] }}|{{ 'abc'[::-9223372036854775807] }}|"
                    "{{ [1, 2, 3][0::9223372036854775807] }}"),
            "c|c|[1]");
  ExpectError(Render("{{ '{99999999999999999999999}'.format(1) }}").status(),
              "Replacement index out of range", "format index");
  EXPECT_EQ(*Render("{{ [[1]]|map(attribute='99999999999999999999')|list }}"), "[]");
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
