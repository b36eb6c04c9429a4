// decode_bench: batch-B decode tokens/s of the single-process engine, the weight bytes each
// token reads, and the ratio of the achieved weight bandwidth to a read-bandwidth probe measured
// in the same run, its passes interleaved with the decode (decode of a large model is
// bandwidth-bound: that ratio says how good the kernels are). Next to it, the ratio of the
// model FLOP/s achieved to the peak rate of the prefill GEMM family measured in the same run
// (model_flops.h): a batched step of a small model whose weights sit in the caches is bound by
// its multiply-adds instead, and the nearer of the two limits is the one that says how far the
// step could go.
//
//   build/bin/decode_bench --model DIR [--threads N] [--weight-dtype stored|bf16|f32|int8|int4] [--batch B]
//                          [--quantize-scope experts|all|mtp] [--steps S] [--rounds R] [--context C] [--json]
//                          [--admit-every N]
//                          [--expert-memory-gib X [--expert-direct-io=false]] [--record]
// Run it on `glmctl synth --preset bench` (about 4 GiB: bigger than any cache).
//
// --expert-memory-gib X streams the routed experts through an X GiB LRU cache when they need more
// (moe/expert_store.h) and reports the cache hit rate and the disk bandwidth the expert reads got,
// next to a sequential read of the model files measured in the same run (8 MiB preads). Expert
// reads use O_DIRECT where the file system allows (LoadOptions::expert_direct_io), and so does
// the sequential read then; otherwise both go through the page cache, dropped first (posix_fadvise
// DONTNEED) and again before every decode step so expert misses reach the disk. A device cache
// can still make the numbers optimistic.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/flags/flag.h"
#include "shard_worker/runtime/dashed_flags.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bandwidth_probe.h"
#include "bench/baseline_store.h"
#include "bench/model_flops.h"
#include "coordinator/placement/size_flags.h"
#include "bench/kernel_settings.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/matmul_simd_driver.h"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/kernels/vector_ops.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/moe/expert_store.h"

ABSL_FLAG(bool, amx_tiles, true,
          "with --activation-dtype bf16 on CPUs with AMX: run the matmuls on AMX tiles (false: the vdpbf16ps "
          "kernels, to compare)");
ABSL_FLAG(std::string, activation_dtype, "f32",
          "activations of BF16-weight matmuls: f32 | bf16 (vdpbf16ps where the CPU has AVX512-BF16)");
ABSL_FLAG(std::string, token_groups, "auto",
          "small models' decode steps: auto (timed choice), never (matmul rows split across threads), always "
          "(token groups; Glm5Model)");
ABSL_FLAG(std::string, matmul_path, "auto",
          "matmul kernels: auto (the fastest this CPU has) or a path it supports (avx512, avx512_f16c_fp8, avx2, portable)");
ABSL_FLAG(std::string, model, "", "model directory");
ABSL_FLAG(int32_t, threads, 0, "compute threads (0 = all cores)");
ABSL_FLAG(std::string, weight_dtype, "stored",
          "stored | bf16 | f32 | int8 | int8-row | int4 | int{8,4}-g<N> (converted at load)");
ABSL_FLAG(std::string, quantize_scope, "experts",
          "with int8/int4: experts (routed + shared experts re-quantised, the rest as stored) | all | mtp");
ABSL_FLAG(int32_t, batch, 1, "sequences decoded together");
ABSL_FLAG(std::string, kv_cache_dtype, "f32",
          "what the KV cache stores its rows in: f32 | bf16 | int8 | fp8 (the coordinator's --kv-cache-dtype); "
          "attention's reads grow with --context");
ABSL_FLAG(std::string, index_key_dtype, "f32",
          "what the KV cache stores the DSA indexer's keys in: f32 | bf16 | int8 | fp8 (the coordinator's "
          "--index-key-dtype); the indexer reads every cached key each step");
ABSL_FLAG(int32_t, steps, 0, "decode steps to time (0 = about 3 seconds' worth)");
ABSL_FLAG(int32_t, context, 32, "prompt tokens per sequence before decoding");
ABSL_FLAG(int32_t, admit_every, 0,
          "continuous batching: every this many steps one sequence (the oldest) ends and a new one takes its place, "
          "its --context-token prompt prefilled in the same step as the others' decode tokens (a mixed step); "
          "tokens/s then counts decode tokens only, over all steps (as a served TPOT does). 0: no admissions");
ABSL_FLAG(bool, json, false, "print one JSON object");
ABSL_FLAG(int32_t, min_gemm_tokens, 0,
          "matmuls of this many tokens or more go to the prefill GEMM (0 = each path's own tile/GEMM crossover; "
          "9 = every one past the decode tiles): to compare the two on the model");
ABSL_FLAG(int32_t, rounds, 1,
          "times to restart every sequence from its prompt and decode --steps again (keeps the "
          "context short while running long enough to profile)");
ABSL_FLAG(double, expert_memory_gib, 0,
          "memory for routed experts; beyond it they stream from disk through an LRU cache (0 = all resident)");
ABSL_FLAG(bool, expert_direct_io, true,
          "with --expert-memory-gib: read streamed experts with O_DIRECT, past the page cache, where the file "
          "system allows it (false: through the page cache, which the bench then drops before every step)");
ABSL_FLAG(std::string, baseline, GLM_BENCH_BASELINE_FILE, "JSON file of previous best results");
ABSL_FLAG(bool, record, false, "store this result as the new best in --baseline if it is better");

namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

int Fail(const std::string& msg) {
  std::fprintf(stderr, "decode_bench: %s\n", msg.c_str());
  return 1;
}

// The checkpoint's files, open for page-cache control and the sequential read.
class ModelFiles {
 public:
  explicit ModelFiles(const glm::model::Checkpoint& ckpt) {
    for (const auto& f : ckpt.files()) {
      const int fd = ::open(f->path().c_str(), O_RDONLY);
      if (fd >= 0) fds_.push_back(fd);
      const int direct = ::open(f->path().c_str(), O_RDONLY | O_DIRECT);
      if (direct >= 0) direct_fds_.push_back(direct);
      takes_direct_io_ = takes_direct_io_ && glm::model::FileSystemTakesDirectIo(f->path());
    }
  }
  ~ModelFiles() {
    for (int fd : fds_) ::close(fd);
    for (int fd : direct_fds_) ::close(fd);
  }
  // Whether the file system takes O_DIRECT reads of every file (tmpfs refuses them).
  bool TakeDirectIo() const { return takes_direct_io_ && !fds_.empty(); }
  // Evicts the files' clean pages, so the next reads come from the disk.
  void DropPageCache() const {
    for (int fd : fds_) ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  }
  // dd-style: every file in 8 MiB preads, after dropping it from the page cache; direct: with
  // O_DIRECT (dd iflag=direct), as streamed experts are read. GB/s.
  double SequentialReadGBps(bool direct) const {
    DropPageCache();
    glm::model::AlignedBuffer buf(8 << 20);  // 2 MiB aligned, as O_DIRECT needs
    int64_t total = 0;
    const auto t0 = Clock::now();
    for (int fd : direct ? direct_fds_ : fds_) {
      for (off_t off = 0;; off += buf.size()) {
        const ssize_t n = ::pread(fd, buf.data(), buf.size(), off);
        if (n <= 0) break;
        total += n;
      }
    }
    const double secs = Seconds(Clock::now() - t0);
    DropPageCache();
    return secs > 0 ? total / secs / 1e9 : 0.0;
  }

 private:
  std::vector<int> fds_, direct_fds_;
  bool takes_direct_io_ = true;
};

}  // namespace

int main(int argc, char** argv) {
  glm::runtime::NormalizeDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  glm::bench::KernelSettings settings;
  settings.activation_dtype = absl::GetFlag(FLAGS_activation_dtype);
  settings.amx_tiles = absl::GetFlag(FLAGS_amx_tiles);
  settings.token_groups = absl::GetFlag(FLAGS_token_groups);
  settings.matmul_path = absl::GetFlag(FLAGS_matmul_path);
  settings.min_gemm_tokens = absl::GetFlag(FLAGS_min_gemm_tokens);
  if (std::string err = glm::bench::ApplyKernelSettings(settings); !err.empty()) {
    std::fprintf(stderr, "decode_bench: %s\n", err.c_str());
    return 2;
  }
  const std::string dir = absl::GetFlag(FLAGS_model);
  const int batch = absl::GetFlag(FLAGS_batch);
  if (dir.empty()) return Fail("--model DIR is required (make one with: glmctl synth --preset bench --out DIR)");
  if (batch < 1 || batch > 256) return Fail("--batch must be in 1..256");
  const std::string dtype_name = absl::GetFlag(FLAGS_weight_dtype);
  glm::model::LoadOptions load;
  if (auto st = glm::model::ParseWeightDType(dtype_name, &load); !st.ok()) return Fail(std::string(st.message()));
  if (!glm::model::ParseQuantizeScope(absl::GetFlag(FLAGS_quantize_scope), &load.quantize_scope))
    return Fail("--quantize-scope must be experts, all or mtp");
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads <= 0) threads = glm::kernels::AvailableCpus();
  const double expert_gib = absl::GetFlag(FLAGS_expert_memory_gib);
  auto expert_bytes = glm::placement::GibFlagBytes("--expert-memory-gib", expert_gib, "all routed experts resident");
  if (!expert_bytes.ok()) return Fail(std::string(expert_bytes.status().message()));
  load.expert_memory_bytes = *expert_bytes;
  load.expert_direct_io = absl::GetFlag(FLAGS_expert_direct_io);
  glm::kv_cache::KvDType kv_dtype = glm::kv_cache::KvDType::kF32;
  if (!glm::kv_cache::ParseKvDType(absl::GetFlag(FLAGS_kv_cache_dtype), &kv_dtype))
    return Fail(glm::kv_cache::KvDTypeNameError("--kv-cache-dtype", absl::GetFlag(FLAGS_kv_cache_dtype)));
  glm::kv_cache::KvDType index_key_dtype = glm::kv_cache::KvDType::kF32;
  if (!glm::kv_cache::ParseKvDType(absl::GetFlag(FLAGS_index_key_dtype), &index_key_dtype))
    return Fail(glm::kv_cache::KvDTypeNameError("--index-key-dtype", absl::GetFlag(FLAGS_index_key_dtype)));

  auto t0 = Clock::now();
  auto ckpt = glm::model::Checkpoint::Open(dir);
  if (!ckpt.ok()) return Fail(std::string(ckpt.status().message()));
  const ModelFiles files(**ckpt);
  if (load.expert_memory_bytes > 0) files.DropPageCache();  // the load's own reads come from disk too
  auto weights = glm::model::ModelWeights::Load(**ckpt, load);
  if (!weights.ok()) return Fail(std::string(weights.status().message()));
  const double load_s = Seconds(Clock::now() - t0);
  const int64_t loaded_bytes = (*weights)->bytes_loaded();
  glm::kernels::ThreadPool pool(threads);
  auto model = glm::model::Glm5Model::Create(std::shared_ptr<const glm::model::ModelWeights>(std::move(*weights)), &pool);
  if (!model.ok()) return Fail(std::string(model.status().message()));
  (*model)->set_kv_cache_dtype(kv_dtype);
  (*model)->set_index_key_dtype(index_key_dtype);
  const auto& config = (*model)->config();
  glm::moe::ExpertStore* store = (*model)->weights().expert_store();
  const bool streaming = store != nullptr && store->streaming();
  // Expert misses must reach the disk: O_DIRECT reads do; page-cache reads only after the bench
  // drops the files' pages (before every step, which costs CPU time of its own).
  const bool direct_reads = streaming && load.expert_direct_io && files.TakeDirectIo();
  const bool drop_every_step = streaming && !direct_reads;
  // The disk's sequential bandwidth, what streamed expert reads are judged against: read the way
  // the experts are (O_DIRECT or through the page cache).
  const double seq_gbps = streaming ? files.SequentialReadGBps(direct_reads) : 0.0;

  // The probe reads 1 GiB, or four times the last-level cache where that is larger (EPYCs with
  // stacked L3 have over 1 GiB): far beyond the caches, small next to the model. Its passes are
  // interleaved with the decode (one every ~0.25 s of decoding, outside the decode's timing):
  // on a shared machine whose bandwidth drifts by tens of percent from one second to the next,
  // passes taken only before the decode judge it against other conditions.
  glm::bench::ReadBandwidthProbe probe(
      &pool, glm::bench::BeyondCacheBytes(int64_t{1} << 30, glm::bench::LastLevelCacheBytes(), 4));
  std::vector<double> probe_passes;  // GB/s
  auto probe_pass = [&] { probe_passes.push_back(static_cast<double>(probe.bytes()) / probe.PassSeconds() / 1e9); };
  for (int i = 0; i < 3; ++i) probe_pass();

  // Prefill each sequence with its own tokens, then decode greedily (argmax keeps the run
  // deterministic; sampling cost is not what is measured).
  const int context = std::max(1, absl::GetFlag(FLAGS_context));
  std::vector<std::unique_ptr<glm::kv_cache::KvCache>> caches(batch);
  std::vector<int32_t> next(batch);
  auto prefill_all = [&]() -> absl::Status {
  for (int b = 0; b < batch; ++b) {
    caches[b] = (*model)->NewCache();
    std::vector<glm::model::SequenceInput> in(1);
    in[0].cache = caches[b].get();
    for (int i = 0; i < context; ++i) in[0].tokens.push_back(static_cast<int32_t>((b * 7919 + i * 104729) % config.vocab_size));
    auto out = (*model)->Forward(in, glm::model::LogitRows::kLast);
    if (!out.ok()) return out.status();
    next[b] = static_cast<int32_t>(glm::kernels::ArgMax(out->logits.data(), config.vocab_size));
  }
  return absl::OkStatus();
  };
  if (auto st = prefill_all(); !st.ok()) return Fail(std::string(st.message()));
  // FLOPs of the timed steps: every sequence's token at its position, with its lm_head row.
  glm::bench::ModelFlops flops;
  // --admit-every: the sequence admitted at this step (its prompt replaces its decode token), or -1.
  const int admit_every = std::max(0, absl::GetFlag(FLAGS_admit_every));
  int64_t step_index = 0, admissions = 0, decoded = 0;
  auto step = [&](int64_t* bytes) -> bool {
    if (drop_every_step) files.DropPageCache();  // expert misses read the disk, not the page cache
    const int admit = admit_every > 0 && ++step_index % admit_every == 0 ? static_cast<int>(admissions++ % batch) : -1;
    std::vector<glm::model::SequenceInput> in(batch);
    glm::bench::ModelFlops step_flops;
    for (int b = 0; b < batch; ++b) {
      if (b == admit) {  // a new request: its prompt, prefilled in this step
        caches[b] = (*model)->NewCache();
        for (int i = 0; i < context; ++i) {
          in[b].tokens.push_back(static_cast<int32_t>((admissions * 7919 + i * 104729) % config.vocab_size));
          step_flops += glm::bench::TokenFlops(config, i, /*logits=*/i + 1 == context);
        }
      } else {
        in[b].tokens = {next[b]};
        step_flops += glm::bench::TokenFlops(config, caches[b]->length(), /*logits=*/true);
      }
      in[b].cache = caches[b].get();
    }
    auto out = (*model)->Forward(in, glm::model::LogitRows::kLast);
    if (!out.ok()) return false;
    for (int b = 0; b < batch; ++b) {
      const float* row = out->logits.data() + b * config.vocab_size;
      next[b] = static_cast<int32_t>(glm::kernels::ArgMax(row, config.vocab_size));  // greedy, as the server samples
    }
    *bytes += out->weight_bytes_read;
    flops += step_flops;
    decoded += admit >= 0 ? batch - 1 : batch;
    return true;
  };
  int64_t warm_bytes = 0;
  for (int i = 0; i < 2; ++i)
    if (!step(&warm_bytes)) return Fail("decode step failed");
  flops = glm::bench::ModelFlops();
  decoded = 0;
  int steps = absl::GetFlag(FLAGS_steps);
  int64_t bytes = 0;
  if (streaming) {
    store->Drain();
    store->ResetStats();
  }
  int done = 0;
  double secs = 0;
  const int max_steps = std::min<int64_t>(config.max_position_embeddings - context - 4, 100000);
  const int rounds = std::max(1, absl::GetFlag(FLAGS_rounds));
  for (int round = 0; round < rounds; ++round) {
    if (round > 0)
      if (auto st = prefill_all(); !st.ok()) return Fail(std::string(st.message()));
    double round_secs = 0, since_probe = 0;
    int round_steps = 0;
    while ((steps > 0 && round_steps < steps) || (steps <= 0 && (round_steps < 4 || round_secs < 3.0))) {
      if (round_steps >= max_steps) break;
      const auto t0 = Clock::now();
      if (!step(&bytes)) return Fail("decode step failed");
      const double d = Seconds(Clock::now() - t0);
      round_secs += d;
      since_probe += d;
      ++round_steps;
      if (since_probe >= 0.25) {
        probe_pass();
        since_probe = 0;
      }
    }
    secs += round_secs;
    done += round_steps;
  }
  probe_pass();
  // The compute limit: the prefill GEMM family's peak in the format the weights are in (BF16 for
  // stored and float formats: the same f32 FMAs), best of 3, with the decode's threads.
  constexpr int64_t kGemmTokens = 1024, kGemmRows = 4096, kGemmCols = 4096;
  const glm::bench::PeakGemmFormat gemm = glm::bench::PeakGemmFormatFor(dtype_name, kGemmCols);
  const double peak_gflops = glm::bench::PeakGemmGflops(kGemmTokens, kGemmRows, kGemmCols, 3, gemm, &pool);
  // The decode is judged against the median pass (the conditions it ran in); the best pass (the
  // machine at its quietest) is reported next to it.
  std::vector<double> sorted_passes = probe_passes;
  std::sort(sorted_passes.begin(), sorted_passes.end());
  const double probe_gbps = sorted_passes[sorted_passes.size() / 2];
  const double probe_best_gbps = sorted_passes.back();
  const double tokens_per_s = decoded / secs;  // decode tokens (all of them without --admit-every)
  const double weight_bytes_per_token = static_cast<double>(bytes) / static_cast<double>(decoded);
  const double achieved_gbps = bytes / secs / 1e9;
  const double ratio = achieved_gbps / probe_gbps;
  const double ratio_vs_best = achieved_gbps / probe_best_gbps;
  const double achieved_gflops = flops.total() / secs / 1e9;
  const double compute_ratio = peak_gflops > 0 ? achieved_gflops / peak_gflops : 0.0;
  const double flops_per_token = flops.total() / static_cast<double>(decoded);
  glm::moe::ExpertStoreStats es;
  if (streaming) es = store->stats();
  const double hit_rate = es.hit_rate();
  const double disk_gbps = es.disk_gbps();                // while reads were in flight
  const double disk_avg_gbps = es.bytes_read / secs / 1e9;  // over the whole decode

  std::string key = absl::StrCat("decode_bench/", std::filesystem::path(dir).filename().string(), "/",
                                 dtype_name, "/batch", batch, "/threads", threads);
  if (load.expert_memory_bytes > 0) absl::StrAppend(&key, "/experts", expert_gib, "GiB");
  if (glm::kernels::Bf16Activations()) absl::StrAppend(&key, "/bf16-activations");
  if (kv_dtype != glm::kv_cache::KvDType::kF32) absl::StrAppend(&key, "/kv-", glm::kv_cache::KvDTypeName(kv_dtype));
  if (index_key_dtype != glm::kv_cache::KvDType::kF32)
    absl::StrAppend(&key, "/index-", glm::kv_cache::KvDTypeName(index_key_dtype));
  if (admit_every > 0) absl::StrAppend(&key, "/admit-every", admit_every, "/context", context);
  glm::bench::BaselineStore baselines(absl::GetFlag(FLAGS_baseline));
  const double previous = baselines.Get(key);
  const double vs_previous = previous > 0 ? tokens_per_s / previous : 0.0;
  if (absl::GetFlag(FLAGS_record)) baselines.RecordIfBetter(key, tokens_per_s);

  if (absl::GetFlag(FLAGS_json)) {
    std::printf(
        "{\"model\":\"%s\",\"threads\":%d,\"batch\":%d,\"weight_dtype\":\"%s\",\"matmul_path\":\"%s\","
        "\"steps\":%d,\"tokens_per_s\":%.3f,\"weight_bytes_per_token\":%.0f,\"achieved_gbps\":%.3f,"
        "\"probe_gbps\":%.3f,\"bandwidth_ratio\":%.4f,\"probe_best_gbps\":%.3f,\"bandwidth_ratio_vs_best\":%.4f,"
        "\"probe_passes\":%zu,\"previous_best_tokens_per_s\":%.3f,"
        "\"ratio_to_previous_best\":%.4f,\"load_seconds\":%.2f,\"loaded_bytes\":%ld,"
        "\"expert_memory_gib\":%.3f,\"experts_streamed\":%s,\"expert_cache_hit_rate\":%.4f,"
        "\"expert_misses_per_token\":%.3f,\"expert_prefetches\":%ld,\"expert_prefetches_used\":%ld,"
        "\"disk_bytes_per_token\":%.0f,\"disk_gbps\":%.3f,\"disk_avg_gbps\":%.3f,\"read_wait_seconds\":%.3f,"
        "\"sequential_read_gbps\":%.3f,\"expert_reads_direct\":%ld,\"expert_reads\":%ld,"
        "\"flops_per_token\":%.0f,\"achieved_gflops\":%.3f,\"peak_gemm_gflops\":%.3f,\"compute_ratio\":%.4f}\n",
        dir.c_str(), threads, batch, dtype_name.c_str(), glm::kernels::MatMulPathName().c_str(), done, tokens_per_s,
        weight_bytes_per_token, achieved_gbps, probe_gbps, ratio, probe_best_gbps, ratio_vs_best, probe_passes.size(),
        previous, vs_previous, load_s,
        static_cast<long>(loaded_bytes), expert_gib, streaming ? "true" : "false", hit_rate,
        static_cast<double>(es.misses) / (done * batch), static_cast<long>(es.prefetches),
        static_cast<long>(es.prefetches_used), static_cast<double>(es.bytes_read) / (done * batch), disk_gbps,
        disk_avg_gbps, es.wait_seconds, seq_gbps, static_cast<long>(es.direct_loads), static_cast<long>(es.loads),
        flops_per_token, achieved_gflops, peak_gflops, compute_ratio);
  } else {
    std::printf("model %s (%s weights, %.2f GiB loaded in %.1f s), %d threads, matmul path %s%s\n", dir.c_str(),
                dtype_name.c_str(), loaded_bytes / 1073741824.0, load_s, threads, glm::kernels::MatMulPathDetails().c_str(),
                glm::kernels::Bf16Activations()
                    ? (", BF16 activations (" + glm::kernels::Bf16ActivationsDetails() + ")").c_str()
                    : "");
    std::printf("batch %d: %.2f tokens/s, %.1f MiB of weights per token, %.2f GB/s achieved\n", batch, tokens_per_s,
                weight_bytes_per_token / 1048576.0, achieved_gbps);
    std::printf("read-bandwidth probe %.2f GB/s (median of %zu passes interleaved with the decode) -> ratio %.3f "
                "(bar 0.85); best pass %.2f GB/s -> %.3f",
                probe_gbps, probe_passes.size(), ratio, probe_best_gbps, ratio_vs_best);
    if (previous > 0) std::printf("; %.3fx the previous best (%.2f tokens/s)", vs_previous, previous);
    std::printf("\n");
    if (const int64_t steals = (*model)->token_group_steals(); steals > 0)
      std::printf("token groups: %.2f hand-overs per step (a finished group took tokens over from a slower one)\n",
                  static_cast<double>(steals) / (done + 2));
    std::printf("compute: %.2f MFLOP per token -> %.1f GFLOP/s achieved, ratio %.3f of the peak GEMM rate %.1f GFLOP/s "
                "(%s %ldx%ldx%ld, this run); the nearer limit: %s\n",
                flops_per_token / 1e6, achieved_gflops, compute_ratio, peak_gflops, gemm.name.c_str(),
                static_cast<long>(kGemmTokens), static_cast<long>(kGemmRows), static_cast<long>(kGemmCols),
                compute_ratio > ratio ? "compute" : "weight bandwidth");
    if (streaming)
      std::printf("experts streamed through a %.2f GiB cache: hit rate %.3f (%.2f misses/token, %ld prefetches, %ld "
                  "used), %.1f MiB read per token, disk %.2f GB/s while reading (%.2f GB/s averaged over the run, "
                  "%.2f s waited) vs sequential read %.2f GB/s; %s\n",
                  expert_gib, hit_rate, static_cast<double>(es.misses) / (done * batch), static_cast<long>(es.prefetches),
                  static_cast<long>(es.prefetches_used), es.bytes_read / 1048576.0 / (done * batch), disk_gbps,
                  disk_avg_gbps, es.wait_seconds, seq_gbps,
                  direct_reads ? absl::StrCat(es.direct_loads, " of ", es.loads, " expert reads with O_DIRECT").c_str()
                               : "expert reads through the page cache, dropped before every step");
  }
  return 0;
}
