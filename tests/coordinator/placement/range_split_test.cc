#include "coordinator/placement/range_split.h"

#include "gtest/gtest.h"

namespace glm::placement {
namespace {

TEST(RangeSplitTest, BalancedGivesTheExtraToEarlierParts) {
  EXPECT_EQ(BalancedSlice(5, 3, 0), (Range{0, 2}));
  EXPECT_EQ(BalancedSlice(5, 3, 1), (Range{2, 4}));
  EXPECT_EQ(BalancedSlice(5, 3, 2), (Range{4, 5}));
  EXPECT_EQ(BalancedSlice(64, 1, 0), (Range{0, 64}));
  EXPECT_EQ(BalancedSlice(2, 3, 2), (Range{2, 2}));
}

TEST(RangeSplitTest, AlignedKeepsFp8BlocksWhole) {
  // 520 = 4 full blocks + 8: boundaries on the block edges nearest 260 (and 173, 347).
  EXPECT_EQ(AlignedSlice(520, 2, 0, 128), (Range{0, 256}));
  EXPECT_EQ(AlignedSlice(520, 2, 1, 128), (Range{256, 520}));
  EXPECT_EQ(AlignedSlice(520, 3, 0, 128), (Range{0, 128}));
  EXPECT_EQ(AlignedSlice(520, 3, 1, 128), (Range{128, 384}));
  EXPECT_EQ(AlignedSlice(520, 3, 2, 128), (Range{384, 520}));
  EXPECT_EQ(AlignedSlice(12288, 4, 3, 128), (Range{9216, 12288}));
  EXPECT_EQ(AlignedSlice(144, 2, 1, 128), (Range{128, 144}));
  // Two blocks among three parts would leave one empty: plain balanced split.
  EXPECT_EQ(AlignedSlice(144, 3, 0, 128), (Range{0, 48}));
  EXPECT_EQ(AlignedSlice(144, 3, 2, 128), (Range{96, 144}));
  EXPECT_EQ(AlignedSlice(100, 2, 1, 1), (Range{50, 100}));
}

TEST(RangeSplitTest, ExpertsFollowTheEngineFormula) {
  EXPECT_EQ(ExpertSlice(8, 3, 0), (Range{0, 2}));
  EXPECT_EQ(ExpertSlice(8, 3, 1), (Range{2, 5}));
  EXPECT_EQ(ExpertSlice(8, 3, 2), (Range{5, 8}));
  EXPECT_EQ(ExpertSlice(256, 4, 3), (Range{192, 256}));
}

TEST(RangeSplitTest, FormatsIdRanges) {
  EXPECT_EQ(FormatIdRanges({}), "-");
  EXPECT_EQ(FormatIdRanges({3, 0, 1, 2, 7, 9, 10}), "0-3,7,9-10");
}

}  // namespace
}  // namespace glm::placement
