// Decode attention's row kernels at GLM-5's MLA shapes: per token and layer, every group of 8
// heads scores the selected keys' cached rows (DotRows over the 512-float latents and the 64-float
// rope keys) and sums them weighted (WeightedRowSum), as MlaAttention's decode jobs do.
//
//   build/bin/attention_rows_bench [--heads 64] [--keys 2048] [--rank 512] [--rope 64] [--key-block N]
//                                  [--kv-dtype f32|bf16|int8|fp8] [--arena-mib 1024] [--seconds 0.5] [--baseline FILE]
//                                  [--record]
//
// --key-block N: all head groups over a block of N keys before the next block (a block's rows are
// read from memory once per pass, not once per group); checked to give the same bits. Zen 4 VM,
// one thread, 64 heads x 2048 keys: 7.2 ms a token-layer per head group, 5.3-5.6 ms in blocks of
// 16-128 keys (1.3x). MlaAttention's jobs run their head groups this way (blocks of 64 keys); a
// job has several groups where the threads are few for the heads and tokens (heads·tokens /
// threads > 8), one on a many-core rank decoding one token, where the default order applies.
// DotRows in tiles of 4 queries x 4 rows (each row chunk loaded once for 4 queries, not once per
// query; same bits): in blocks of 64, scattered 5.4 -> 4.0 ms, rows in cache 4.0 -> 2.7 ms (106
// GFLOP/s); --kv-dtype bf16 (rows of a BF16 KV cache): 5.1 -> 3.8 ms scattered.
//
// The keys are --keys rows drawn at random from an --arena-mib cache (DSA selections: sorted
// positions scattered over the whole context), fresh each call. Printed next to it, in the same
// run: the same calls over rows that stay in L1/L2 (the kernels' compute rate: the limit the
// scattered case is measured against). "vs best": against bench/baselines.json.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/baseline_store.h"
#include "bench/micros_per_call.h"
#include "shard_worker/kernels/dtype.h"
#include "shard_worker/kernels/int8_row_dots.h"
#include "shard_worker/kernels/vector_ops.h"
#include "shard_worker/runtime/dashed_flags.h"

ABSL_FLAG(int32_t, heads, 64, "attention heads (in groups of kMaxQueries)");
ABSL_FLAG(int32_t, keys, 2048, "selected keys per token (DSA's index_topk)");
ABSL_FLAG(int32_t, rank, 512, "latent width (kv_lora_rank)");
ABSL_FLAG(int32_t, rope, 64, "rope key width (qk_rope_head_dim)");
ABSL_FLAG(int32_t, arena_mib, 1024, "cache the keys are drawn from (MiB)");
ABSL_FLAG(int32_t, key_block, 0, "keys per block in a key-blocked order (0: each head group over all keys)");
ABSL_FLAG(double, seconds, 0.5, "time spent on each measurement");
ABSL_FLAG(std::string, kv_dtype, "f32",
          "the cache rows: f32 | bf16 (--kv-cache-dtype bf16: half the bytes, widened on load) | int8 | fp8 (a byte a "
          "value and a scale a row)");
ABSL_FLAG(std::string, baseline, GLM_BENCH_BASELINE_FILE, "JSON file of previous best results");
ABSL_FLAG(bool, record, false, "store the scattered rate as the new best in --baseline if it is better");

namespace {

using glm::kernels::kMaxQueries;

struct Shapes {
  int heads, keys, rank, rope;
};

// One token's attention rows in one layer: scores of every head group, then the weighted sums.
// Row: float, uint16_t (BF16 rows of a --kv-cache-dtype bf16 cache), int8_t or uint8_t (int8 / FP8
// rows: codes, then a scale); RopeRow: the rope keys' (Row, but BF16 under 8-bit latents, as the
// cache keeps them: kv_cache::RopeKeyDType).
// int8 latents: their scores are integer dot products with the latent queries rounded to int8, all
// heads at once (kernels/int8_row_dots.h), as MlaAttention computes them.
template <typename Row>
void Int8LatentScores(const Shapes& s, const float* q_lat, const std::vector<const Row*>& lat, int k0, int nk,
                      float* scores) {
  if constexpr (std::is_same_v<Row, int8_t>) {
    thread_local glm::kernels::Int8QueryRows q;
    if (k0 == 0) q.Quantize(q_lat, s.heads, s.rank);  // once a token
    glm::kernels::Int8RowDots(q, lat.data() + k0, nk, scores + k0, s.keys);
  }
}

template <typename Row, typename RopeRow>
void AttendOnce(const Shapes& s, const float* q_lat, const float* q_pe, const std::vector<const Row*>& lat,
                const std::vector<const RopeRow*>& pe, float* scores, float* pe_scores, float* o_lat) {
  constexpr bool kInt8 = std::is_same_v<Row, int8_t>;
  if constexpr (kInt8) Int8LatentScores(s, q_lat, lat, 0, s.keys, scores);
  for (int h0 = 0; h0 < s.heads; h0 += kMaxQueries) {
    const int nh = std::min(kMaxQueries, s.heads - h0);
    if constexpr (!kInt8)  // (int8 rows: all heads scored above)
      glm::kernels::DotRows(q_lat + h0 * s.rank, s.rank, nh, lat.data(), s.keys, s.rank, scores, s.keys);
    glm::kernels::DotRows(q_pe + h0 * s.rope, s.rope, nh, pe.data(), s.keys, s.rope, pe_scores, s.keys);
    if constexpr (!kInt8)  // (int8 rows: all heads summed below)
      glm::kernels::WeightedRowSum(scores, s.keys, nh, lat.data(), s.keys, s.rank, o_lat + h0 * s.rank, s.rank);
  }
  if constexpr (kInt8) glm::kernels::Int8RowWeightedSum(scores, s.keys, s.heads, lat.data(), s.keys, s.rank, o_lat, s.rank);
}

// The same work with the keys in blocks of `block`: every head group's scores over a block, then
// (after all scores, as the softmax needs) every group's weighted sum over a block — a block's
// rows are read from memory once per pass, not once per head group. DotRows gives a row's score
// whatever the list, and WeightedRowSum adds the keys in order, so the results are the same bits.
template <typename Row, typename RopeRow>
void AttendKeyBlocked(const Shapes& s, int block, const float* q_lat, const float* q_pe,
                      const std::vector<const Row*>& lat, const std::vector<const RopeRow*>& pe, float* scores,
                      float* pe_scores, float* o_lat) {
  for (int k0 = 0; k0 < s.keys; k0 += block) {
    const int nk = std::min(block, s.keys - k0);
    Int8LatentScores(s, q_lat, lat, k0, nk, scores);
    for (int h0 = 0; h0 < s.heads; h0 += kMaxQueries) {
      const int nh = std::min(kMaxQueries, s.heads - h0);
      if constexpr (!std::is_same_v<Row, int8_t>)
        glm::kernels::DotRows(q_lat + h0 * s.rank, s.rank, nh, lat.data() + k0, nk, s.rank, scores + h0 * s.keys + k0,
                              s.keys);
      glm::kernels::DotRows(q_pe + h0 * s.rope, s.rope, nh, pe.data() + k0, nk, s.rope, pe_scores + h0 * s.keys + k0,
                            s.keys);
    }
  }
  for (int k0 = 0; k0 < s.keys; k0 += block) {
    const int nk = std::min(block, s.keys - k0);
    if constexpr (std::is_same_v<Row, int8_t>) {  // all heads; blocks of 64 keys give one call's bits
      glm::kernels::Int8RowWeightedSum(scores + k0, s.keys, s.heads, lat.data() + k0, nk, s.rank, o_lat, s.rank);
      continue;
    }
    for (int h0 = 0; h0 < s.heads; h0 += kMaxQueries) {
      const int nh = std::min(kMaxQueries, s.heads - h0);
      glm::kernels::WeightedRowSum(scores + h0 * s.keys + k0, s.keys, nh, lat.data() + k0, nk, s.rank,
                                   o_lat + h0 * s.rank, s.rank);
    }
  }
}

template <typename Row>
int Run(const Shapes& s, double seconds);

}  // namespace

int main(int argc, char** argv) {
  glm::runtime::NormalizeDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  const Shapes s{absl::GetFlag(FLAGS_heads), absl::GetFlag(FLAGS_keys), absl::GetFlag(FLAGS_rank),
                 absl::GetFlag(FLAGS_rope)};
  const double seconds = absl::GetFlag(FLAGS_seconds);
  if (s.heads < 1 || s.keys < 1 || s.rank < 1 || s.rope < 1 || seconds <= 0) {
    std::fprintf(stderr, "attention_rows_bench: sizes and --seconds must be positive\n");
    return 2;
  }
  const std::string kv_dtype = absl::GetFlag(FLAGS_kv_dtype);
  if (kv_dtype == "f32") return Run<float>(s, seconds);
  if (kv_dtype == "bf16") return Run<uint16_t>(s, seconds);
  if (kv_dtype == "int8") return Run<int8_t>(s, seconds);
  if (kv_dtype == "fp8") return Run<uint8_t>(s, seconds);
  std::fprintf(stderr, "attention_rows_bench: --kv-dtype must be f32, bf16, int8 or fp8\n");
  return 2;
}

namespace {

template <typename Row>
int Run(const Shapes& s, double seconds) {
  constexpr bool kScaled = sizeof(Row) == 1;  // one-byte codes and a scale a row
  using RopeRow = std::conditional_t<kScaled, uint16_t, Row>;  // BF16 rope keys under 8-bit latents
  constexpr const char* kRowName = std::is_same_v<Row, float>      ? "floats"
                                   : std::is_same_v<Row, uint16_t> ? "BF16 values"
                                   : std::is_same_v<Row, int8_t>   ? "int8 rows"
                                                                   : "FP8 rows";
  // A cache row in bytes: the latent row, then the rope key row.
  const int64_t lat_bytes = kScaled ? glm::kernels::ScaledRowBytes(s.rank) : s.rank * int64_t{sizeof(Row)};
  const int64_t row = lat_bytes + s.rope * int64_t{sizeof(RopeRow)};
  const int64_t arena_rows = std::max<int64_t>(s.keys, (int64_t{absl::GetFlag(FLAGS_arena_mib)} << 20) / row);
  std::vector<uint8_t> arena(arena_rows * row);
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  // Rows repeat with a prime period: filling 1 GiB takes ~0.1 s, not seconds.
  constexpr int64_t kPatternRows = 61;
  std::vector<uint8_t> pattern(kPatternRows * row);
  std::vector<float> values(std::max(s.rank, s.rope));
  // A row of n random values at dst as element type T stores them.
  auto fill = [&]<typename T>(uint8_t* dst, int64_t n) {
    for (int64_t i = 0; i < n; ++i) values[i] = uniform(rng);
    if constexpr (std::is_same_v<T, int8_t>) glm::kernels::WriteInt8Row(values.data(), n, reinterpret_cast<int8_t*>(dst));
    else if constexpr (std::is_same_v<T, uint8_t>) glm::kernels::WriteFp8Row(values.data(), n, dst);
    else
      for (int64_t i = 0; i < n; ++i) {
        const T v = std::is_same_v<T, uint16_t> ? static_cast<T>(glm::kernels::F32ToBf16(values[i])) : values[i];
        std::memcpy(dst + i * sizeof(T), &v, sizeof(T));
      }
  };
  for (int64_t r = 0; r < kPatternRows; ++r) {
    fill.template operator()<Row>(pattern.data() + r * row, s.rank);
    fill.template operator()<RopeRow>(pattern.data() + r * row + lat_bytes, s.rope);
  }
  for (int64_t r = 0; r < arena_rows; ++r)
    std::memcpy(arena.data() + r * row, pattern.data() + (r % kPatternRows) * row, row);
  auto lat_of = [&](int64_t r) { return reinterpret_cast<const Row*>(arena.data() + r * row); };
  auto pe_of = [&](int64_t r) { return reinterpret_cast<const RopeRow*>(arena.data() + r * row + lat_bytes); };
  std::vector<float> q_lat(s.heads * s.rank), q_pe(s.heads * s.rope);
  for (float& v : q_lat) v = uniform(rng);
  for (float& v : q_pe) v = uniform(rng);
  std::vector<float> scores(s.heads * s.keys), pe_scores(s.heads * s.keys), o_lat(s.heads * s.rank);
  const int key_block = absl::GetFlag(FLAGS_key_block);
  std::vector<const Row*> lat(s.keys);
  std::vector<const RopeRow*> pe(s.keys);

  // Scattered: a fresh sorted selection per call (drawing it is timed too: ~2 µs a call).
  std::vector<int64_t> picks(s.keys);
  auto select_scattered = [&] {
    for (int64_t& p : picks) p = static_cast<int64_t>(rng() % arena_rows);
    std::sort(picks.begin(), picks.end());
    for (int k = 0; k < s.keys; ++k) lat[k] = lat_of(picks[k]), pe[k] = pe_of(picks[k]);
  };
  // Resident: 16 rows, repeated.
  auto select_resident = [&] {
    for (int k = 0; k < s.keys; ++k) lat[k] = lat_of(k % 16), pe[k] = pe_of(k % 16);
  };
  auto measure = [&](bool scattered) {
    if (!scattered) select_resident();
    return glm::bench::MicrosPerCall(
        [&] {
          if (scattered) select_scattered();
          if (key_block > 0)
            AttendKeyBlocked(s, key_block, q_lat.data(), q_pe.data(), lat, pe, scores.data(), pe_scores.data(), o_lat.data());
          else
            AttendOnce(s, q_lat.data(), q_pe.data(), lat, pe, scores.data(), pe_scores.data(), o_lat.data());
        },
        seconds);
  };
  if (std::is_same_v<Row, int8_t> && key_block % glm::kernels::kInt8SumBlock != 0) {
    std::fprintf(stderr, "attention_rows_bench: int8 rows are summed in blocks of %lld keys: --key-block must be a "
                 "multiple of it\n", static_cast<long long>(glm::kernels::kInt8SumBlock));
    return 2;
  }
  if (key_block > 0) {  // the key-blocked order must give the unblocked order's bits
    select_scattered();
    std::vector<float> want(o_lat.size(), 0.0f), got(o_lat.size(), 0.0f);
    AttendOnce(s, q_lat.data(), q_pe.data(), lat, pe, scores.data(), pe_scores.data(), want.data());
    AttendKeyBlocked(s, key_block, q_lat.data(), q_pe.data(), lat, pe, scores.data(), pe_scores.data(), got.data());
    if (std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) != 0) {
      std::fprintf(stderr, "attention_rows_bench: the key-blocked order changed the results\n");
      return 1;
    }
  }
  const double scattered_us = measure(true), resident_us = measure(false);
  // Multiply-adds: scores over latent and rope, and the weighted latent sum.
  const double gflop = 2.0 * s.heads * s.keys * (2.0 * s.rank + s.rope) / 1e9;
  const double rate = gflop / (scattered_us * 1e-6);

  glm::bench::BaselineStore baselines(absl::GetFlag(FLAGS_baseline));
  const std::string key = "attention_rows_bench/heads" + std::to_string(s.heads) + "/keys" + std::to_string(s.keys) +
                          "/rank" + std::to_string(s.rank) +
                          (key_block > 0 ? "/key_block" + std::to_string(key_block) : std::string()) +
                          (std::is_same_v<Row, float>      ? ""
                           : std::is_same_v<Row, uint16_t> ? "/bf16-rows"
                           : std::is_same_v<Row, int8_t>   ? "/int8-rows"
                                                           : "/fp8-rows") +
                          "/gflops";
  const double previous = baselines.Get(key);
  if (absl::GetFlag(FLAGS_record)) baselines.RecordIfBetter(key, rate);
  std::printf("%d heads x %d keys of %d+%d %s, one token, one layer (%.3f GFLOP), one thread, %s\n", s.heads,
              s.keys, s.rank, s.rope, kRowName, gflop,
              key_block > 0 ? ("keys in blocks of " + std::to_string(key_block) + " (same bits as per head group)").c_str()
                            : "each head group of 8 over all keys");
  std::printf("%-34s %10s %9s %10s\n", "rows", "us/call", "GFLOP/s", "vs resident");
  std::printf("%-34s %10.1f %9.1f %10.2f\n", "scattered (DSA selection)", scattered_us, rate, resident_us / scattered_us);
  std::printf("%-34s %10.1f %9.1f %10.2f\n", "resident (16 rows, in cache)", resident_us, gflop / (resident_us * 1e-6),
              1.0);
  if (previous > 0) std::printf("scattered vs best recorded: %.2f (%.1f GFLOP/s)\n", rate / previous, previous);
  return 0;
}

}  // namespace
