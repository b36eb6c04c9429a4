// bench/simulated_format: sim-int4 reproduces the product's int4 values exactly (so the other bit
// widths are the same recipe with more codes), names parse strictly, and more bits mean less error.
#include "bench/simulated_format.h"

#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/kernels/weight_view.h"

namespace glm::bench {
namespace {

std::vector<float> RandomRow(int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<float> heavy(4.0f);  // weights have tails
  std::vector<float> row(cols);
  for (float& v : row) v = 0.02f * heavy(rng);
  return row;
}

double SquaredError(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0;
  for (size_t i = 0; i < a.size(); ++i) e += (a[i] - b[i]) * static_cast<double>(a[i] - b[i]);
  return e;
}

TEST(SimulatedFormatTest, ParsesItsNamesStrictly) {
  SimulatedFormat f;
  ASSERT_TRUE(ParseSimulatedFormat("sim-int5", &f));
  EXPECT_EQ(f.bits, 5);
  EXPECT_EQ(f.group_size, 32);
  ASSERT_TRUE(ParseSimulatedFormat("sim-int3-g64", &f));
  EXPECT_EQ(f.bits, 3);
  EXPECT_EQ(f.group_size, 64);
  for (const char* bad : {"int4", "sim-int", "sim-int1", "sim-int9", "sim-int4-g48", "sim-int4-g", "sim-int4-x32",
                          "sim-int4-g32x", "sim-intx", "sim-int-4", "sim-int4-g0"})
    EXPECT_FALSE(ParseSimulatedFormat(bad, &f)) << bad;
}

TEST(SimulatedFormatTest, Int4IsExactlyTheProductsInt4) {
  for (int64_t cols : {32, 100, 256, 333}) {
    const std::vector<float> row = RandomRow(cols, 7 + cols);
    // The product's int4 (group 32), read back through its WeightView.
    kernels::WeightView v;
    v.dtype = kernels::DType::kI4;
    v.rows = 1;
    v.cols = cols;
    v.group_size = 32;
    std::vector<uint8_t> packed(v.row_bytes());
    std::vector<uint16_t> scales(v.groups_per_row());
    kernels::QuantizeRowReference(kernels::DType::kI4, row.data(), cols, 32, packed.data(), scales.data());
    v.data = packed.data();
    v.group_scales = scales.data();
    std::vector<float> product(cols);
    v.RowToF32(0, product.data());

    std::vector<float> simulated = row;
    SimulateRow({4, 32}, simulated.data(), cols);
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(simulated[c], product[c]) << "cols " << cols << ", column " << c;
  }
}

TEST(SimulatedFormatTest, MoreBitsLessError) {
  const std::vector<float> row = RandomRow(4096, 3);
  double previous = 0;
  for (int bits : {8, 6, 5, 4, 3, 2}) {
    std::vector<float> q = row;
    SimulateRow({bits, 32}, q.data(), static_cast<int64_t>(q.size()));
    const double e = SquaredError(row, q);
    EXPECT_GT(e, previous * 2.5) << bits << " bits";  // each bit removed costs ~4x the squared error
    previous = e;
  }
}

TEST(SimulatedFormatTest, ZeroGroupsStayZero) {
  std::vector<float> row(64, 0.0f);
  row[40] = 1.0f;
  SimulateRow({4, 32}, row.data(), 64);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(row[i], 0.0f);
  EXPECT_FLOAT_EQ(row[40], 1.0f);  // the extreme maps onto a code exactly
}

}  // namespace
}  // namespace glm::bench
