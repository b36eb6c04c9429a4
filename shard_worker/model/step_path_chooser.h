// Picks, per step shape, the faster of two ways to run a decode-like step that give the same
// bits: the pooled path (every matmul's rows split across the pool) or token groups (each
// thread takes whole tokens through the layers, Glm5Model). Which one wins depends on the
// machine more than on the model: a fork-join of the pool costs ~0.2 us between cores that share
// a cache and ~1 us across chips (measured on the same VM before and after its vCPUs moved), and
// a small model's matmul takes about that long. So both are timed as steps run: each shape tries
// both a few times, then takes the one with the lower moving average, and keeps re-trying the
// other now and then in case the machine changed.
#ifndef GLM_SHARD_WORKER_MODEL_STEP_PATH_CHOOSER_H_
#define GLM_SHARD_WORKER_MODEL_STEP_PATH_CHOOSER_H_

#include <array>
#include <cstdint>

#include "absl/synchronization/mutex.h"

namespace glm::model {

enum class StepPath { kPooled, kTokenGroups };

// kAuto: StepPathChooser decides; the others force a path (tests, benchmarks).
enum class TokenGroupMode { kAuto, kNever, kAlways };
void SetTokenGroupMode(TokenGroupMode mode);
TokenGroupMode GetTokenGroupMode();

class StepPathChooser {
 public:
  // Shapes: total tokens 1..kMaxTokens, one sequence or several.
  static constexpr int kMaxTokens = 16;
  static constexpr int kTrials = 3;           // timed steps of each path before choosing
  static constexpr int kRetryEvery = 64;      // then one step of the other path in this many
  static constexpr double kSmoothing = 0.25;  // weight of a new time in the moving average
  static constexpr double kRetryWeight = 0.5;  // ... of a retry of the path not in use

  StepPath Choose(int64_t tokens, bool several_sequences);
  void Record(int64_t tokens, bool several_sequences, StepPath path, double seconds);

 private:
  struct Shape {
    std::array<bool, 2> warmed{false, false};  // each path's first step was seen (not timed)
    std::array<int64_t, 2> runs{0, 0};         // timed steps
    std::array<double, 2> mean_seconds{0.0, 0.0};
    int64_t choices = 0;
  };
  static int Index(int64_t tokens, bool several_sequences);

  absl::Mutex mutex_;
  std::array<Shape, 2 * kMaxTokens> shapes_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_STEP_PATH_CHOOSER_H_
