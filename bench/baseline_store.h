// Previous best benchmark results, kept in a small JSON file in the repository
// (bench/baselines.json), so a benchmark prints its ratio to the best seen so far.
#ifndef GLM_BENCH_BASELINE_STORE_H_
#define GLM_BENCH_BASELINE_STORE_H_

#include <string>

namespace glm::bench {

class BaselineStore {
 public:
  explicit BaselineStore(std::string path);
  // 0 when the key has no record (or the file is missing or unreadable).
  double Get(const std::string& key) const;
  // Higher is better. Writes the file only when `value` beats the stored one.
  void RecordIfBetter(const std::string& key, double value);

 private:
  std::string path_;
};

}  // namespace glm::bench

#endif  // GLM_BENCH_BASELINE_STORE_H_
