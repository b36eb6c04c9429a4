#include "shard_worker/model/step_path_chooser.h"

#include <algorithm>
#include <atomic>

namespace glm::model {
namespace {

std::atomic<TokenGroupMode> g_mode{TokenGroupMode::kAuto};

int Slot(StepPath p) { return p == StepPath::kPooled ? 0 : 1; }
StepPath Other(StepPath p) { return p == StepPath::kPooled ? StepPath::kTokenGroups : StepPath::kPooled; }

}  // namespace

void SetTokenGroupMode(TokenGroupMode mode) { g_mode.store(mode); }
TokenGroupMode GetTokenGroupMode() { return g_mode.load(std::memory_order_relaxed); }

bool ParseTokenGroupMode(std::string_view name, TokenGroupMode* mode) {
  if (name == "auto") *mode = TokenGroupMode::kAuto;
  else if (name == "never") *mode = TokenGroupMode::kNever;
  else if (name == "always") *mode = TokenGroupMode::kAlways;
  else return false;
  return true;
}

double StepPathChooser::PathTimes::Median() const {
  const int n = static_cast<int>(std::min<int64_t>(runs, kWindow));
  std::array<double, kWindow> v = recent;
  std::nth_element(v.begin(), v.begin() + n / 2, v.begin() + n);
  return v[n / 2];
}

int StepPathChooser::Index(int64_t tokens, bool several_sequences) {
  const int64_t t = std::clamp<int64_t>(tokens, 1, kMaxTokens);
  int shape = static_cast<int>(t - 1);
  if (t > kExactTokens) {
    int bucket = 0;  // t in (2^(bucket+4), 2^(bucket+5)]
    while ((int64_t{kExactTokens} << (bucket + 1)) < t) ++bucket;
    shape = kExactTokens + bucket;
  }
  return shape * 2 + (several_sequences ? 1 : 0);
}

StepPath StepPathChooser::Choose(int64_t tokens, bool several_sequences) {
  absl::MutexLock lock(&mutex_);
  Shape& s = shapes_[Index(tokens, several_sequences)];
  const PathTimes& pooled = s.paths[0];
  const PathTimes& grouped = s.paths[1];
  // Trials: alternate (each path's first step is an untimed warm-up) until both have kTrials.
  if (pooled.runs < kTrials || grouped.runs < kTrials) {
    const int64_t p = pooled.runs + (pooled.warmed ? 1 : 0), g = grouped.runs + (grouped.warmed ? 1 : 0);
    return p <= g ? StepPath::kPooled : StepPath::kTokenGroups;
  }
  // Keep the current path unless the other one's median is clearly lower.
  if (s.paths[1 - Slot(s.current)].Median() < kSwitchGain * s.paths[Slot(s.current)].Median())
    s.current = Other(s.current);
  // Re-try the other path: every kEarlyRetryEvery-th choice while its window is not full (three
  // trials are few: ones that came out slow otherwise keep the faster path unused for
  // kRetryEvery x kWindow / 2 steps), then every kRetryEvery-th.
  const int64_t every = s.paths[1 - Slot(s.current)].runs < kWindow ? kEarlyRetryEvery : kRetryEvery;
  if (++s.since_retry < every) return s.current;
  s.since_retry = 0;
  return Other(s.current);
}

void StepPathChooser::OtherWorkRan() {
  absl::MutexLock lock(&mutex_);
  last_index_ = -1;
}

void StepPathChooser::Record(int64_t tokens, bool several_sequences, StepPath path, double seconds) {
  absl::MutexLock lock(&mutex_);
  const int index = Index(tokens, several_sequences);
  const bool after_other_shape = last_index_ != index;
  last_index_ = index;
  Shape& s = shapes_[index];
  PathTimes& t = s.paths[Slot(path)];
  // A path's first step is not timed: it pays for first touches (a sleeping pool thread, cold
  // caches and scratch) that would make it look 1.5-2x slower than it is.
  if (!t.warmed) {
    t.warmed = true;
    return;
  }
  // Nor, once the trials are done, a step that follows a step of another shape (a prefill chunk,
  // a speculative verify, the MTP layer's work in between): it runs on caches the other work
  // evicted, and only the current path ever takes such steps, so timing them biased the choice
  // against whichever path was current. spec_bench's interleaved plain and speculative runs put
  // 20-58% of their one-token steps on the slower path (token groups, 1.5x the pooled step) that
  // way. Trials are timed whatever came before: both paths take them under the same conditions,
  // and steps that always alternate shapes must still reach a choice.
  if (after_other_shape && s.paths[0].runs >= kTrials && s.paths[1].runs >= kTrials) return;
  // Per token: a bucket's steps differ in size (exact shapes scale by a constant).
  t.recent[t.runs % kWindow] = seconds / static_cast<double>(std::max<int64_t>(tokens, 1));
  ++t.runs;
}

}  // namespace glm::model
