#include "shard_worker/model/step_path_chooser.h"

#include "gtest/gtest.h"

namespace glm::model {
namespace {

// Runs `steps` choices of one shape where the pooled path takes `pooled` seconds and token groups
// `grouped`; returns how many chose token groups.
int RunShape(StepPathChooser& c, int64_t tokens, bool several, double pooled, double grouped, int steps) {
  int chose_groups = 0;
  for (int i = 0; i < steps; ++i) {
    const StepPath p = c.Choose(tokens, several);
    chose_groups += p == StepPath::kTokenGroups;
    c.Record(tokens, several, p, p == StepPath::kPooled ? pooled : grouped);
  }
  return chose_groups;
}

TEST(StepPathChooserTest, TriesBothThenKeepsTheFasterAndRetriesTheOther) {
  StepPathChooser c;
  // Trials alternate, pooled first; each path's first step is a warm-up, not timed (a slow one
  // here must not count against token groups).
  EXPECT_EQ(c.Choose(8, true), StepPath::kPooled);
  c.Record(8, true, StepPath::kPooled, 2e-3);
  EXPECT_EQ(c.Choose(8, true), StepPath::kPooled);  // the warm-up did not count as a trial
  c.Record(8, true, StepPath::kPooled, 2e-3);
  EXPECT_EQ(c.Choose(8, true), StepPath::kTokenGroups);
  c.Record(8, true, StepPath::kTokenGroups, 50e-3);  // warm-up
  // Trials continue, then groups win all but the periodic retries.
  const int steps = 640;
  const int groups = RunShape(c, 8, true, 2e-3, 1e-3, steps);
  const int retries = steps / StepPathChooser::kRetryEvery;
  EXPECT_GE(groups, steps - retries - 2 * StepPathChooser::kTrials);
  EXPECT_LT(groups, steps);  // the pooled path is still retried now and then
}

TEST(StepPathChooserTest, FollowsAMachineThatChanges) {
  StepPathChooser c;
  // Trials (and one warm-up step) of token groups, then only the retries.
  EXPECT_EQ(RunShape(c, 2, false, 1e-3, 2e-3, 200), StepPathChooser::kTrials + 1 + 200 / StepPathChooser::kRetryEvery);
  // Now token groups are much faster (e.g. the pool's threads moved to distant cores): a few
  // retries later the chooser has switched.
  RunShape(c, 2, false, 3e-3, 1e-3, 4 * StepPathChooser::kRetryEvery);
  EXPECT_GE(RunShape(c, 2, false, 3e-3, 1e-3, 100), 95);
}

TEST(StepPathChooserTest, ShapesAreIndependent) {
  StepPathChooser c;
  RunShape(c, 1, false, 1e-3, 5e-3, 100);  // one token: pooled wins
  RunShape(c, 8, true, 5e-3, 1e-3, 100);   // eight sequences: groups win
  EXPECT_EQ(RunShape(c, 1, false, 1e-3, 5e-3, 10), 0);
  EXPECT_EQ(RunShape(c, 8, true, 5e-3, 1e-3, 10), 10);
  // Out-of-range token counts share the nearest shape instead of failing.
  EXPECT_EQ(RunShape(c, 100, true, 5e-3, 1e-3, 0), 0);
  (void)c.Choose(0, false);
}

}  // namespace
}  // namespace glm::model
