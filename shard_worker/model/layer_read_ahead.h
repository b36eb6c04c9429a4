// The tensors a load reads, grouped by weight layer, announced to the kernel a layer ahead of
// the reads (SafetensorsFile::AdviseWillNeed: posix_fadvise WILLNEED, asynchronous).
//
// Why: shards hold their tensors in name order (experts 0, 1, 10, 11, ...; each down, gate, up)
// while the loader reads in model order (gate, up, down of experts 0, 1, 2, ...), so the kernel's
// sequential read-ahead keeps failing and, from the disk, each pread waits for its own I/O. With
// layer l + 1 announced while layer l is read from the page cache and converted, the disk works
// ahead (bench model from the disk: 0.77-0.90 -> 1.24-1.28 GB/s, `load_bench --cold`).
//
// Routed experts the rank does not own, or streams from disk (their reads bypass the page cache),
// are not announced; tensors a rank reads a slice of (tensor parallelism) are announced whole.
// Memory: at most the next layer's tensors wait in the page cache beyond what is being read.
#ifndef GLM_SHARD_WORKER_MODEL_LAYER_READ_AHEAD_H_
#define GLM_SHARD_WORKER_MODEL_LAYER_READ_AHEAD_H_

#include <cstdint>
#include <vector>

#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/model_weights.h"

namespace glm::model {

class LayerReadAhead {
 public:
  // `enabled` false: every Advise* does nothing (LoadOptions::read_ahead).
  LayerReadAhead(const Checkpoint& ckpt, const LoadOptions& options, bool experts_stream, bool enabled = true);

  // The embedding, final norm and head the options ask for.
  void AdviseHead() const;
  // Weight layer `layer`'s tensors (num_hidden_layers = the MTP layer); out of range: nothing.
  void AdviseLayer(int64_t layer) const;

  // What AdviseHead / AdviseLayer announce (whether enabled or not).
  const std::vector<Checkpoint::Located>& head_tensors() const { return by_layer_.back(); }
  const std::vector<Checkpoint::Located>& layer_tensors(int64_t layer) const;

 private:
  static void Advise(const std::vector<Checkpoint::Located>& tensors);

  // Index layer for weight layers, num_weight_layers for the embedding / norm / head.
  std::vector<std::vector<Checkpoint::Located>> by_layer_;
  bool enabled_ = true;
};

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_LAYER_READ_AHEAD_H_
