// Picks, per step shape, the faster of two ways to run a decode-like step that give the same
// bits: the pooled path (every matmul's rows split across the pool) or token groups (each
// thread takes whole tokens through the layers, Glm5Model). Which one wins depends on the
// machine more than on the model: a fork-join of the pool cost ~0.2 us or ~0.9 us on the same VM
// depending on where its vCPUs sat, and a small model's matmul takes about that long. So both are
// timed as steps run: each shape tries both a few times, then keeps the one with the lower median
// of its recent steps (robust to the odd step an interrupt or a neighbour slowed down), switching
// only for a clear gain, and re-tries the other now and then in case the machine changed — often
// until the other path has a full window of steps, so that trials which came out slow (a cold
// cache after a prefill, a neighbour's burst) cannot hold a shape on the slower path for long.
// After the trials, a step that follows a step of another shape is not timed (it runs cold, and
// only the current path takes such steps).
#ifndef GLM_SHARD_WORKER_MODEL_STEP_PATH_CHOOSER_H_
#define GLM_SHARD_WORKER_MODEL_STEP_PATH_CHOOSER_H_

#include <array>
#include <cstdint>
#include <string_view>

#include "absl/synchronization/mutex.h"

namespace glm::model {

enum class StepPath { kPooled, kTokenGroups };

// kAuto: StepPathChooser decides; the others force a path (tests, benchmarks).
enum class TokenGroupMode { kAuto, kNever, kAlways };
void SetTokenGroupMode(TokenGroupMode mode);
TokenGroupMode GetTokenGroupMode();
// "auto" | "never" | "always" (the benchmarks' --token-groups); false for anything else.
bool ParseTokenGroupMode(std::string_view name, TokenGroupMode* mode);

class StepPathChooser {
 public:
  // Shapes: one sequence or several, by total tokens: 1..kExactTokens each their own (decode
  // batches, speculative verifies), then power-of-two buckets up to kMaxTokens (prefill chunks
  // and the steps that mix them with decodes: 17-32, 33-64, ..., 2049-4096), whose steps are
  // compared per token. Larger steps share the last bucket.
  static constexpr int kExactTokens = 16;
  static constexpr int kMaxTokens = 4096;
  static constexpr int kShapesPerKind = kExactTokens + 8;  // 8 buckets: 2^5 .. 2^12
  static constexpr int kTrials = 3;         // timed steps of each path before choosing
  static constexpr int kWindow = 8;         // recent steps per path whose median is its time
  static constexpr int kRetryEvery = 64;    // then one step of the other path in this many,
  static constexpr int kEarlyRetryEvery = 8;  // or in this many while its window is not full
  static constexpr double kSwitchGain = 0.9;  // the other path must be this much faster to switch

  StepPath Choose(int64_t tokens, bool several_sequences);
  void Record(int64_t tokens, bool several_sequences, StepPath path, double seconds);
  // A step this chooser does not time ran (a prefill chunk too large for token groups, a path the
  // mode forces): the next timed step follows other work, as after a step of another shape.
  void OtherWorkRan();

 private:
  struct PathTimes {
    bool warmed = false;  // the first step was seen (not timed: first touches)
    int64_t runs = 0;     // timed steps
    std::array<double, kWindow> recent{};
    double Median() const;
  };
  struct Shape {
    std::array<PathTimes, 2> paths;
    StepPath current = StepPath::kPooled;
    int64_t since_retry = 0;  // choices of the current path since the other one last ran
  };
  static int Index(int64_t tokens, bool several_sequences);

  absl::Mutex mutex_;
  std::array<Shape, 2 * kShapesPerKind> shapes_ ABSL_GUARDED_BY(mutex_);
  int last_index_ ABSL_GUARDED_BY(mutex_) = -1;  // the last step's shape (-1: other work, OtherWorkRan)
};

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_STEP_PATH_CHOOSER_H_
