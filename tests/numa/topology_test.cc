#include "numa/topology.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace glm::numa {
namespace {

constexpr int64_t kGib = int64_t{1} << 30;

TEST(TopologyTest, SyntheticTwoPackagesTwoNodesEach) {
  auto topo = Topology::FromSynthetic("pack:2 numa:2 core:16");
  ASSERT_TRUE(topo.ok()) << topo.status();
  EXPECT_FALSE((*topo)->is_this_system());
  EXPECT_EQ((*topo)->num_packages(), 2);
  EXPECT_EQ((*topo)->num_cores(), 64);
  EXPECT_EQ((*topo)->num_pus(), 64);
  EXPECT_EQ((*topo)->NumaNodeOsIndexes(), (std::vector<int>{0, 1, 2, 3}));
  placement::HostTopology host = (*topo)->ToProto("synth-host");
  EXPECT_EQ(host.hostname(), "synth-host");
  EXPECT_EQ(host.packages(), 2);
  ASSERT_EQ(host.numa_nodes_size(), 4);
  for (int i = 0; i < 4; ++i) {
    const placement::NumaNode& n = host.numa_nodes(i);
    EXPECT_EQ(n.os_index(), i);
    EXPECT_EQ(n.cores(), 16);
    EXPECT_EQ(n.pus(), 16);
    EXPECT_EQ(n.memory_bytes(), 64 * kGib);
    EXPECT_EQ(n.bandwidth_gbps(), 0.0);
  }
}

TEST(TopologyTest, SyntheticMemoryHyperthreadsAndCaches) {
  auto topo = Topology::FromSynthetic("socket:1 l3:2 node:1 core:4 pu:2", 12.5);
  ASSERT_TRUE(topo.ok()) << topo.status();
  placement::HostTopology host = (*topo)->ToProto("h");
  EXPECT_EQ(host.packages(), 1);
  ASSERT_EQ(host.numa_nodes_size(), 2);
  EXPECT_EQ(host.numa_nodes(1).cores(), 4);
  EXPECT_EQ(host.numa_nodes(1).pus(), 8);
  EXPECT_EQ(host.numa_nodes(1).memory_bytes(), static_cast<int64_t>(12.5 * kGib));
}

TEST(TopologyTest, SyntheticWithoutNumaLevelIsOneNode) {
  auto desc = ToHwlocSyntheticDescription("pack:2 core:8", 32);
  ASSERT_TRUE(desc.ok()) << desc.status();
  EXPECT_EQ(*desc, absl::StrCat("numa:1(memory=", 32 * kGib, ") pack:2 core:8 pu:1"));
  auto topo = Topology::FromSynthetic("pack:2 core:8", 32);
  ASSERT_TRUE(topo.ok()) << topo.status();
  placement::HostTopology host = (*topo)->ToProto("h");
  ASSERT_EQ(host.numa_nodes_size(), 1);
  EXPECT_EQ(host.numa_nodes(0).cores(), 16);
  EXPECT_EQ(host.numa_nodes(0).memory_bytes(), 32 * kGib);
}

TEST(TopologyTest, SyntheticErrorsNameTheProblem) {
  auto bad_level = Topology::FromSynthetic("pack:2 board:2 core:4");
  ASSERT_FALSE(bad_level.ok());
  EXPECT_EQ(bad_level.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_level.status().message().find("board"), std::string::npos) << bad_level.status();
  EXPECT_FALSE(Topology::FromSynthetic("pack:0 core:4").ok());
  EXPECT_FALSE(Topology::FromSynthetic("pack:two").ok());
  EXPECT_FALSE(Topology::FromSynthetic("").ok());
  EXPECT_FALSE(Topology::FromSynthetic("pack:2 core:4", -1).ok());
  EXPECT_FALSE(Topology::FromSynthetic("pu:2 core:4").ok());
}

TEST(TopologyTest, XmlRoundTripKeepsTheTopology) {
  auto topo = Topology::FromSynthetic("pack:2 numa:2 core:16 pu:2", 48);
  ASSERT_TRUE(topo.ok()) << topo.status();
  auto xml = (*topo)->ToXml();
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_NE(xml->find("<topology"), std::string::npos);
  const std::string path = absl::StrCat(::testing::TempDir(), "/topo_", getpid(), ".xml");
  {
    std::ofstream out(path);
    out << *xml;
  }
  auto back = Topology::FromXmlFile(path);
  std::remove(path.c_str());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE((*back)->is_this_system());
  EXPECT_EQ((*back)->ToProto("h").DebugString(), (*topo)->ToProto("h").DebugString());
  EXPECT_EQ((*back)->ToProto("h").numa_nodes(3).pus(), 32);
}

TEST(TopologyTest, XmlErrors) {
  auto missing = Topology::FromXmlFile("/nonexistent/topology.xml");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(Topology::FromXmlString("<not a topology>").ok());
}

TEST(TopologyTest, LocalMachineHasCoresAndANode) {
  auto topo = Topology::Local();
  ASSERT_TRUE(topo.ok()) << topo.status();
  EXPECT_TRUE((*topo)->is_this_system());
  EXPECT_GE((*topo)->num_cores(), 1);
  EXPECT_GE((*topo)->num_pus(), (*topo)->num_cores());
  placement::HostTopology host = (*topo)->ToProto("local");
  ASSERT_GE(host.numa_nodes_size(), 1);
  int cores = 0;
  for (const auto& n : host.numa_nodes()) {
    EXPECT_GT(n.memory_bytes(), 0);
    cores += n.cores();
  }
  EXPECT_EQ(cores, (*topo)->num_cores());
  auto xml = (*topo)->ToXml();
  ASSERT_TRUE(xml.ok()) << xml.status();
  auto back = Topology::FromXmlString(*xml);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->ToProto("local").DebugString(), host.DebugString());
}

}  // namespace
}  // namespace glm::numa
