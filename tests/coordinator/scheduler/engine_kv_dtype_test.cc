// The engine over a cluster whose workers keep the KV cache in BF16, FP8 or int8 (--kv-cache-dtype
// bf16 | fp8 | int8): the rows are rounded once, when written, and every later read (decode, a
// chunk's later tokens, a prefix-cache hit, another pipeline stage) sees the same rounded rows —
// so the exactness promises of the f32 cache hold unchanged: cluster == single process with the
// same cache dtype, cache hit == cold run, whatever the eviction pressure.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>

#include "tests/coordinator/scheduler/engine_harness.h"

namespace glm::scheduler {
namespace {

// The rounded cache dtypes, by flag value and as the single process sets them.
struct RoundedDtype {
  const char* flag;
  kv_cache::KvDType dtype;
};
constexpr RoundedDtype kRoundedDtypes[] = {
    {"bf16", kv_cache::KvDType::kBf16}, {"fp8", kv_cache::KvDType::kFp8E4m3}, {"int8", kv_cache::KvDType::kInt8}};

// One worker, two pipeline stages, two ranks in one stage (each holding its heads' share of
// attention over its own copy of the rows), and a model with sparse attention (a prompt longer
// than index_topk: attention reads the rounded rows of the keys its f32 indexer keys select).
TEST(EngineKvDtypeTest, RoundedCachesGiveTheSingleProcessTokens) {
  struct Layout {
    const char* model;
    int workers, stages;
    std::vector<int32_t> prompt;
  };
  for (const Layout& l : {Layout{"glm5-tiny-code", 1, 1, Prompt(3, 90)}, Layout{"glm5-tiny-code", 2, 2, Prompt(4, 70)},
                          Layout{"glm5-tiny-code", 2, 1, Prompt(5, 80)},  // tensor-parallel heads, expert-parallel
                          Layout{"glm5-random-sparse", 1, 1, testing::FixturePrompt("glm5-random-sparse")}}) {
    SCOPED_TRACE(::testing::Message() << l.model << " " << l.workers << " workers, " << l.stages << " stages");
    ASSERT_FALSE(l.prompt.empty());
    for (const RoundedDtype& d : kRoundedDtypes) {
      EngineHarness h(l.model, l.workers, l.stages, 256, 16, {}, 1, nullptr, d.flag);
      auto out = h.Run(Greedy(l.prompt, 20));
      ASSERT_TRUE(out.error.ok()) << out.error;
      EXPECT_EQ(out.tokens, SingleProcessGreedy(l.prompt, 20, l.model, d.dtype)) << d.flag;
    }
    EngineHarness f32(l.model, l.workers, l.stages, 256, 16);
    // The f32 cluster is the f32 single process (the flag reaches the workers, not a default).
    auto exact = f32.Run(Greedy(l.prompt, 20));
    ASSERT_TRUE(exact.error.ok()) << exact.error;
    EXPECT_EQ(exact.tokens, SingleProcessGreedy(l.prompt, 20, l.model, kv_cache::KvDType::kF32));
  }
}

// The workers really store rounded rows: the prompt logprobs a BF16 (FP8, int8) cluster returns
// are the single process's with that dtype, and measurably not the f32 one's.
TEST(EngineKvDtypeTest, TheDtypeReachesTheWorkers) {
  const auto prompt = Prompt(21, 60);
  const int64_t n = static_cast<int64_t>(prompt.size());
  const std::vector<double> f32 =
      SingleProcessPromptLogprobs(prompt, "glm5-tiny-code", kv_cache::KvDType::kF32, kv_cache::KvDType::kF32);
  for (const RoundedDtype& d : kRoundedDtypes) {
    const std::vector<double> rounded =
        SingleProcessPromptLogprobs(prompt, "glm5-tiny-code", d.dtype, kv_cache::KvDType::kF32);
    EngineHarness h("glm5-tiny-code", 1, 1, 256, 16, {}, 1, nullptr, d.flag);
    GenerationRequest r = Greedy(prompt, 1);
    r.sampling.prompt_logprobs = 0;
    auto out = h.Run(r);
    ASSERT_TRUE(out.error.ok()) << out.error;
    ASSERT_EQ(static_cast<int64_t>(out.prompt_logprobs.size()), n - 1);
    double off_rounded = 0, off_f32 = 0;
    for (int64_t p = 0; p + 1 < n; ++p) {
      off_rounded = std::max(off_rounded, std::abs(out.prompt_logprobs[p].logprob - rounded[p]));
      off_f32 = std::max(off_f32, std::abs(out.prompt_logprobs[p].logprob - f32[p]));
    }
    std::printf("prompt logprobs of the %s cluster: max |diff| %.3g from the %s single process, %.3g from f32\n",
                d.flag, off_rounded, d.flag, off_f32);
    EXPECT_LE(off_rounded, 1e-5) << d.flag;
    EXPECT_GE(off_f32, 1e-4) << d.flag;
  }
}

// Speculation over a rounded cache (the MTP layer's cache is rounded too): verify steps write
// rows of drafts that are then rejected and rolled back, and the greedy tokens are still plain
// decoding's, with concurrent requests accepting different lengths.
TEST(EngineKvDtypeTest, RoundedCacheSpeculativeGreedyIsPlainGreedy) {
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 3; ++i) prompts.push_back(Prompt(810 + i, 15 + 13 * i));
  for (const RoundedDtype& d : kRoundedDtypes) {
    EngineHarness h("glm5-tiny-code", 1, 1, 512, 16, {}, 1, nullptr, d.flag);
    for (const std::string spec : {"mtp:2", "ngram:3"}) {
      std::vector<GenerationRequest> requests;
      for (const auto& prompt : prompts) {
        requests.push_back(Greedy(prompt, 24));
        requests.back().speculative = spec;
      }
      const auto outs = h.RunAll(std::move(requests));  // all submitted before any is read: one batch
      for (size_t i = 0; i < prompts.size(); ++i) {
        ASSERT_TRUE(outs[i].error.ok()) << outs[i].error;
        EXPECT_EQ(outs[i].tokens, SingleProcessGreedy(prompts[i], 24, "glm5-tiny-code", d.dtype))
            << d.flag << " " << spec << " prompt " << i;
      }
    }
    EXPECT_GT(h.engine()->GetLoad().spec_draft_tokens, 0);
    EXPECT_GT(h.engine()->GetLoad().spec_accepted_tokens, 0);
  }
}

// One forward reads every sequence's rows, and selects from every sequence's indexer keys, with one
// element type: a batch mixing caches that differ in either is refused with both named, before
// anything is computed or written.
TEST(EngineKvDtypeTest, ABatchMixingCacheDtypesIsRefused) {
  struct Case {
    const char* model;
    std::function<void(model::Glm5Model*)> change;  // what sequence 1's cache differs in
    const char* message;
  };
  const Case cases[] = {
      {"glm5-tiny-code", [](model::Glm5Model* m) { m->set_kv_cache_dtype(kv_cache::KvDType::kBf16); },
       "sequence 1's KV cache holds bf16 rows, sequence 0's f32"},
      {"glm5-random-sparse", [](model::Glm5Model* m) { m->set_index_key_dtype(kv_cache::KvDType::kInt8); },
       "sequence 1's KV cache holds int8 indexer keys, sequence 0's f32"}};
  for (const Case& c : cases) {
    SingleProcess sp(c.model);
    auto first = sp.model->NewCache();
    c.change(sp.model.get());
    auto second = sp.model->NewCache();
    std::vector<model::SequenceInput> in(2);
    in[0].cache = first.get();
    in[0].tokens = Prompt(1, 5, 1024);
    in[1].cache = second.get();
    in[1].tokens = Prompt(2, 5, 1024);
    auto out = sp.model->Forward(in, model::LogitRows::kLast);
    ASSERT_FALSE(out.ok()) << c.model;
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(out.status().message().find(c.message), std::string::npos) << out.status();
    EXPECT_EQ(first->length(), 0);
    EXPECT_EQ(second->length(), 0);
  }
}

// The multi-turn prefix-cache test of engine_test.cc with a BF16 (FP8) cache: every turn, greedy and
// seeded, gives exactly the tokens of a cold run although most of its prompt comes from blocks
// written by earlier requests (and evicted ones are recomputed).
TEST(EngineKvDtypeTest, Bf16PrefixCacheHitsAreExact) { ExpectMultiTurnPrefixHitsExact("bf16"); }
TEST(EngineKvDtypeTest, Fp8PrefixCacheHitsAreExact) { ExpectMultiTurnPrefixHitsExact("fp8"); }
TEST(EngineKvDtypeTest, Int8PrefixCacheHitsAreExact) { ExpectMultiTurnPrefixHitsExact("int8"); }

}  // namespace
}  // namespace glm::scheduler
