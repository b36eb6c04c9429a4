// Model load time: ModelWeights::Load of --model (every layer, embedding and head, as one worker
// holding the whole model) with its stored tensors read by --read-threads (0 = the default:
// the CPUs this process may use, at most 16) against one thread, alternating, and against a
// sequential read of the same shard files measured in the same run.
//
//   build/bin/load_bench --model DIR [--weight_dtype stored|int8|int4|...] [--read_threads 0|N>=2]
//                        [--rounds 3] [--cold] [--read-ahead=false] [--json] [--baseline FILE] [--record]
//
// The reference ("dd"): every shard file read front to back by one thread in 8 MiB preads into
// one reused buffer, so it pays for the bytes' source alone (the page cache where the files are
// cached, else the disk). A load pays more: each tensor lands in fresh memory that the kernel
// zeroes on first touch (on a VM, the first touch after the memory was handed back to the host
// can cost several times the copy), and a --weight-dtype conversion costs its arithmetic.
// GB/s count the checkpoint's bytes (its shard files' sizes). "vs best": the parallel load's GB/s
// against the best recorded in bench/baselines.json for this dtype (--record stores a better one).
// The page cache is warm (the untimed first read fills it) unless --cold evicts the files before
// every read and load: the sequential read is then the disk's rate ("dd"), the loads' from disk.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "bench/baseline_store.h"
#include "nlohmann/json.hpp"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/model_weights.h"
#include "shard_worker/model/safetensors_file.h"
#include "shard_worker/runtime/dashed_flags.h"

ABSL_FLAG(std::string, model, "", "model directory");
ABSL_FLAG(std::string, weight_dtype, "stored", "stored | bf16 | int8 | int4 | int{8,4}-g<N> (converted at load)");
ABSL_FLAG(int32_t, read_threads, 0, "threads reading the stored tensors (0 = the load's default)");
ABSL_FLAG(int32_t, rounds, 3, "alternations of (parallel load, one-thread load)");
ABSL_FLAG(bool, cold, false,
          "evict the shard files from the page cache (posix_fadvise DONTNEED) before every read and load: "
          "the reads then come from the disk");
ABSL_FLAG(bool, read_ahead, true, "announce each layer's tensors to the kernel a layer ahead (LoadOptions::read_ahead)");
ABSL_FLAG(bool, json, false, "print one JSON object");
ABSL_FLAG(std::string, baseline, GLM_BENCH_BASELINE_FILE, "JSON file of previous best results");
ABSL_FLAG(bool, record, false, "store the parallel load's GB/s as the new best in --baseline if it is better");

namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

int Fail(const std::string& why) {
  std::fprintf(stderr, "load_bench: %s\n", why.c_str());
  return 2;
}

// Asks the kernel to drop the shard files' cached pages (clean pages go at once; no root needed).
void EvictFromPageCache(const glm::model::Checkpoint& ckpt) {
  for (const auto& file : ckpt.files()) {
    const int fd = ::open(file->path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// One thread, front to back, 8 MiB at a time into one buffer: seconds for every shard file.
double SequentialReadSeconds(const glm::model::Checkpoint& ckpt, int64_t* bytes) {
  std::vector<char> buf(size_t{8} << 20);
  *bytes = 0;
  const Clock::time_point start = Clock::now();
  for (const auto& file : ckpt.files()) {
    const int fd = ::open(file->path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    for (int64_t off = 0;;) {
      const ssize_t n = ::pread(fd, buf.data(), buf.size(), off);
      if (n <= 0) break;
      off += n;
      *bytes += n;
    }
    ::close(fd);
  }
  return Since(start);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  glm::runtime::NormalizeDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  const std::string dir = absl::GetFlag(FLAGS_model);
  if (dir.empty()) return Fail("--model DIR is required");
  const int rounds = absl::GetFlag(FLAGS_rounds);
  if (rounds < 1) return Fail("--rounds must be >= 1");
  glm::model::LoadOptions load;
  if (auto st = glm::model::ParseWeightDType(absl::GetFlag(FLAGS_weight_dtype), &load); !st.ok())
    return Fail(std::string(st.message()));
  load.read_ahead = absl::GetFlag(FLAGS_read_ahead);
  if (absl::GetFlag(FLAGS_read_threads) < 0) return Fail("--read-threads must be >= 0");
  if (absl::GetFlag(FLAGS_read_threads) == 1) return Fail("--read-threads 1 is the comparison itself: give 0 or 2 or more");
  // On a one-CPU process the default is one thread, the comparison itself: two then.
  const int parallel_threads = absl::GetFlag(FLAGS_read_threads) > 0
                                   ? absl::GetFlag(FLAGS_read_threads)
                                   : std::max(2, glm::model::DefaultReadThreads());
  auto ckpt = glm::model::Checkpoint::Open(dir);
  if (!ckpt.ok()) return Fail(std::string(ckpt.status().message()));

  int64_t file_bytes = 0;
  const double warm_s = SequentialReadSeconds(**ckpt, &file_bytes);  // may come from disk: not reported
  (void)warm_s;
  std::vector<double> dd_s, parallel_s, single_s;
  int64_t kept_bytes = 0;
  // One untimed load first: a process's first touches of memory cost more than later ones (on a
  // VM, memory the host has not backed yet), whichever thread count loads first. Then rounds of
  // both loads, in alternating order (ABBA) so that drifts in the machine's speed hit both.
  const bool cold = absl::GetFlag(FLAGS_cold);
  for (int r = -1; r < rounds; ++r) {
    if (r >= 0) {
      int64_t bytes = 0;
      if (cold) EvictFromPageCache(**ckpt);
      dd_s.push_back(SequentialReadSeconds(**ckpt, &bytes));
    }
    const bool parallel_first = r % 2 == 0;
    for (const int threads : {parallel_first ? parallel_threads : 1, parallel_first ? 1 : parallel_threads}) {
      load.read_threads = threads;
      if (cold) EvictFromPageCache(**ckpt);
      const Clock::time_point start = Clock::now();
      auto weights = glm::model::ModelWeights::Load(**ckpt, load);
      const double s = Since(start);
      if (!weights.ok()) return Fail(std::string(weights.status().message()));
      kept_bytes = (*weights)->bytes_loaded();
      if (r >= 0) (threads == parallel_threads ? parallel_s : single_s).push_back(s);
      if (r < 0) break;
    }
  }
  const double gb = static_cast<double>(file_bytes) / 1e9;
  const double dd = gb / Median(dd_s), parallel = gb / Median(parallel_s), single = gb / Median(single_s);
  const std::string key = absl::StrCat("load_", absl::GetFlag(FLAGS_weight_dtype), "_gbps");
  glm::bench::BaselineStore baselines(absl::GetFlag(FLAGS_baseline));
  const double best = baselines.Get(key);
  if (absl::GetFlag(FLAGS_record)) baselines.RecordIfBetter(key, parallel);

  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json j = {{"model", dir},
                        {"weight_dtype", absl::GetFlag(FLAGS_weight_dtype)},
                        {"checkpoint_bytes", file_bytes},
                        {"loaded_bytes", kept_bytes},
                        {"read_threads", parallel_threads},
                        {"rounds", rounds},
                        {"cold", cold},
                        {"read_ahead", load.read_ahead},
                        {"sequential_read_gbps", dd},
                        {"load_gbps", parallel},
                        {"load_one_thread_gbps", single},
                        {"load_seconds", Median(parallel_s)},
                        {"load_one_thread_seconds", Median(single_s)},
                        {"load_vs_sequential_read", parallel / dd},
                        {"speedup_vs_one_thread", parallel / single},
                        {"vs_best", best > 0 ? parallel / best : 0.0}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("model %s: %.2f GB in %zu shard files, %s -> %.2f GB kept; medians of %d rounds; %s\n", dir.c_str(), gb,
              (*ckpt)->files().size(), absl::GetFlag(FLAGS_weight_dtype).c_str(), kept_bytes / 1e9, rounds,
              cold ? "cold: read from the disk" : "page cache warm");
  std::printf("sequential read (one thread, 8 MiB preads, reused buffer)  %7.2f GB/s\n", dd);
  std::printf("load, %2d read threads  %6.2f s  %7.2f GB/s  %.2fx the sequential read  %.2fx one thread",
              parallel_threads, Median(parallel_s), parallel, parallel / dd, parallel / single);
  if (best > 0) std::printf("  %.2fx the previous best (%.2f GB/s)", parallel / best, best);
  std::printf("\nload,  1 read thread   %6.2f s  %7.2f GB/s  %.2fx the sequential read\n", Median(single_s), single,
              single / dd);
  return 0;
}
