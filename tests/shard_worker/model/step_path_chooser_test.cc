#include "shard_worker/model/step_path_chooser.h"

#include "gtest/gtest.h"

namespace glm::model {
namespace {

// Steps of the losing path after the trials: the early re-tries that fill its window, then one
// in kRetryEvery of `steps`.
constexpr int Retries(int steps) {
  return StepPathChooser::kWindow - StepPathChooser::kTrials + steps / StepPathChooser::kRetryEvery;
}

// Runs `steps` choices of one shape where the pooled path takes `pooled` seconds and token groups
// `grouped` (every `spike_every`-th step of either takes 10x: an interrupt); returns how many
// chose token groups.
int RunShape(StepPathChooser& c, int64_t tokens, bool several, double pooled, double grouped, int steps,
             int spike_every = 0) {
  int chose_groups = 0;
  for (int i = 0; i < steps; ++i) {
    const StepPath p = c.Choose(tokens, several);
    chose_groups += p == StepPath::kTokenGroups;
    const double spike = spike_every > 0 && i % spike_every == 0 ? 10.0 : 1.0;
    c.Record(tokens, several, p, (p == StepPath::kPooled ? pooled : grouped) * spike);
  }
  return chose_groups;
}

TEST(StepPathChooserTest, TriesBothThenKeepsTheFasterAndRetriesTheOther) {
  StepPathChooser c;
  // Trials alternate, pooled first; each path's first step is a warm-up, not timed (a slow one
  // here must not count against token groups).
  EXPECT_EQ(c.Choose(8, true), StepPath::kPooled);
  c.Record(8, true, StepPath::kPooled, 2e-3);  // warm-up
  EXPECT_EQ(c.Choose(8, true), StepPath::kTokenGroups);
  c.Record(8, true, StepPath::kTokenGroups, 50e-3);  // warm-up
  const int steps = 640;
  const int groups = RunShape(c, 8, true, 2e-3, 1e-3, steps);
  EXPECT_GE(groups, steps - Retries(steps) - 2 * StepPathChooser::kTrials);
  EXPECT_LT(groups, steps);  // the pooled path is still retried now and then
}

TEST(StepPathChooserTest, OddSlowStepsDoNotFlipTheChoice) {
  StepPathChooser c;
  // Token groups 20% faster, every 5th step of either path 10x slower.
  const int groups = RunShape(c, 4, false, 1.2e-3, 1e-3, 1000, 5);
  EXPECT_GE(groups, 1000 - Retries(1000) - 3 * StepPathChooser::kTrials);
}

TEST(StepPathChooserTest, SwitchesOnlyForAClearGain) {
  StepPathChooser c;
  // 5% apart: the first path chosen (pooled, the default) stays; only retries run the other.
  EXPECT_LE(RunShape(c, 2, false, 1.05e-3, 1e-3, 320), Retries(320) + 2 * StepPathChooser::kTrials);
}

TEST(StepPathChooserTest, TrialsThatCameOutSlowAreOvertakenSoon) {
  StepPathChooser c;
  // Token groups are 30% faster, but their three timed trials ran 3x slow (a cold cache right
  // after a prefill, a neighbour's burst): the chooser settles on the pooled path first, and the
  // early re-tries must bring it to token groups within a few dozen steps, not hundreds.
  int timed_groups = 0;
  for (int i = 0; i < 2 * (StepPathChooser::kTrials + 1); ++i) {
    const StepPath p = c.Choose(2, false);
    const bool slow_trial = p == StepPath::kTokenGroups && timed_groups++ <= StepPathChooser::kTrials;
    c.Record(2, false, p, p == StepPath::kPooled ? 1e-3 : slow_trial ? 2.1e-3 : 0.7e-3);
  }
  EXPECT_EQ(c.Choose(2, false), StepPath::kPooled);
  c.Record(2, false, StepPath::kPooled, 1e-3);
  // Four good re-tries outvote the three slow trials in the median: 4 x kEarlyRetryEvery steps.
  RunShape(c, 2, false, 1e-3, 0.7e-3, 48);
  EXPECT_GE(RunShape(c, 2, false, 1e-3, 0.7e-3, 100), 100 - Retries(100));
}

TEST(StepPathChooserTest, FollowsAMachineThatChanges) {
  StepPathChooser c;
  RunShape(c, 2, false, 1e-3, 2e-3, 200);
  EXPECT_LE(RunShape(c, 2, false, 1e-3, 2e-3, 100), 100 / StepPathChooser::kRetryEvery + 1);
  // Now token groups are much faster (e.g. the pool's threads moved to distant cores): once the
  // retries have filled its window the chooser has switched.
  RunShape(c, 2, false, 3e-3, 1e-3, (StepPathChooser::kWindow + 1) * StepPathChooser::kRetryEvery);
  EXPECT_GE(RunShape(c, 2, false, 3e-3, 1e-3, 100), 100 - 100 / StepPathChooser::kRetryEvery - 1);
}

// Plain decoding interleaved with other work (spec_bench: plain runs between speculative ones,
// whose 2-token verifies now and then give way to a 1-token step): a one-token step right after a
// step of another shape runs on evicted caches, 3x slow whichever path takes it, and only the
// current path takes such steps. Timed, they pushed the pooled path's median past token groups'
// (warm retries) and the shape flipped to the slower path; untimed, pooled keeps it.
TEST(StepPathChooserTest, ColdStepsAfterOtherShapesDoNotFlipTheChoice) {
  StepPathChooser c;
  constexpr double kPooled = 1e-3, kGrouped = 1.5e-3, kCold = 3.0;
  auto step = [&](int64_t tokens, bool cold) {
    const StepPath p = c.Choose(tokens, false);
    c.Record(tokens, false, p, (p == StepPath::kPooled ? kPooled : kGrouped) * (cold ? kCold : 1.0));
    return p;
  };
  RunShape(c, 1, false, kPooled, kGrouped, 64);  // trials, then pooled
  int grouped = 0, steps = 0;
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 30; ++i) {  // a speculative run: verifies, and a cold one-token step after each
      step(2, false);
      grouped += step(1, /*cold=*/true) == StepPath::kTokenGroups;
      ++steps;
    }
    for (int i = 0; i < 50; ++i, ++steps) grouped += step(1, false) == StepPath::kTokenGroups;  // a plain run
  }
  EXPECT_LE(grouped, Retries(steps) + 2) << "of " << steps;
}

// The same when the other work is not a timed step at all (a prefill chunk on the GEMM path):
// OtherWorkRan marks it, and the cold step after it is not timed.
TEST(StepPathChooserTest, ColdStepsAfterUntimedWorkDoNotFlipTheChoice) {
  StepPathChooser c;
  constexpr double kPooled = 1e-3, kGrouped = 1.5e-3, kCold = 3.0;
  RunShape(c, 1, false, kPooled, kGrouped, 64);
  int grouped = 0;
  for (int i = 0; i < 800; ++i) {  // every other step follows a prefill chunk
    c.OtherWorkRan();
    const StepPath p = c.Choose(1, false);
    grouped += p == StepPath::kTokenGroups;
    c.Record(1, false, p, (p == StepPath::kPooled ? kPooled : kGrouped) * kCold);
    grouped += RunShape(c, 1, false, kPooled, kGrouped, 1);
  }
  EXPECT_LE(grouped, Retries(1600) + 2);
}

TEST(StepPathChooserTest, BucketsCompareStepsPerToken) {
  StepPathChooser c;
  // Steps of 33 to 64 tokens share a bucket (prefill chunks mixed with decodes vary in size).
  // Here the pooled path ran the short ones and token groups the long ones: each token-group
  // step took longer, but per token they are 30% faster, and that is what decides.
  for (int i = 0; i <= StepPathChooser::kWindow; ++i) {  // the first of each is a warm-up
    c.Record(33, true, StepPath::kPooled, 33 * 1e-4);
    c.Record(64, true, StepPath::kTokenGroups, 64 * 0.7e-4);
  }
  EXPECT_EQ(c.Choose(48, true), StepPath::kTokenGroups);
  // The exact shapes below the buckets are their own: 16 tokens has not been tried yet.
  EXPECT_EQ(c.Choose(16, true), StepPath::kPooled);
}

TEST(StepPathChooserTest, ShapesAreIndependent) {
  StepPathChooser c;
  RunShape(c, 1, false, 1e-3, 5e-3, 100);  // one token: pooled wins
  RunShape(c, 8, true, 5e-3, 1e-3, 100);   // eight sequences: groups win
  EXPECT_LE(RunShape(c, 1, false, 1e-3, 5e-3, 10), 1);
  EXPECT_GE(RunShape(c, 8, true, 5e-3, 1e-3, 10), 9);
  // Out-of-range token counts share the nearest shape instead of failing.
  (void)c.Choose(100, true);
  (void)c.Choose(0, false);
}

}  // namespace
}  // namespace glm::model
