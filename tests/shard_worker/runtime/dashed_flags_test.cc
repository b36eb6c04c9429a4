// NormalizeDashedFlags: the command-line spellings every binary takes.
#include "shard_worker/runtime/dashed_flags.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, dashed_test_text, "", "a flag that takes a value");
ABSL_FLAG(bool, dashed_test_switch, false, "a boolean flag");

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

// The argument after a flag that takes a value is that value, whatever it looks like (a bare "--"
// included); after a boolean flag or a `name=value` it is the next flag.
TEST(DashedFlagsTest, AValueInTheNextArgumentIsLeftAlone) {
  EXPECT_EQ(Normalized({"bin", "--dashed-test-text", "--not-a-name", "--dashed-test-switch", "--max-model-len", "8"}),
            (std::vector<std::string>{"bin", "--dashed_test_text", "--not-a-name", "--dashed_test_switch",
                                      "--max_model_len", "8"}));
  EXPECT_EQ(Normalized({"bin", "--dashed-test-text", "--", "--max-model-len=8"}),
            (std::vector<std::string>{"bin", "--dashed_test_text", "--", "--max_model_len=8"}));
  EXPECT_EQ(Normalized({"bin", "-dashed_test_text", "--a-b", "--dashed-test-text=--c-d", "--e-f"}),
            (std::vector<std::string>{"bin", "-dashed_test_text", "--a-b", "--dashed_test_text=--c-d", "--e_f"}));
  // A flag no binary defines takes no value of its own: the next argument is normalised.
  EXPECT_EQ(Normalized({"bin", "--unknown-here", "--next-one"}),
            (std::vector<std::string>{"bin", "--unknown_here", "--next_one"}));
}

}  // namespace
}  // namespace glm::runtime
