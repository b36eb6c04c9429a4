// The DSA indexer's scoring at GLM-5's shape: one decoded token scores every cached position of a
// layer with every index head (32 heads x 128 values: 4096 multiply-adds a position), in blocks of
// 256 keys as DsaIndexer does, over a context of --context positions stored as each
// --index-key-dtype stores them. Per key-row format: microseconds a token-layer, G multiply-adds a
// second, the key bytes streamed a second, and the ratio to f32 rows and f32 arithmetic (DotRows)
// in the same run. int8 rows meet int8 queries in integer dot products (Int8RowDots: vpdpbusd where
// the CPU has AVX512-VNNI); f32 / bf16 / fp8 rows are widened to f32 in the DotRows tiles.
//
//   build/bin/indexer_scores_bench [--heads 32] [--dim 128] [--context 32768] [--seconds 0.5]
//                                  [--baseline FILE] [--record]
//
// "vs best": the int8 rate against bench/baselines.json.
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/baseline_store.h"
#include "bench/micros_per_call.h"
#include "shard_worker/kernels/dtype.h"
#include "shard_worker/kernels/int8_row_dots.h"
#include "shard_worker/kernels/vector_ops.h"
#include "shard_worker/runtime/dashed_flags.h"

ABSL_FLAG(int32_t, heads, 32, "index heads (GLM-5: 32)");
ABSL_FLAG(int32_t, dim, 128, "index head dimension (GLM-5: 128)");
ABSL_FLAG(int32_t, context, 32768, "cached positions scored by the token");
ABSL_FLAG(double, seconds, 0.5, "time spent on each measurement");
ABSL_FLAG(std::string, baseline, GLM_BENCH_BASELINE_FILE, "JSON file of previous best results");
ABSL_FLAG(bool, record, false, "store the int8 rate as the new best in --baseline if it is better");

namespace {

constexpr int64_t kKeyBlock = 256;  // DsaIndexer's

// Rows of one stored format in one arena, in position order; pointers a block at a time.
struct Arena {
  std::vector<uint8_t> bytes;
  int64_t row_bytes = 0;
  const uint8_t* row(int64_t p) const { return bytes.data() + p * row_bytes; }
};

template <typename Row>
double TimeDotRows(const Arena& a, const std::vector<float>& q, int heads, int64_t d, int64_t context, double seconds,
                   std::vector<float>& dots) {
  std::vector<const Row*> rows(kKeyBlock);
  return glm::bench::MicrosPerCall(
      [&] {
        for (int64_t s0 = 0; s0 < context; s0 += kKeyBlock) {
          const int64_t nb = std::min(kKeyBlock, context - s0);
          for (int64_t i = 0; i < nb; ++i) rows[i] = reinterpret_cast<const Row*>(a.row(s0 + i));
          for (int h0 = 0; h0 < heads; h0 += glm::kernels::kMaxQueries) {
            const int nh = std::min(glm::kernels::kMaxQueries, heads - h0);
            glm::kernels::DotRows(q.data() + h0 * d, d, nh, rows.data(), nb, d, dots.data() + h0 * nb, nb);
          }
        }
      },
      seconds);
}

}  // namespace

int main(int argc, char** argv) {
  glm::runtime::NormalizeDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  const int heads = absl::GetFlag(FLAGS_heads);
  const int64_t d = absl::GetFlag(FLAGS_dim), context = absl::GetFlag(FLAGS_context);
  const double seconds = absl::GetFlag(FLAGS_seconds);
  if (heads < 1 || heads > 4096 || d < 1 || d > 1040 || context < 1 || context > (int64_t{1} << 24) || !(seconds > 0)) {
    std::fprintf(stderr, "indexer_scores_bench: --heads 1..4096, --dim 1..1040, --context 1..2^24, --seconds > 0\n");
    return 2;
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> q(heads * d), key(d);
  for (float& v : q) v = nd(rng);
  Arena f32{{}, 4 * d}, bf16{{}, 2 * d}, int8{{}, glm::kernels::ScaledRowBytes(d)}, fp8{{}, glm::kernels::ScaledRowBytes(d)};
  for (Arena* a : {&f32, &bf16, &int8, &fp8}) a->bytes.resize(context * a->row_bytes);
  for (int64_t p = 0; p < context; ++p) {
    for (float& v : key) v = nd(rng);
    std::copy_n(reinterpret_cast<const uint8_t*>(key.data()), 4 * d, f32.bytes.data() + p * f32.row_bytes);
    uint16_t* b = reinterpret_cast<uint16_t*>(bf16.bytes.data() + p * bf16.row_bytes);
    for (int64_t i = 0; i < d; ++i) b[i] = glm::kernels::F32ToBf16(key[i]);
    glm::kernels::WriteInt8Row(key.data(), d, reinterpret_cast<int8_t*>(int8.bytes.data() + p * int8.row_bytes));
    glm::kernels::WriteFp8Row(key.data(), d, fp8.bytes.data() + p * fp8.row_bytes);
  }
  std::vector<float> dots(heads * kKeyBlock);
  const double f32_us = TimeDotRows<float>(f32, q, heads, d, context, seconds, dots);
  const double bf16_us = TimeDotRows<uint16_t>(bf16, q, heads, d, context, seconds, dots);
  const double fp8_us = TimeDotRows<uint8_t>(fp8, q, heads, d, context, seconds, dots);
  const double int8_f32_us = TimeDotRows<int8_t>(int8, q, heads, d, context, seconds, dots);
  glm::kernels::Int8QueryRows qq;
  std::vector<const int8_t*> rows(kKeyBlock);
  const double int8_us = glm::bench::MicrosPerCall(
      [&] {
        qq.Quantize(q.data(), heads, d);  // once a token, as DsaIndexer does
        for (int64_t s0 = 0; s0 < context; s0 += kKeyBlock) {
          const int64_t nb = std::min(kKeyBlock, context - s0);
          for (int64_t i = 0; i < nb; ++i) rows[i] = reinterpret_cast<const int8_t*>(int8.row(s0 + i));
          glm::kernels::Int8RowDots(qq, rows.data(), nb, dots.data(), nb);
        }
      },
      seconds);

  // The AVX2 path on this CPU too (what a CPU without AVX512-VNNI runs).
  const double int8_avx2_us = glm::bench::MicrosPerCall(
      [&] {
        qq.Quantize(q.data(), heads, d, /*every_layout=*/true);  // the AVX2 layout too
        for (int64_t s0 = 0; s0 < context; s0 += kKeyBlock) {
          const int64_t nb = std::min(kKeyBlock, context - s0);
          for (int64_t i = 0; i < nb; ++i) rows[i] = reinterpret_cast<const int8_t*>(int8.row(s0 + i));
          glm::kernels::Int8RowDotsAvx2(qq, rows.data(), nb, dots.data(), nb);
        }
      },
      seconds);
  const double macs = static_cast<double>(heads) * d * context;
  std::printf("indexer scores: %d heads x %lld values x %lld positions, one token, one layer (%.1f M multiply-adds), "
              "one thread, blocks of %lld keys; Int8RowDots path %s\n",
              heads, static_cast<long long>(d), static_cast<long long>(context), macs / 1e6,
              static_cast<long long>(kKeyBlock), glm::kernels::Int8RowDotsPath());
  std::printf("%-34s %10s %9s %9s %10s\n", "key rows (queries)", "us/token", "GMAC/s", "GB/s", "vs f32");
  auto line = [&](const char* name, double us, int64_t row_bytes) {
    std::printf("%-34s %10.1f %9.1f %9.2f %10.2f\n", name, us, macs / (us * 1e3), context * row_bytes / (us * 1e3),
                f32_us / us);
  };
  line("f32 (f32, DotRows)", f32_us, f32.row_bytes);
  line("bf16 (f32, DotRows)", bf16_us, bf16.row_bytes);
  line("fp8 e4m3 (f32, DotRows)", fp8_us, fp8.row_bytes);
  line("int8 (f32, DotRows widened)", int8_f32_us, int8.row_bytes);
  line("int8 (int8, Int8RowDots)", int8_us, int8.row_bytes);
  line("int8 (int8, Int8RowDots AVX2 path)", int8_avx2_us, int8.row_bytes);
  glm::bench::BaselineStore baselines(absl::GetFlag(FLAGS_baseline));
  const std::string key_name = "indexer_scores_bench/heads" + std::to_string(heads) + "/dim" + std::to_string(d) +
                               "/context" + std::to_string(context) + "/int8/gmacs";
  const double rate = macs / (int8_us * 1e3), previous = baselines.Get(key_name);
  if (absl::GetFlag(FLAGS_record)) baselines.RecordIfBetter(key_name, rate);
  if (previous > 0) std::printf("int8 vs best recorded: %.2f (%.1f GMAC/s)\n", rate / previous, previous);
  return 0;
}
