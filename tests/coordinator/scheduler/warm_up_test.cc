// The startup warm-up (scheduler::WarmUp) over a real in-process cluster: it runs the whole
// path, stays out of the request counters, and leaves the engine serving exactly as before.
#include <gtest/gtest.h>

#include <atomic>

#include "coordinator/scheduler/warm_up.h"
#include "tests/coordinator/scheduler/engine_harness.h"

namespace glm::scheduler {
namespace {

TEST(WarmUpTest, RunsThroughTheClusterOutsideTheRequestCounters) {
  EngineHarness h("glm5-tiny-code", 2, 1, 256, 16);
  WarmUpOptions o;
  o.prompt_tokens = 100;
  o.new_tokens = 5;
  auto w = WarmUp(h.engine(), 4096, o);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->prompt_tokens, 100);
  EXPECT_EQ(w->new_tokens, 5);
  EngineLoad load = h.engine()->GetLoad();
  EXPECT_GT(load.steps, 0);  // the workers did run it
  EXPECT_EQ(load.prompt_tokens_total, 0);
  EXPECT_EQ(load.generation_tokens_total, 0);
  EXPECT_EQ(load.prefix_cache_queries, 0);
  EXPECT_EQ(h.SettledBlocksUsed(), 0);
  // A client request afterwards: exact, and the only one counted.
  auto prompt = Prompt(3, 41);
  auto out = h.Run(Greedy(prompt, 9));
  ASSERT_TRUE(out.error.ok()) << out.error;
  EXPECT_EQ(out.tokens, SingleProcessGreedy(prompt, 9));
  load = h.engine()->GetLoad();
  EXPECT_EQ(load.prompt_tokens_total, 41);
  EXPECT_EQ(load.generation_tokens_total, 9);
  EXPECT_EQ(load.prefix_cache_queries, 41);
}

TEST(WarmUpTest, SpeculativeWarmUpStaysOutOfTheDraftCounters) {
  EngineOptions o;
  o.speculative = "mtp:2";
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16, o);
  auto w = WarmUp(h.engine(), 4096, WarmUpOptions{.prompt_tokens = 60, .new_tokens = 12});
  ASSERT_TRUE(w.ok()) << w.status();
  const EngineLoad load = h.engine()->GetLoad();
  EXPECT_EQ(load.spec_draft_tokens, 0);
  EXPECT_EQ(load.spec_num_drafts, 0);
  EXPECT_EQ(load.generation_tokens_total, 0);
}

TEST(WarmUpTest, RefusalsAndAStoppedEngine) {
  EngineHarness h("glm5-tiny-code", 1, 1, 64, 16);
  EXPECT_EQ(WarmUp(h.engine(), 0, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WarmUp(h.engine(), 4096, WarmUpOptions{.prompt_tokens = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Longer than the context: the engine's own validation.
  EXPECT_EQ(WarmUp(h.engine(), 4096, WarmUpOptions{.prompt_tokens = 100000}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A stopped engine: refused (or, were it accepted, given up once `cancel` is set), never a hang.
  h.engine()->Shutdown(false);
  std::atomic<bool> ended{true};
  auto w = WarmUp(h.engine(), 4096, WarmUpOptions{.prompt_tokens = 10, .cancel = &ended});
  EXPECT_FALSE(w.ok());
}

}  // namespace
}  // namespace glm::scheduler
