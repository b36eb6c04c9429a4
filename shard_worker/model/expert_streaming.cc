// ModelWeights' part in streaming routed experts (DESIGN.md, "Streaming active experts"): decide
// whether this rank's experts fit LoadOptions::expert_memory_bytes, and build the ExpertStore
// that serves them — the resident ones, or an LRU cache reading the rest from the checkpoint.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "shard_worker/model/model_weights.h"
#include "shard_worker/moe/expert_store.h"

namespace glm::model {

namespace {

// The MoE layers of the selection [layer_begin, layer_end).
std::vector<int64_t> MoeLayers(const ModelConfig& c, const LoadOptions& o) {
  std::vector<int64_t> out;
  const int64_t end = o.layer_end < 0 ? c.num_weight_layers() : std::min(o.layer_end, c.num_weight_layers());
  for (int64_t l = std::max<int64_t>(0, o.layer_begin); l < end; ++l)
    if (c.mlp_kind(l) == MlpKind::kSparse) out.push_back(l);
  return out;
}

bool Owns(const LoadOptions& o, int64_t layer, int64_t expert) { return !o.owns_expert || o.owns_expert(layer, expert); }

// Memory one expert takes in the format it is held in (all experts share shape and format);
// measured by reading one, so conversions (LoadOptions::matrix_dtype) are accounted exactly.
absl::StatusOr<int64_t> ExpertMemoryBytes(const Checkpoint& ckpt, const LoadOptions& o,
                                          const std::vector<int64_t>& layers, int64_t* owned) {
  *owned = 0;
  int64_t first_layer = -1, first_expert = -1;
  for (int64_t l : layers)
    for (int64_t e = 0; e < ckpt.config().n_routed_experts; ++e)
      if (Owns(o, l, e)) {
        if (first_layer < 0) first_layer = l, first_expert = e;
        ++*owned;
      }
  if (first_layer < 0) return 0;
  auto one = ModelWeights::LoadExpert(ckpt, o, first_layer, first_expert);
  if (!one.ok()) return one.status();
  return one->memory_bytes();
}

}  // namespace

absl::StatusOr<bool> ModelWeights::ExpertsOverBudget(const Checkpoint& checkpoint, const LoadOptions& options) const {
  if (options.expert_memory_bytes <= 0) return false;
  const std::vector<int64_t> layers = MoeLayers(checkpoint.config(), options);
  int64_t owned = 0;
  auto bytes = ExpertMemoryBytes(checkpoint, options, layers, &owned);
  if (!bytes.ok()) return bytes.status();
  return owned * *bytes > options.expert_memory_bytes;
}

absl::Status ModelWeights::SetUpExpertStore(const Checkpoint& checkpoint, const LoadOptions& options, bool stream) {
  const ModelConfig& c = checkpoint.config();
  const std::vector<int64_t> layers = MoeLayers(c, options);
  if (layers.empty()) return absl::OkStatus();
  if (!stream) {
    std::vector<const MoeWeights*> by_layer(layers_.size(), nullptr);
    for (int64_t l : layers) by_layer[l] = &layers_[l].moe;
    expert_store_ = std::make_shared<moe::ExpertStore>(std::move(by_layer));
    return absl::OkStatus();
  }
  for (int64_t l : layers) {
    MoeWeights& moe = layers_[l].moe;  // LoadLayer loaded none of them: mark the owned ones
    for (int64_t e = 0; e < c.n_routed_experts; ++e) moe.expert_loaded[e] = Owns(options, l, e);
  }
  // The store reads for as long as the model lives; the caller's Checkpoint may not, so it keeps
  // its own (opening one parses the shard headers only).
  auto own = Checkpoint::Open(checkpoint.dir());
  if (!own.ok()) return own.status();
  std::shared_ptr<const Checkpoint> ckpt(std::move(*own));
  int64_t owned = 0;
  auto bytes = ExpertMemoryBytes(*ckpt, options, layers, &owned);
  if (!bytes.ok()) return bytes.status();
  LoadOptions load = options;
  load.owns_expert = nullptr;  // the loader is asked for owned experts only
  expert_store_ = std::make_shared<moe::ExpertStore>(
      [ckpt, load](int64_t layer, int64_t expert) { return ModelWeights::LoadExpert(*ckpt, load, layer, expert); },
      layers, options.expert_memory_bytes, *bytes);
  return absl::OkStatus();
}

}  // namespace glm::model
