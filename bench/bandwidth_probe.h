// Memory bandwidth probes: the ceiling a bandwidth-bound kernel (decode GEMV) is judged against.
// Arrays are far larger than the caches and first touched by the threads that later read them,
// so with a NUMA-pinned pool the pages are local.
#ifndef GLM_BENCH_BANDWIDTH_PROBE_H_
#define GLM_BENCH_BANDWIDTH_PROBE_H_

#include <cstdint>
#include <memory>
#include <string>

namespace glm::kernels {
class ThreadPool;
}

namespace glm::bench {

// Read-only bandwidth, one pass at a time, so a benchmark can interleave probe passes with the
// kernel it judges (on a shared or noisy machine both then see the same conditions). Each
// thread sums its contiguous slice of 64-bit words with vector loads and software prefetch,
// the access pattern of a GEMV's weight stream.
class ReadBandwidthProbe {
 public:
  // pool: the threads to read with (nullptr = the calling thread only).
  ReadBandwidthProbe(glm::kernels::ThreadPool* pool, int64_t bytes);
  ~ReadBandwidthProbe();
  ReadBandwidthProbe(const ReadBandwidthProbe&) = delete;
  ReadBandwidthProbe& operator=(const ReadBandwidthProbe&) = delete;

  // Reads the whole array once; returns the wall time in seconds.
  double PassSeconds();
  int64_t bytes() const { return words_ * 8; }

 private:
  glm::kernels::ThreadPool* pool_;
  int64_t words_;
  struct Buffers;
  std::unique_ptr<Buffers> buffers_;
};

// STREAM triad a[i] = b[i] + s·c[i] over three double arrays of bytes_per_array each, split
// evenly across the pool's threads (nullptr = the calling thread). Best of `repeats` passes in
// GB/s (1e9 bytes/s), counting 3 arrays of traffic per pass as STREAM does (the write-allocate
// read of `a` is not counted).
double MeasureTriadBandwidthGBps(glm::kernels::ThreadPool* pool, int64_t bytes_per_array,
                                 int repeats);

// Read-only bandwidth (ReadBandwidthProbe), best of `repeats` passes, in GB/s. The right
// ceiling for GEMV, whose weights are only read.
double MeasureReadBandwidthGBps(glm::kernels::ThreadPool* pool, int64_t bytes, int repeats);

// Bytes of the largest data cache level the CPU reports (sysconf's L3 size, else the highest
// /sys/devices/system/cpu/cpu0/cache/index*/ data or unified level), 0 when unknown.
int64_t LastLevelCacheBytes();

// A sysfs cache "size" ("48K", "32768K", "300M"; a bare number is bytes) in bytes, 0 if unreadable.
int64_t ParseCacheSizeText(const std::string& text);

// max(minimum, multiple · llc_bytes): an array that streams from memory rather than from a large
// last-level cache (the 16-core Xeons tried here have 300 MiB of L3; some EPYCs over 1 GiB).
int64_t BeyondCacheBytes(int64_t minimum, int64_t llc_bytes, int multiple);

}  // namespace glm::bench

#endif  // GLM_BENCH_BANDWIDTH_PROBE_H_
