#include "shard_worker/model/step_path_chooser.h"

#include <algorithm>
#include <atomic>

namespace glm::model {
namespace {

std::atomic<TokenGroupMode> g_mode{TokenGroupMode::kAuto};

}  // namespace

void SetTokenGroupMode(TokenGroupMode mode) { g_mode.store(mode); }
TokenGroupMode GetTokenGroupMode() { return g_mode.load(std::memory_order_relaxed); }

int StepPathChooser::Index(int64_t tokens, bool several_sequences) {
  const int64_t t = std::clamp<int64_t>(tokens, 1, kMaxTokens);
  return static_cast<int>((t - 1) * 2 + (several_sequences ? 1 : 0));
}

StepPath StepPathChooser::Choose(int64_t tokens, bool several_sequences) {
  absl::MutexLock lock(&mutex_);
  Shape& s = shapes_[Index(tokens, several_sequences)];
  const int64_t n = ++s.choices;
  // Trials: alternate until each path has kTrials timed steps.
  if (s.runs[0] < kTrials || s.runs[1] < kTrials) return s.runs[0] <= s.runs[1] ? StepPath::kPooled : StepPath::kTokenGroups;
  const StepPath best = s.mean_seconds[0] <= s.mean_seconds[1] ? StepPath::kPooled : StepPath::kTokenGroups;
  if (n % kRetryEvery == 0) return best == StepPath::kPooled ? StepPath::kTokenGroups : StepPath::kPooled;
  return best;
}

void StepPathChooser::Record(int64_t tokens, bool several_sequences, StepPath path, double seconds) {
  absl::MutexLock lock(&mutex_);
  Shape& s = shapes_[Index(tokens, several_sequences)];
  const int p = path == StepPath::kPooled ? 0 : 1;
  // A path's first step is not timed: it pays for first touches (a sleeping pool thread, cold
  // caches and scratch) that would make it look 1.5-2x slower than it is.
  if (!s.warmed[p]) {
    s.warmed[p] = true;
    return;
  }
  // The first time sets the average; later ones move it (steps slow down as contexts grow, and
  // the machine's speed drifts: an old time should not outvote a recent one for long). A retry of
  // the path not in use counts more: it is that path's only news for kRetryEvery steps.
  const bool trials_done = s.runs[0] >= kTrials && s.runs[1] >= kTrials;
  const bool retry = trials_done && s.mean_seconds[p] > s.mean_seconds[1 - p];
  const double weight = retry ? kRetryWeight : kSmoothing;
  s.mean_seconds[p] = s.runs[p] == 0 ? seconds : (1.0 - weight) * s.mean_seconds[p] + weight * seconds;
  ++s.runs[p];
}

}  // namespace glm::model
