// Work stealing between the token groups of one step of short sequences (Glm5Model::
// RunLayersByTokenGroup for decode tokens and speculative verifies of a few positions; groups hold
// whole sequences, so no group waits for another's cache rows).
//
// Each pool thread takes a contiguous group of the step's sequences through every layer. The
// groups are equal in tokens, not in time: on the 2-vCPU VM here the group on one vCPU ran 15-40%
// slower than the other's at times, and the step waits for the slower one. So a thread whose group
// is done asks the task with the most work left (tokens × layers to go) to hand over the later half
// of its sequences; the owner answers at its next layer boundary, and the thief takes them through
// the remaining layers. A token's arithmetic does not depend on which thread or batch computes
// it, so the step's results are bit-identical with or without steals.
//
// The tasks also hold each group's results (status, weight bytes, key selections) for steps that
// do not steal (groups that continue one another's sequences run as a wavefront instead):
// Glm5Model::MergeTokenGroups gathers them either way.
//
// Protocol: a thief posts its index in the victim's `request`; the owner exchanges it at each
// layer boundary and answers in the thief's response slot (the new task, or declined). An owner
// that finishes marks itself done first and then takes any pending request (declining it); a
// thief that sees its victim done withdraws its request unless the owner took it, in which case
// the answer is on its way — so no thief waits for an owner that has left.
#ifndef GLM_SHARD_WORKER_MODEL_TOKEN_GROUP_STEALS_H_
#define GLM_SHARD_WORKER_MODEL_TOKEN_GROUP_STEALS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "shard_worker/attention/sequence_span.h"

namespace glm::model {

class TokenGroupSteals {
 public:
  struct Task {
    int64_t first = 0;            // units [first, end) of the step; end shrinks when a thief takes the rest
    std::atomic<int64_t> end{0};  // written by the owner, read by thieves choosing a victim
    int64_t layer = 0;            // the first of the step's layers it runs
    bool counts_attention = false;  // its bytes include the attention weights (the first group's)
    attention::KeySelection selection;  // per token of units [first, end), or empty
    int64_t bytes = 0;
    absl::Status status;
    std::atomic<int64_t> next_layer{0};  // the layer its owner runs next; n_layers once done
    std::atomic<int> request{0};         // a waiting thief's index + 1
    std::atomic<bool> ready{false};      // fields set: thieves may look at it
    std::atomic<bool> unsplittable{false};
  };

  // At most `max_tasks` tasks (the step's units: tokens, or whole sequences), `threads` pool
  // threads, `n_layers` layers. Tasks hold ranges of units; `unit_offsets` [units + 1] gives each
  // unit's first token (a sequence's tokens are one unit, never split); empty: a unit is a token.
  TokenGroupSteals(int64_t max_tasks, int threads, int64_t n_layers, std::vector<int64_t> unit_offsets = {});
  // The first token of unit u.
  int64_t token(int64_t u) const { return unit_offsets_.empty() ? u : unit_offsets_[u]; }

  // A group's task, added before the threads start: index = number of tasks so far.
  int64_t AddGroup(int64_t first, int64_t end, bool counts_attention, attention::KeySelection selection);
  int64_t count() const { return allocated_.load(std::memory_order_acquire); }
  Task& task(int64_t i) { return tasks_[i]; }

  // The owner of task k, about to run layer `layer`: answers a pending request (the later half of
  // its units from this layer on, when it has two or more and this is not past the last layer).
  void AtBoundary(int64_t k, int64_t layer);
  // The owner of task k is done with it (or failed): declines any pending request.
  void Finish(int64_t k);
  // Thread `thread` has nothing left to run: a task it took over (its index), or -1 when no task
  // has two tokens and two layers left.
  int64_t Steal(int thread);

  int64_t steals() const { return steals_.load(std::memory_order_relaxed); }

 private:
  static constexpr int64_t kWaiting = -1, kDeclined = -2;
  void Answer(int thief, int64_t task) { responses_[thief].store(task, std::memory_order_release); }

  const int64_t max_tasks_, n_layers_;
  const std::vector<int64_t> unit_offsets_;
  std::unique_ptr<Task[]> tasks_;
  std::unique_ptr<std::atomic<int64_t>[]> responses_;  // [threads]
  std::atomic<int64_t> allocated_{0};
  std::atomic<int64_t> steals_{0};
};

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_TOKEN_GROUP_STEALS_H_
