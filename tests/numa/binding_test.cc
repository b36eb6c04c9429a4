#include "numa/binding.h"

#include <sched.h>

#include <cstdlib>
#include <thread>

#include "gtest/gtest.h"

namespace glm::numa {
namespace {

// Binding changes the process's affinity; every test restores "all cpus of node 0" implicitly by
// only ever binding to node 0, which on this one-node test machine is every cpu.

TEST(BindingTest, BindProcessToFirstNodeOrSayWhyNot) {
  auto topo = Topology::Local();
  ASSERT_TRUE(topo.ok()) << topo.status();
  const int node = (*topo)->NumaNodeOsIndexes().front();
  absl::Status s = BindProcessToNumaNode(**topo, node);
  if (!s.ok()) {
    // Containers may refuse binding; the status must say so plainly.
    EXPECT_TRUE(s.code() == absl::StatusCode::kUnimplemented || s.code() == absl::StatusCode::kInternal) << s;
    EXPECT_NE(s.message().find("NUMA node"), std::string::npos) << s;
    GTEST_SKIP() << "binding not available here: " << s;
  }
  const std::string report = DescribeBinding();
  EXPECT_NE(report.find("pid"), std::string::npos) << report;
  EXPECT_NE(report.find("NUMA node"), std::string::npos) << report;
  EXPECT_EQ(NumaNodeOfCurrentThread(), node);
}

TEST(BindingTest, BindThreadsOneCoreEach) {
  auto topo = Topology::Local();
  ASSERT_TRUE(topo.ok()) << topo.status();
  const int node = (*topo)->NumaNodeOsIndexes().front();
  const int cores = (*topo)->ToProto("h").numa_nodes(0).cores();
  for (int c = 0; c < cores; ++c) {
    absl::Status s;
    std::thread t([&] { s = BindThisThreadToCore(**topo, node, c); });
    t.join();
    if (s.code() == absl::StatusCode::kUnimplemented) GTEST_SKIP() << s;
    EXPECT_TRUE(s.ok()) << s;
  }
  absl::Status out_of_range = BindThisThreadToCore(**topo, node, cores);
  EXPECT_EQ(out_of_range.code(), absl::StatusCode::kOutOfRange) << out_of_range;
}

TEST(BindingTest, RejectsForeignTopologiesAndUnknownNodes) {
  auto synthetic = Topology::FromSynthetic("pack:2 numa:2 core:4");
  ASSERT_TRUE(synthetic.ok()) << synthetic.status();
  EXPECT_EQ(BindProcessToNumaNode(**synthetic, 0).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(BindThisThreadToCore(**synthetic, 0, 0).code(), absl::StatusCode::kFailedPrecondition);
  auto local = Topology::Local();
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(BindProcessToNumaNode(**local, 4096).code(), absl::StatusCode::kNotFound);
}

TEST(BindingTest, DescribeBindingNamesHostAndPid) {
  const std::string report = DescribeBinding();
  EXPECT_NE(report.find("pid"), std::string::npos) << report;
  EXPECT_NE(report.find("cpus"), std::string::npos) << report;
}

TEST(BindingTest, CpusWithinOneNodeAreBoundSpanningNodesAreNot) {
  auto topo = Topology::FromSynthetic("pack:2 numa:2 core:4");  // nodes 0-3, cpus 0-3 | 4-7 | ...
  ASSERT_TRUE(topo.ok()) << topo.status();
  auto node = [&](const std::string& cpus) {
    absl::StatusOr<int> n = NumaNodeContainingCpus(**topo, cpus);
    EXPECT_TRUE(n.ok()) << cpus << ": " << n.status();
    return n.ok() ? *n : -2;
  };
  EXPECT_EQ(node("0-15"), -1);  // an unbound process: every cpu of the machine
  EXPECT_EQ(node("2-5"), -1);   // two nodes
  EXPECT_EQ(node("0-3"), 0);
  EXPECT_EQ(node("5"), 1);
  EXPECT_EQ(node("12,14"), 3);
  EXPECT_EQ(node("12-15,100"), 3);  // cpus the topology lacks are ignored
  for (const std::string bad : {"", "abc"}) {
    absl::StatusOr<int> n = NumaNodeContainingCpus(**topo, bad);
    EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument) << "'" << bad << "'";
  }
}

// The worker's "did the launcher bind me" test on a simulated two-node machine (cpu 0 = node 0,
// cpu 1 = node 1): a process allowed on both cpus is not bound, whichever cpu it last ran on.
TEST(BindingTest, ProcessBindingOnSimulatedTwoNodeMachine) {
  cpu_set_t saved;
  ASSERT_EQ(sched_getaffinity(0, sizeof saved, &saved), 0);
  if (!CPU_ISSET(0, &saved) || !CPU_ISSET(1, &saved)) GTEST_SKIP() << "needs cpus 0 and 1";
  setenv("HWLOC_SYNTHETIC", "numa:2 core:1 pu:1", 1);
  setenv("HWLOC_THISSYSTEM", "1", 1);
  auto topo = Topology::Local();
  unsetenv("HWLOC_SYNTHETIC");
  unsetenv("HWLOC_THISSYSTEM");
  ASSERT_TRUE(topo.ok()) << topo.status();
  ASSERT_EQ((*topo)->NumaNodeOsIndexes(), (std::vector<int>{0, 1}));
  auto bind_to = [](std::initializer_list<int> cpus) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int c : cpus) CPU_SET(c, &set);
    return sched_setaffinity(0, sizeof set, &set) == 0;
  };
  ASSERT_TRUE(bind_to({0, 1}));
  for (int i = 0; i < 20; ++i) {  // wherever the scheduler puts it meanwhile
    EXPECT_EQ(NumaNodeOfProcessBinding(**topo), -1);
    std::this_thread::yield();
  }
  ASSERT_TRUE(bind_to({1}));
  EXPECT_EQ(NumaNodeOfProcessBinding(**topo), 1);
  ASSERT_TRUE(bind_to({0}));
  EXPECT_EQ(NumaNodeOfProcessBinding(**topo), 0);
  ASSERT_EQ(sched_setaffinity(0, sizeof saved, &saved), 0);
}

}  // namespace
}  // namespace glm::numa
