#include "bench/bandwidth_probe.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <string>

#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "shard_worker/kernels/thread_pool.h"

namespace glm::bench {
namespace {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// Uninitialised, 64-byte aligned: pages are first touched by the thread that owns the slice.
template <typename T>
std::unique_ptr<T[], FreeDeleter> AllocateUntouched(int64_t n) {
  size_t bytes = (static_cast<size_t>(n) * sizeof(T) + 63) / 64 * 64;
  return std::unique_ptr<T[], FreeDeleter>(static_cast<T*>(std::aligned_alloc(64, bytes)));
}

// Calls fn(thread, begin, end) on every thread with its contiguous slice of [0, n) (cache-line
// multiples of 8 elements but the last).
void ForEachSlice(glm::kernels::ThreadPool* pool, int64_t n,
                  const std::function<void(int, int64_t, int64_t)>& fn) {
  const int threads = pool != nullptr ? pool->size() : 1;
  auto slice = [&](int t) {
    int64_t per = (n / threads + 7) / 8 * 8;
    int64_t begin = std::min(n, t * per), end = t + 1 == threads ? n : std::min(n, begin + per);
    fn(t, begin, end);
  };
  if (pool == nullptr) slice(0);
  else pool->RunOnAll(slice);
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Prefetch distance of the read loops, as in the matmul kernels (the hardware prefetcher stops
// at 4 KiB page boundaries).
constexpr int kPrefetchBytes = 1024;

// Sum of the 64-bit words in [p, p + n), n a multiple of 8 and p 64-byte aligned; independent
// vector sums so a single core issues loads faster than DRAM delivers them.
#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t SumWordsAvx2(const uint64_t* p, int64_t n) {
  __m256i s0 = _mm256_setzero_si256(), s1 = s0;
  for (int64_t i = 0; i + 8 <= n; i += 8) {
    _mm_prefetch(reinterpret_cast<const char*>(p + i) + kPrefetchBytes, _MM_HINT_T0);
    const __m256i* v = reinterpret_cast<const __m256i*>(p + i);
    s0 = _mm256_add_epi64(s0, _mm256_load_si256(v));
    s1 = _mm256_add_epi64(s1, _mm256_load_si256(v + 1));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(s0, s1));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#endif

uint64_t SumWords(const uint64_t* p, int64_t n) {
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return SumWordsAvx2(p, n);
  __m128i s0 = _mm_setzero_si128(), s1 = s0, s2 = s0, s3 = s0;
  for (int64_t i = 0; i + 8 <= n; i += 8) {
    _mm_prefetch(reinterpret_cast<const char*>(p + i) + kPrefetchBytes, _MM_HINT_T0);
    const __m128i* v = reinterpret_cast<const __m128i*>(p + i);
    s0 = _mm_add_epi64(s0, _mm_load_si128(v));
    s1 = _mm_add_epi64(s1, _mm_load_si128(v + 1));
    s2 = _mm_add_epi64(s2, _mm_load_si128(v + 2));
    s3 = _mm_add_epi64(s3, _mm_load_si128(v + 3));
  }
  alignas(16) uint64_t lanes[2];
  _mm_store_si128(reinterpret_cast<__m128i*>(lanes),
                  _mm_add_epi64(_mm_add_epi64(s0, s1), _mm_add_epi64(s2, s3)));
  return lanes[0] + lanes[1];
#else
  uint64_t s[8] = {};
  for (int64_t i = 0; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) s[k] += p[i + k];
  return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
#endif
}

}  // namespace

double MeasureTriadBandwidthGBps(glm::kernels::ThreadPool* pool, int64_t bytes_per_array,
                                 int repeats) {
  const int64_t n = std::max<int64_t>(8, bytes_per_array / 8 / 8 * 8);
  auto a = AllocateUntouched<double>(n), b = AllocateUntouched<double>(n),
       c = AllocateUntouched<double>(n);
  ForEachSlice(pool, n, [&](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      a[i] = 0.0;
      b[i] = 1.0;
      c[i] = 2.0;
    }
  });
  const double s = 3.0;
  double best = 1e30;
  for (int rep = 0; rep < std::max(1, repeats); ++rep) {
    auto start = std::chrono::steady_clock::now();
    ForEachSlice(pool, n, [&](int, int64_t begin, int64_t end) {
      double* __restrict pa = a.get();
      const double* __restrict pb = b.get();
      const double* __restrict pc = c.get();
      for (int64_t i = begin; i < end; ++i) pa[i] = pb[i] + s * pc[i];
    });
    best = std::min(best, Seconds(std::chrono::steady_clock::now() - start));
  }
  if (a[n - 1] != 7.0) return 0.0;  // keeps the stores observable
  return 3.0 * static_cast<double>(n) * sizeof(double) / best / 1e9;
}

struct ReadBandwidthProbe::Buffers {
  std::unique_ptr<uint64_t[], FreeDeleter> data;
  std::unique_ptr<uint64_t[]> sums;  // one cache line per thread
  uint64_t sink = 0;
};

ReadBandwidthProbe::ReadBandwidthProbe(glm::kernels::ThreadPool* pool, int64_t bytes)
    : pool_(pool), words_(std::max<int64_t>(8, bytes / 8 / 8 * 8)),
      buffers_(std::make_unique<Buffers>()) {
  buffers_->data = AllocateUntouched<uint64_t>(words_);
  const int threads = pool != nullptr ? pool->size() : 1;
  buffers_->sums.reset(new uint64_t[threads * 8]());
  uint64_t* data = buffers_->data.get();
  ForEachSlice(pool_, words_, [&](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) data[i] = static_cast<uint64_t>(i);
  });
}

ReadBandwidthProbe::~ReadBandwidthProbe() = default;

double ReadBandwidthProbe::PassSeconds() {
  const uint64_t* data = buffers_->data.get();
  uint64_t* sums = buffers_->sums.get();
  auto start = std::chrono::steady_clock::now();
  ForEachSlice(pool_, words_, [&](int t, int64_t begin, int64_t end) {
    sums[t * 8] = SumWords(data + begin, end - begin);
  });
  double seconds = Seconds(std::chrono::steady_clock::now() - start);
  const int threads = pool_ != nullptr ? pool_->size() : 1;
  for (int t = 0; t < threads; ++t) buffers_->sink += sums[t * 8];  // keeps the sums observable
  return seconds;
}

double MeasureReadBandwidthGBps(glm::kernels::ThreadPool* pool, int64_t bytes, int repeats) {
  ReadBandwidthProbe probe(pool, bytes);
  double best = 1e30;
  for (int rep = 0; rep < std::max(1, repeats); ++rep) best = std::min(best, probe.PassSeconds());
  return static_cast<double>(probe.bytes()) / best / 1e9;
}

int64_t ParseCacheSizeText(const std::string& text) {
  char* end = nullptr;
  const long long n = std::strtoll(text.c_str(), &end, 10);
  if (end == text.c_str() || n <= 0) return 0;
  switch (*end) {
    case '\0': return n;
    case 'K': case 'k': return static_cast<int64_t>(n) << 10;
    case 'M': case 'm': return static_cast<int64_t>(n) << 20;
    case 'G': case 'g': return static_cast<int64_t>(n) << 30;
    default: return 0;
  }
}

int64_t LastLevelCacheBytes() {
#ifdef _SC_LEVEL3_CACHE_SIZE
  if (const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE); l3 > 0) return l3;
#endif
  // sysfs: "size" as "32768K" / "300M", "level", and "type" (Data, Instruction, Unified).
  int best_level = 0;
  int64_t best = 0;
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream level_file(dir + "level"), type_file(dir + "type"), size_file(dir + "size");
    int level = 0;
    std::string type, size;
    if (!(level_file >> level) || !(type_file >> type) || !(size_file >> size) || type == "Instruction") continue;
    const int64_t bytes = ParseCacheSizeText(size);
    if (level > best_level || (level == best_level && bytes > best)) {
      best_level = level;
      best = bytes;
    }
  }
  return best;
}

int64_t BeyondCacheBytes(int64_t minimum, int64_t llc_bytes, int multiple) {
  return std::max(minimum, std::max<int64_t>(0, llc_bytes) * std::max(1, multiple));
}

}  // namespace glm::bench
