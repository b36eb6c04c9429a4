// The prompt-lookup indexes against the scans they stand in for (NgramDraft, PredictionDraft):
// the same drafts on random sequences over small alphabets (many repeats, many ties), grown a
// few tokens at a time as an engine grows them, and on predictions at every anchor.
#include "shard_worker/runtime/ngram_index.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "shard_worker/runtime/speculative_sampling.h"

namespace glm::runtime {
namespace {

TEST(NgramIndexTest, DraftsEqualTheScanAsTheSequenceGrows) {
  std::mt19937 rng(11);
  int64_t drafted = 0, steps = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const int alphabet = 2 + trial % 7;
    std::vector<int32_t> tokens;
    NgramIndex index;
    const int length = 1 + static_cast<int>(rng() % 300);
    while (static_cast<int>(tokens.size()) < length) {
      const int grow = 1 + static_cast<int>(rng() % 4);  // accepted tokens arrive 1..4 at a time
      for (int i = 0; i < grow; ++i) tokens.push_back(static_cast<int32_t>(rng() % alphabet));
      index.Update(tokens);
      const int k = static_cast<int>(rng() % 6);
      for (int max_ngram = 1; max_ngram <= kMaxIndexedNgram; ++max_ngram)
        for (int min_ngram = 1; min_ngram <= max_ngram; ++min_ngram) {
          const std::vector<int32_t> got = index.Draft(tokens, k, max_ngram, min_ngram);
          ASSERT_EQ(got, NgramDraft(tokens, k, max_ngram, min_ngram))
              << "trial " << trial << " length " << tokens.size() << " k " << k << " n-grams " << min_ngram << ".."
              << max_ngram;
          drafted += !got.empty();
          ++steps;
        }
    }
  }
  EXPECT_GT(drafted, steps / 2);  // the comparison covered drafts, not only empty answers
}

TEST(NgramIndexTest, AShorterSequenceIsIndexedAfresh) {
  NgramIndex index;
  std::vector<int32_t> tokens = {1, 2, 3, 1, 2, 3, 1, 2};
  index.Update(tokens);
  EXPECT_EQ(index.Draft(tokens, 3), (std::vector<int32_t>{3, 1, 2}));
  tokens = {5, 6, 5};
  index.Update(tokens);
  EXPECT_EQ(index.Draft(tokens, 3), NgramDraft(tokens, 3));
  EXPECT_EQ(index.Draft(tokens, 3), (std::vector<int32_t>{6, 5}));
  // Many distinct n-grams: the hash tables grow past their first size.
  tokens.clear();
  for (int32_t i = 0; i < 5000; ++i) tokens.push_back(i % 1777);
  index.Update(tokens);
  EXPECT_EQ(index.Draft(tokens, 4), NgramDraft(tokens, 4));
  EXPECT_EQ(index.Draft(tokens, 4), (std::vector<int32_t>{1446, 1447, 1448, 1449}));
}

TEST(PredictionIndexTest, DraftsEqualTheScanAtEveryAnchor) {
  std::mt19937 rng(12);
  int64_t drafted = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const int alphabet = 2 + trial % 5;
    std::vector<int32_t> prediction(rng() % 50), tokens(1 + rng() % 9);
    for (int32_t& t : prediction) t = static_cast<int32_t>(rng() % alphabet);
    for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % alphabet);
    const PredictionIndex index(prediction);
    const int k = static_cast<int>(rng() % 5);
    for (int64_t anchor = -2; anchor <= static_cast<int64_t>(prediction.size()) + 3; ++anchor)
      for (int max_ngram = 1; max_ngram <= kMaxIndexedNgram; ++max_ngram) {
        int64_t from_index = -7, from_scan = -7;
        const std::vector<int32_t> got = index.Draft(prediction, tokens, anchor, k, &from_index, max_ngram);
        ASSERT_EQ(got, PredictionDraft(prediction, tokens, anchor, k, &from_scan, max_ngram))
            << "trial " << trial << " anchor " << anchor << " max_ngram " << max_ngram;
        ASSERT_EQ(from_index, from_scan) << "trial " << trial << " anchor " << anchor;
        drafted += !got.empty();
      }
  }
  EXPECT_GT(drafted, 10000);
}

}  // namespace
}  // namespace glm::runtime
