// The bandwidth probes' sizing: arrays that stream from memory even on CPUs with hundreds of MiB
// of last-level cache, and the cache sizes sysfs reports.
#include "bench/bandwidth_probe.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace glm::bench {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

TEST(BandwidthProbeSizeTest, BeyondCacheBytesKeepsTheMinimumOrCoversTheCache) {
  EXPECT_EQ(BeyondCacheBytes(64 * kMiB, 32 * kMiB, 2), 64 * kMiB);    // this VM: the minimum
  EXPECT_EQ(BeyondCacheBytes(64 * kMiB, 300 * kMiB, 2), 600 * kMiB);  // a 300 MiB L3
  EXPECT_EQ(BeyondCacheBytes(int64_t{1} << 30, 1152 * kMiB, 4), 4608 * kMiB);
  EXPECT_EQ(BeyondCacheBytes(128 * kMiB, 0, 4), 128 * kMiB);  // unknown cache
  EXPECT_EQ(BeyondCacheBytes(128 * kMiB, -1, 4), 128 * kMiB);
  EXPECT_EQ(BeyondCacheBytes(128 * kMiB, 40 * kMiB, 0), 128 * kMiB);  // multiple at least 1
}

TEST(BandwidthProbeSizeTest, ParsesSysfsCacheSizes) {
  EXPECT_EQ(ParseCacheSizeText("48K"), 48 * 1024);
  EXPECT_EQ(ParseCacheSizeText("32768K"), 32 * kMiB);
  EXPECT_EQ(ParseCacheSizeText("300M"), 300 * kMiB);
  EXPECT_EQ(ParseCacheSizeText("1G"), int64_t{1} << 30);
  EXPECT_EQ(ParseCacheSizeText("4096"), 4096);
  EXPECT_EQ(ParseCacheSizeText(""), 0);
  EXPECT_EQ(ParseCacheSizeText("K"), 0);
  EXPECT_EQ(ParseCacheSizeText("-5M"), 0);
  EXPECT_EQ(ParseCacheSizeText("12Q"), 0);
}

TEST(BandwidthProbeSizeTest, LastLevelCacheIsAtLeastAnL1WhereTheCpuReportsOne) {
  const int64_t llc = LastLevelCacheBytes();
  EXPECT_GE(llc, 0);
  // Any x86 CPU of the last decade reports a cache; its last level is no smaller than 32 KiB.
  if (llc > 0) {
    EXPECT_GE(llc, 32 * 1024);
  }
}

}  // namespace
}  // namespace glm::bench
