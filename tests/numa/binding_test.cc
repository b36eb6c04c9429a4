#include "numa/binding.h"

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

}  // namespace
}  // namespace glm::numa
