// Picks the faster of two ways to run a repeated step when switching between them costs time of
// its own, so that the steps must not alternate. Speculative steps drafted alongside the verify
// (Glm5Model::ForwardDraftingAlongside) vs drafted first are such a pair: on the 2-vCPU VM here,
// alternating them step by step made both cost the same ~380 us, while runs of either kept their
// own speeds (alongside ~300 us); StepPathChooser's per-step trials cost more than choosing saved.
// So each path is timed over blocks of consecutive steps (the first few after a switch not
// counted), two blocks each, alternating (a drift of the machine's speed during a round then
// weighs on both); the faster one is kept for a stretch, and then both are timed again, the other
// one first. The first decision is re-timed soon: it was made on a process's first steps.
// Which path wins differs between machines and drifts: on a 16-core Xeon drafting alongside was
// 1.5x slower at 16 threads, and one timing round in four there picked it anyway (a transient).
// So kPreferred is the path whose wrong pick costs more, kOther must beat it by kSwitchGain, and
// every choice is re-timed after kKeep steps — or as soon as a block of the kept path's steps
// runs kDrift times slower than it was timed at (the machine changed under it: on the VM here a
// few speculative runs in thirty kept a path whose steps then cost 1.5x what they had).
#ifndef GLM_SHARD_WORKER_MODEL_BLOCK_PATH_CHOOSER_H_
#define GLM_SHARD_WORKER_MODEL_BLOCK_PATH_CHOOSER_H_

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace glm::model {

class BlockPathChooser {
 public:
  enum class Path { kPreferred, kOther };
  static constexpr int kBlock = 24;          // steps of one path per timing block
  static constexpr int kUntimed = 4;         // of which the first ones are not timed (the switch's cost)
  static constexpr int kBlocksPerRound = 4;  // alternating: a, b, a, b
  static constexpr int64_t kFirstKeep = 256;  // steps on the first chosen path before timing again
  static constexpr int64_t kKeep = 768;      // steps on the chosen path between later timings
  static constexpr double kSwitchGain = 0.97;  // kOther is chosen when its median is this much lower
  static constexpr double kDrift = 1.25;  // a kept block's median this much above the timed one re-times

  // The path for the next step.
  Path Next();
  // The step Next() gave `path` for took `cost` (seconds, or seconds per unit of work where
  // steps differ in size). Steps of a path other than the one being timed do not count.
  void Done(Path path, double cost);
  // Decisions so far (timing rounds that ended) and how many chose kOther.
  int64_t rounds() const;
  int64_t rounds_choosing_other() const;
  // Timing rounds started early because the kept path drifted slower.
  int64_t drift_retimes() const;

 private:
  static double Median(std::vector<double> v);
  void EndBlock() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  mutable absl::Mutex mutex_;
  // Timing: the path being timed and its block so far; else keeping `chosen` for kKeep steps.
  bool timing_ ABSL_GUARDED_BY(mutex_) = true;
  Path timed_ ABSL_GUARDED_BY(mutex_) = Path::kPreferred;
  Path chosen_ ABSL_GUARDED_BY(mutex_) = Path::kPreferred;
  int64_t steps_ ABSL_GUARDED_BY(mutex_) = 0;  // of the current block, or kept since the last timing
  int blocks_ ABSL_GUARDED_BY(mutex_) = 0;      // blocks of this round done
  std::vector<double> costs_[2] ABSL_GUARDED_BY(mutex_);  // this round's timed costs per path
  int64_t rounds_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t rounds_other_ ABSL_GUARDED_BY(mutex_) = 0;
  // Keeping: the chosen path's median when it was timed, the current block of its kept steps'
  // costs (the first kUntimed after a decision not counted), and whether a block ran kDrift slower.
  double chosen_cost_ ABSL_GUARDED_BY(mutex_) = 0;
  std::vector<double> kept_costs_ ABSL_GUARDED_BY(mutex_);
  bool drifted_ ABSL_GUARDED_BY(mutex_) = false;
  int64_t drift_retimes_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_BLOCK_PATH_CHOOSER_H_
