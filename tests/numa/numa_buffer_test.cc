#include "numa/numa_buffer.h"

#include <cstdint>
#include <cstring>
#include <utility>

#include "gtest/gtest.h"

namespace glm::numa {
namespace {

TEST(NumaBufferTest, AllocatesOnNodeZeroOfThisMachine) {
  auto topo = Topology::Local();
  ASSERT_TRUE(topo.ok()) << topo.status();
  const int node = (*topo)->NumaNodeOsIndexes().front();
  auto buf = NumaBuffer::Allocate(**topo, 8 << 20, node);
  ASSERT_TRUE(buf.ok()) << buf.status();
  ASSERT_NE(buf->data(), nullptr);
  EXPECT_EQ(buf->size(), 8 << 20);
  EXPECT_EQ(buf->numa_node(), node);
  std::memset(buf->data(), 0x5a, buf->size());  // the pages are usable
  EXPECT_EQ(static_cast<uint8_t*>(buf->data())[buf->size() - 1], 0x5a);
  if (!buf->bound()) GTEST_LOG_(INFO) << "memory binding unsupported here; got a plain aligned buffer";
}

TEST(NumaBufferTest, MovesOwnership) {
  auto topo = Topology::Local();
  ASSERT_TRUE(topo.ok()) << topo.status();
  auto buf = NumaBuffer::Allocate(**topo, 4096, (*topo)->NumaNodeOsIndexes().front());
  ASSERT_TRUE(buf.ok()) << buf.status();
  void* p = buf->data();
  NumaBuffer moved = std::move(*buf);
  EXPECT_EQ(moved.data(), p);
  EXPECT_EQ(buf->data(), nullptr);
  NumaBuffer assigned;
  assigned = std::move(moved);
  EXPECT_EQ(assigned.data(), p);
  EXPECT_EQ(assigned.size(), 4096);
}

TEST(NumaBufferTest, SyntheticTopologyFallsBackUnbound) {
  auto topo = Topology::FromSynthetic("pack:2 numa:2 core:4");
  ASSERT_TRUE(topo.ok()) << topo.status();
  auto buf = NumaBuffer::Allocate(**topo, 1 << 20, 3);
  ASSERT_TRUE(buf.ok()) << buf.status();
  EXPECT_FALSE(buf->bound());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buf->data()) % NumaBuffer::kFallbackAlignment, 0u);
}

TEST(NumaBufferTest, RejectsBadRequests) {
  auto topo = Topology::Local();
  ASSERT_TRUE(topo.ok()) << topo.status();
  EXPECT_EQ(NumaBuffer::Allocate(**topo, 0, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NumaBuffer::Allocate(**topo, 4096, 4096).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace glm::numa
