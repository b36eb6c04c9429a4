// The micro-benchmarks' timer: calls fn until `seconds` have passed (after one warm-up call for
// thread-local buffers and caches) and returns microseconds per call. Median-free but steady.
#ifndef GLM_BENCH_MICROS_PER_CALL_H_
#define GLM_BENCH_MICROS_PER_CALL_H_

#include <chrono>
#include <cstdint>
#include <functional>

namespace glm::bench {

inline double MicrosPerCall(const std::function<void()>& fn, double seconds) {
  using Clock = std::chrono::steady_clock;
  fn();
  int64_t calls = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    fn();
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  }
  return elapsed * 1e6 / static_cast<double>(calls);
}

}  // namespace glm::bench

#endif  // GLM_BENCH_MICROS_PER_CALL_H_
