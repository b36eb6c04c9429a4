// GEMV/GEMM throughput of every supported matmul path, in GB/s of weight bytes streamed, next to
// the machine's read and triad bandwidth measured in the same run:
//
//   matmul_bench [--threads N] [--rows R --cols C] [--dtype bf16|f32|fp8|int8|int4[,..]] [--tokens T[,..]]
//                [--path NAME] [--prefetch BYTES] [--min-gemm-tokens N] [--activation-dtype f32|bf16]
//                [--amx-tiles on|off] [--min-seconds S] [--warm] [--json]
//
// --warm times back-to-back passes over the same matrix with no probe pass between them (give
// --rows for a matrix that fits the cache): the kernel's compute rate, not the memory system's —
// what a decode kernel must exceed per core for DRAM to be its limit.
//
// --activation-dtype bf16 rounds the activations of BF16 matmuls to BF16 (the product's
// --activation-dtype): vdpbf16ps kernels, or AMX tiles where the CPU has them (--amx-tiles off
// compares the two). BF16 weights are 2 bytes, so GFLOP/s = GB/s × tokens.
//
// --min-gemm-tokens N sends every matmul of N or more tokens to the prefill GEMM (9: all past the
// decode tiles; a large N: none), instead of each path's own crossover (SimdKernelSet::
// min_gemm_tokens); running a token list both ways shows where the crossover lies.
//
// "read" is the best read-probe pass interleaved with that row's passes; "vs read" the ratio.
// Defaults: all cores, 4096 columns, rows for a matrix of 64 MiB or twice the last-level cache
// (the probe: 128 MiB or four times it), so each pass comes from DRAM even on a CPU with hundreds
// of MiB of L3; bf16 and fp8, 1 and 8 tokens. Decode is bandwidth-bound, so the "vs read" ratio
// is how close a path gets to what the memory system can deliver.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bandwidth_probe.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/matmul_amx.h"
#include "shard_worker/kernels/matmul_dispatch.h"
#include "shard_worker/kernels/matmul_simd_driver.h"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/aligned_buffer.h"

namespace glm::bench {
namespace {

using kernels::DType;

struct Options {
  int threads = glm::kernels::AvailableCpus();
  int64_t rows = 0;  // 0: sized for 64 MiB or twice the last-level cache
  int64_t cols = 4096;
  std::vector<DType> dtypes = {DType::kBF16, DType::kF8E4M3};
  std::vector<int64_t> group_sizes = {0, 0};  // per dtype: columns per scale of int8 / int4
  std::vector<std::string> labels = {"bf16", "fp8"};
  std::vector<int64_t> tokens = {1, 8};
  std::string path;  // empty: every supported path
  int64_t prefetch = -1;
  int min_gemm_tokens = 0;  // 0: each path's own
  bool bf16_activations = false;  // --activation-dtype bf16
  bool amx_tiles = true;          // --amx-tiles on|off (with bf16 activations, where the CPU has AMX)
  double min_seconds = 0.15;
  bool warm = false;  // --warm: back-to-back passes, the matrix left in cache between them
  bool json = false;
};

constexpr int64_t kMinMatrixBytes = int64_t{64} << 20;
constexpr int64_t kMinProbeBytes = int64_t{128} << 20;

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

bool ParseDType(const std::string& s, DType* d, int64_t* group_size) {
  *group_size = 0;
  if (kernels::ParseQuantFormatName(s, d, group_size)) return true;
  if (s == "bf16") *d = DType::kBF16;
  else if (s == "f32") *d = DType::kF32;
  else if (s == "fp8") *d = DType::kF8E4M3;
  else return false;
  return true;
}

[[noreturn]] void Usage(const char* error) {
  std::fprintf(stderr,
               "%s\nusage: matmul_bench [--threads N] [--rows R --cols C] "
               "[--dtype bf16|f32|fp8|int8|int4|int8-g<N>|int4-g<N>[,..]] [--tokens T[,..]] [--path NAME] "
               "[--prefetch BYTES] [--min-gemm-tokens N] [--activation-dtype f32|bf16] [--amx-tiles on|off] "
               "[--min-seconds S] [--warm] [--json]\n",
               error);
  std::exit(2);
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    // --flag=value as well as --flag value (the other benches' abseil flags take both).
    std::string inline_value;
    bool has_inline = false;
    if (const size_t eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_inline = true;
    }
    auto value = [&]() -> std::string {
      if (has_inline) return inline_value;
      if (i + 1 >= argc) Usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--threads") o.threads = std::max(1, std::atoi(value().c_str()));
    else if (a == "--rows") o.rows = std::atoll(value().c_str());
    else if (a == "--cols") o.cols = std::atoll(value().c_str());
    else if (a == "--path") o.path = value();
    else if (a == "--prefetch") o.prefetch = std::atoll(value().c_str());
    else if (a == "--min-gemm-tokens") o.min_gemm_tokens = std::max(0, std::atoi(value().c_str()));
    else if (a == "--min-seconds") o.min_seconds = std::atof(value().c_str());
    else if (a == "--json") o.json = true;
    else if (a == "--warm") o.warm = true;
    else if (a == "--activation-dtype") {
      if (!kernels::ParseActivationDType(value(), &o.bf16_activations)) Usage("--activation-dtype must be f32 or bf16");
    } else if (a == "--amx-tiles") {
      const std::string v = value();
      if (v != "on" && v != "off") Usage("--amx-tiles must be on or off");
      o.amx_tiles = v == "on";
    }
    else if (a == "--dtype") {
      o.dtypes.clear();
      o.group_sizes.clear();
      o.labels.clear();
      for (const auto& s : Split(value())) {
        DType d;
        int64_t g = 0;
        if (!ParseDType(s, &d, &g)) Usage(("unknown dtype " + s).c_str());
        o.dtypes.push_back(d);
        o.group_sizes.push_back(g);
        o.labels.push_back(s);
      }
    } else if (a == "--tokens") {
      o.tokens.clear();
      for (const auto& s : Split(value())) o.tokens.push_back(std::max(1LL, std::atoll(s.c_str())));
    } else if (a == "--help" || a == "-h") {
      Usage("");
    } else {
      Usage(("unknown argument " + a).c_str());
    }
  }
  if (o.cols <= 0 || o.rows < 0 || o.dtypes.empty() || o.tokens.empty()) Usage("bad sizes");
  return o;
}

// Random weights in the given format, as a checkpoint would hold them: no subnormal F32/BF16
// values (x86 cores may take a microcode assist per subnormal operand, which would measure the
// data, not the kernel); FP8 every code but NaN, with 128×128 block scales; int8 / int4 rows
// quantised from normal values as at load (--weight-dtype).
struct BenchWeights {
  // Advised for transparent huge pages, as the engine's weights are: where THP is "madvise",
  // plain heap memory would stream every weight through 4 KiB pages, and AMX's tile loads (16
  // rows a stride apart) miss the TLB on each.
  model::AlignedBuffer buffer;
  uint8_t* data = nullptr;  // buffer's bytes
  std::vector<float> scales;         // FP8 block scales
  std::vector<uint16_t> group_scales;  // int8 / int4 (f16 bits)
  kernels::WeightView view;
};

BenchWeights MakeWeights(DType dtype, int64_t group_size, int64_t rows, int64_t cols) {
  BenchWeights b;
  const int64_t n = rows * cols;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  float table[256];  // a small pool of values, so filling 64 MiB takes milliseconds
  for (float& v : table) v = normal(rng);
  b.view.dtype = dtype;
  b.view.rows = rows;
  b.view.cols = cols;
  if (kernels::IsGroupQuantized(dtype)) {
    b.view.group_size = group_size;
    const int64_t groups = b.view.groups_per_row(), row_bytes = b.view.row_bytes();
    b.buffer = model::AlignedBuffer(rows * row_bytes);
    b.data = static_cast<uint8_t*>(b.buffer.data());
    b.group_scales.resize(rows * groups);
    std::vector<float> row(cols);
    for (int64_t r = 0; r < rows; ++r) {
      for (float& v : row) v = table[rng() & 0xff];
      kernels::QuantizeRow(dtype, row.data(), cols, group_size, b.data + r * row_bytes,
                           b.group_scales.data() + r * groups);
    }
    b.view.data = b.data;
    b.view.group_scales = b.group_scales.data();
    return b;
  }
  b.buffer = model::AlignedBuffer(n * kernels::DTypeSize(dtype));
  b.data = static_cast<uint8_t*>(b.buffer.data());
  for (int64_t i = 0; i < n; ++i) {
    uint32_t r = rng();
    if (dtype == DType::kF32) {
      std::memcpy(b.data + 4 * i, &table[r & 0xff], 4);
    } else if (dtype == DType::kBF16) {
      uint16_t v = kernels::F32ToBf16(table[r & 0xff]);
      std::memcpy(b.data + 2 * i, &v, 2);
    } else {
      uint8_t v = static_cast<uint8_t>(r & 0xff);
      b.data[i] = (v & 0x7f) == 0x7f ? 0 : v;
    }
  }
  b.view.data = b.data;
  if (dtype == DType::kF8E4M3) {
    b.view.scale_cols = (cols + 127) / 128;
    b.scales.assign(((rows + 127) / 128) * b.view.scale_cols, 1e-3f);
    b.view.block_scales = b.scales.data();
    // As the loader marks a checkpoint's FP8 matrices (no NaN codes were drawn above).
    b.view.fp8_nan_free = !kernels::Fp8HasNanCode(b.data, n);
  }
  return b;
}

struct Result {
  std::string path;
  std::string label;  // the --dtype name
  DType dtype;
  int64_t rows;
  int64_t tokens;
  double seconds;     // best pass
  double gbps;        // weight bytes / best pass
  double read_gbps;   // best read-probe pass interleaved with this run's passes
};

// Alternates matmul passes with read-probe passes (best of each), so that on a shared machine
// the ratio compares like with like. warm: each timed pass is the mean of kWarmPasses
// back-to-back calls, so the matrix stays in whatever cache holds it.
Result RunOne(const std::string& path, const BenchWeights& w, int64_t tokens,
              kernels::ThreadPool* pool, ReadBandwidthProbe* probe, double min_seconds, bool warm) {
  constexpr int kWarmPasses = 32;
  kernels::ForceMatMulPath(path);
  std::vector<float> x(tokens * w.view.cols), y(tokens * w.view.rows);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  kernels::MatMul(x.data(), tokens, w.view, y.data(), pool);  // warm-up (thread-local buffers)
  double best = 1e30, total = 0, probe_best = 1e30;
  for (int rep = 0; rep < 3 || (total < min_seconds && rep < 40); ++rep) {
    probe_best = std::min(probe_best, probe->PassSeconds());
    if (warm) kernels::MatMul(x.data(), tokens, w.view, y.data(), pool);  // back into the cache
    const int passes = warm ? kWarmPasses : 1;
    auto start = std::chrono::steady_clock::now();
    for (int pass = 0; pass < passes; ++pass) kernels::MatMul(x.data(), tokens, w.view, y.data(), pool);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / passes;
    best = std::min(best, s);
    total += s;
  }
  return {path,
          "",
          w.view.dtype,
          w.view.rows,
          tokens,
          best,
          static_cast<double>(w.view.bytes()) / best / 1e9,
          static_cast<double>(probe->bytes()) / probe_best / 1e9};
}


}  // namespace
}  // namespace glm::bench

int main(int argc, char** argv) {
  using namespace glm;
  using namespace glm::bench;
  Options o = ParseArgs(argc, argv);
  if (o.prefetch >= 0) kernels::SetMatMulPrefetchBytes(o.prefetch);
  kernels::SetMinGemmTokensOverride(o.min_gemm_tokens);
  kernels::SetBf16Activations(o.bf16_activations);
  kernels::SetAmxTilesEnabled(o.amx_tiles);
  kernels::ThreadPool pool(o.threads);

  std::vector<std::string> paths;
  for (const auto& p : kernels::SupportedMatMulPaths())
    if (o.path.empty() || p.name == o.path) paths.push_back(p.name);
  if (paths.empty()) Usage(("path not supported here: " + o.path).c_str());
  const std::string default_path = kernels::SupportedMatMulPaths().front().name;

  const int64_t llc_bytes = LastLevelCacheBytes();
  const int64_t matrix_bytes = BeyondCacheBytes(kMinMatrixBytes, llc_bytes, 2);
  const int64_t probe_bytes = BeyondCacheBytes(kMinProbeBytes, llc_bytes, 4);
  const double triad_gbps = MeasureTriadBandwidthGBps(&pool, probe_bytes, 5);
  ReadBandwidthProbe probe(&pool, probe_bytes);
  double read_gbps = 0;  // best over the whole run

  std::vector<Result> results;
  for (size_t i = 0; i < o.dtypes.size(); ++i) {
    const DType d = o.dtypes[i];
    int64_t rows = o.rows > 0 ? o.rows
                              : std::max<int64_t>(1, matrix_bytes / kernels::DTypeRowBytes(d, o.cols));
    BenchWeights w = MakeWeights(d, o.group_sizes[i], rows, o.cols);
    for (int64_t t : o.tokens)
      for (const auto& p : paths) {
        results.push_back(RunOne(p, w, t, &pool, &probe, o.min_seconds, o.warm));
        results.back().label = o.labels[i];
        read_gbps = std::max(read_gbps, results.back().read_gbps);
      }
  }
  kernels::ForceMatMulPath(default_path);

  if (o.json) {
    std::printf("{\"threads\": %d, \"best_read_gbps\": %.2f, \"triad_gbps\": %.2f, "
                "\"prefetch_bytes\": %lld, \"probe_bytes\": %lld, \"last_level_cache_bytes\": %lld, \"results\": [",
                o.threads, read_gbps, triad_gbps,
                static_cast<long long>(kernels::MatMulPrefetchBytes()), static_cast<long long>(probe_bytes),
                static_cast<long long>(llc_bytes));
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::printf("%s\n  {\"path\": \"%s\", \"dtype\": \"%s\", \"rows\": %lld, \"cols\": %lld, "
                  "\"tokens\": %lld, \"ms\": %.4f, \"gbps\": %.2f, \"read_gbps\": %.2f, "
                  "\"vs_read\": %.3f, \"vs_triad\": %.3f}",
                  i ? "," : "", r.path.c_str(), r.label.c_str(),
                  static_cast<long long>(r.rows), static_cast<long long>(o.cols),
                  static_cast<long long>(r.tokens), r.seconds * 1e3, r.gbps, r.read_gbps,
                  r.gbps / r.read_gbps, r.gbps / triad_gbps);
    }
    std::printf("\n]}\n");
    return 0;
  }
  std::printf("threads %d   read %.1f GB/s (best)   triad %.1f GB/s   (probes over %lld MiB; last-level cache %lld MiB)   "
              "prefetch %lld B\n",
              o.threads, read_gbps, triad_gbps, static_cast<long long>(probe_bytes >> 20),
              static_cast<long long>(llc_bytes >> 20),
              static_cast<long long>(kernels::MatMulPrefetchBytes()));
  if (o.bf16_activations) std::printf("BF16 activations: %s\n", kernels::Bf16ActivationsDetails().c_str());
  std::printf("%-15s %-8s %-12s %6s %9s %8s %8s %8s %8s\n", "path", "dtype", "matrix", "tokens",
              "ms", "GB/s", "read", "vs read", "vs triad");
  for (const Result& r : results) {
    std::string shape = std::to_string(r.rows) + "x" + std::to_string(o.cols);
    std::printf("%-15s %-8s %-12s %6lld %9.3f %8.1f %8.1f %8.2f %8.2f\n", r.path.c_str(),
                r.label.c_str(), shape.c_str(), static_cast<long long>(r.tokens),
                r.seconds * 1e3, r.gbps, r.read_gbps, r.gbps / r.read_gbps, r.gbps / triad_gbps);
  }
  return 0;
}
