// Speculative decoding in the batched cluster (MTP and prompt lookup): greedy outputs identical to
// the single-process engine over several layouts, seeded sampling cache-exact, adaptive drafting,
// and the MTP draft vocabulary built on the last stage from the history it is sent.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "shard_worker/model/draft_vocabulary.h"
#include "shard_worker/runtime/sampler.h"
#include "coordinator/scheduler/token_set_constraint.h"
#include "tests/coordinator/scheduler/engine_harness.h"

namespace glm::scheduler {
namespace {

// The last stage drafts from the history it is sent: a prefill step with one MTP draft and a
// draft vocabulary of 1 common id proposes the argmax of the MTP logits over {0} ∪ the prompt ∪
// {the sampled token}, as the single-process model computes it.
TEST(EngineSpeculativeTest, MtpDraftVocabularyComesFromTheSentHistory) {
  auto lc = LocalCluster::Start(FixtureModelDir("glm5-tiny-code"), 1, 1, 16, 16);
  ASSERT_TRUE(lc.ok()) << lc.status();
  SingleProcess sp;
  ASSERT_NE(sp.model, nullptr);
  const model::Glm5Model& m = *sp.model;
  const int64_t vocab = m.config().vocab_size, hidden = m.config().hidden_size;
  int prompt_mattered = 0;
  for (int k = 0; k < 4; ++k) {
    const std::vector<int32_t> prompt = Prompt(960 + k, 12);
    shard::StepPlan plan = OneSequencePlan(k + 1, 100 + k, prompt);
    auto* s = plan.mutable_sequences(0);
    s->set_use_mtp(true);
    s->set_mtp_drafts(1);
    s->set_draft_vocab(1);
    s->set_penalty_tokens_from(0);
    s->mutable_penalty_tokens()->Add(prompt.begin(), prompt.end());
    s->set_penalty_output_start(static_cast<int32_t>(prompt.size()));
    if (k > 0) plan.add_finished(100 + k - 1);
    auto r = (*lc)->client()->Step(plan);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->sequences_size(), 1);
    ASSERT_EQ(r->sequences(0).drafts_size(), 1);
    const int32_t sampled = r->sequences(0).token(), draft = r->sequences(0).drafts(0);
    // Single process: the prompt, then the MTP rows (prompt[j+1], h[j]) and (sampled, h[n-1]).
    auto cache = m.NewCache();
    std::vector<model::SequenceInput> in(1);
    in[0].cache = cache.get();
    in[0].tokens = prompt;
    auto main = m.Forward(in, model::LogitRows::kLast);
    ASSERT_TRUE(main.ok());
    ASSERT_EQ(runtime::ArgMax(main->logits.data(), vocab), sampled);
    auto draft_over = [&](const model::DraftVocabulary& v) {
      auto mtp_cache = m.NewMtpCache();
      std::vector<model::SequenceInput> rows(1);
      rows[0].cache = mtp_cache.get();
      rows[0].tokens.assign(prompt.begin() + 1, prompt.end());
      rows[0].tokens.push_back(sampled);
      rows[0].prev_hidden.assign(main->hidden.begin(), main->hidden.begin() + prompt.size() * hidden);
      rows[0].draft_vocab = &v;
      auto out = m.ForwardMtp(rows, model::LogitRows::kLast);
      EXPECT_TRUE(out.ok());
      return runtime::ArgMax(out->logits.data(), vocab);
    };
    model::DraftVocabulary with_prompt(1, vocab), without(1, vocab);
    with_prompt.Add(prompt);
    with_prompt.Add(&sampled, 1);
    without.Add(&sampled, 1);
    EXPECT_EQ(draft, draft_over(with_prompt)) << "prompt " << k;
    prompt_mattered += draft_over(with_prompt) != draft_over(without);
  }
  EXPECT_GT(prompt_mattered, 0) << "the prompt never changed the draft: the check would prove nothing";
}

// Speculative decoding in the batched cluster: greedy outputs identical to plain decoding for
// MTP and prompt-lookup drafts, with concurrent requests accepting different lengths, over
// tensor-parallel and pipeline layouts.
TEST(EngineSpeculativeTest, GreedyOutputsIdenticalWithAndWithoutSpeculation) {
  struct Layout {
    int workers, stages;
  };
  for (Layout layout : {Layout{1, 1}, Layout{2, 1}, Layout{2, 2}}) {
    EngineHarness h("glm5-tiny-code", layout.workers, layout.stages, 512, 16);
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 4; ++i) prompts.push_back(Prompt(700 + i, 12 + 11 * i));
    for (const std::string spec : {"mtp:2", "ngram:3", "mtp:4"}) {
      std::vector<EngineHarness::Output> outs(prompts.size());
      std::vector<std::thread> clients;
      for (size_t i = 0; i < prompts.size(); ++i)
        clients.emplace_back([&, i] {
          GenerationRequest r = Greedy(prompts[i], 24);
          r.speculative = spec;
          outs[i] = h.Run(r);
        });
      for (auto& t : clients) t.join();
      for (size_t i = 0; i < prompts.size(); ++i) {
        ASSERT_TRUE(outs[i].error.ok()) << outs[i].error;
        EXPECT_EQ(outs[i].tokens, SingleProcessGreedy(prompts[i], 24))
            << spec << " request " << i << " layout " << layout.workers << "x" << layout.stages;
      }
    }
    const EngineLoad load = h.engine()->GetLoad();
    EXPECT_GT(load.spec_draft_tokens, 0);
    EXPECT_GT(load.spec_accepted_tokens, 0);
    EXPECT_LE(load.spec_accepted_tokens, load.spec_draft_tokens);
    EXPECT_EQ(h.SettledBlocksUsed(), 0);
  }
}

// OpenAI's predicted outputs: drafts from the request's prediction. The output is the one without
// it (greedy, and seeded sampling: prompt-lookup drafts keep the plain sample), its drafts are
// counted as accepted and rejected prediction tokens, and a prediction refuses MTP.
TEST(EngineSpeculativeTest, PredictionDraftsKeepTheOutputAndAreCounted) {
  EngineHarness h("glm5-tiny-code", 1, 1, 512, 16);
  const std::vector<int32_t> prompt = Prompt(910, 20);
  auto request = [&](bool sampled) {
    GenerationRequest r = Greedy(prompt, 40);
    r.sampling.ignore_eos = true;
    if (sampled) {
      r.sampling.temperature = 0.9f;
      r.sampling.seed = 11;
    }
    return r;
  };
  for (const bool sampled : {false, true}) {
    const EngineHarness::Output plain = h.Run(request(sampled));
    ASSERT_TRUE(plain.error.ok()) << plain.error;
    ASSERT_EQ(plain.tokens.size(), 40u);
    // The run with `prediction`: it must give the plain tokens.
    auto with = [&](std::vector<int32_t> prediction) {
      GenerationRequest r = request(sampled);
      r.prediction = std::move(prediction);
      EngineHarness::Output out = h.Run(r);
      EXPECT_TRUE(out.error.ok()) << out.error;
      EXPECT_EQ(out.tokens, plain.tokens) << "sampled " << sampled;
      return out;
    };
    const EngineHarness::Output with_exact = with(plain.tokens);
    EXPECT_GE(with_exact.accepted_prediction_tokens, 20) << "sampled " << sampled;
    EXPECT_EQ(with_exact.rejected_prediction_tokens, 0) << "sampled " << sampled;
    // Edited in the middle: drafts there are rejected, the output stays.
    std::vector<int32_t> edited = plain.tokens;
    for (int i = 15; i < 19; ++i) edited[i] = (edited[i] + 1) % 4000;
    const EngineHarness::Output with_edit = with(edited);
    EXPECT_GT(with_edit.rejected_prediction_tokens, 0) << "sampled " << sampled;
    EXPECT_GT(with_edit.accepted_prediction_tokens, 0) << "sampled " << sampled;
    // Each prediction position counts once: a prediction drafted again and again (the output
    // reversed misses at every step; a repeated piece is re-drafted from the same positions)
    // used to report the drafts of every step, up to several times its own length.
    for (std::vector<int32_t> p : {std::vector<int32_t>(plain.tokens.rbegin(), plain.tokens.rend()),
                                   std::vector<int32_t>()}) {
      if (p.empty())
        for (int rep = 0; rep < 4; ++rep) p.insert(p.end(), plain.tokens.begin(), plain.tokens.begin() + 6);
      const EngineHarness::Output out = with(p);
      EXPECT_LE(out.accepted_prediction_tokens + out.rejected_prediction_tokens, static_cast<int32_t>(p.size()))
          << "sampled " << sampled << ": accepted " << out.accepted_prediction_tokens << " rejected "
          << out.rejected_prediction_tokens << " of " << p.size();
    }
  }
  GenerationRequest mtp = request(false);
  mtp.prediction = {5, 6, 7};
  mtp.speculative = "mtp:2";
  const EngineHarness::Output refused = h.Run(mtp);
  EXPECT_EQ(refused.error.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(refused.error.message()).find("prediction"), std::string::npos) << refused.error;
  GenerationRequest outside = request(false);
  outside.prediction = {5, 1 << 20};  // ids the model cannot take as drafts
  EXPECT_EQ(h.Run(outside).error.code(), absl::StatusCode::kInvalidArgument);
  GenerationRequest none = request(false);
  none.prediction = {5, 6, 7};
  none.speculative = "none";
  const EngineHarness::Output plain_again = h.Run(none);
  ASSERT_TRUE(plain_again.error.ok()) << plain_again.error;
  EXPECT_EQ(plain_again.accepted_prediction_tokens + plain_again.rejected_prediction_tokens, 0);
  EXPECT_EQ(h.SettledBlocksUsed(), 0);
}

TEST(EngineSpeculativeTest, SeededSamplingWithSpeculationIsReproducibleAndCacheExact) {
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  GenerationRequest r = Greedy(Prompt(800, 40), 20);
  r.sampling.temperature = 0.7f;
  r.sampling.seed = 99;
  r.speculative = "mtp:2";
  auto a = h.Run(r);
  auto b = h.Run(r);  // second run hits the prefix cache
  ASSERT_TRUE(a.error.ok() && b.error.ok());
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_GT(b.cached_tokens, 0);
}

// A sampled request with its own seed gives the same tokens alone and among other requests: the
// adaptive draft length shrinks in a batch (a drafted position costs more next to a request's
// share of the step), and the rejection rule draws differently for drafted positions, so a seeded
// request's drafts follow only its own acceptance.
TEST(EngineSpeculativeTest, SeededSampledRequestGivesItsTokensAloneAndInABatch) {
  for (const char* spec : {"mtp:2", "ngram:3"}) {
    SCOPED_TRACE(spec);
    auto request = [&](int prompt_seed, const std::string& id) {
      GenerationRequest r = Greedy(Prompt(prompt_seed, 40), 32, id);
      r.sampling.temperature = 0.8f;
      r.sampling.seed = 4242 + prompt_seed;
      r.speculative = spec;
      return r;
    };
    std::vector<int32_t> alone;
    {
      EngineHarness h("glm5-tiny-code", 1, 1, 512, 16);
      auto out = h.Run(request(0, "alone"));
      ASSERT_TRUE(out.error.ok()) << out.error;
      alone = out.tokens;
    }
    EngineHarness h("glm5-tiny-code", 1, 1, 512, 16);
    std::vector<GenerationRequest> batch;
    for (int i = 0; i < 8; ++i) batch.push_back(request(i, absl::StrCat("r", i)));
    auto outs = h.RunAll(std::move(batch));
    ASSERT_TRUE(outs[0].error.ok()) << outs[0].error;
    EXPECT_EQ(outs[0].tokens, alone);
  }
}

// Prompt-lookup drafts are verified against each position's plain sample: a seeded sampled
// request with ngram speculation gives the tokens it gives without speculation.
TEST(EngineSpeculativeTest, SeededSampledPromptLookupEqualsPlainDecoding) {
  EngineHarness h("glm5-tiny-code", 1, 1, 512, 16);
  std::vector<int32_t> prompt = Prompt(31, 30);
  const std::vector<int32_t> half = prompt;
  prompt.insert(prompt.end(), half.begin(), half.end());  // something to look up
  auto request = [&](const std::string& spec) {
    GenerationRequest r = Greedy(prompt, 40);
    r.sampling.temperature = 0.7f;
    r.sampling.seed = 77;
    r.speculative = spec;
    return r;
  };
  auto plain = h.Run(request("none"));
  ASSERT_TRUE(plain.error.ok()) << plain.error;
  auto spec = h.Run(request("ngram:3"));
  ASSERT_TRUE(spec.error.ok()) << spec.error;
  EXPECT_EQ(spec.tokens, plain.tokens);
  EXPECT_GT(h.engine()->GetLoad().spec_draft_tokens, 0);
}

// --draft-vocab: the last stage builds each request's draft vocabulary from its history, which
// reaches it once (the prompt) and then grows by step; on a prefix-cache hit the cached part is
// sent too. Greedy outputs stay the single-process ones (one worker, a 2-stage pipeline, and
// tensor parallelism, where the whole head is gathered), and a seeded sampled request gives the
// same tokens cold and from the cache.
TEST(EngineSpeculativeTest, DraftVocabularyKeepsOutputsAndCacheExactness) {
  struct Layout {
    int workers, stages;
  };
  EngineOptions o;
  o.draft_vocab = 256;
  for (Layout layout : {Layout{1, 1}, Layout{2, 2}, Layout{2, 1}}) {
    EngineHarness h("glm5-tiny-code", layout.workers, layout.stages, 512, 16, o);
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 3; ++i) prompts.push_back(Prompt(900 + i, 20 + 9 * i));
    std::vector<EngineHarness::Output> outs(prompts.size());
    std::vector<std::thread> clients;
    for (size_t i = 0; i < prompts.size(); ++i)
      clients.emplace_back([&, i] {
        GenerationRequest r = Greedy(prompts[i], 24);
        r.speculative = i == 2 ? "mtp:1" : "mtp:3";
        outs[i] = h.Run(r);
      });
    for (auto& t : clients) t.join();
    for (size_t i = 0; i < prompts.size(); ++i) {
      ASSERT_TRUE(outs[i].error.ok()) << outs[i].error;
      EXPECT_EQ(outs[i].tokens, SingleProcessGreedy(prompts[i], 24))
          << "request " << i << " layout " << layout.workers << "x" << layout.stages;
    }
    GenerationRequest r = Greedy(Prompt(950, 40), 20);
    r.sampling.temperature = 0.7f;
    r.sampling.seed = 5;
    r.speculative = "mtp:2";
    auto cold = h.Run(r);
    auto cached = h.Run(r);
    ASSERT_TRUE(cold.error.ok() && cached.error.ok());
    EXPECT_GT(cached.cached_tokens, 0);
    EXPECT_EQ(cached.tokens, cold.tokens) << "layout " << layout.workers << "x" << layout.stages;
    EXPECT_GT(h.engine()->GetLoad().spec_draft_tokens, 0);
    EXPECT_EQ(h.SettledBlocksUsed(), 0);
  }
  // Continuing held-out code, the drafts are accepted about as often as with the whole
  // vocabulary (ids below 512 alone hold about half of these tokens; with the prompt's and the
  // output's own tokens ~96%). MtpDraftVocabularyComesFromTheSentHistory checks the drafts.
  std::ifstream in(std::string(GLM_TEST_FIXTURES_DIR) + "/ref-glm5-tiny-code/reference.json");
  std::stringstream text;
  text << in.rdbuf();
  const auto held_out = nlohmann::json::parse(text.str())["eval_ids_first_1024"].get<std::vector<int32_t>>();
  double rate[2] = {0, 0};
  for (int64_t common : {int64_t{0}, int64_t{512}}) {
    o.draft_vocab = common;
    EngineHarness h("glm5-tiny-code", 1, 1, 512, 16, o);
    for (int p = 0; p < 3; ++p) {
      GenerationRequest r = Greedy(std::vector<int32_t>(held_out.begin() + 200 * p, held_out.begin() + 200 * p + 120), 64);
      r.speculative = "mtp:1";
      ASSERT_TRUE(h.Run(r).error.ok());
    }
    const EngineLoad load = h.engine()->GetLoad();
    rate[common > 0] = static_cast<double>(load.spec_accepted_tokens) / std::max<int64_t>(1, load.spec_draft_tokens);
  }
  EXPECT_GT(rate[1], 0.5);
  EXPECT_GT(rate[1], rate[0] - 0.05) << "whole vocabulary: " << rate[0];
}

// Logprobs do not depend on speculation: an accepted draft carries the values of the verify row
// that accepted it, which are plain decoding's row bit for bit (it used to carry 0 and no
// alternatives). Over MTP and prompt lookup, on one worker and a 2-stage pipeline.
TEST(EngineSpeculativeTest, LogprobsOfAcceptedDraftsArePlainDecodings) {
  const std::string text = "def add(a, b):\n    return a + b\n\ndef add(a, b):\n    return a + b\n";
  std::vector<int32_t> prompt;
  for (char c : text) prompt.push_back(static_cast<unsigned char>(c));  // a repeating prompt: ngram drafts too
  for (auto [workers, stages] : std::vector<std::pair<int, int>>{{1, 1}, {2, 2}}) {
    EngineHarness h("glm5-tiny-code", workers, stages, 256, 16);
    std::vector<EngineHarness::Output> outs;
    for (const char* spec : {"none", "mtp:2", "ngram:3"}) {
      GenerationRequest r = Greedy(prompt, 24);
      r.speculative = spec;
      r.sampling.logprobs = true;
      r.sampling.top_logprobs = 3;
      outs.push_back(h.Run(r));
      ASSERT_TRUE(outs.back().error.ok()) << spec << ": " << outs.back().error;
      ASSERT_EQ(outs.back().logprobs.size(), outs.back().tokens.size()) << spec;
    }
    EXPECT_GT(h.engine()->GetLoad().spec_accepted_tokens, 4);  // drafts were accepted
    const EngineHarness::Output& plain = outs[0];
    for (size_t k = 1; k < outs.size(); ++k) {
      ASSERT_EQ(outs[k].tokens, plain.tokens);
      for (size_t i = 0; i < plain.logprobs.size(); ++i) {
        const TokenLogprob &a = outs[k].logprobs[i], &b = plain.logprobs[i];
        EXPECT_EQ(a.token, b.token) << k << " " << i;
        EXPECT_EQ(a.logprob, b.logprob) << "output " << k << ", token " << i;
        EXPECT_EQ(a.top, b.top) << "output " << k << ", token " << i;
      }
    }
  }
}

// The prefix cache keeps an MTP request's drafts exact: blocks written by a plain request hold
// no MTP rows, and a prompt chunk's last MTP row is only written with the next step, so an MTP
// request reusing either used to read MTP rows that were not there — its drafts, and with them
// its seeded samples, differed from a cold run's. Now such blocks are not matched.
TEST(EngineSpeculativeTest, SeededMtpRequestFromTheCacheEqualsItsColdRun) {
  EngineOptions o;
  o.prefill_chunk = 24;  // chunk ends inside blocks of 16
  const std::vector<int32_t> prompt = Prompt(77, 70);
  auto seeded = [&](std::vector<int32_t> p, int max_tokens, const std::string& spec) {
    GenerationRequest r = Greedy(std::move(p), max_tokens);
    r.sampling.temperature = 0.9f;
    r.sampling.seed = 1234;
    r.speculative = spec;
    return r;
  };
  std::vector<int32_t> cold;
  {
    EngineHarness h("glm5-tiny-code", 1, 1, 256, 16, o);
    auto out = h.Run(seeded(prompt, 24, "mtp:2"));
    ASSERT_TRUE(out.error.ok()) << out.error;
    cold = out.tokens;
  }
  for (const char* first : {"none", "mtp:2"}) {
    SCOPED_TRACE(first);
    EngineHarness h("glm5-tiny-code", 1, 1, 256, 16, o);
    // The same prompt first: plain, or MTP stopped right after its chunked prefill.
    auto warm_up = h.Run(seeded(prompt, 1, first));
    ASSERT_TRUE(warm_up.error.ok()) << warm_up.error;
    auto out = h.Run(seeded(prompt, 24, "mtp:2"));
    ASSERT_TRUE(out.error.ok()) << out.error;
    EXPECT_EQ(out.tokens, cold);
    if (std::string(first) == "mtp:2") {
      EXPECT_GT(out.cached_tokens, 0) << "MTP blocks are shared between MTP requests";
    } else {
      EXPECT_EQ(out.cached_tokens, 0) << "plain blocks are not matched by an MTP request";
    }
  }
}

// A block's last MTP row is built from the next block's first token. A seeded MTP request whose
// prompt shares whole blocks with an earlier one but differs right after them (at a block
// boundary) used to reuse the earlier request's last MTP row of those blocks, built from the
// other token: its drafts, and so its seeded samples, differed from its cold run. Blocks now
// match only with the token after them.
TEST(EngineSpeculativeTest, SeededMtpRequestDifferingAtABlockBoundaryEqualsItsColdRun) {
  const std::vector<int32_t> first = Prompt(78, 70);
  std::vector<int32_t> second(first.begin(), first.begin() + 64);  // 4 whole blocks of 16
  for (int i = 0; i < 6; ++i) second.push_back((first[64 + i] + 101 + 7 * i) % 4000);
  ASSERT_NE(second[64], first[64]);
  auto seeded = [&](std::vector<int32_t> p, int max_tokens) {
    GenerationRequest r = Greedy(std::move(p), max_tokens);
    r.sampling.temperature = 0.9f;
    r.sampling.seed = 99;
    r.speculative = "mtp:2";
    return r;
  };
  std::vector<int32_t> cold;
  {
    EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
    auto out = h.Run(seeded(second, 24));
    ASSERT_TRUE(out.error.ok()) << out.error;
    cold = out.tokens;
  }
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  auto warm_up = h.Run(seeded(first, 4));
  ASSERT_TRUE(warm_up.error.ok()) << warm_up.error;
  auto out = h.Run(seeded(second, 24));
  ASSERT_TRUE(out.error.ok()) << out.error;
  EXPECT_EQ(out.tokens, cold);
  EXPECT_EQ(out.cached_tokens, 48) << "the blocks before the last shared one still match";
}

// Sampled speculative decoding in the batched cluster keeps the output distribution: over many
// seeds, the second generated token (the first one a draft can decide) is distributed as without
// speculation — MTP drafts with and without a draft vocabulary, and prompt lookup. A two-sample
// chi-square over the tokens seen (bins under 5 expected merged); the bound is the 99.99%
// quantile, so a correct engine fails about once in 10,000 runs, while a wrong acceptance rule
// (e.g. drafts kept whenever sampled) moves the distribution far past it.
TEST(EngineSpeculativeTest, SampledSpeculationKeepsTheTokenDistribution) {
  EngineOptions o;
  o.draft_vocab = 64;
  EngineHarness h("glm5-tiny-code", 1, 1, 512, 16, o);
  std::vector<int32_t> prompt = Prompt(31, 12);
  prompt.insert(prompt.end(), prompt.begin(), prompt.end());  // repeats: prompt lookup finds drafts too
  constexpr int kSeeds = 400;
  // One request at a time: alone, a request drafts (in a large batch the adaptive length would
  // not).
  auto second_tokens = [&](const std::string& spec) {
    std::map<int32_t, int> counts;
    for (int seed = 0; seed < kSeeds; ++seed) {
      GenerationRequest r = Greedy(prompt, 3);  // room for one draft after the first token
      r.sampling.temperature = 1.0f;
      r.sampling.top_k = 6;
      r.sampling.seed = 7000 + seed;
      r.speculative = spec;
      const auto out = h.Run(std::move(r));
      EXPECT_TRUE(out.error.ok()) << out.error;
      if (out.tokens.size() >= 2) counts[out.tokens[1]]++;
    }
    return counts;
  };
  const std::map<int32_t, int> plain = second_tokens("none");
  for (const char* spec : {"mtp:2", "ngram:2"}) {
    const int64_t drafts_before = h.engine()->GetLoad().spec_draft_tokens;
    const std::map<int32_t, int> speculative = second_tokens(spec);
    EXPECT_GT(h.engine()->GetLoad().spec_draft_tokens, drafts_before) << spec << ": nothing was drafted";
    // Two-sample chi-square with equal sample sizes: sum (a - b)^2 / (a + b) over bins.
    std::map<int32_t, std::pair<int, int>> bins;
    for (auto [t, c] : plain) bins[t].first += c;
    for (auto [t, c] : speculative) bins[t].second += c;
    double chi2 = 0;
    int dof = -1, small_a = 0, small_b = 0;
    for (auto [t, ab] : bins) {
      if (ab.first + ab.second < 10) {  // expected under 5 in each sample: merged
        small_a += ab.first;
        small_b += ab.second;
        continue;
      }
      chi2 += static_cast<double>(ab.first - ab.second) * (ab.first - ab.second) / (ab.first + ab.second);
      ++dof;
    }
    if (small_a + small_b > 0) {
      chi2 += static_cast<double>(small_a - small_b) * (small_a - small_b) / (small_a + small_b);
      ++dof;
    }
    ASSERT_GE(dof, 1) << spec;
    // 99.99% quantile of chi-square with dof degrees of freedom (Wilson-Hilferty approximation).
    const double z = 3.719, k = dof;
    const double bound = k * std::pow(1 - 2 / (9 * k) + z * std::sqrt(2 / (9 * k)), 3);
    EXPECT_LT(chi2, bound) << spec << ": " << dof << " degrees of freedom";
  }
}

// Drafts that are never kept stop the drafting, but only for a while: every pause ends with a
// probe draft, so a long generation keeps measuring (a paused request used to stay paused for
// good: its plain decode steps were never counted).
TEST(EngineSpeculativeTest, PausedDraftingResumesWithProbes) {
  EngineHarness h("glm5-random-sparse", 1, 1, 256, 16);  // random weights: the MTP head's guesses are noise
  auto prompt = [](int seed) {
    std::vector<int32_t> p;
    for (int i = 0; i < 12; ++i) p.push_back(static_cast<int32_t>((seed * 131 + i * 37 + i * i) % 1000 + 10));
    return p;
  };
  GenerationRequest shorter = Greedy(prompt(1), 16), longer = Greedy(prompt(2), 160);
  shorter.speculative = longer.speculative = "mtp:2";
  ASSERT_TRUE(h.Run(shorter).error.ok());
  const int64_t short_drafts = h.engine()->GetLoad().spec_num_drafts;
  auto out = h.Run(longer);
  ASSERT_TRUE(out.error.ok()) << out.error;
  EXPECT_EQ(out.tokens, SingleProcessGreedy(prompt(2), 160, "glm5-random-sparse"));
  const int64_t long_drafts = h.engine()->GetLoad().spec_num_drafts - short_drafts;
  EXPECT_GE(long_drafts, short_drafts + 8) << "drafting steps: " << short_drafts << " in 16 tokens, " << long_drafts
                                           << " in 160";
}

// A scripted last stage that accepts every draft (the plan's last num_drafts tokens), samples token
// 7 after them and proposes every MTP draft asked for; it notes plans that reach past max_context.
struct AcceptingRunner : StepRunner {
  int64_t max_context = std::numeric_limits<int64_t>::max();
  std::vector<std::string> overruns;
  absl::StatusOr<shard::StepResult> Step(const shard::StepPlan& plan) override {
    shard::StepResult r;
    r.set_step_id(plan.step_id());
    for (const auto& s : plan.sequences()) {
      const int64_t end = s.start_position() + s.tokens_size() + s.mtp_drafts();
      if (end > max_context) overruns.push_back(absl::StrCat("positions up to ", end));
      if (!s.sample()) continue;
      shard::SequenceResult* out = r.add_sequences();
      out->set_seq_id(s.seq_id());
      for (int i = s.tokens_size() - s.num_drafts(); i < s.tokens_size(); ++i) out->add_tokens(s.tokens(i));
      out->add_tokens(7);
      out->set_accepted(s.num_drafts());
      out->set_token(7);
      for (int k = 0; k < s.mtp_drafts(); ++k) out->add_drafts(7);
    }
    return r;
  }
};

// A last stage that accepts every draft and always proposes as many MTP drafts as asked: the
// adaptive length climbs to mtp:4 and stays there up to the end of the context. No plan may ask
// for chained draft rows past the context (or for drafts max_tokens leaves no room to verify):
// the last stage failed such a step, and a failed last stage took the cluster down.
TEST(EngineSpeculativeTest, ChainedMtpDraftsStayWithinTheContext) {
  AcceptingRunner runner;
  runner.max_context = 64;
  EngineOptions o = ScriptedEngineOptions(64, 16);  // 256 positions: more than the context
  o.has_mtp = true;
  auto engine = Engine::Create(&runner, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::thread loop([&] { (void)(*engine)->RunLoop(); });
  for (int max_tokens : {0, 30}) {  // to the end of the context; and a max_tokens limit
    GenerationRequest r = Greedy({1, 2, 3, 4, 5}, max_tokens);
    r.speculative = "mtp:4";
    auto stream = (*engine)->Submit(r);
    ASSERT_TRUE(stream.ok()) << stream.status();
    GenerationEvent e;
    int64_t tokens = 0;
    while ((*stream)->Next(&e, absl::Seconds(30))) {
      tokens += static_cast<int64_t>(e.tokens.size());
      if (e.finished) break;
    }
    EXPECT_TRUE(e.error.ok()) << e.error;
    EXPECT_EQ(e.finish_reason, "length");
    EXPECT_EQ(tokens, max_tokens > 0 ? max_tokens : 64 - 5);
  }
  (*engine)->Shutdown(false);
  loop.join();
  EXPECT_TRUE(runner.overruns.empty()) << runner.overruns.size() << " plans, first: " << runner.overruns.front();
}

// Drafts and the MTP head's chained draft rows are optional room: they take only blocks the
// sequences after them in the batch cannot need for their own next token. An older MTP sequence's
// lookahead used to take the last free block and preempt a newer plain sequence (recomputed
// later), though both fitted without drafts.
TEST(EngineSpeculativeTest, OptionalDraftRoomNeverPreempts) {
  AcceptingRunner runner;
  // 48 positions: each request's 2 blocks at its end, the plain one short-lived.
  EngineOptions o = ScriptedEngineOptions(256, 3);
  o.has_mtp = true;
  auto engine = Engine::Create(&runner, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  GenerationRequest mtp = Greedy(std::vector<int32_t>(10, 3), 20);
  mtp.speculative = "mtp:4";
  GenerationRequest plain = Greedy(std::vector<int32_t>(15, 4), 3);
  auto a = (*engine)->Submit(mtp);
  auto b = (*engine)->Submit(plain);
  ASSERT_TRUE(a.ok() && b.ok());
  std::thread loop([&] { (void)(*engine)->RunLoop(); });
  GenerationEvent e;
  while ((*a)->Next(&e, absl::Seconds(30)) && !e.finished) {
  }
  EXPECT_TRUE(e.error.ok()) << e.error;
  while ((*b)->Next(&e, absl::Seconds(30)) && !e.finished) {
  }
  EXPECT_TRUE(e.error.ok()) << e.error;
  (*engine)->Shutdown(false);
  loop.join();
  EXPECT_EQ((*engine)->GetLoad().preemptions, 0);
}

// --speculative-max-batch: in steps of more sequences than the limit no request without a seed
// of its own drafts or has MTP draft rows chained, a client-seeded one still does, and drafting
// comes back once the batch is small again.
TEST(EngineSpeculativeTest, SpeculativeMaxBatchStopsDraftingInLargerBatches) {
  struct RecordingRunner : AcceptingRunner {
    std::map<uint64_t, int32_t> first_token;  // seq_id -> its prompt's first token
    int64_t large_steps = 0, small_drafting_steps = 0, seeded_drafts_in_large = 0;
    std::vector<std::string> violations;
    absl::StatusOr<shard::StepResult> Step(const shard::StepPlan& plan) override {
      for (const auto& q : plan.sequences())
        if (q.start_position() == 0 && q.tokens_size() > 0) first_token[q.seq_id()] = q.tokens(0);
      const bool large = plan.sequences_size() > 2;
      large_steps += large;
      bool drafted = false;
      for (const auto& q : plan.sequences()) {
        const bool drafts = q.num_drafts() > 0 || q.mtp_drafts() > 0;
        drafted |= drafts;
        const bool seeded = first_token[q.seq_id()] == 9;
        if (large && drafts && !seeded)
          violations.push_back(absl::StrCat("step ", plan.step_id(), ": sequence ", q.seq_id(), " drafts among ",
                                            plan.sequences_size()));
        seeded_drafts_in_large += large && seeded && q.num_drafts() > 0;
      }
      small_drafting_steps += !large && drafted;
      return AcceptingRunner::Step(plan);
    }
  } runner;
  EngineOptions o = ScriptedEngineOptions(512, 64);
  o.has_mtp = true;
  o.speculative_max_batch = 2;
  auto engine = Engine::Create(&runner, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 3; ++i) requests.push_back(Greedy({static_cast<int32_t>(20 + i), 2, 3}, i == 0 ? 120 : 40));
  GenerationRequest seeded = Greedy({9, 2, 3}, 40);
  seeded.sampling.temperature = 1.0f;
  seeded.sampling.seed = 5;
  requests.push_back(seeded);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (GenerationRequest& r : requests) {
    r.speculative = "mtp:2";
    auto stream = (*engine)->Submit(r);
    ASSERT_TRUE(stream.ok()) << stream.status();
    streams.push_back(*stream);
  }
  std::thread loop([&] { (void)(*engine)->RunLoop(); });
  for (auto& stream : streams) {
    GenerationEvent e;
    while (stream->Next(&e, absl::Seconds(30)) && !e.finished) {
    }
    EXPECT_TRUE(e.error.ok()) << e.error;
  }
  (*engine)->Shutdown(false);
  loop.join();
  EXPECT_TRUE(runner.violations.empty()) << runner.violations.size() << ", first: " << runner.violations.front();
  EXPECT_GT(runner.large_steps, 0);
  EXPECT_GT(runner.seeded_drafts_in_large, 0);  // a client-seeded request drafts in any batch
  EXPECT_GT(runner.small_drafting_steps, 0);    // the long request alone drafts again
  o.speculative_max_batch = -1;
  EXPECT_EQ(Engine::Create(&runner, o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(EngineSpeculativeTest, RejectsMtpForAModelWithoutIt) {
  EngineHarness h("glm5-random-fp8", 1, 1, 64, 16);
  GenerationRequest r = Greedy({5, 17, 300, 999, 42, 7, 8, 5, 17, 300}, 4);  // vocabulary of 1024
  r.speculative = "mtp:2";
  EXPECT_EQ(h.Run(r).error.code(), absl::StatusCode::kInvalidArgument);
  r.speculative = "ngram:2";
  auto out = h.Run(r);
  EXPECT_TRUE(out.error.ok()) << out.error;
}

// A constrained request never drafts, but its `speculative` is still checked: malformed or
// impossible values were accepted (200) as soon as the output was constrained (bad_words,
// allowed_token_ids, a response_format), while the same value alone is refused.
TEST(EngineSpeculativeTest, ConstrainedRequestsStillValidateSpeculative) {
  EngineHarness h("glm5-random-fp8", 1, 1, 64, 16);  // no MTP layer
  auto constrained = [](std::string speculative, std::vector<int32_t> prediction = {}) {
    GenerationRequest r = Greedy({5, 17, 300, 999, 42}, 3);
    r.constraint = std::make_shared<TokenSetConstraint>(std::vector<int32_t>{5, 17, 300});
    r.speculative = std::move(speculative);
    r.prediction = std::move(prediction);
    return r;
  };
  for (const char* bad : {"bogus", "mtp:99", "ngram:0", "mtp:2"}) {
    const EngineHarness::Output out = h.Run(constrained(bad));
    EXPECT_EQ(out.error.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(std::string(out.error.message()).find("speculative"), std::string::npos) << bad << ": " << out.error;
  }
  const EngineHarness::Output mtp_prediction = h.Run(constrained("mtp:2", {5, 17}));
  EXPECT_EQ(mtp_prediction.error.code(), absl::StatusCode::kInvalidArgument);
  for (const char* fine : {"", "none", "ngram:3"}) {
    const EngineHarness::Output out = h.Run(constrained(fine));
    EXPECT_TRUE(out.error.ok()) << fine << ": " << out.error;
  }
  EXPECT_EQ(h.SettledBlocksUsed(), 0);
}

// min_tokens: with EOS made the model's favourite (logit_bias +100), a greedy request ends at
// once; with min_tokens 5 it gives exactly the 5 tokens the model picks with EOS out of reach, then
// EOS — plain and speculative (whose drafts never straddle the 5th token), on 1 and 2 stages. A
// stop_token_ids entry is held back the same way.
TEST(EngineSpeculativeTest, MinTokensHoldsTheStopTokensBack) {
  SingleProcess sp;
  ASSERT_NE(sp.model, nullptr);
  const int32_t eos = sp.model->config().eos_token_ids.at(0);
  const auto prompt = Prompt(31, 20);
  runtime::GenerateOptions g;
  g.max_new_tokens = 5;
  g.ignore_eos = true;
  g.sampling.logit_bias = {{eos, -100.0f}};
  const auto want = runtime::Generate(*sp.model, prompt, g)->tokens;
  ASSERT_EQ(want.size(), 5u);
  for (int layout : {1, 2}) {
    EngineHarness h("glm5-tiny-code", layout, layout, 256, 16);
    GenerationRequest eager = Greedy(prompt, 24);
    eager.sampling.ignore_eos = false;
    eager.sampling.logit_bias = {{eos, 100.0f}};
    auto out = h.Run(eager);
    ASSERT_TRUE(out.error.ok()) << out.error;
    EXPECT_EQ(out.tokens, std::vector<int32_t>{eos});  // the comparison below could fail
    for (const std::string spec : {"none", "mtp:3", "ngram:2"}) {
      for (bool as_stop_id : {false, true}) {
        GenerationRequest r = Greedy(prompt, 24);
        r.sampling.logit_bias = {{eos, 100.0f}};
        r.sampling.ignore_eos = as_stop_id;  // then EOS ends the output as a stop_token_ids entry
        if (as_stop_id) r.sampling.stop_token_ids = {eos};
        r.sampling.min_tokens = 5;
        r.speculative = spec;
        out = h.Run(r);
        ASSERT_TRUE(out.error.ok()) << out.error;
        std::vector<int32_t> expected = want;
        expected.push_back(eos);
        EXPECT_EQ(out.tokens, expected) << spec << " layout " << layout << (as_stop_id ? " stop id" : "");
        EXPECT_EQ(out.finish_reason, "stop");
      }
    }
    GenerationRequest bad = Greedy(prompt, 4);
    bad.sampling.min_tokens = 5;
    EXPECT_EQ(h.Run(bad).error.code(), absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace glm::scheduler
