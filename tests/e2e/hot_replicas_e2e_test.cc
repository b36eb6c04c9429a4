// End to end, an operator's hot-expert replica workflow: routing recorded with `glmctl
// expert-load`, a cluster of 2 expert-parallel workers started with `--expert-load FILE
// --hot-expert-replicas 3` giving the single-process engine's greedy tokens, and the cluster's own
// routing record (`glmctl --server HOST:PORT expert-load`) feeding `glmctl plan`.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "tests/e2e/cluster_e2e_fixture.h"

namespace glm::e2e {
namespace {

std::string RunCommand(const std::string& cmd, int* status) {
  std::string out;
  if (FILE* p = popen((cmd + " 2>&1").c_str(), "r")) {
    char buf[4096];
    while (size_t got = fread(buf, 1, sizeof buf, p)) out.append(buf, got);
    *status = pclose(p);
  }
  return out;
}

class HotReplicaClusterE2eTest : public ClusterE2eTest {
 protected:
  static std::string LoadFile() { return "/tmp/glm_e2e_expert_load_" + std::to_string(getpid()) + ".json"; }
  static void SetUpTestSuite() {
    std::string ids;
    for (int32_t t : Prompt(5, 200)) ids += (ids.empty() ? "" : ",") + std::to_string(t);
    int status = -1;
    const std::string out = RunCommand(std::string(GLM_GLMCTL_BIN) + " expert-load --model " + GLM_MODEL_DIR + " --tokens " +
                                    ids + " --threads 1 --out " + LoadFile(),
                                &status);
    ASSERT_EQ(status, 0) << out;
    Launch("120", {"--expert-load", LoadFile(), "--hot-expert-replicas", "3"});
  }
  static void TearDownTestSuite() {
    std::remove(LoadFile().c_str());
    ClusterE2eTest::TearDownTestSuite();
  }
};

TEST_F(HotReplicaClusterE2eTest, GreedyTokensEqualTheSingleProcessEngineAndRoutingIsRecorded) {
  const std::string log = ClusterLog();
  EXPECT_NE(log.find("hot-expert replicas: "), std::string::npos) << log;
  EXPECT_NE(log.find(" hot "), std::string::npos) << log;
  for (int seed : {1, 2}) {
    const auto prompt = Prompt(seed, 40);
    Streamed s = Generate(Ids(prompt, 16));
    ASSERT_TRUE(s.status.ok()) << s.status.error_message();
    EXPECT_EQ(s.tokens, LocalGreedy(prompt, 16)) << "seed " << seed;
  }
  // The cluster's own record (its counters reach the coordinator about once a second).
  const std::string record = "/tmp/glm_e2e_served_load_" + std::to_string(getpid()) + ".json";
  std::string out;
  int status = -1;
  for (int i = 0; i < 200; ++i) {  // up to ~20 s on a loaded machine
    out = RunCommand(std::string(GLM_GLMCTL_BIN) + " --server 127.0.0.1:" + std::to_string(grpc_port_) +
                  " expert-load --out " + record,
              &status);
    if (status == 0 && out.find("routing of ") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("over 5 MoE layers written to " + record), std::string::npos) << out;
  const std::string plan = RunCommand(std::string(GLM_GLMCTL_BIN) + " plan --model " + GLM_MODEL_DIR +
                                   " --synthetic 'numa:2 core:1' --expert-load " + record + " --hot-expert-replicas 2",
                               &status);
  EXPECT_EQ(status, 0) << plan;
  EXPECT_NE(plan.find(" hot "), std::string::npos) << plan;
  std::remove(record.c_str());
}

}  // namespace
}  // namespace glm::e2e
