#include "shard_worker/model/layer_read_ahead.h"

#include <cstdlib>
#include <string>

#include "shard_worker/model/checkpoint_layout.h"

namespace glm::model {

LayerReadAhead::LayerReadAhead(const Checkpoint& ckpt, const LoadOptions& options, bool experts_stream, bool enabled)
    : enabled_(enabled) {
  const int64_t layers = ckpt.config().num_weight_layers();
  by_layer_.resize(static_cast<size_t>(layers + 1));
  static const std::string kExperts = ".mlp.experts.";
  for (const std::string& name : ckpt.TensorNames()) {
    const int64_t layer = TensorLayer(name);
    if (layer >= layers) continue;
    if (layer < 0) {
      const bool embedding = name == "model.embed_tokens.weight";
      const bool wanted = embedding ? options.load_embedding || (options.load_head && ckpt.config().tie_word_embeddings)
                                    : options.load_head;
      if (!wanted) continue;
    }
    if (const size_t at = name.find(kExperts); at != std::string::npos) {
      const int64_t expert = std::strtoll(name.c_str() + at + kExperts.size(), nullptr, 10);
      if (experts_stream || (options.owns_expert && !options.owns_expert(layer, expert))) continue;
    }
    by_layer_[static_cast<size_t>(layer < 0 ? layers : layer)].push_back(ckpt.Find(name));
  }
}

const std::vector<Checkpoint::Located>& LayerReadAhead::layer_tensors(int64_t layer) const {
  static const std::vector<Checkpoint::Located> kNone;
  const auto layers = static_cast<int64_t>(by_layer_.size()) - 1;
  return layer < 0 || layer >= layers ? kNone : by_layer_[static_cast<size_t>(layer)];
}

LayerReadAhead::~LayerReadAhead() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    queue_.clear();
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LayerReadAhead::AdviseHead() { Enqueue(&head_tensors()); }

void LayerReadAhead::AdviseLayer(int64_t layer) { Enqueue(&layer_tensors(layer)); }

void LayerReadAhead::Enqueue(const std::vector<Checkpoint::Located>* tensors) {
  if (!enabled_ || tensors->empty()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(tensors);
    if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
  }
  changed_.notify_all();
}

void LayerReadAhead::Flush() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return queue_.empty() && !busy_; });
}

int64_t LayerReadAhead::advised() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return advised_;
}

void LayerReadAhead::Loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    const std::vector<Checkpoint::Located>* tensors = queue_.front();
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    for (const auto& t : *tensors)
      if (t.file != nullptr) t.file->AdviseWillNeed(*t.info);
    lock.lock();
    busy_ = false;
    advised_ += static_cast<int64_t>(tensors->size());
    changed_.notify_all();
  }
}

}  // namespace glm::model
