// NormalizeDashedFlags: the command-line spellings every binary takes.
#include "shard_worker/runtime/dashed_flags.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace glm::runtime {
namespace {

std::vector<std::string> Normalized(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  NormalizeDashedFlags(static_cast<int>(argv.size()), argv.data());
  std::vector<std::string> out;
  for (char* a : argv) out.emplace_back(a);  // each rewritten in place, never longer
  return out;
}

TEST(DashedFlagsTest, DashesInNamesAndArgparseNegations) {
  EXPECT_EQ(Normalized({"bin", "--max-model-len", "256", "--kv-cache-gib=0.5", "--no-enable-prefix-caching",
                        "--no-x=1", "--noamx-tiles", "-v", "--stop-at=a-b", "--", "--not-a-flag"}),
            (std::vector<std::string>{"bin", "--max_model_len", "256", "--kv_cache_gib=0.5",
                                      "--noenable_prefix_caching", "--nox=1", "--noamx_tiles", "-v", "--stop_at=a-b",
                                      "--", "--not-a-flag"}));
  // "--no-" alone or with "=" right after it is no negation: left as a name of its own.
  EXPECT_EQ(Normalized({"bin", "--no-", "--no-=3"}), (std::vector<std::string>{"bin", "--no_", "--no_=3"}));
  EXPECT_TRUE(FlagOnCommandLine(3, std::vector<char*>{const_cast<char*>("bin"), const_cast<char*>("--max_running=4"),
                                                      const_cast<char*>("x")}.data(), "max_running"));
}

}  // namespace
}  // namespace glm::runtime
