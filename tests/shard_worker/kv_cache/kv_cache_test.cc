// KvCache's row-pointer listings against its per-position accessors: over a shuffled block
// table (a coordinator-managed view) and a self-managed cache, for ranges and for position
// lists in any order (DSA selections are ascending; the listing must not depend on it). And the
// pool's start-up touch (Prefault) and the per-stage shape both sides of a cluster size it by.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <cmath>
#include <cstring>
#include <string>
#include <numeric>
#include <random>
#include <vector>

#include "shard_worker/kernels/dtype.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/kernels/vector_ops.h"
#include "shard_worker/kv_cache/kv_cache.h"

namespace glm::kv_cache {
namespace {

KvCacheShape Shape() {
  KvCacheShape s;
  s.kv_lora_rank = 24;
  s.rope_dim = 8;
  s.index_head_dim = 16;
  s.first_layer = 2;
  s.layer_has_index_keys = {true, false, true};
  s.max_positions = 1000;
  return s;
}

void ExpectListingsMatch(const KvCache& cache, int64_t layer, int64_t n, std::mt19937& rng) {
  std::vector<const float*> lat(n), kpe(n), idx(n);
  cache.RowPointers(layer, n, lat.data(), kpe.data());
  for (int64_t p = 0; p < n; ++p) {
    ASSERT_EQ(lat[p], cache.latent(layer, p)) << p;
    ASSERT_EQ(kpe[p], cache.rope_key(layer, p)) << p;
  }
  for (int64_t begin : {int64_t{0}, int64_t{3}, n / 2}) {
    cache.IndexKeyRows(layer, begin, n, idx.data());
    for (int64_t p = begin; p < n; ++p) ASSERT_EQ(idx[p - begin], cache.index_key(layer, p)) << begin << " " << p;
  }
  std::vector<int32_t> positions(n);
  std::iota(positions.begin(), positions.end(), 0);
  std::shuffle(positions.begin(), positions.end(), rng);
  positions.resize(n / 2 + 1);
  for (bool ascending : {false, true}) {
    if (ascending) std::sort(positions.begin(), positions.end());
    const int64_t m = static_cast<int64_t>(positions.size());
    cache.RowPointers(layer, positions.data(), m, lat.data(), kpe.data());
    for (int64_t i = 0; i < m; ++i) {
      ASSERT_EQ(lat[i], cache.latent(layer, positions[i])) << i;
      ASSERT_EQ(kpe[i], cache.rope_key(layer, positions[i])) << i;
    }
  }
}

TEST(KvCacheTest, RowListingsMatchTheAccessors) {
  std::mt19937 rng(5);
  const int64_t block = 16, n = 150;
  KvBlockPool pool(Shape(), block, 20, false);
  std::vector<int32_t> table(20);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);
  table.resize((n + block - 1) / block);
  KvCache view(&pool, table, n);
  ExpectListingsMatch(view, 2, n, rng);
  ExpectListingsMatch(view, 4, n, rng);

  KvCache own(Shape(), 7);  // a block size that divides nothing
  ASSERT_TRUE(own.Reserve(n).ok());
  ExpectListingsMatch(own, 3, n, rng);
}

// Prefault writes zeros over every byte of every array, in 2 MiB pieces that straddle the arrays'
// ends (a pool of 1000 blocks: each array a few MiB, none a multiple of the piece), on one thread
// or a pool's.
TEST(KvCacheTest, PrefaultZeroesEveryArrayWhole) {
  for (int threads : {0, 3}) {
    SCOPED_TRACE(threads);
    std::unique_ptr<kernels::ThreadPool> workers = threads ? std::make_unique<kernels::ThreadPool>(threads) : nullptr;
    const int64_t blocks = 1000, block = 37;
    KvBlockPool pool(Shape(), block, blocks, false);
    // Garbage first, so that zeros can only come from Prefault.
    for (int64_t layer = 2; layer <= 4; ++layer)
      for (int64_t b = 0; b < blocks; ++b)
        for (int64_t o = 0; o < block; ++o) {
          std::fill_n(pool.latent(layer, b, o), 24, 1.5f);
          std::fill_n(pool.rope_key(layer, b, o), 8, 2.5f);
          if (layer != 3) std::fill_n(pool.index_key(layer, b, o), 16, 3.5f);
        }
    EXPECT_EQ(pool.Prefault(workers.get()), blocks * pool.block_bytes());
    for (int64_t layer = 2; layer <= 4; ++layer)
      for (int64_t b = 0; b < blocks; ++b)
        for (int64_t o = 0; o < block; ++o) {
          ASSERT_TRUE(std::all_of(pool.latent(layer, b, o), pool.latent(layer, b, o) + 24, [](float v) { return v == 0; }));
          ASSERT_TRUE(std::all_of(pool.rope_key(layer, b, o), pool.rope_key(layer, b, o) + 8, [](float v) { return v == 0; }));
          if (layer != 3)
            ASSERT_TRUE(std::all_of(pool.index_key(layer, b, o), pool.index_key(layer, b, o) + 16, [](float v) { return v == 0; }));
        }
  }
}

// A stage caches its own layers, with indexer keys where the layer has a full indexer; the last
// stage of a model with an MTP layer caches it too (with keys). KvBlockBytes is what a pool of
// that shape holds per block.
TEST(KvCacheTest, StageShapesCountTheMtpLayerOnTheLastStage) {
  model::ModelConfig c;
  c.num_hidden_layers = 4;
  c.kv_lora_rank = 64;
  c.qk_rope_head_dim = 16;
  c.index_head_dim = 32;
  c.max_position_embeddings = 4096;
  c.indexer_types = {model::IndexerKind::kFull, model::IndexerKind::kShared, model::IndexerKind::kShared,
                     model::IndexerKind::kFull};
  c.num_nextn_predict_layers = 1;
  const KvCacheShape first = StageKvShape(c, 0, 2, /*last_stage=*/false);
  EXPECT_EQ(first.first_layer, 0);
  EXPECT_EQ(first.layer_has_index_keys, (std::vector<bool>{true, false}));
  const KvCacheShape last = StageKvShape(c, 2, 4, /*last_stage=*/true);
  EXPECT_EQ(last.first_layer, 2);
  EXPECT_EQ(last.layer_has_index_keys, (std::vector<bool>{false, true, true}));
  EXPECT_EQ(KvBlockBytes(last, 16), (3 * (64 + 16) + 2 * 32) * 16 * 4);
  EXPECT_EQ(KvBlockPool(last, 16, 2, false).block_bytes(), KvBlockBytes(last, 16));
  c.num_nextn_predict_layers = 0;
  EXPECT_EQ(StageKvShape(c, 0, 4, /*last_stage=*/true).layer_has_index_keys.size(), 4u);
}

// A BF16 cache: half the bytes of the latent and rope rows a block (the indexer keys stay f32),
// those rows rounded to nearest even once when written (what attention then reads, exactly), the
// typed listings point at the rows the writes filled, and a growable pool keeps them across growth.
TEST(KvCacheTest, Bf16RowsAreRoundedOnceAndListedWhereTheyWereWritten) {
  KvCacheShape shape = Shape();
  EXPECT_EQ(KvBlockBytes(shape, 16), (3 * (24 + 8) + 2 * 16) * 16 * 4);
  shape.dtype = KvDType::kBf16;
  EXPECT_EQ(KvBlockBytes(shape, 16), (3 * (24 + 8) * 2 + 2 * 16 * 4) * 16);
  EXPECT_EQ(KvBlockPool(shape, 16, 3, false).block_bytes(), KvBlockBytes(shape, 16));
  KvBlockPool fixed(shape, 37, 100, false);  // what a worker commits at start-up is what was budgeted
  EXPECT_EQ(fixed.Prefault(nullptr), 100 * fixed.block_bytes());
  KvDType parsed = KvDType::kF32;
  EXPECT_TRUE(ParseKvDType("bf16", &parsed));
  EXPECT_EQ(parsed, KvDType::kBf16);
  parsed = KvDType::kF32;
  EXPECT_TRUE(ParseKvDType("bfloat16", &parsed));  // vLLM's spelling
  EXPECT_EQ(parsed, KvDType::kBf16);
  EXPECT_TRUE(ParseKvDType("f32", &parsed));
  EXPECT_EQ(parsed, KvDType::kF32);
  parsed = KvDType::kBf16;
  EXPECT_TRUE(ParseKvDType("auto", &parsed));
  EXPECT_EQ(parsed, KvDType::kF32);
  for (const char* bad : {"", "fp16", "BF16", "bf16 ", "fp8_e5m2", "FP8", "fp8_e4m3fn", "fp8_ds_mla", "fp8_inc"})
    EXPECT_FALSE(ParseKvDType(bad, &parsed)) << bad;
  EXPECT_EQ(KvDTypeNameError("--kv-cache-dtype", "f16"),
            "--kv-cache-dtype 'f16' is not one of f32, bf16, int8, fp8 (= fp8_e4m3), auto");
  EXPECT_NE(KvDTypeNameError("--kv-cache-dtype", "fp8_e5m2").find("other FP8 layouts (e5m2, inc, ds_mla) are not offered"),
            std::string::npos);

  std::mt19937 rng(11);
  std::normal_distribution<float> d(0.0f, 3.0f);
  KvCache cache(shape, 5);  // self-managed: grows (and copies) while positions are reserved
  const int64_t n = 90;
  std::vector<std::vector<float>> lat(n), kpe(n), idx(n);
  for (int64_t p = 0; p < n; ++p) {
    ASSERT_TRUE(cache.Reserve(p + 1).ok());
    for (auto* v : {&lat[p], &kpe[p], &idx[p]}) v->resize(v == &lat[p] ? 24 : v == &kpe[p] ? 8 : 16);
    for (auto* v : {&lat[p], &kpe[p], &idx[p]})
      for (float& x : *v) x = d(rng);
    lat[p][0] = 1.00390625f;  // 1 + 2^-8: halfway between two BF16 values; even rounds down to 1
    lat[p][1] = 1.01171875f;  // 1 + 3·2^-8: halfway; rounds up to 1 + 2^-6
    cache.WriteLatent(3, p, lat[p].data());
    cache.WriteRopeKey(3, p, kpe[p].data());
    cache.WriteIndexKey(4, p, idx[p].data());
  }
  std::vector<const uint16_t*> lat_rows(n), kpe_rows(n);
  std::vector<const float*> idx_rows(n);
  cache.RowPointers(3, n, lat_rows.data(), kpe_rows.data());
  cache.IndexKeyRows(4, 0, n, idx_rows.data());
  for (int64_t p = 0; p < n; ++p) {
    EXPECT_EQ(kernels::Bf16ToF32(lat_rows[p][0]), 1.0f);
    EXPECT_EQ(kernels::Bf16ToF32(lat_rows[p][1]), 1.015625f);
    for (int i = 0; i < 24; ++i) ASSERT_EQ(lat_rows[p][i], kernels::F32ToBf16(lat[p][i])) << p << " " << i;
    for (int i = 0; i < 8; ++i) ASSERT_EQ(kpe_rows[p][i], kernels::F32ToBf16(kpe[p][i])) << p << " " << i;
    for (int i = 0; i < 16; ++i) ASSERT_EQ(idx_rows[p][i], idx[p][i]) << p << " " << i;  // kept f32
  }
  std::vector<int32_t> picked = {0, 89, 17, 18, 4, 5, 64};
  std::vector<const uint16_t*> some_lat(picked.size()), some_kpe(picked.size());
  cache.RowPointers(3, picked.data(), static_cast<int64_t>(picked.size()), some_lat.data(), some_kpe.data());
  for (size_t i = 0; i < picked.size(); ++i) {
    EXPECT_EQ(some_lat[i], lat_rows[picked[i]]);
    EXPECT_EQ(some_kpe[i], kpe_rows[picked[i]]);
  }
  // An f32 cache stores the values as they are.
  KvCache exact(Shape(), 5);
  ASSERT_TRUE(exact.Reserve(1).ok());
  exact.WriteLatent(3, 0, lat[0].data());
  EXPECT_TRUE(std::equal(lat[0].begin(), lat[0].end(), exact.latent(3, 0)));
}

// Positions 0..n-1 of `cache` written with normal(0, 1) · magnitude(p) values: layer 3's latent
// [24] and rope key [8] rows, layer 4's indexer key [16] (Shape()'s dims); the values as written.
struct WrittenRows {
  std::vector<std::vector<float>> lat, kpe, idx;
};
WrittenRows WriteRandomRows(KvCache& cache, int64_t n, uint32_t seed, const std::function<float(int64_t)>& magnitude) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  WrittenRows w{std::vector<std::vector<float>>(n), std::vector<std::vector<float>>(n),
                std::vector<std::vector<float>>(n)};
  for (int64_t p = 0; p < n; ++p) {
    EXPECT_TRUE(cache.Reserve(p + 1).ok());
    w.lat[p].resize(24), w.kpe[p].resize(8), w.idx[p].resize(16);
    for (auto* v : {&w.lat[p], &w.kpe[p], &w.idx[p]})
      for (float& x : *v) x = d(rng) * magnitude(p);
    cache.WriteLatent(3, p, w.lat[p].data());
    cache.WriteRopeKey(3, p, w.kpe[p].data());
    cache.WriteIndexKey(4, p, w.idx[p].data());
  }
  return w;
}

// An FP8 cache (vLLM's --kv-cache-dtype fp8 / fp8_e4m3): a latent row is its e4m3 bytes padded to 4
// and a power-of-two f32 scale (kernels::WriteFp8Row), the rope keys are BF16 (RopeKeyDType), the
// indexer keys stay f32; the block bytes are
// what the pool commits; the listings point at the rows the writes filled, which hold exactly
// WriteFp8Row's bytes (also across a growable pool's growth), with rows of very different
// magnitudes each kept to e4m3's relative precision by its own scale.
TEST(KvCacheTest, Fp8RowsKeepAScaleEachAndAreListedWhereTheyWereWritten) {
  KvCacheShape shape = Shape();
  shape.dtype = KvDType::kFp8E4m3;
  EXPECT_EQ(KvRowBytes(KvDType::kFp8E4m3, 24), 28);
  EXPECT_EQ(KvRowBytes(KvDType::kFp8E4m3, 7), 12);
  EXPECT_EQ(RopeKeyDType(KvDType::kFp8E4m3), KvDType::kBf16);
  EXPECT_EQ(RopeKeyDType(KvDType::kInt8), KvDType::kBf16);
  EXPECT_EQ(RopeKeyDType(KvDType::kBf16), KvDType::kBf16);
  EXPECT_EQ(RopeKeyDType(KvDType::kF32), KvDType::kF32);
  EXPECT_EQ(KvBlockBytes(shape, 16), (3 * (28 + 8 * 2) + 2 * 16 * 4) * 16);  // rope keys BF16
  EXPECT_EQ(KvBlockPool(shape, 16, 3, false).block_bytes(), KvBlockBytes(shape, 16));
  KvBlockPool fixed(shape, 37, 100, false);
  EXPECT_EQ(fixed.Prefault(nullptr), 100 * fixed.block_bytes());
  KvDType parsed = KvDType::kF32;
  EXPECT_TRUE(ParseKvDType("fp8", &parsed));
  EXPECT_EQ(parsed, KvDType::kFp8E4m3);
  parsed = KvDType::kF32;
  EXPECT_TRUE(ParseKvDType("fp8_e4m3", &parsed));
  EXPECT_EQ(parsed, KvDType::kFp8E4m3);
  EXPECT_STREQ(KvDTypeName(KvDType::kFp8E4m3), "fp8_e4m3");

  KvCache cache(shape, 5);  // self-managed: grows (and copies) while positions are reserved
  const int64_t n = 90;
  // Magnitudes 2^-20 .. 2^19.
  const auto [lat, kpe, idx] =
      WriteRandomRows(cache, n, 12, [](int64_t p) { return std::ldexp(1.0f, static_cast<int>(p % 40) - 20); });
  std::vector<const uint8_t*> lat_rows(n);
  std::vector<const uint16_t*> kpe_rows(n);  // the rope keys in BF16
  std::vector<const float*> idx_rows(n);
  cache.RowPointers(3, n, lat_rows.data(), kpe_rows.data());
  cache.IndexKeyRows(4, 0, n, idx_rows.data());
  std::vector<uint8_t> want_lat(KvRowBytes(KvDType::kFp8E4m3, 24));
  for (int64_t p = 0; p < n; ++p) {
    kernels::WriteFp8Row(lat[p].data(), 24, want_lat.data());

    ASSERT_TRUE(std::equal(want_lat.begin(), want_lat.end(), lat_rows[p])) << p;
    for (int i = 0; i < 8; ++i) ASSERT_EQ(kpe_rows[p][i], kernels::F32ToBf16(kpe[p][i])) << p << " " << i;
    const float s = kernels::ScaledRowScale(lat_rows[p], 24);
    for (int i = 0; i < 24; ++i) {
      const float back = kernels::Fp8E4M3ToF32(lat_rows[p][i]) * s;
      ASSERT_LE(std::fabs(back - lat[p][i]), std::max(std::fabs(lat[p][i]) / 16, s / 1024)) << p << " " << i;
    }
    for (int i = 0; i < 16; ++i) ASSERT_EQ(idx_rows[p][i], idx[p][i]) << p << " " << i;  // kept f32
  }
  std::vector<int32_t> picked = {0, 89, 17, 18, 4, 5, 64};
  std::vector<const uint8_t*> some_lat(picked.size());
  std::vector<const uint16_t*> some_kpe(picked.size());
  cache.RowPointers(3, picked.data(), static_cast<int64_t>(picked.size()), some_lat.data(), some_kpe.data());
  for (size_t i = 0; i < picked.size(); ++i) {
    EXPECT_EQ(some_lat[i], lat_rows[picked[i]]);
    EXPECT_EQ(some_kpe[i], kpe_rows[picked[i]]);
  }
}

// An int8 cache: the same row layout and bytes as FP8 (codes, then the scale), latent rows holding
// exactly WriteInt8Row's bytes where the listings point, rope keys BF16, the indexer keys f32.
TEST(KvCacheTest, Int8RowsHoldWriteInt8RowsBytesWhereTheyAreListed) {
  KvCacheShape shape = Shape();
  shape.dtype = KvDType::kInt8;
  KvCacheShape fp8 = Shape();
  fp8.dtype = KvDType::kFp8E4m3;
  EXPECT_EQ(KvBlockBytes(shape, 16), KvBlockBytes(fp8, 16));
  KvDType parsed = KvDType::kF32;
  EXPECT_TRUE(ParseKvDType("int8", &parsed));
  EXPECT_EQ(parsed, KvDType::kInt8);
  EXPECT_STREQ(KvDTypeName(KvDType::kInt8), "int8");
  KvCache cache(shape, 5);
  const int64_t n = 40;
  const auto [lat, kpe, idx] = WriteRandomRows(cache, n, 13, [](int64_t) { return 2.0f; });
  std::vector<const int8_t*> lat_rows(n);
  std::vector<const uint16_t*> kpe_rows(n);
  std::vector<const float*> idx_rows(n);
  cache.RowPointers(3, n, lat_rows.data(), kpe_rows.data());
  cache.IndexKeyRows(4, 0, n, idx_rows.data());
  std::vector<int8_t> want_lat(KvRowBytes(KvDType::kInt8, 24));
  for (int64_t p = 0; p < n; ++p) {
    kernels::WriteInt8Row(lat[p].data(), 24, want_lat.data());

    ASSERT_TRUE(std::equal(want_lat.begin(), want_lat.end(), lat_rows[p])) << p;
    for (int i = 0; i < 8; ++i) ASSERT_EQ(kpe_rows[p][i], kernels::F32ToBf16(kpe[p][i])) << p << " " << i;
    for (int i = 0; i < 16; ++i) ASSERT_EQ(idx_rows[p][i], idx[p][i]) << p << " " << i;  // kept f32
  }
}

// --index-key-dtype: the indexer key rows in each dtype, whatever the latent rows' dtype: a row
// holds exactly what its writer makes of the values (BF16 rounding, WriteInt8Row, WriteFp8Row)
// where IndexKeyRows points, through a growable pool's growth; the latent and rope rows are not
// touched by it; the pool commits the block bytes KvBlockBytes counts.
TEST(KvCacheTest, IndexKeysTakeTheirOwnDtype) {
  for (KvDType latent : {KvDType::kF32, KvDType::kInt8}) {
    for (KvDType index : {KvDType::kBf16, KvDType::kInt8, KvDType::kFp8E4m3}) {
      SCOPED_TRACE(std::string(KvDTypeName(latent)) + " latents, " + KvDTypeName(index) + " indexer keys");
      KvCacheShape shape = Shape();
      shape.dtype = latent;
      shape.index_key_dtype = index;
      const int64_t lat_bytes = KvRowBytes(latent, 24) + KvRowBytes(RopeKeyDType(latent), 8);
      EXPECT_EQ(KvBlockBytes(shape, 16), (3 * lat_bytes + 2 * KvRowBytes(index, 16)) * 16);
      KvBlockPool fixed(shape, 7, 9, false);
      EXPECT_EQ(fixed.index_row_bytes(), KvRowBytes(index, 16));
      EXPECT_EQ(fixed.Prefault(nullptr), 9 * fixed.block_bytes());

      KvCache cache(shape, 5);  // grows while positions are reserved
      EXPECT_EQ(cache.index_key_dtype(), index);
      const int64_t n = 70;
      const auto [lat, kpe, idx] =
          WriteRandomRows(cache, n, 14, [](int64_t p) { return std::ldexp(1.0f, static_cast<int>(p % 30) - 15); });
      std::vector<const uint8_t*> rows(n);
      cache.IndexKeyRows(4, 0, n, rows.data());
      std::vector<const uint8_t*> tail(n - 33);
      cache.IndexKeyRows(4, 33, n, tail.data());
      std::vector<uint8_t> want(KvRowBytes(index, 16));
      for (int64_t p = 0; p < n; ++p) {
        if (index == KvDType::kBf16) {
          for (int i = 0; i < 16; ++i) {
            const uint16_t b = kernels::F32ToBf16(idx[p][i]);
            std::memcpy(want.data() + 2 * i, &b, 2);
          }
        } else if (index == KvDType::kInt8) {
          kernels::WriteInt8Row(idx[p].data(), 16, reinterpret_cast<int8_t*>(want.data()));
        } else {
          kernels::WriteFp8Row(idx[p].data(), 16, want.data());
        }
        ASSERT_TRUE(std::equal(want.begin(), want.end(), rows[p])) << p;
        if (p >= 33) ASSERT_EQ(tail[p - 33], rows[p]) << p;
      }
      // The latent rows are the latent dtype's, untouched by the indexer keys' dtype.
      if (latent == KvDType::kF32) {
        for (int64_t p = 0; p < n; ++p) ASSERT_TRUE(std::equal(lat[p].begin(), lat[p].end(), cache.latent(3, p))) << p;
      } else {
        std::vector<const int8_t*> lat_rows(n);
        std::vector<const uint16_t*> kpe_rows(n);
        cache.RowPointers(3, n, lat_rows.data(), kpe_rows.data());
        std::vector<int8_t> want_lat(KvRowBytes(KvDType::kInt8, 24));
        for (int64_t p = 0; p < n; ++p) {
          kernels::WriteInt8Row(lat[p].data(), 24, want_lat.data());
          ASSERT_TRUE(std::equal(want_lat.begin(), want_lat.end(), lat_rows[p])) << p;
        }
      }
    }
  }
}

}  // namespace
}  // namespace glm::kv_cache
