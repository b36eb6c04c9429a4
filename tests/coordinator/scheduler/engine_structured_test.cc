// Structured outputs through the real engine and in-process cluster of the bundled model: the
// allowed-token bitmaps reach the last stage, every constrained reply parses and fits its
// schema, greedy and seeded replies do not depend on their batch, and an unconstrained request
// beside them is untouched.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "coordinator/scheduler/token_set_constraint.h"
#include "coordinator/structured/json_token_constraint.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/scheduler/engine_harness.h"

namespace glm::scheduler {
namespace {

using structured::JsonGrammar;
using structured::OutputFormat;

class EngineStructuredTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tok = tokenizer::Tokenizer::FromFile(FixtureModelDir("glm5-tiny-code"));
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok).release();
    std::vector<std::string> bytes(tokenizer_->vocab_size());
    for (int32_t id = 0; id < tokenizer_->vocab_size(); ++id)
      bytes[id] = glm::structured::TokenVocabulary::Spelling(tokenizer_->TokenBytes(id), tokenizer_->IsSpecial(id),
                                                             tokenizer_->IdToToken(id).value_or(""), glm::structured::JsonGrammar::kSpecialMark);
    vocabulary_ = new std::shared_ptr<const structured::TokenVocabulary>(
        std::make_shared<const structured::TokenVocabulary>(std::move(bytes)));
  }

  static std::shared_ptr<OutputFormat> Format(const std::string& schema) {
    auto g = JsonGrammar::FromSchema(nlohmann::ordered_json::parse(schema), "schema");
    EXPECT_TRUE(g.ok()) << g.status();
    return std::make_shared<OutputFormat>(*g, *vocabulary_);
  }
  static GenerationRequest Constrained(std::shared_ptr<OutputFormat> format, std::vector<int32_t> prompt, int max_tokens,
                                       const std::string& id) {
    GenerationRequest r = Greedy(std::move(prompt), max_tokens, id);
    r.constraint = std::make_shared<structured::JsonTokenConstraint>(std::move(format));
    return r;
  }
  static std::string Text(const std::vector<int32_t>& tokens) {
    auto text = tokenizer_->Decode(tokens, /*skip_special_tokens=*/true);
    EXPECT_TRUE(text.ok());
    return text.ok() ? *text : "";
  }

  static inline tokenizer::Tokenizer* tokenizer_ = nullptr;
  static inline std::shared_ptr<const structured::TokenVocabulary>* vocabulary_ = nullptr;
};

constexpr char kPerson[] = R"({"type":"object","properties":{"name":{"type":"string","maxLength":16},
    "age":{"type":"integer"},"languages":{"type":"array","items":{"enum":["python","c++","rust"]},"maxItems":3}},
    "required":["name","age","languages"]})";

void ExpectPerson(const std::string& text) {
  ASSERT_TRUE(nlohmann::json::accept(text)) << text;
  const auto j = nlohmann::ordered_json::parse(text);
  ASSERT_TRUE(j.is_object()) << text;
  ASSERT_EQ(j.size(), 3u) << text;
  EXPECT_EQ(j.begin().key(), "name") << text;
  EXPECT_TRUE(j["name"].is_string()) << text;
  EXPECT_TRUE(j["age"].is_number_integer()) << text;
  ASSERT_TRUE(j["languages"].is_array()) << text;
  for (const auto& l : j["languages"]) EXPECT_TRUE(l == "python" || l == "c++" || l == "rust") << text;
}

TEST_F(EngineStructuredTest, ConstrainedRepliesFitTheirSchemaAndDoNotDependOnTheBatch) {
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  auto person = Format(kPerson);
  auto any_object = std::make_shared<OutputFormat>(JsonGrammar::AnyObject(), *vocabulary_);
  const auto prompt_a = Prompt(3, 40), prompt_b = Prompt(4, 25), prompt_c = Prompt(5, 30);
  // Alone, one at a time.
  const auto solo_a = h.Run(Constrained(person, prompt_a, 120, "a"));
  const auto solo_b = h.Run(Constrained(any_object, prompt_b, 120, "b"));
  const auto solo_c = h.Run(Greedy(prompt_c, 40, "c"));
  ASSERT_TRUE(solo_a.error.ok()) << solo_a.error;
  ASSERT_TRUE(solo_b.error.ok()) << solo_b.error;
  EXPECT_EQ(solo_a.finish_reason, "stop") << Text(solo_a.tokens);
  ExpectPerson(Text(solo_a.tokens));
  if (solo_b.finish_reason == "stop") {
    EXPECT_TRUE(nlohmann::json::accept(Text(solo_b.tokens))) << Text(solo_b.tokens);
  } else {
    EXPECT_EQ(solo_b.finish_reason, "length");
  }
  EXPECT_EQ(solo_c.tokens, SingleProcessGreedy(prompt_c, 40));
  // Together: the same tokens each (constraints are per sequence; the free one is untouched).
  auto together = h.RunAll({Constrained(person, prompt_a, 120, "a2"), Constrained(any_object, prompt_b, 120, "b2"),
                            Greedy(prompt_c, 40, "c2")});
  EXPECT_EQ(together[0].tokens, solo_a.tokens);
  EXPECT_EQ(together[1].tokens, solo_b.tokens);
  EXPECT_EQ(together[2].tokens, solo_c.tokens);
  // The masks were computed once per state and then reused.
  EXPECT_GT(person->stats().hits, 0);
  EXPECT_EQ(h.SettledBlocksUsed(), 0);
}

// Two pipeline stages with two steps in flight: the bitmaps reach the last stage, and the replies
// are those of one stage; so are they under preemption.
TEST_F(EngineStructuredTest, PipelineStagesAndPreemptionGiveTheTokensOfOneStage) {
  auto person = Format(kPerson);
  // Four constrained requests, every other one sampled (fresh constraints each time).
  auto four_people = [&](const std::string& id) {
    std::vector<GenerationRequest> requests;
    for (int i = 0; i < 4; ++i) {
      GenerationRequest r = Constrained(person, Prompt(20 + i, 24), 120, id + std::to_string(i));
      if (i % 2 == 1) {
        r.sampling.temperature = 0.9f;
        r.sampling.seed = 7 + i;
      }
      requests.push_back(std::move(r));
    }
    return requests;
  };
  std::vector<std::vector<int32_t>> replies[2];
  std::vector<std::string> finish;
  for (int stages : {1, 2}) {
    EngineOptions o;
    o.max_steps_in_flight = stages;
    EngineHarness h("glm5-tiny-code", stages, stages, 256, 16, o);
    std::vector<GenerationRequest> requests = four_people("p");
    requests.push_back(Greedy(Prompt(30, 24), 30, "free"));
    for (const auto& out : h.RunAll(requests)) {
      ASSERT_TRUE(out.error.ok()) << out.error;
      replies[stages - 1].push_back(out.tokens);
      if (stages == 1) finish.push_back(out.finish_reason);
    }
  }
  EXPECT_EQ(replies[1], replies[0]);
  // And under KV pressure (10 blocks of 16 for four 144-position sequences: preempted and
  // recomputed over and over), the same replies: a constraint keeps its place through preemption.
  {
    EngineHarness h("glm5-tiny-code", 1, 1, 10, 16);
    const auto outs = h.RunAll(four_people("k"));
    for (size_t i = 0; i < outs.size(); ++i) {
      ASSERT_TRUE(outs[i].error.ok()) << outs[i].error;
      EXPECT_EQ(outs[i].tokens, replies[0][i]) << i;
    }
    EXPECT_GT(h.engine()->GetLoad().preemptions, 0);
  }
  for (size_t i = 0; i + 1 < replies[0].size(); ++i)
    if (finish[i] == "stop") ExpectPerson(Text(replies[0][i]));
  EXPECT_EQ(finish[0], "stop");
}

TEST_F(EngineStructuredTest, SampledRepliesFitTheirSchemaAndRepeatWithTheirSeed) {
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  auto person = Format(kPerson);
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 6; ++i) {
    GenerationRequest r = Constrained(person, Prompt(10 + i, 20), 160, "s" + std::to_string(i));
    r.sampling.temperature = 1.0f;
    r.sampling.top_p = 0.95f;
    r.sampling.seed = 100 + i;
    requests.push_back(std::move(r));
  }
  auto outs = h.RunAll(requests);
  int complete = 0;
  for (size_t i = 0; i < outs.size(); ++i) {
    ASSERT_TRUE(outs[i].error.ok()) << outs[i].error;
    if (outs[i].finish_reason != "stop") continue;
    ++complete;
    ExpectPerson(Text(outs[i].tokens));
  }
  EXPECT_GE(complete, 3);
  // Again, one at a time, with fresh constraints: the same draws.
  for (size_t i = 0; i < requests.size(); ++i) {
    GenerationRequest r = requests[i];
    r.request_id += "-again";
    r.constraint = std::make_shared<structured::JsonTokenConstraint>(person);
    EXPECT_EQ(h.Run(r).tokens, outs[i].tokens) << i;
  }
}

TEST_F(EngineStructuredTest, MaxTokensCutsAConstrainedReplyAsLength) {
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  auto out = h.Run(Constrained(Format(kPerson), Prompt(6, 20), 4, "short"));
  ASSERT_TRUE(out.error.ok()) << out.error;
  EXPECT_EQ(out.finish_reason, "length");
  EXPECT_EQ(out.tokens.size(), 4u);
  EXPECT_EQ(Text(out.tokens).rfind("{", 0), 0u) << Text(out.tokens);
}

// A schema that keeps more than JsonMatcher::kMaxStacks parses alive at its first byte: refused
// at admission (it cost the square of that per byte, and a diamond of anyOf / $ref choices
// exponential time), with the field that carried it named (it always said response_format).
TEST_F(EngineStructuredTest, ASchemaWithTooManyLiveBranchesIsRefusedNamingItsField) {
  nlohmann::ordered_json wide = {{"anyOf", nlohmann::ordered_json::array()}};
  for (size_t i = 0; i < structured::JsonMatcher::kMaxStacks + 10; ++i)
    wide["anyOf"].push_back({{"type", "object"},
                             {"properties", {{absl::StrCat("k", i), {{"type", "integer"}}}}},
                             {"required", {absl::StrCat("k", i)}}});
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  GenerationRequest r = Constrained(Format(wide.dump()), Prompt(6, 20), 8, "wide");
  r.constraint_field = "guided_json";
  auto refused = h.engine()->Submit(r);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message().rfind("guided_json: the schema keeps more than 256 alternatives", 0), 0u)
      << refused.status();
}

// The last stage's side: a bitmap decides among the allowed tokens only (greedy takes the best
// allowed one), and a malformed one is refused without taking the worker down.
TEST(LastStageAllowedTokensTest, GreedyTakesTheBestAllowedTokenAndBadBitmapsAreRefused) {
  auto lc = LocalCluster::Start(FixtureModelDir("glm5-tiny-code"), 1, 1, 16, 16);
  ASSERT_TRUE(lc.ok()) << lc.status();
  const int64_t vocab = (*lc)->config().vocab_size;
  uint64_t seq = 1;
  auto step = [&](const std::string& allowed, int drafts = 0) {
    shard::StepPlan plan;
    plan.set_kind(shard::StepPlan::FORWARD);
    plan.set_step_id(seq);
    auto* s = plan.add_sequences();
    s->set_seq_id(seq++);
    const auto prompt = Prompt(2, 9);
    s->mutable_tokens()->Add(prompt.begin(), prompt.end());
    s->set_num_drafts(drafts);
    s->add_block_table(0);
    s->set_sample(true);
    s->set_allowed_tokens(allowed);
    plan.add_finished(seq - 2);
    return (*lc)->client()->Step(plan);
  };
  auto bitmap = [&](std::vector<int32_t> ids) {
    std::string b((vocab + 7) / 8, '\0');
    for (int32_t id : ids) b[id >> 3] = static_cast<char>(b[id >> 3] | (1 << (id & 7)));
    return b;
  };
  auto free_pick = step("");
  ASSERT_TRUE(free_pick.ok() && free_pick->error().empty()) << free_pick.status();
  const int32_t best = free_pick->sequences(0).token();
  const int32_t other = best == 7 ? 8 : 7;
  auto only_other = step(bitmap({other}));
  ASSERT_TRUE(only_other.ok() && only_other->error().empty());
  EXPECT_EQ(only_other->sequences(0).token(), other);
  auto both = step(bitmap({other, best}));
  ASSERT_TRUE(both.ok() && both->error().empty());
  EXPECT_EQ(both->sequences(0).token(), best);
  auto short_bitmap = step(std::string(3, '\xff'));
  EXPECT_TRUE(!short_bitmap.ok() || short_bitmap->error().find("allowed_tokens") != std::string::npos);
  auto with_drafts = step(bitmap({best}), 1);
  EXPECT_TRUE(!with_drafts.ok() || with_drafts->error().find("allowed_tokens with drafts") != std::string::npos);
  auto after = step(bitmap({other}));  // still serving
  ASSERT_TRUE(after.ok() && after->error().empty()) << after.status();
  EXPECT_EQ(after->sequences(0).token(), other);
}

// allowed_token_ids (vLLM's): every token comes from the set, greedy picks the model's favourite
// of it (the single-process argmax over the set), and without a stop token in the set the reply
// runs to max_tokens; with EOS in it, EOS may end it.
TEST_F(EngineStructuredTest, AllowedTokenIdsKeepEveryTokenInTheSet) {
  SingleProcess sp;
  ASSERT_NE(sp.model, nullptr);
  const int32_t eos = sp.model->config().eos_token_ids.at(0);
  const std::vector<int32_t> set = {11, 12, 13, 20, 250, 900, 1500};
  const auto prompt = Prompt(41, 16);
  // The reference: every other token biased far below the set.
  runtime::GenerateOptions g;
  g.max_new_tokens = 12;
  g.ignore_eos = true;
  for (int32_t id = 0; id < sp.model->config().vocab_size; ++id)
    if (std::find(set.begin(), set.end(), id) == set.end()) g.sampling.logit_bias.emplace_back(id, -1e9f);
  const auto want = runtime::Generate(*sp.model, prompt, g)->tokens;
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  GenerationRequest r = Greedy(prompt, 12);
  r.sampling.ignore_eos = false;
  r.constraint = std::make_shared<TokenSetConstraint>(set);
  auto out = h.Run(r);
  ASSERT_TRUE(out.error.ok()) << out.error;
  EXPECT_EQ(out.tokens, want);
  EXPECT_EQ(out.finish_reason, "length");
  GenerationRequest sampled = Greedy(prompt, 40);
  sampled.sampling.ignore_eos = false;
  sampled.sampling.temperature = 1.5f;
  sampled.sampling.seed = 7;
  std::vector<int32_t> with_eos = set;
  with_eos.push_back(eos);
  sampled.constraint = std::make_shared<TokenSetConstraint>(with_eos);
  out = h.Run(sampled);
  ASSERT_TRUE(out.error.ok()) << out.error;
  for (int32_t t : out.tokens) EXPECT_NE(std::find(with_eos.begin(), with_eos.end(), t), with_eos.end()) << t;
}

}  // namespace
}  // namespace glm::scheduler
