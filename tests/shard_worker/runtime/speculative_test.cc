// Speculative decoding: greedy outputs identical to plain decoding (MTP and prompt lookup, every
// fixture prompt), and the rejection rule keeps the target distribution (statistical test).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <sstream>

#include "nlohmann/json.hpp"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/runtime/speculative_generator.h"

namespace glm::runtime {
namespace {

namespace fs = std::filesystem;

std::string ModelDir(const std::string& name) {
  fs::path bundled = fs::path(GLM_MODELS_DIR) / name;
  return fs::exists(bundled) ? bundled.string() : (fs::path(GLM_TEST_FIXTURES_DIR) / name).string();
}

std::vector<std::vector<int32_t>> Prompts(const std::string& name) {
  std::ifstream in(fs::path(GLM_TEST_FIXTURES_DIR) / ("ref-" + name) / "reference.json");
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<std::vector<int32_t>> out;
  const nlohmann::json j = nlohmann::json::parse(ss.str());  // kept alive for the loop
  for (const auto& p : j["prompts"]) out.push_back(p["ids"].get<std::vector<int32_t>>());
  return out;
}

struct Loaded {
  std::unique_ptr<kernels::ThreadPool> pool;
  std::unique_ptr<model::Glm5Model> model;
};

Loaded Load(const std::string& name, const model::LoadOptions& options = {}, int threads = 1) {
  Loaded l;
  auto ckpt = model::Checkpoint::Open(ModelDir(name));
  auto weights = model::ModelWeights::Load(**ckpt, options);
  l.pool = std::make_unique<kernels::ThreadPool>(threads);
  l.model = std::move(*model::Glm5Model::Create(std::shared_ptr<const model::ModelWeights>(std::move(*weights)), l.pool.get()));
  return l;
}

class SpeculativeGreedyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SpeculativeGreedyTest, IdenticalToPlainDecoding) {
  Loaded l = Load(GetParam());
  std::vector<std::string> methods = {"ngram:1", "ngram:3", "ngram:8"};
  if (l.model->config().has_mtp()) methods.insert(methods.end(), {"mtp:1", "mtp:2", "mtp:4"});
  GenerateOptions g;
  g.max_new_tokens = 24;
  g.ignore_eos = true;
  for (const auto& prompt : Prompts(GetParam())) {
    auto plain = Generate(*l.model, prompt, g);
    ASSERT_TRUE(plain.ok()) << plain.status();
    for (const auto& m : methods) {
      auto spec = ParseSpeculative(m);
      ASSERT_TRUE(spec.ok());
      SpeculativeStats stats;
      auto out = GenerateSpeculative(*l.model, prompt, g, *spec, &stats);
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(out->tokens, plain->tokens) << GetParam() << " " << m << " prompt of " << prompt.size();
      EXPECT_LE(stats.accepted, stats.drafted);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SpeculativeGreedyTest,
                         ::testing::Values("glm5-tiny-code", "glm5-random-sparse", "glm5-random-fp8"),
                         [](const auto& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

// MTP drafted alongside (a second thread drafts while the caller runs the newest token through
// the main model): greedy outputs are plain decoding's, and seeded sampled outputs are the
// same as drafting first, token for token, whichever way each step ran.
TEST(SpeculativeTest, DraftingAlongsideChangesNoTokens) {
  struct ModeReset {
    ~ModeReset() { model::SetTokenGroupMode(model::TokenGroupMode::kAuto); }
  } reset;
  for (const std::string name : {"glm5-tiny-code", "glm5-random-sparse"}) {
    Loaded l = Load(name, {}, /*threads=*/2);
    ASSERT_TRUE(l.model->CanDraftAlongside());
    GenerateOptions greedy;
    greedy.max_new_tokens = 24;
    greedy.ignore_eos = true;
    GenerateOptions sampled = greedy;
    sampled.sampling.temperature = 0.8f;
    sampled.sampling.seed = 7;
    for (const auto& prompt : Prompts(name)) {
      model::SetTokenGroupMode(model::TokenGroupMode::kNever);
      auto plain = Generate(*l.model, prompt, greedy);
      ASSERT_TRUE(plain.ok()) << plain.status();
      for (const std::string m : {"mtp:1", "mtp:2", "mtp:4"}) {
        SpeculativeConfig first = *ParseSpeculative(m), along = first;
        first.draft_alongside = false;
        model::SetTokenGroupMode(model::TokenGroupMode::kNever);
        auto sampled_first = GenerateSpeculative(*l.model, prompt, sampled, first);
        ASSERT_TRUE(sampled_first.ok()) << sampled_first.status();
        // kAlways: every step alongside (and the main model's own steps in token groups too).
        for (auto mode : {model::TokenGroupMode::kAlways, model::TokenGroupMode::kAuto}) {
          model::SetTokenGroupMode(mode);
          SpeculativeStats stats;
          auto out = GenerateSpeculative(*l.model, prompt, greedy, along, &stats);
          ASSERT_TRUE(out.ok()) << out.status();
          EXPECT_EQ(out->tokens, plain->tokens) << name << " " << m;
          // kAuto: the model's BlockPathChooser times blocks of each way, alongside first.
          if (mode == model::TokenGroupMode::kAlways) {
            EXPECT_GT(stats.alongside_steps, 0) << name << " " << m;
          }
          auto sampled_along = GenerateSpeculative(*l.model, prompt, sampled, along);
          ASSERT_TRUE(sampled_along.ok()) << sampled_along.status();
          EXPECT_EQ(sampled_along->tokens, sampled_first->tokens) << name << " " << m;
        }
      }
    }
  }
}

// Greedy with penalties and a logit bias: speculation picks what plain decoding picks.
TEST(SpeculativeTest, GreedyWithPenaltiesIdenticalToPlainDecoding) {
  Loaded l = Load("glm5-tiny-code");
  GenerateOptions g;
  g.max_new_tokens = 32;
  g.ignore_eos = true;
  const auto prompt = Prompts("glm5-tiny-code")[1];
  const auto unpenalised = Generate(*l.model, prompt, g)->tokens;
  g.sampling.repetition_penalty = 1.2f;
  g.sampling.presence_penalty = 0.4f;
  g.sampling.frequency_penalty = 0.5f;
  g.sampling.logit_bias = {{unpenalised[3], -100.0f}};
  auto plain = Generate(*l.model, prompt, g);
  ASSERT_TRUE(plain.ok());
  EXPECT_NE(plain->tokens, unpenalised);
  EXPECT_EQ(std::count(plain->tokens.begin(), plain->tokens.end(), unpenalised[3]), 0) << "a -100 bias bans the token";
  for (const std::string m : {"mtp:1", "mtp:3", "ngram:3"}) {
    auto out = GenerateSpeculative(*l.model, prompt, g, *ParseSpeculative(m));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->tokens, plain->tokens) << m;
  }
}

TEST(SpeculativeTest, MtpDraftsAreOftenAcceptedOnTheTrainedModel) {
  Loaded l = Load("glm5-tiny-code");
  GenerateOptions g;
  g.max_new_tokens = 48;
  g.ignore_eos = true;
  int64_t drafted = 0, accepted = 0;
  auto prompts = Prompts("glm5-tiny-code");
  prompts.pop_back();  // the last one is a raw excerpt whose continuation is noise
  for (const auto& prompt : prompts) {
    SpeculativeStats stats;
    auto out = GenerateSpeculative(*l.model, prompt, g, *ParseSpeculative("mtp:1"), &stats);
    ASSERT_TRUE(out.ok());
    drafted += stats.drafted;
    accepted += stats.accepted;
    // Every step drafted and verified, and both were timed (spec_bench reports them).
    EXPECT_GT(stats.steps, 0);
    EXPECT_GT(stats.draft_seconds, 0.0);
    EXPECT_GT(stats.verify_seconds, 0.0);
  }
  // The trained MTP head predicts the model's own next-next token well on code.
  EXPECT_GT(static_cast<double>(accepted) / drafted, 0.5) << accepted << "/" << drafted;
}

// An int4 MTP layer (quantize scope "mtp") only drafts: the main model as stored verifies, so the
// greedy tokens are plain decoding's, and the drafts are still accepted about as often.
TEST(SpeculativeTest, AnInt4DraftLayerChangesNoTokens) {
  model::LoadOptions int4_mtp;
  ASSERT_TRUE(model::ParseWeightDType("int4", &int4_mtp).ok());
  ASSERT_TRUE(model::ParseQuantizeScope("mtp", &int4_mtp.quantize_scope));
  Loaded stored = Load("glm5-tiny-code");
  Loaded l = Load("glm5-tiny-code", int4_mtp);
  GenerateOptions g;
  g.max_new_tokens = 48;
  g.ignore_eos = true;
  int64_t drafted = 0, accepted = 0;
  for (const auto& prompt : Prompts("glm5-tiny-code")) {
    auto plain = Generate(*stored.model, prompt, g);
    ASSERT_TRUE(plain.ok()) << plain.status();
    for (const std::string m : {"mtp:1", "mtp:3"}) {
      SpeculativeStats stats;
      auto out = GenerateSpeculative(*l.model, prompt, g, *ParseSpeculative(m), &stats);
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(out->tokens, plain->tokens) << m << " prompt of " << prompt.size();
      if (m == "mtp:1") {
        drafted += stats.drafted;
        accepted += stats.accepted;
      }
    }
  }
  EXPECT_GT(static_cast<double>(accepted) / drafted, 0.5) << accepted << "/" << drafted;
}

// A draft vocabulary (ids below a count plus the sequence's own tokens) only changes what the
// MTP layer proposes: greedy outputs stay plain decoding's on every fixture with an MTP layer,
// even with almost no common ids, and on the trained model the drafts are accepted about as
// often as with the whole vocabulary (code repeats its own tokens).
TEST(SpeculativeTest, ADraftVocabularyChangesNoTokens) {
  for (const std::string name : {"glm5-tiny-code", "glm5-random-sparse"}) {
    Loaded l = Load(name);
    if (!l.model->config().has_mtp()) continue;
    GenerateOptions g;
    g.max_new_tokens = 32;
    g.ignore_eos = true;
    int64_t drafted[2] = {0, 0}, accepted[2] = {0, 0};
    for (const auto& prompt : Prompts(name)) {
      auto plain = Generate(*l.model, prompt, g);
      ASSERT_TRUE(plain.ok()) << plain.status();
      for (const std::string m : {"mtp:1", "mtp:3"})
        for (int64_t common : {int64_t{0}, int64_t{1}, int64_t{512}}) {
          SpeculativeConfig spec = *ParseSpeculative(m);
          spec.draft_vocab = common;
          SpeculativeStats stats;
          auto out = GenerateSpeculative(*l.model, prompt, g, spec, &stats);
          ASSERT_TRUE(out.ok()) << out.status();
          EXPECT_EQ(out->tokens, plain->tokens) << name << " " << m << " draft vocabulary " << common;
          if (m == "mtp:1" && common != 1) {
            drafted[common > 0] += stats.drafted;
            accepted[common > 0] += stats.accepted;
          }
        }
    }
    if (name == "glm5-tiny-code") {
      const double whole = static_cast<double>(accepted[0]) / drafted[0], restricted = static_cast<double>(accepted[1]) / drafted[1];
      EXPECT_GT(restricted, 0.5);
      EXPECT_GT(restricted, whole - 0.05) << "whole vocabulary " << whole;
    }
  }
}

// Sampled requests: a draft distribution that is zero off the draft vocabulary (its logits -inf
// there) still leaves the output distributed as the target's, which covers those tokens too.
TEST(SpeculativeSamplingTest, ARestrictedDraftKeepsTheTargetDistribution) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> target = {1.0f, 0.2f, 2.0f, -0.5f, 1.5f, 0.0f};
  const std::vector<float> draft = {1.2f, -inf, 1.8f, -inf, 1.0f, -inf};  // ids 1, 3, 5 left out
  SamplingParams sp;
  sp.temperature = 0.9f;
  const SamplingCandidates p = SamplingDistribution(target.data(), 6, sp, {}, 0);
  const SamplingCandidates q = SamplingDistribution(draft.data(), 6, sp, {}, 0);
  std::vector<double> pp(6, 0.0), qq(6, 0.0);
  for (size_t i = 0; i < p.probs.size(); ++i) pp[p.id(i)] = p.probs[i];
  for (size_t i = 0; i < q.probs.size(); ++i) qq[q.id(i)] = q.probs[i];
  for (int id : {1, 3, 5}) EXPECT_EQ(qq[id], 0.0) << id;
  for (int id : {1, 3, 5}) EXPECT_GT(pp[id], 0.0) << id;
  std::mt19937_64 rng(11);
  const int n = 200000;
  std::vector<int> counts(6, 0);
  int accepted = 0;
  for (int i = 0; i < n; ++i) {
    const int32_t d = DrawFrom(q, rng);
    ASSERT_GT(qq[d], 0.0) << "a draft outside the draft vocabulary";
    const RejectionOutcome r = AcceptOrResample(d, p, q, rng);
    counts[r.token]++;
    accepted += r.accepted;
  }
  double chi2 = 0, overlap = 0;
  for (int v = 0; v < 6; ++v) {
    chi2 += (counts[v] - n * pp[v]) * (counts[v] - n * pp[v]) / (n * pp[v]);
    overlap += std::min(pp[v], qq[v]);
  }
  EXPECT_LT(chi2, 20.5);  // 99.9% quantile of chi-square with 5 degrees of freedom
  EXPECT_NEAR(static_cast<double>(accepted) / n, overlap, 0.01);
}

// Seeded nucleus sampling of `tokens` tokens, EOS ignored.
GenerateOptions SeededSampling(int tokens, float temperature) {
  GenerateOptions g;
  g.max_new_tokens = tokens;
  g.ignore_eos = true;
  g.sampling.temperature = temperature;
  g.sampling.top_p = 0.95f;
  g.sampling.seed = 42;
  return g;
}

TEST(SpeculativeTest, SeededSamplingIsReproducible) {
  Loaded l = Load("glm5-tiny-code");
  const GenerateOptions g = SeededSampling(20, 0.8f);
  auto prompt = Prompts("glm5-tiny-code")[0];
  auto a = GenerateSpeculative(*l.model, prompt, g, *ParseSpeculative("mtp:2"));
  auto b = GenerateSpeculative(*l.model, prompt, g, *ParseSpeculative("mtp:2"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->tokens, b->tokens);
  EXPECT_EQ(a->tokens.size(), 20u);
}

// Prompt-lookup drafts are one-hot proposals, verified against each position's plain sample: a
// seeded sampled request gives exactly the tokens plain decoding gives, and the drafts are used.
TEST(SpeculativeTest, SeededSamplingWithPromptLookupEqualsPlainDecoding) {
  Loaded l = Load("glm5-tiny-code");
  const GenerateOptions g = SeededSampling(48, 0.7f);
  for (const auto& base : Prompts("glm5-tiny-code")) {
    // The prompt twice: its second half repeats the first, so there is something to look up.
    std::vector<int32_t> prompt = base;
    prompt.insert(prompt.end(), base.begin(), base.end());
    auto plain = Generate(*l.model, prompt, g);
    ASSERT_TRUE(plain.ok()) << plain.status();
    SpeculativeStats stats;
    auto out = GenerateSpeculative(*l.model, prompt, g, *ParseSpeculative("ngram:3"), &stats);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->tokens, plain->tokens);
    EXPECT_GT(stats.drafted, 0);
  }
}

// AdjustLogits: bias first, then the repetition penalty over the whole history and the
// presence / frequency penalties over its output part only.
TEST(SamplerTest, AdjustLogitsFollowsTheOpenAiAndVllmDefinitions) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  p.logit_bias = {{0, 1.0f}, {4, -3.0f}, {99, 7.0f}};  // 99 is outside the vocabulary: ignored
  std::vector<float> logits = {1.0f, -1.0f, 2.0f, 4.0f, 3.0f, 0.5f};
  // Prompt {1, 2}, output {2, 3, 3}.
  const std::vector<int32_t> history = {1, 2, 2, 3, 3};
  ASSERT_TRUE(AdjustsLogits(p));
  AdjustLogits(logits.data(), 6, p, history, 2);
  EXPECT_FLOAT_EQ(logits[0], 2.0f);                  // bias only
  EXPECT_FLOAT_EQ(logits[1], -2.0f);                 // in the prompt: repetition only
  EXPECT_FLOAT_EQ(logits[2], 1.0f - 0.25f - 0.5f);   // repetition, then once in the output
  EXPECT_FLOAT_EQ(logits[3], 2.0f - 0.5f - 0.5f);    // repetition, then twice in the output
  EXPECT_FLOAT_EQ(logits[4], 0.0f);                  // bias only: 3 - 3
  EXPECT_FLOAT_EQ(logits[5], 0.5f);                  // untouched
  EXPECT_FALSE(AdjustsLogits(SamplingParams{}));
}

TEST(SamplerTest, GreedyPicksTheArgmaxOfTheAdjustedLogits) {
  const std::vector<float> logits = {1.0f, 5.0f, 4.9f, 0.0f};
  SamplingParams p;
  EXPECT_EQ(GreedyToken(logits.data(), 4, p, {}, 0), 1);
  p.frequency_penalty = 0.2f;
  EXPECT_EQ(GreedyToken(logits.data(), 4, p, {1}, 0), 2);  // token 1 in the output: 5 - 0.2 < 4.9
  EXPECT_EQ(GreedyToken(logits.data(), 4, p, {1}, 1), 1) << "token 1 only in the prompt";
  EXPECT_FLOAT_EQ(logits[1], 5.0f) << "GreedyToken leaves its input alone";
  p = SamplingParams{};
  p.logit_bias = {{3, 10.0f}};
  EXPECT_EQ(GreedyToken(logits.data(), 4, p, {}, 0), 3);
  std::vector<float> work = logits;
  Sampler sampler(p);  // temperature 0: the same pick
  EXPECT_EQ(sampler.Sample(work.data(), 4, {}, 0), 3);
  const SamplingCandidates dist = SamplingDistribution(logits.data(), 4, p, {}, 0);
  EXPECT_EQ(dist.ids, std::vector<int32_t>{3});
  EXPECT_EQ(dist.probs, std::vector<float>{1.0f});
}

// `probs` by id as candidates: every token by id (dense), or only the nonzero ones listed in a
// scrambled order (sparse, as top-p leaves them).
SamplingCandidates AsCandidates(const std::vector<double>& probs, bool sparse) {
  SamplingCandidates c;
  if (!sparse) {
    c.probs.assign(probs.begin(), probs.end());
    return c;
  }
  for (size_t i = probs.size(); i-- > 0;)
    if (probs[i] > 0) {
      c.ids.push_back(static_cast<int32_t>(i));
      c.probs.push_back(static_cast<float>(probs[i]));
    }
  return c;
}

// Draft from q, accept/resample against p: the output must be distributed as p, whether p and q
// list every token or only their supports.
TEST(SpeculativeSamplingTest, RejectionRuleKeepsTheTargetDistribution) {
  std::mt19937_64 rng(7);
  const std::vector<std::vector<double>> targets = {{0.5, 0.2, 0.1, 0.1, 0.05, 0.05}, {0.0, 0.3, 0.3, 0.4, 0.0, 0.0},
                                                    {0.0, 0.3, 0.3, 0.4, 0.0, 0.0}};
  const std::vector<std::vector<double>> drafts = {{0.05, 0.05, 0.3, 0.3, 0.2, 0.1}, {0.2, 0.2, 0.2, 0.2, 0.1, 0.1},
                                                   {0.0, 0.0, 0.0, 0.0, 0.5, 0.5}};
  for (size_t c = 0; c < 2 * targets.size(); ++c) {
    const auto& p = targets[c / 2];
    const auto& q = drafts[c / 2];
    const SamplingCandidates pc = AsCandidates(p, c % 2 == 1), qc = AsCandidates(q, c % 2 == 0);
    const int n = 200000;
    std::vector<int> counts(p.size(), 0);
    int accepted = 0;
    for (int i = 0; i < n; ++i) {
      int32_t d = DrawFrom(qc, rng);
      RejectionOutcome r = AcceptOrResample(d, pc, qc, rng);
      counts[r.token]++;
      accepted += r.accepted;
    }
    double chi2 = 0;
    int dof = -1;
    for (size_t v = 0; v < p.size(); ++v) {
      if (p[v] == 0) {
        EXPECT_EQ(counts[v], 0) << "token outside the target's support";
        continue;
      }
      const double expected = n * p[v];
      chi2 += (counts[v] - expected) * (counts[v] - expected) / expected;
      ++dof;
    }
    // 99.9% quantile of chi-square with <= 5 degrees of freedom is 20.5.
    EXPECT_LT(chi2, 20.5) << "case " << c;
    double overlap = 0;
    for (size_t v = 0; v < p.size(); ++v) overlap += std::min(p[v], q[v]);
    EXPECT_NEAR(static_cast<double>(accepted) / n, overlap, 0.01);  // acceptance = Σ min(p, q)
  }
}

// A one-hot proposal verified against the position's plain sample: the output is that sample (so
// distributed as p, and the same token plain decoding draws with the seed), kept as the draft
// with probability p(draft).
TEST(SpeculativeSamplingTest, OneHotVerificationIsThePlainSample) {
  const std::vector<double> p = {0.5, 0.2, 0.1, 0.1, 0.05, 0.05};
  for (bool listed : {false, true}) {
    const SamplingCandidates pc = AsCandidates(p, listed);
    const int n = 100000;
    std::vector<int> counts(p.size(), 0);
    int accepted = 0;
    for (int i = 0; i < n; ++i) {
      const int32_t draft = i % 3;  // any proposal
      const RejectionOutcome r = VerifyOneHot(draft, pc, 11, i);
      std::mt19937_64 plain(TokenSeed(11, i));
      ASSERT_EQ(r.token, DrawFrom(pc, plain));
      ASSERT_EQ(r.accepted, r.token == draft);
      counts[r.token]++;
      accepted += r.accepted;
    }
    double chi2 = 0;
    for (size_t v = 0; v < p.size(); ++v) chi2 += (counts[v] - n * p[v]) * (counts[v] - n * p[v]) / (n * p[v]);
    EXPECT_LT(chi2, 20.5);  // 99.9% quantile of chi-square with 5 degrees of freedom
    EXPECT_NEAR(static_cast<double>(accepted) / n, (p[0] + p[1] + p[2]) / 3, 0.01);  // mean p(draft)
  }
}

TEST(SpeculativeSamplingTest, NgramDraftFollowsTheLatestMatch) {
  std::vector<int32_t> t = {1, 2, 3, 4, 5, 9, 1, 2, 3, 7, 8, 1, 2, 3};
  EXPECT_EQ(NgramDraft(t, 2), (std::vector<int32_t>{7, 8}));
  EXPECT_EQ(NgramDraft({5, 6, 7}, 3), std::vector<int32_t>{});
  EXPECT_EQ(NgramDraft({4, 4, 4, 4}, 3), (std::vector<int32_t>{4}));
}

TEST(SpeculativeSamplingTest, PredictionDraftFollowsThePredictionWhereTheOutputIs) {
  using V = std::vector<int32_t>;
  // prompt {50, 51}; prediction: a line repeated, as in a file with similar lines.
  const V prediction = {1, 2, 3, 9, 1, 2, 3, 8, 7};
  // Before any output: the prediction's start.
  EXPECT_EQ(PredictionDraft(prediction, {50, 51}, 0, 3), (V{1, 2, 3}));
  // Output {1, 2, 3}: the suffix {1, 2, 3} occurs twice; the continuation nearest position 3 wins.
  EXPECT_EQ(PredictionDraft(prediction, {50, 51, 1, 2, 3}, 3, 2), (V{9, 1}));
  // Output {1, 2, 3, 9, 1, 2, 3}: now the second occurrence is where the output is.
  EXPECT_EQ(PredictionDraft(prediction, {50, 51, 1, 2, 3, 9, 1, 2, 3}, 7, 4), (V{8, 7}));
  // The longest suffix that occurs decides: {5, 3} is absent, {3} is there.
  EXPECT_EQ(PredictionDraft(prediction, {50, 51, 5, 3}, 2, 1), (V{9}));
  // The anchor decides between the two: just past kept drafts at 7 (an edit deleted text before),
  // the second occurrence, though only 3 tokens were generated; `from` tells where it starts.
  int64_t from = -1;
  EXPECT_EQ(PredictionDraft(prediction, {50, 51, 1, 2, 3}, 7, 2, &from), (V{8, 7}));
  EXPECT_EQ(from, 7);
  // Nothing matches, the prediction ends at the match, or no room to draft: nothing.
  EXPECT_EQ(PredictionDraft(prediction, {50, 51, 42}, 1, 3), V{});
  EXPECT_EQ(PredictionDraft(prediction, {50, 51, 8, 7}, 9, 3), V{});
  EXPECT_EQ(PredictionDraft(prediction, {50, 51, 1}, 1, 0), V{});
  EXPECT_EQ(PredictionDraft({}, {50, 51, 1}, 0, 3), V{});
}

// PredictionDraft's outward scan against the plain one it replaced (every occurrence, the
// nearest continuation kept, the earlier of two as near), on predictions over a small alphabet
// (many repeats), every anchor from before the start to past the end.
TEST(SpeculativeSamplingTest, PredictionDraftEqualsAFullScan) {
  auto full_scan = [](const std::vector<int32_t>& prediction, const std::vector<int32_t>& tokens, int64_t anchor,
                      int k) -> std::vector<int32_t> {
    const int64_t m = static_cast<int64_t>(prediction.size()), n = static_cast<int64_t>(tokens.size());
    if (k <= 0 || m == 0) return {};
    if (anchor <= 0) return std::vector<int32_t>(prediction.begin(), prediction.begin() + std::min<int64_t>(m, k));
    for (int len = 4; len >= 1; --len) {
      if (n < len) continue;
      int64_t best = -1;
      for (int64_t start = 0; start + len < m; ++start) {
        if (!std::equal(tokens.end() - len, tokens.end(), prediction.begin() + start)) continue;
        const int64_t next = start + len;
        if (best < 0 || std::abs(next - anchor) < std::abs(best - anchor)) best = next;
      }
      if (best >= 0)
        return std::vector<int32_t>(prediction.begin() + best, prediction.begin() + std::min<int64_t>(m, best + k));
    }
    return {};
  };
  std::mt19937 rng(5);
  int64_t drafted = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const int alphabet = 2 + trial % 4;
    std::vector<int32_t> prediction(rng() % 40), tokens(1 + rng() % 8);
    for (int32_t& t : prediction) t = static_cast<int32_t>(rng() % alphabet);
    for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % alphabet);
    const int k = static_cast<int>(rng() % 5);
    for (int64_t anchor = -2; anchor <= static_cast<int64_t>(prediction.size()) + 3; ++anchor) {
      int64_t from = -1;
      const std::vector<int32_t> got = PredictionDraft(prediction, tokens, anchor, k, &from);
      ASSERT_EQ(got, full_scan(prediction, tokens, anchor, k)) << "trial " << trial << " anchor " << anchor;
      if (!got.empty()) {
        ASSERT_TRUE(std::equal(got.begin(), got.end(), prediction.begin() + from)) << "trial " << trial;
        ++drafted;
      }
    }
  }
  EXPECT_GT(drafted, 1000);
}

TEST(SpeculativeSamplingTest, ParseAndAdapt) {
  EXPECT_FALSE(ParseSpeculative("mtp:9").ok());
  EXPECT_FALSE(ParseSpeculative("eagle:2").ok());
  EXPECT_FALSE(ParseSpeculative("mtp").ok());
  EXPECT_EQ(ParseSpeculative("ngram:5")->k, 5);
  // K is plain digits (SimpleAtoi alone took a space, a sign and leading zeros).
  for (const char* odd : {"mtp: 2", "ngram:+3", "ngram:03", "mtp:2 ", "mtp:", "ngram:-1", "mtp:1e0", "ngram:0"})
    EXPECT_FALSE(ParseSpeculative(odd).ok()) << odd;
  EXPECT_EQ(ParseSpeculative("mtp:4")->k, 4);
}

// Drives `a` like a decode loop: each step drafts next() tokens of which the first `keep(k)` are
// kept; a step without drafts is reported as (0, 0).
void Steps(AdaptiveDraftLength& a, int n, const std::function<int(int)>& keep) {
  for (int i = 0; i < n; ++i) {
    const int k = a.next();
    a.Update(k, k > 0 ? std::min(k, keep(k)) : 0);
  }
}

TEST(AdaptiveDraftLengthTest, BacksOffPausesProbesAndRecovers) {
  const double c = AdaptiveDraftLength::PositionCost(*ParseSpeculative("mtp:4"));
  AdaptiveDraftLength a(4, c);
  EXPECT_GE(a.next(), 2) << "optimistic at the start";
  // Every draft rejected: drafting stops.
  Steps(a, 6, [](int) { return 0; });
  EXPECT_EQ(a.next(), 0);
  // A pause lasts kPauseSteps plain steps, then one draft measures again; rejected, it pauses again.
  int plain = 0;
  while (a.next() == 0 && plain < 100) {
    a.Update(0, 0);
    ++plain;
  }
  EXPECT_LE(plain, AdaptiveDraftLength::kPauseSteps);
  EXPECT_EQ(a.next(), 1);
  a.Update(1, 0);
  EXPECT_EQ(a.next(), 0);
  // Every draft kept from now on: it probes, recovers, and drafts the most it may.
  for (int i = 0; i < 60; ++i) {
    const int k = a.next();
    a.Update(k, k);
  }
  EXPECT_EQ(a.next(), 4);
}

TEST(AdaptiveDraftLengthTest, MostDraftsNextBoundsWhatTheNextStepAsksFor) {
  // Whatever a step's outcome, next() after it never exceeds MostDraftsNext before it: the
  // cluster prepares that many MTP drafts a step ahead (none through a pause, one for its probe).
  std::mt19937 rng(5);
  for (double p : {0.0, 0.3, 0.7, 0.95, 1.0}) {
    AdaptiveDraftLength a(4, AdaptiveDraftLength::PositionCost(*ParseSpeculative("mtp:4")));
    std::bernoulli_distribution keep(p);
    int paused_prepared = 0, paused_steps = 0;
    for (int i = 0; i < 400; ++i) {
      const int k = a.next();
      const int bound = a.MostDraftsNext(k);
      int kept = 0;
      while (kept < k && keep(rng)) ++kept;
      a.Update(k, kept);
      ASSERT_LE(a.next(), bound) << "p " << p << " step " << i;
      if (k == 0 && a.next() == 0) {
        ++paused_steps;
        paused_prepared += bound;
      }
    }
    EXPECT_EQ(paused_prepared, 0) << "p " << p << ": drafts prepared for paused steps";
    if (p == 0.0) {
      EXPECT_GT(paused_steps, 300) << "every draft rejected: mostly paused";
    }
  }
}

TEST(AdaptiveDraftLengthTest, BatchingRaisesTheBarForDrafting) {
  // The first draft is kept 85% of the time: worth drafting alone (cost 0.6), not in a batch of
  // 8 (a drafted position then costs 0.92 of the request's share of a step), and again alone.
  AdaptiveDraftLength a(1, 0.6);
  std::mt19937 rng(11);
  std::bernoulli_distribution kept(0.85);
  auto drafting_steps = [&](int steps) {
    int drafting = 0;
    for (int i = 0; i < steps; ++i) {
      const int k = a.next();
      drafting += k > 0;
      a.Update(k, k > 0 && kept(rng) ? 1 : 0);
    }
    return drafting;
  };
  EXPECT_GE(drafting_steps(200), 150);
  a.SetBatchSize(8);
  drafting_steps(40);  // a pause or two while the rate settles
  EXPECT_LE(drafting_steps(200), 200 / AdaptiveDraftLength::kPauseSteps + 2) << "only the probes";
  a.SetBatchSize(1);
  drafting_steps(40);
  EXPECT_GE(drafting_steps(200), 150);
}

TEST(AdaptiveDraftLengthTest, PicksTheDraftLengthThatPaysForItsCost) {
  // The first draft is nearly always kept, the second one rarely: draft one.
  AdaptiveDraftLength a(4, 0.6);
  Steps(a, 60, [](int k) { return std::min(k, 1); });
  EXPECT_EQ(a.next(), 1);
  EXPECT_GT(a.acceptance(1), 0.95);
  EXPECT_LT(a.acceptance(2), 0.9) << "measured (once drafting two no longer paid, it stopped drafting it)";
  // Free verification: drafting more never costs, so every position is worth a draft that
  // is kept half the time.
  AdaptiveDraftLength free(4, 0.0);
  std::mt19937 rng(3);
  Steps(free, 200, [&](int k) {
    int kept = 0;
    while (kept < k && rng() % 2 == 0) ++kept;
    return kept;
  });
  EXPECT_EQ(free.next(), 4);
  // Expensive verification (a drafted position costs two steps): even a draft kept 90% of the
  // time does not pay, so the request decodes plainly (probing now and then).
  AdaptiveDraftLength costly(4, 2.0);
  EXPECT_EQ(costly.next(), 0);
  int drafted = 0;
  for (int i = 0; i < 90; ++i) {
    const int k = costly.next();
    drafted += k;
    costly.Update(k, k > 0 && i % 10 != 0 ? 1 : 0);
  }
  EXPECT_GT(drafted, 0) << "it keeps measuring";
  EXPECT_LE(drafted, 90 / AdaptiveDraftLength::kPauseSteps + 1);
}

}  // namespace
}  // namespace glm::runtime
