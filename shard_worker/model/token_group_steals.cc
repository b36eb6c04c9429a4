#include "shard_worker/model/token_group_steals.h"

#include <thread>
#include <utility>

#include "shard_worker/kernels/thread_pool.h"

namespace glm::model {

TokenGroupSteals::TokenGroupSteals(int64_t max_tasks, int threads, int64_t n_layers,
                                   std::vector<int64_t> unit_offsets)
    : max_tasks_(max_tasks), n_layers_(n_layers), unit_offsets_(std::move(unit_offsets)), tasks_(new Task[max_tasks]),
      responses_(new std::atomic<int64_t>[threads]) {
  for (int t = 0; t < threads; ++t) responses_[t].store(kWaiting, std::memory_order_relaxed);
}

int64_t TokenGroupSteals::AddGroup(int64_t first, int64_t end, bool counts_attention,
                                   attention::KeySelection selection) {
  const int64_t k = allocated_.fetch_add(1, std::memory_order_relaxed);
  Task& t = tasks_[k];
  t.first = first;
  t.end.store(end, std::memory_order_relaxed);
  t.layer = 0;
  t.counts_attention = counts_attention;
  t.selection = std::move(selection);
  t.ready.store(true, std::memory_order_release);
  return k;
}

void TokenGroupSteals::AtBoundary(int64_t k, int64_t layer) {
  Task& t = tasks_[k];
  t.next_layer.store(layer, std::memory_order_seq_cst);
  if (t.request.load(std::memory_order_acquire) == 0) return;
  const int thief = t.request.exchange(0, std::memory_order_acq_rel) - 1;
  if (thief < 0) return;  // withdrawn meanwhile
  const int64_t end = t.end.load(std::memory_order_relaxed), units = end - t.first;
  const bool selection_splits =
      t.selection.empty() || static_cast<int64_t>(t.selection.size()) == token(end) - token(t.first);
  if (layer >= n_layers_ || units < 2 || !selection_splits) {
    if (!selection_splits) t.unsplittable.store(true, std::memory_order_relaxed);
    Answer(thief, kDeclined);
    return;
  }
  const int64_t n = allocated_.fetch_add(1, std::memory_order_relaxed);
  if (n >= max_tasks_) {  // cannot happen: each task holds a unit of its own
    allocated_.fetch_sub(1, std::memory_order_relaxed);
    Answer(thief, kDeclined);
    return;
  }
  const int64_t mid = t.first + units / 2;
  Task& taken = tasks_[n];
  taken.first = mid;
  taken.end.store(end, std::memory_order_relaxed);
  taken.layer = layer;
  taken.next_layer.store(layer, std::memory_order_relaxed);
  taken.counts_attention = false;
  if (!t.selection.empty()) {
    const int64_t kept = token(mid) - token(t.first);
    taken.selection.assign(std::make_move_iterator(t.selection.begin() + kept),
                           std::make_move_iterator(t.selection.end()));
    t.selection.resize(kept);
  }
  taken.ready.store(true, std::memory_order_release);
  t.end.store(mid, std::memory_order_release);
  steals_.fetch_add(1, std::memory_order_relaxed);
  Answer(thief, n);
}

void TokenGroupSteals::Finish(int64_t k) {
  Task& t = tasks_[k];
  t.next_layer.store(n_layers_, std::memory_order_seq_cst);
  const int thief = t.request.exchange(0, std::memory_order_seq_cst) - 1;
  if (thief >= 0) Answer(thief, kDeclined);
}

int64_t TokenGroupSteals::Steal(int thread) {
  for (;;) {
    // The task with the most work left that a split at its next boundary would still share.
    int64_t victim = -1, most = 0;
    const int64_t n = count();
    for (int64_t i = 0; i < n; ++i) {
      Task& t = tasks_[i];
      if (!t.ready.load(std::memory_order_acquire) || t.unsplittable.load(std::memory_order_relaxed)) continue;
      const int64_t next = t.next_layer.load(std::memory_order_acquire);
      const int64_t end = t.end.load(std::memory_order_acquire);
      if (next + 1 >= n_layers_ || end - t.first < 2) continue;
      const int64_t work = (token(end) - token(t.first)) * (n_layers_ - next);
      if (work > most) {
        most = work;
        victim = i;
      }
    }
    if (victim < 0) return -1;
    Task& t = tasks_[victim];
    responses_[thread].store(kWaiting, std::memory_order_relaxed);
    int none = 0;
    if (!t.request.compare_exchange_strong(none, thread + 1, std::memory_order_seq_cst)) {
      kernels::CpuRelax();  // another thief asked first: look again
      continue;
    }
    for (int spin = 0;; ++spin) {
      const int64_t answer = responses_[thread].load(std::memory_order_acquire);
      if (answer >= 0) return answer;
      if (answer == kDeclined) break;
      if (t.next_layer.load(std::memory_order_seq_cst) >= n_layers_) {
        int mine = thread + 1;  // the owner has left: withdraw, unless it took the request
        if (t.request.compare_exchange_strong(mine, 0, std::memory_order_seq_cst)) break;
      }
      kernels::CpuRelax();
      if (spin > 20000) std::this_thread::yield();  // more threads than cores: let the owner run
    }
  }
}

}  // namespace glm::model
