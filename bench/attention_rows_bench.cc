// Decode attention's row kernels at GLM-5's MLA shapes: per token and layer, every group of 8
// heads scores the selected keys' cached rows (DotRows over the 512-float latents and the 64-float
// rope keys) and sums them weighted (WeightedRowSum), as MlaAttention's decode jobs do.
//
//   build/bin/attention_rows_bench [--heads 64] [--keys 2048] [--rank 512] [--rope 64] [--key-block N]
//                                  [--kv-dtype f32|bf16] [--arena-mib 1024] [--seconds 0.5] [--baseline FILE]
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
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/baseline_store.h"
#include "bench/micros_per_call.h"
#include "shard_worker/kernels/dtype.h"
#include "shard_worker/kernels/vector_ops.h"
#include "shard_worker/runtime/dashed_flags.h"

ABSL_FLAG(int32_t, heads, 64, "attention heads (in groups of kMaxQueries)");
ABSL_FLAG(int32_t, keys, 2048, "selected keys per token (DSA's index_topk)");
ABSL_FLAG(int32_t, rank, 512, "latent width (kv_lora_rank)");
ABSL_FLAG(int32_t, rope, 64, "rope key width (qk_rope_head_dim)");
ABSL_FLAG(int32_t, arena_mib, 1024, "cache the keys are drawn from (MiB)");
ABSL_FLAG(int32_t, key_block, 0, "keys per block in a key-blocked order (0: each head group over all keys)");
ABSL_FLAG(double, seconds, 0.5, "time spent on each measurement");
ABSL_FLAG(std::string, kv_dtype, "f32", "the cache rows: f32 | bf16 (--kv-cache-dtype bf16: half the bytes, widened on load)");
ABSL_FLAG(std::string, baseline, GLM_BENCH_BASELINE_FILE, "JSON file of previous best results");
ABSL_FLAG(bool, record, false, "store the scattered rate as the new best in --baseline if it is better");

namespace {

using glm::kernels::kMaxQueries;

struct Shapes {
  int heads, keys, rank, rope;
};

// One token's attention rows in one layer: scores of every head group, then the weighted sums.
// Row: float, or uint16_t (BF16 rows of a --kv-cache-dtype bf16 cache).
template <typename Row>
void AttendOnce(const Shapes& s, const float* q_lat, const float* q_pe, const std::vector<const Row*>& lat,
                const std::vector<const Row*>& pe, float* scores, float* pe_scores, float* o_lat) {
  for (int h0 = 0; h0 < s.heads; h0 += kMaxQueries) {
    const int nh = std::min(kMaxQueries, s.heads - h0);
    glm::kernels::DotRows(q_lat + h0 * s.rank, s.rank, nh, lat.data(), s.keys, s.rank, scores, s.keys);
    glm::kernels::DotRows(q_pe + h0 * s.rope, s.rope, nh, pe.data(), s.keys, s.rope, pe_scores, s.keys);
    glm::kernels::WeightedRowSum(scores, s.keys, nh, lat.data(), s.keys, s.rank, o_lat + h0 * s.rank, s.rank);
  }
}

// The same work with the keys in blocks of `block`: every head group's scores over a block, then
// (after all scores, as the softmax needs) every group's weighted sum over a block — a block's
// rows are read from memory once per pass, not once per head group. DotRows gives a row's score
// whatever the list, and WeightedRowSum adds the keys in order, so the results are the same bits.
template <typename Row>
void AttendKeyBlocked(const Shapes& s, int block, const float* q_lat, const float* q_pe,
                      const std::vector<const Row*>& lat, const std::vector<const Row*>& pe, float* scores,
                      float* pe_scores, float* o_lat) {
  for (int k0 = 0; k0 < s.keys; k0 += block) {
    const int nk = std::min(block, s.keys - k0);
    for (int h0 = 0; h0 < s.heads; h0 += kMaxQueries) {
      const int nh = std::min(kMaxQueries, s.heads - h0);
      glm::kernels::DotRows(q_lat + h0 * s.rank, s.rank, nh, lat.data() + k0, nk, s.rank, scores + h0 * s.keys + k0,
                            s.keys);
      glm::kernels::DotRows(q_pe + h0 * s.rope, s.rope, nh, pe.data() + k0, nk, s.rope, pe_scores + h0 * s.keys + k0,
                            s.keys);
    }
  }
  for (int k0 = 0; k0 < s.keys; k0 += block) {
    const int nk = std::min(block, s.keys - k0);
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
  if (kv_dtype != "f32" && kv_dtype != "bf16") {
    std::fprintf(stderr, "attention_rows_bench: --kv-dtype must be f32 or bf16\n");
    return 2;
  }
  return kv_dtype == "bf16" ? Run<uint16_t>(s, seconds) : Run<float>(s, seconds);
}

namespace {

template <typename Row>
int Run(const Shapes& s, double seconds) {
  constexpr bool kBf16 = sizeof(Row) == 2;
  const int64_t row = s.rank + s.rope;  // a cache row: latent then rope key
  const int64_t arena_rows =
      std::max<int64_t>(s.keys, (int64_t{absl::GetFlag(FLAGS_arena_mib)} << 20) / (row * int64_t{sizeof(Row)}));
  std::vector<Row> arena(arena_rows * row);
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<Row> pool(4093);  // values repeat with a prime period: filling 1 GiB takes ~0.1 s, not seconds
  for (Row& v : pool) {
    if constexpr (kBf16) v = glm::kernels::F32ToBf16(uniform(rng));
    else v = uniform(rng);
  }
  for (size_t i = 0; i < arena.size(); ++i) arena[i] = pool[i % pool.size()];
  std::vector<float> q_lat(s.heads * s.rank), q_pe(s.heads * s.rope);
  for (float& v : q_lat) v = uniform(rng);
  for (float& v : q_pe) v = uniform(rng);
  std::vector<float> scores(s.heads * s.keys), pe_scores(s.heads * s.keys), o_lat(s.heads * s.rank);
  const int key_block = absl::GetFlag(FLAGS_key_block);
  std::vector<const Row*> lat(s.keys), pe(s.keys);

  // Scattered: a fresh sorted selection per call (drawing it is timed too: ~2 µs a call).
  std::vector<int64_t> picks(s.keys);
  auto select_scattered = [&] {
    for (int64_t& p : picks) p = static_cast<int64_t>(rng() % arena_rows);
    std::sort(picks.begin(), picks.end());
    for (int k = 0; k < s.keys; ++k) lat[k] = arena.data() + picks[k] * row, pe[k] = lat[k] + s.rank;
  };
  // Resident: 16 rows, repeated.
  auto select_resident = [&] {
    for (int k = 0; k < s.keys; ++k) lat[k] = arena.data() + (k % 16) * row, pe[k] = lat[k] + s.rank;
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
                          (kBf16 ? "/bf16-rows" : "") + "/gflops";
  const double previous = baselines.Get(key);
  if (absl::GetFlag(FLAGS_record)) baselines.RecordIfBetter(key, rate);
  std::printf("%d heads x %d keys of %d+%d %s, one token, one layer (%.3f GFLOP), one thread, %s\n", s.heads,
              s.keys, s.rank, s.rope, kBf16 ? "BF16 values" : "floats", gflop,
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
