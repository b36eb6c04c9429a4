// BlockPathChooser: times each path over blocks of consecutive steps (alternating blocks, never
// steps), keeps the faster one for a stretch, then times both again, the path not in use first.
#include "shard_worker/model/block_path_chooser.h"

#include <vector>

#include "gtest/gtest.h"

namespace glm::model {
namespace {

using Path = BlockPathChooser::Path;

// Runs `steps` steps where a step of kPreferred costs `preferred` and of kOther `other`;
// returns the paths in order.
std::vector<Path> RunSteps(BlockPathChooser& c, int64_t steps, double preferred, double other) {
  std::vector<Path> paths;
  for (int64_t i = 0; i < steps; ++i) {
    const Path p = c.Next();
    paths.push_back(p);
    c.Done(p, p == Path::kPreferred ? preferred : other);
  }
  return paths;
}

int64_t Switches(const std::vector<Path>& paths) {
  int64_t n = 0;
  for (size_t i = 1; i < paths.size(); ++i) n += paths[i] != paths[i - 1];
  return n;
}

// A timing round: kBlocksPerRound blocks of kBlock steps, alternating, starting with `first`.
void ExpectRound(const std::vector<Path>& paths, Path first) {
  ASSERT_EQ(static_cast<int64_t>(paths.size()), BlockPathChooser::kBlocksPerRound * BlockPathChooser::kBlock);
  const Path second = first == Path::kPreferred ? Path::kOther : Path::kPreferred;
  for (size_t i = 0; i < paths.size(); ++i)
    EXPECT_EQ(paths[i], (i / BlockPathChooser::kBlock) % 2 == 0 ? first : second) << i;
}

TEST(BlockPathChooserTest, TimesAlternatingBlocksThenKeepsTheFasterPath) {
  BlockPathChooser c;
  const int64_t round = BlockPathChooser::kBlocksPerRound * BlockPathChooser::kBlock;
  ExpectRound(RunSteps(c, round, 2.0, 1.0), Path::kPreferred);
  EXPECT_EQ(c.rounds(), 1);
  EXPECT_EQ(c.rounds_choosing_other(), 1);
  // The first choice is kept for kFirstKeep steps without a switch...
  std::vector<Path> paths = RunSteps(c, BlockPathChooser::kFirstKeep, 2.0, 1.0);
  EXPECT_EQ(Switches(paths), 0);
  EXPECT_EQ(paths.front(), Path::kOther);
  // ... then both are timed again, the path not in use first; the machine changed: the
  // preferred one wins now, and is kept for kKeep steps.
  ExpectRound(RunSteps(c, round, 1.0, 2.0), Path::kPreferred);
  EXPECT_EQ(c.rounds(), 2);
  EXPECT_EQ(c.rounds_choosing_other(), 1);
  paths = RunSteps(c, BlockPathChooser::kKeep, 1.0, 2.0);
  EXPECT_EQ(Switches(paths), 0);
  EXPECT_EQ(paths.front(), Path::kPreferred);
  ExpectRound(RunSteps(c, round, 1.0, 2.0), Path::kOther);
  EXPECT_EQ(c.rounds(), 3);
  EXPECT_EQ(c.Next(), Path::kPreferred);
}

TEST(BlockPathChooserTest, ATieOrASmallGainKeepsThePreferredPath) {
  BlockPathChooser c;
  RunSteps(c, BlockPathChooser::kBlocksPerRound * BlockPathChooser::kBlock, 1.0, 0.99);  // 1% faster: below kSwitchGain's margin
  EXPECT_EQ(c.rounds(), 1);
  EXPECT_EQ(c.rounds_choosing_other(), 0);
  EXPECT_EQ(c.Next(), Path::kPreferred);
}

// The first steps after a switch are not timed: a slow first step (the switch's own cost) does
// not decide; the median of a block ignores the odd outlier.
TEST(BlockPathChooserTest, SwitchCostsAndOutliersDoNotDecide) {
  BlockPathChooser c;
  for (int i = 0; i < BlockPathChooser::kBlocksPerRound * BlockPathChooser::kBlock; ++i) {
    const Path p = c.Next();
    const int in_block = i % BlockPathChooser::kBlock;
    double cost = p == Path::kPreferred ? 1.0 : 1.5;
    if (p == Path::kPreferred && in_block < BlockPathChooser::kUntimed) cost = 100.0;  // after a switch
    if (p == Path::kPreferred && in_block == BlockPathChooser::kBlock - 1) cost = 50.0;  // one outlier
    c.Done(p, cost);
  }
  EXPECT_EQ(c.rounds(), 1);
  EXPECT_EQ(c.rounds_choosing_other(), 0);
}

// The machine changes under a kept path: a block of its steps at kDrift times its timed cost
// starts a timing round at once (the path not in use first), which picks the other path; steps
// within that margin keep it until kFirstKeep.
TEST(BlockPathChooserTest, AKeptPathThatDriftsSlowerIsTimedAgainAtOnce) {
  const int64_t round = BlockPathChooser::kBlocksPerRound * BlockPathChooser::kBlock;
  {
    BlockPathChooser c;
    RunSteps(c, round, 2.0, 1.0);  // kOther chosen at 1.0
    std::vector<Path> kept = RunSteps(c, BlockPathChooser::kFirstKeep, 2.0, 1.2);  // within the margin
    EXPECT_EQ(Switches(kept), 0);
    EXPECT_EQ(c.drift_retimes(), 0);
    ExpectRound(RunSteps(c, round, 2.0, 1.0), Path::kPreferred);  // the regular re-timing
  }
  BlockPathChooser c;
  RunSteps(c, round, 2.0, 1.0);
  // kOther now costs 3.0: its first untimed steps and one block reveal it.
  std::vector<Path> kept = RunSteps(c, BlockPathChooser::kUntimed + BlockPathChooser::kBlock, 2.0, 3.0);
  EXPECT_EQ(Switches(kept), 0);
  EXPECT_EQ(kept.front(), Path::kOther);
  ExpectRound(RunSteps(c, round, 2.0, 3.0), Path::kPreferred);
  EXPECT_EQ(c.drift_retimes(), 1);
  EXPECT_EQ(c.rounds(), 2);
  EXPECT_EQ(c.Next(), Path::kPreferred);  // the faster path now
  // A step of the path not kept does not count toward drift.
  for (int i = 0; i < 3 * BlockPathChooser::kBlock; ++i) c.Done(Path::kOther, 100.0);
  EXPECT_EQ(c.drift_retimes(), 1);
}

// A step reported for the path not being timed (another thread's, an old decision) is ignored.
TEST(BlockPathChooserTest, StepsOfTheOtherPathDoNotCountWhileTiming) {
  BlockPathChooser c;
  for (int i = 0; i < 3 * BlockPathChooser::kBlock; ++i) c.Done(Path::kOther, 1.0);
  EXPECT_EQ(c.Next(), Path::kPreferred);
  EXPECT_EQ(c.rounds(), 0);
}

}  // namespace
}  // namespace glm::model
