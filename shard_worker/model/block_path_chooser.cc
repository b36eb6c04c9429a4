#include "shard_worker/model/block_path_chooser.h"

#include <algorithm>

namespace glm::model {
namespace {

int Slot(BlockPathChooser::Path p) { return p == BlockPathChooser::Path::kPreferred ? 0 : 1; }
BlockPathChooser::Path Other(BlockPathChooser::Path p) {
  return p == BlockPathChooser::Path::kPreferred ? BlockPathChooser::Path::kOther : BlockPathChooser::Path::kPreferred;
}

}  // namespace

BlockPathChooser::Path BlockPathChooser::Next() {
  absl::MutexLock lock(&mutex_);
  if (timing_) return timed_;
  if (!drifted_ && ++steps_ <= (rounds_ == 1 ? kFirstKeep : kKeep)) return chosen_;
  // Time both again, the path not in use first, so the round ends on the one that was chosen.
  drift_retimes_ += drifted_;
  drifted_ = false;
  timing_ = true;
  timed_ = Other(chosen_);
  steps_ = 0;
  blocks_ = 0;
  costs_[0].clear();
  costs_[1].clear();
  return timed_;
}

void BlockPathChooser::Done(Path path, double cost) {
  absl::MutexLock lock(&mutex_);
  if (!timing_) {
    // steps_: Next() calls since the decision, the first kUntimed (a possible switch) not counted.
    if (path != chosen_ || drifted_ || steps_ <= kUntimed) return;
    kept_costs_.push_back(cost);
    if (static_cast<int>(kept_costs_.size()) < kBlock) return;
    drifted_ = Median(kept_costs_) > kDrift * chosen_cost_;
    kept_costs_.clear();
    return;
  }
  if (path != timed_) return;
  if (steps_++ >= kUntimed) costs_[Slot(path)].push_back(cost);
  if (steps_ >= kBlock) EndBlock();
}

void BlockPathChooser::EndBlock() {
  steps_ = 0;
  timed_ = Other(timed_);
  if (++blocks_ < kBlocksPerRound) return;
  const double preferred = Median(costs_[0]), other = Median(costs_[1]);
  chosen_ = other < kSwitchGain * preferred ? Path::kOther : Path::kPreferred;
  chosen_cost_ = chosen_ == Path::kOther ? other : preferred;
  kept_costs_.clear();
  ++rounds_;
  rounds_other_ += chosen_ == Path::kOther;
  timing_ = false;
  steps_ = 0;
}

double BlockPathChooser::Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

int64_t BlockPathChooser::rounds() const {
  absl::MutexLock lock(&mutex_);
  return rounds_;
}

int64_t BlockPathChooser::rounds_choosing_other() const {
  absl::MutexLock lock(&mutex_);
  return rounds_other_;
}

int64_t BlockPathChooser::drift_retimes() const {
  absl::MutexLock lock(&mutex_);
  return drift_retimes_;
}

}  // namespace glm::model
