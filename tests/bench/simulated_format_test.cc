// bench/simulated_format: sim-int4 reproduces the product's int4 values exactly (so the other bit
// widths are the same recipe with more codes), names parse strictly, and more bits mean less error.
#include "bench/simulated_format.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <set>
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
  EXPECT_FALSE(f.asymmetric);
  ASSERT_TRUE(ParseSimulatedFormat("sim-uint4-g64", &f));
  EXPECT_TRUE(f.asymmetric);
  EXPECT_EQ(f.bits, 4);
  EXPECT_EQ(f.group_size, 64);
  ASSERT_TRUE(ParseSimulatedFormat("sim-int4-r", &f));
  EXPECT_TRUE(f.rotate_full_rows);
  ASSERT_TRUE(ParseSimulatedFormat("sim-uint4-g64-r128", &f));
  EXPECT_EQ(f.group_size, 64);
  EXPECT_EQ(f.rotation_block, 128);
  EXPECT_FALSE(f.rotate_full_rows);
  ASSERT_TRUE(ParseSimulatedFormat("sim-int4-r32-g64", &f));
  EXPECT_EQ(f.rotation_block, 32);
  EXPECT_EQ(f.group_size, 64);
  for (const char* bad : {"sim-int4-r3", "sim-int4-r1", "sim-int4-r0", "sim-int4-r-r", "sim-int4-g32-g64", "sim-int4-rx",
                          "sim-int4-", "sim-int4-r32-"})
    EXPECT_FALSE(ParseSimulatedFormat(bad, &f)) << bad;
  for (const char* bad : {"int4", "sim-int", "sim-int1", "sim-uint", "sim-uint9", "sim-uintx", "sim-uuint4", "sim-int9", "sim-int4-g48", "sim-int4-g", "sim-int4-x32",
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

// The rotation is orthogonal: with 8 bits the round trip's error is int8's order, not more, and a
// row with an outlier (one column 40x the rest, as in a group the outlier's scale ruins) loses
// much less once the outlier is spread over its block.
TEST(SimulatedFormatTest, RotationIsOrthogonalAndSpreadsOutliers) {
  std::vector<float> row = RandomRow(256, 11);
  SimulatedFormat plain{8, 32}, rotated{8, 32};
  rotated.rotate_full_rows = true;
  std::vector<float> a = row, b = row;
  SimulateRow(plain, a.data(), 256);
  SimulateRow(rotated, b.data(), 256);
  EXPECT_LT(SquaredError(row, b), 4 * SquaredError(row, a));
  EXPECT_GT(SquaredError(row, b), 0.0);

  for (int c = 0; c < 256; c += 32) row[c + 5] = 0.8f;  // an outlier in every group
  plain.bits = rotated.bits = 4;
  a = row, b = row;
  SimulateRow(plain, a.data(), 256);
  SimulateRow(rotated, b.data(), 256);
  EXPECT_LT(SquaredError(row, b), 0.5 * SquaredError(row, a));
  // A block that does not divide the row leaves it unrotated (the plain result).
  SimulatedFormat odd{4, 32};
  odd.rotation_block = 64;
  std::vector<float> c = row, d = row;
  SimulateRow(odd, c.data(), 96);
  SimulateRow(plain, d.data(), 96);
  EXPECT_EQ(c, d);
}

TEST(SimulatedFormatTest, ZeroGroupsStayZero) {
  std::vector<float> row(64, 0.0f);
  row[40] = 1.0f;
  SimulateRow({4, 32}, row.data(), 64);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(row[i], 0.0f);
  EXPECT_FLOAT_EQ(row[40], 1.0f);  // the extreme maps onto a code exactly
}

// Asymmetric groups hold at most 2^B values, each s·q + m; on a skewed row (weights of one sign
// dominate a group) the offset halves the error at least, and on a symmetric one it is no worse.
TEST(SimulatedFormatTest, AsymmetricUsesItsCodesAndFitsSkewedGroups) {
  for (int bits : {3, 4}) {
    std::vector<float> skewed = RandomRow(1024, 11);
    for (float& v : skewed) v = std::fabs(v) + 0.01f;
    std::vector<float> sym = skewed, asym = skewed;
    SimulateRow({bits, 32}, sym.data(), 1024);
    SimulateRow({bits, 32, true}, asym.data(), 1024);
    EXPECT_LT(SquaredError(skewed, asym) * 2, SquaredError(skewed, sym)) << bits << " bits";
    for (int64_t g = 0; g < 1024; g += 32) {
      std::set<float> values(asym.begin() + g, asym.begin() + g + 32);
      EXPECT_LE(values.size(), size_t{1} << bits) << "group " << g;
    }

    const std::vector<float> row = RandomRow(1024, 12);
    std::vector<float> sym2 = row, asym2 = row;
    SimulateRow({bits, 32}, sym2.data(), 1024);
    SimulateRow({bits, 32, true}, asym2.data(), 1024);
    EXPECT_LE(SquaredError(row, asym2), SquaredError(row, sym2) * 1.05) << bits << " bits";
  }
}

TEST(SimulatedFormatTest, AsymmetricKeepsConstantAndTinyGroups) {
  std::vector<float> row(64, 0.25f);
  for (int i = 32; i < 64; ++i) row[i] = 1e-9f * static_cast<float>(i % 3);  // below f16's step
  SimulateRow({4, 32, true}, row.data(), 64);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(row[i], 0.25f);
  for (int i = 32; i < 64; ++i) EXPECT_TRUE(std::isfinite(row[i]) && std::fabs(row[i]) < 1e-8f) << i;
}

}  // namespace
}  // namespace glm::bench
