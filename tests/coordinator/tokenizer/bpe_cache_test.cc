// BpeModel's word cache: bounded, keeps the words in use through a flood of one-off words, and
// never changes what Tokenize returns.
#include <cstdint>
#include <string>
#include <vector>

#include "coordinator/tokenizer/bpe_model.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace glm::tokenizer {
namespace {

// Letters a..z as single-character tokens plus the merges "a b" -> "ab", "ab c" -> "abc" and
// "x y" -> "xy".
nlohmann::json SmallModel() {
  nlohmann::json vocab = nlohmann::json::object();
  int32_t id = 0;
  for (char c = 'a'; c <= 'z'; ++c) vocab[std::string(1, c)] = id++;
  vocab["ab"] = id++;
  vocab["abc"] = id++;
  vocab["xy"] = id++;
  return {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b", "ab c", "x y"}}};
}

std::vector<int32_t> Ids(const BpeModel& m, const std::string& word) {
  std::vector<int32_t> out;
  m.Tokenize(word, &out);
  return out;
}

// A distinct lowercase word per index (base 26), never a word the tests keep using.
std::string OneOffWord(int64_t i) {
  std::string w = "q";
  for (int64_t v = i; v > 0; v /= 26) w.push_back(static_cast<char>('a' + v % 26));
  return w;
}

TEST(BpeCacheTest, CachedAndUncachedTokenizeAgree) {
  auto cached = BpeModel::FromJson(SmallModel(), /*cache_words=*/64);
  auto uncached = BpeModel::FromJson(SmallModel(), /*cache_words=*/0);
  ASSERT_TRUE(cached.ok() && uncached.ok());
  for (int round = 0; round < 3; ++round)
    for (int64_t i = 0; i < 500; ++i) {
      const std::string w = OneOffWord(i % 100) + "abcxy";
      ASSERT_EQ(Ids(**cached, w), Ids(**uncached, w)) << w;
    }
  EXPECT_EQ(Ids(**cached, "abc"), (std::vector<int32_t>{27}));
  EXPECT_EQ(Ids(**cached, "xyab"), (std::vector<int32_t>{28, 26}));
  // The 100 cycling words above overflow a 64-word cache, so whether any of them hit depends on
  // how the (per-process seeded) hash spreads them over the shards: about 1 run in 20 saw none.
  // A word asked for twice in a row is a hit however the words are spread.
  const int64_t hits_before = (*cached)->cache_stats().hits;
  EXPECT_EQ(Ids(**cached, "xyab"), (std::vector<int32_t>{28, 26}));
  const BpeModel::CacheStats stats = (*cached)->cache_stats();
  EXPECT_EQ(stats.hits, hits_before + 1);
  EXPECT_EQ((*uncached)->cache_stats().hits, 0);
  EXPECT_EQ((*uncached)->cache_stats().words, 0u);
}

TEST(BpeCacheTest, StaysWithinItsBound) {
  const size_t bound = 16 * 64;
  auto m = BpeModel::FromJson(SmallModel(), bound);
  ASSERT_TRUE(m.ok());
  for (int64_t i = 0; i < 50 * static_cast<int64_t>(bound); ++i) {
    Ids(**m, OneOffWord(i));
    if (i % 997 == 0) {
      ASSERT_LE((*m)->cache_stats().words, bound) << "after " << i << " words";
    }
  }
  EXPECT_LE((*m)->cache_stats().words, bound);
  EXPECT_GT((*m)->cache_stats().words, bound / 4);  // it still caches
}

TEST(BpeCacheTest, WordsInUseSurviveAFloodOfOneOffWords) {
  const size_t bound = 16 * 64;
  auto m = BpeModel::FromJson(SmallModel(), bound);
  ASSERT_TRUE(m.ok());
  // First a flood that fills the cache (a cache that stops inserting when full would then never
  // take the common words), then the common words used now and then among more one-off words
  // (every 50 of them: far more often than a generation turns over).
  const std::vector<std::string> common = {"abc", "abxy", "cab", "xyz"};
  int64_t next = 0;
  for (; next < 2 * static_cast<int64_t>(bound); ++next) Ids(**m, OneOffWord(next));
  for (int64_t i = 0; i < 8 * static_cast<int64_t>(bound); ++i, ++next) {
    Ids(**m, OneOffWord(next));
    if (i % 50 == 0)
      for (const std::string& w : common) Ids(**m, w);
  }
  const int64_t hits_before = (*m)->cache_stats().hits;
  for (const std::string& w : common) Ids(**m, w);
  EXPECT_EQ((*m)->cache_stats().hits - hits_before, static_cast<int64_t>(common.size()));
  // A one-off word from the start of the flood is gone.
  const int64_t misses_before = (*m)->cache_stats().misses;
  Ids(**m, OneOffWord(1));
  EXPECT_EQ((*m)->cache_stats().misses - misses_before, 1);
}

TEST(BpeCacheTest, LongWordsAreNotCached) {
  auto m = BpeModel::FromJson(SmallModel(), 1024);
  ASSERT_TRUE(m.ok());
  const std::string long_word(1000, 'a');
  EXPECT_EQ(Ids(**m, long_word).size(), 1000u);
  EXPECT_EQ(Ids(**m, long_word).size(), 1000u);
  EXPECT_EQ((*m)->cache_stats().hits, 0);
  EXPECT_EQ((*m)->cache_stats().words, 0u);
}

}  // namespace
}  // namespace glm::tokenizer
