// Cost of structured outputs' token masks (json_object, json_schema, patterns, a regex, a GBNF
// grammar): for every state along a reply of the format, the allowed-token bitmap computed cold by the prefix-sharing
// walk over the sorted vocabulary (OutputFormat's miss path), by its token-by-token reference
// twin (each token's bytes fed to a fresh copy of the state), and served from the mask cache
// (the hit path: most states of a reply repeat). A constrained request pays one of these per
// sampled token, on the coordinator's engine thread. "vs best": cold masks a second against the
// best recorded in bench/baselines.json (--record stores a better one). Every state's mask is first
// checked against the reference (exit 1 if one differs).
//
//   build/bin/structured_bench [--tokenizer models/glm5-tiny-code,tests/fixtures/tokenizers/deepseek_v3]
//                              [--seconds 0.2] [--record]
//
// Run from the repository root (the default tokenizers are paths relative to it).
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/baseline_store.h"
#include "bench/micros_per_call.h"
#include "coordinator/structured/output_format.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::vector<std::string>, tokenizer,
          (std::vector<std::string>{"models/glm5-tiny-code", "tests/fixtures/tokenizers/deepseek_v3"}),
          "tokenizer.json files or model directories (the bundled model: 4K tokens; DeepSeek-V3's: 128K, "
          "GLM-5's size class)");
ABSL_FLAG(double, seconds, 0.2, "time spent on each measurement");
ABSL_FLAG(std::string, baseline, GLM_BENCH_BASELINE_FILE, "JSON file of previous best results");
ABSL_FLAG(bool, record, false, "store these results as the new best in --baseline where they are better");

namespace {

using glm::bench::MicrosPerCall;
using glm::structured::JsonGrammar;
using glm::structured::JsonMatcher;
using glm::structured::OutputFormat;

struct Case {
  const char* name;
  std::shared_ptr<const JsonGrammar> grammar;
  std::string reply;  // a reply of the format: its prefixes are the states measured
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const double seconds = absl::GetFlag(FLAGS_seconds);
  auto person = JsonGrammar::FromSchema(nlohmann::ordered_json::parse(R"({"type":"object","properties":{
      "name":{"type":"string","maxLength":40},"age":{"type":"integer"},"tags":{"type":"array","items":{"enum":["a","bc"]}},
      "address":{"type":"object","properties":{"city":{"type":"string"},"zip":{"type":"string"}},"required":["city"]}},
      "required":["name","age"]})"), "schema");
  if (!person.ok()) {
    std::fprintf(stderr, "structured_bench: %s\n", std::string(person.status().message()).c_str());
    return 2;
  }
  // Patterned strings walk every token (no string fast path); a whole-output regex (guided_regex).
  auto patterned = JsonGrammar::FromSchema(nlohmann::ordered_json::parse(R"({"type":"object","properties":{
      "id":{"type":"string","pattern":"[A-Z]{2}-\\d{4}"},"when":{"type":"string","format":"date-time"}},
      "required":["id","when"]})"), "schema");
  auto regex = JsonGrammar::ForRegex("(def|class) [A-Za-z_][A-Za-z0-9_]*\\([^)]*\\):", "regex");
  // A context-free grammar (GBNF: guided_grammar, llama.cpp's grammar): nested calls and lists.
  auto gbnf = JsonGrammar::ForGbnf(R"g(root ::= call ("; " call)*
call ::= name "(" (arg (", " arg)*)? ")"
arg  ::= call | [0-9]+ | "\"" [^"\\]* "\""
name ::= [a-z_] [a-z0-9_]*)g", "gbnf");
  if (!patterned.ok() || !regex.ok() || !gbnf.ok()) {
    std::fprintf(stderr, "structured_bench: %s\n",
                 std::string((!patterned.ok() ? patterned : !regex.ok() ? regex : gbnf).status().message()).c_str());
    return 2;
  }
  const std::vector<Case> cases = {
      {"json_object", JsonGrammar::AnyObject(), R"({"id": 12, "items": [1.5, true, null], "note": "two words"})"},
      {"json_schema", *person, R"({"name": "Ada Lovelace", "age": 36, "tags": ["bc"], "address": {"city": "London"}})"},
      {"pattern", *patterned, R"({"id": "AB-1234", "when": "2026-12-06T07:16:00Z"})"},
      {"regex", *regex, "def run_all(self, x):"},
      {"gbnf", *gbnf, R"(open(path("a b"), 12); close(f(g(1), 2)))"},
  };
  std::printf("%8s %-12s %7s  %10s %14s %8s %10s %8s\n", "vocab", "format", "states", "walk us", "reference us", "speedup",
              "cached us", "vs best");
  glm::bench::BaselineStore baselines(absl::GetFlag(FLAGS_baseline));
  for (const std::string& path : absl::GetFlag(FLAGS_tokenizer)) {
    auto tok = glm::tokenizer::Tokenizer::FromFile(path);
    if (!tok.ok() || !(*tok)->decodes_per_token()) {
      std::fprintf(stderr, "structured_bench: %s: %s\n", path.c_str(),
                   tok.ok() ? "not a byte-level tokenizer" : std::string(tok.status().message()).c_str());
      return 2;
    }
    std::vector<std::string> bytes((*tok)->vocab_size());
    for (int32_t id = 0; id < (*tok)->vocab_size(); ++id)
      bytes[id] = glm::structured::TokenVocabulary::Spelling((*tok)->TokenBytes(id), (*tok)->IsSpecial(id),
                                                             (*tok)->IdToToken(id).value_or(""), glm::structured::JsonGrammar::kSpecialMark);
    auto vocabulary = std::make_shared<const glm::structured::TokenVocabulary>(std::move(bytes));
    const int64_t vocab = vocabulary->size();
    for (const Case& c : cases) {
      // Every state along the reply, once each.
      std::vector<JsonMatcher> states;
      JsonMatcher m(c.grammar.get());
      for (char ch : c.reply) {
        states.push_back(m);
        if (!m.Advance(static_cast<uint8_t>(ch))) {
          std::fprintf(stderr, "structured_bench: the sample reply does not fit %s\n", c.name);
          return 2;
        }
      }
      // The fast path against its reference twin at every state first.
      {
        OutputFormat check(c.grammar, vocabulary);
        for (const JsonMatcher& st : states) {
          if (*check.Mask(st, vocab) != check.MaskReference(st, vocab)) {
            std::fprintf(stderr, "structured_bench: a %s mask differs from the reference over %s\n", c.name,
                         path.c_str());
            return 1;
          }
        }
      }
      size_t next = 0;
      const double walk_us = MicrosPerCall(
          [&] {
            OutputFormat cold(c.grammar, vocabulary);  // an empty cache: the miss path
            cold.Mask(states[next++ % states.size()], vocab);
          },
          seconds);
      OutputFormat format(c.grammar, vocabulary);
      const double reference_us =
          MicrosPerCall([&] { format.MaskReference(states[next++ % states.size()], vocab); }, seconds);
      for (const JsonMatcher& s : states) format.Mask(s, vocab);
      const double cached_us = MicrosPerCall([&] { format.Mask(states[next++ % states.size()], vocab); }, seconds);
      // Cold masks a second: the previous best of this vocabulary and format.
      const std::string key = "structured_bench/vocab" + std::to_string(vocab) + "/" + c.name + "/cold_masks_per_s";
      const double previous = baselines.Get(key);
      const double masks_per_s = 1e6 / walk_us;
      if (absl::GetFlag(FLAGS_record)) baselines.RecordIfBetter(key, masks_per_s);
      std::printf("%8ld %-12s %7zu  %10.1f %14.1f %7.1fx %10.2f %7.2fx\n", static_cast<long>(vocab), c.name,
                  states.size(), walk_us, reference_us, reference_us / walk_us, cached_us,
                  previous > 0 ? masks_per_s / previous : 0.0);
    }
  }
  return 0;
}
