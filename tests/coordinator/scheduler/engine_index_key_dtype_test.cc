// The engine over workers that keep the DSA indexer's keys rounded (--index-key-dtype bf16 | int8 |
// fp8), on the random sparse fixture (index_topk 16: every prompt here selects). The keys are
// rounded once, when written, and every later selection (decode, a chunk's later tokens, a
// prefix-cache hit, another rank) scores the same stored keys, so the exactness promises hold:
// cluster == single process with the same dtypes, cache hit == cold run, speculation == plain.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "tests/coordinator/scheduler/engine_harness.h"

namespace glm::scheduler {
namespace {

constexpr char kSparse[] = "glm5-random-sparse";

struct IndexDtype {
  const char* flag;
  kv_cache::KvDType dtype;
};
constexpr IndexDtype kIndexDtypes[] = {
    {"bf16", kv_cache::KvDType::kBf16}, {"int8", kv_cache::KvDType::kInt8}, {"fp8", kv_cache::KvDType::kFp8E4m3}};

// Token ids of the sparse fixture's vocabulary (1024), `len` of them.
std::vector<int32_t> SparsePrompt(int seed, int len) { return Prompt(seed, len, 1024); }

// One worker; two ranks in one stage (heads and experts split, each rank selecting from its own
// copy of the keys); two stages. With f32 latents, and with int8 latents and fp8 indexer keys.
TEST(EngineIndexKeyDtypeTest, RoundedIndexKeysGiveTheSingleProcessTokens) {
  const std::vector<int32_t> prompt = testing::FixturePrompt(kSparse);
  ASSERT_GT(prompt.size(), 16u);
  for (auto [workers, stages] : {std::pair{1, 1}, std::pair{2, 1}, std::pair{2, 2}}) {
    for (const IndexDtype& d : kIndexDtypes) {
      SCOPED_TRACE(::testing::Message() << workers << " workers, " << stages << " stages, " << d.flag << " indexer keys");
      EngineHarness h(kSparse, workers, stages, 256, 16, {}, 1, nullptr, "f32", d.flag);
      auto out = h.Run(Greedy(prompt, 20));
      ASSERT_TRUE(out.error.ok()) << out.error;
      EXPECT_EQ(out.tokens, SingleProcessGreedy(prompt, 20, kSparse, kv_cache::KvDType::kF32, d.dtype));
    }
  }
  EngineHarness both(kSparse, 2, 1, 256, 16, {}, 1, nullptr, "int8", "fp8");
  auto out = both.Run(Greedy(prompt, 20));
  ASSERT_TRUE(out.error.ok()) << out.error;
  EXPECT_EQ(out.tokens,
            SingleProcessGreedy(prompt, 20, kSparse, kv_cache::KvDType::kInt8, kv_cache::KvDType::kFp8E4m3));
}

// The workers really select from rounded keys: the prompt logprobs a cluster returns are the
// single process's with that indexer key dtype, and measurably not the f32 keys' (the selection of
// some position changed), while staying close to them (no garbage from a misread row).
TEST(EngineIndexKeyDtypeTest, TheDtypeReachesTheWorkersAndStaysClose) {
  const std::vector<int32_t> prompt = SparsePrompt(31, 120);
  const int64_t n = static_cast<int64_t>(prompt.size());
  const std::vector<double> f32 =
      SingleProcessPromptLogprobs(prompt, kSparse, kv_cache::KvDType::kF32, kv_cache::KvDType::kF32);
  for (const IndexDtype& d : kIndexDtypes) {
    const std::vector<double> rounded =
        SingleProcessPromptLogprobs(prompt, kSparse, kv_cache::KvDType::kF32, d.dtype);
    EngineHarness h(kSparse, 1, 1, 256, 16, {}, 1, nullptr, "f32", d.flag);
    GenerationRequest r = Greedy(prompt, 1);
    r.sampling.prompt_logprobs = 0;
    auto out = h.Run(r);
    ASSERT_TRUE(out.error.ok()) << out.error;
    ASSERT_EQ(static_cast<int64_t>(out.prompt_logprobs.size()), n - 1);
    double off_rounded = 0, off_f32 = 0, mean_f32 = 0;
    for (int64_t p = 0; p + 1 < n; ++p) {
      off_rounded = std::max(off_rounded, std::abs(out.prompt_logprobs[p].logprob - rounded[p]));
      off_f32 = std::max(off_f32, std::abs(out.prompt_logprobs[p].logprob - f32[p]));
      mean_f32 += std::abs(out.prompt_logprobs[p].logprob - f32[p]) / static_cast<double>(n - 1);
    }
    std::printf("prompt logprobs with %s indexer keys: max |diff| %.3g from that single process, %.3g from f32 keys "
                "(mean %.3g)\n",
                d.flag, off_rounded, off_f32, mean_f32);
    EXPECT_LE(off_rounded, 1e-5) << d.flag;
    EXPECT_GE(off_f32, 1e-4) << d.flag;
    EXPECT_LE(mean_f32, 0.5) << d.flag;
  }
}

// Speculation (the MTP layer keeps indexer keys too): verify steps write keys of drafts that are
// rejected and rolled back; the greedy tokens are plain decoding's, with concurrent requests.
TEST(EngineIndexKeyDtypeTest, SpeculativeGreedyIsPlainGreedy) {
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 3; ++i) prompts.push_back(SparsePrompt(710 + i, 20 + 11 * i));
  for (const IndexDtype& d : kIndexDtypes) {
    EngineHarness h(kSparse, 1, 1, 512, 16, {}, 1, nullptr, "f32", d.flag);
    for (const std::string spec : {"mtp:2", "ngram:3"}) {
      std::vector<GenerationRequest> requests;
      for (const auto& prompt : prompts) {
        requests.push_back(Greedy(prompt, 24));
        requests.back().speculative = spec;
      }
      const auto outs = h.RunAll(std::move(requests));
      for (size_t i = 0; i < prompts.size(); ++i) {
        ASSERT_TRUE(outs[i].error.ok()) << outs[i].error;
        EXPECT_EQ(outs[i].tokens, SingleProcessGreedy(prompts[i], 24, kSparse, kv_cache::KvDType::kF32, d.dtype))
            << d.flag << " " << spec << " prompt " << i;
      }
    }
  }
}

// Multi-turn conversations through the prefix cache under eviction pressure: every turn, greedy
// and seeded, gives the cold run's tokens although its selections score keys written by earlier
// requests.
TEST(EngineIndexKeyDtypeTest, PrefixCacheHitsAreExact) {
  for (const IndexDtype& d : kIndexDtypes) ExpectMultiTurnPrefixHitsExact("f32", kSparse, d.flag, 1024);
}

}  // namespace
}  // namespace glm::scheduler
