// The tensors a load reads, grouped by weight layer, announced to the kernel a layer ahead of
// the reads (SafetensorsFile::AdviseWillNeed: posix_fadvise WILLNEED, asynchronous).
//
// Why: shards hold their tensors in name order (experts 0, 1, 10, 11, ...; each down, gate, up)
// while the loader reads in model order (gate, up, down of experts 0, 1, 2, ...), so the kernel's
// sequential read-ahead keeps failing and, from the disk, each pread waits for its own I/O. With
// layer l + 1 announced while layer l is read from the page cache and converted, the disk works
// ahead (`load_bench --cold`, bench model, 2 read threads: 2.4-3.0 s against 3.9-5.2 s without,
// 0.75-0.97 of a sequential read of the shards). The advice runs on a thread of its own: for a
// range not cached, posix_fadvise allocates the pages and submits the reads before it returns,
// which for a GLM-5 layer (~10 GB of FP8 experts) takes about as long as reading it.
//
// Routed experts the rank does not own, or streams from disk (their reads bypass the page cache),
// are not announced; tensors a rank reads a slice of (tensor parallelism) are announced whole.
// Memory: at most the next layer's tensors wait in the page cache beyond what is being read.
#ifndef GLM_SHARD_WORKER_MODEL_LAYER_READ_AHEAD_H_
#define GLM_SHARD_WORKER_MODEL_LAYER_READ_AHEAD_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/model_weights.h"

namespace glm::model {

class LayerReadAhead {
 public:
  // `enabled` false: every Advise* does nothing (LoadOptions::read_ahead).
  LayerReadAhead(const Checkpoint& ckpt, const LoadOptions& options, bool experts_stream, bool enabled = true);
  // Drops advice not yet given and waits for the one being given.
  ~LayerReadAhead();
  LayerReadAhead(const LayerReadAhead&) = delete;
  LayerReadAhead& operator=(const LayerReadAhead&) = delete;

  // Queue the advice for the advising thread, in call order; return at once.
  // The embedding, final norm and head the options ask for.
  void AdviseHead();
  // Weight layer `layer`'s tensors (num_hidden_layers = the MTP layer); out of range: nothing.
  void AdviseLayer(int64_t layer);
  // Blocks until the queued advice has been given (tests).
  void Flush();
  // Tensors advised so far (tests).
  int64_t advised() const;

  // What AdviseHead / AdviseLayer announce (whether enabled or not).
  const std::vector<Checkpoint::Located>& head_tensors() const { return by_layer_.back(); }
  const std::vector<Checkpoint::Located>& layer_tensors(int64_t layer) const;

 private:
  void Enqueue(const std::vector<Checkpoint::Located>* tensors);
  void Loop();

  // Index layer for weight layers, num_weight_layers for the embedding / norm / head.
  std::vector<std::vector<Checkpoint::Located>> by_layer_;
  bool enabled_ = true;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<const std::vector<Checkpoint::Located>*> queue_;  // guarded by mutex_
  bool busy_ = false;                                          // guarded by mutex_
  bool stop_ = false;                                          // guarded by mutex_
  int64_t advised_ = 0;                                        // guarded by mutex_
  std::thread thread_;  // started by the first advice
};

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_LAYER_READ_AHEAD_H_
