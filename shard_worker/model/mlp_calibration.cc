#include "shard_worker/model/mlp_calibration.h"

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint_layout.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/moe/moe_layer.h"

namespace glm::model {

absl::StatusOr<std::shared_ptr<const MlpCalibration>> MlpCalibration::Collect(const Checkpoint& checkpoint,
                                                                             const std::vector<int32_t>& ids,
                                                                             int64_t sequence_tokens,
                                                                             kernels::ThreadPool* pool) {
  const ModelConfig& c = checkpoint.config();
  if (ids.empty()) return absl::InvalidArgumentError("calibration: no tokens");
  if (sequence_tokens < 1) return absl::InvalidArgumentError("calibration: sequence_tokens must be at least 1");
  for (int32_t id : ids)
    if (id < 0 || id >= c.vocab_size)
      return absl::InvalidArgumentError(absl::StrCat("calibration: token id ", id, " outside the vocabulary [0, ",
                                                     c.vocab_size, ")"));
  auto weights = ModelWeights::Load(checkpoint, LoadOptions());
  if (!weights.ok()) return weights.status();
  std::shared_ptr<const ModelWeights> shared_weights(std::move(*weights));

  auto calibration = std::make_shared<MlpCalibration>();
  // Each MLP's two inputs, found by the matrix the observer is called with (its weight pointer).
  std::unordered_map<const void*, std::shared_ptr<kernels::InputGram>> by_weight;
  auto add_mlp = [&](const MlpWeights& m, const std::string& prefix) {
    if (m.gate_proj.data == nullptr) return;
    auto in = std::make_shared<kernels::InputGram>(m.gate_proj.cols);
    auto mid = std::make_shared<kernels::InputGram>(m.down_proj.cols);
    by_weight[m.gate_proj.data] = in;
    by_weight[m.down_proj.data] = mid;
    calibration->grams_[prefix + "gate_proj.weight"] = in;
    calibration->grams_[prefix + "up_proj.weight"] = in;
    calibration->grams_[prefix + "down_proj.weight"] = mid;
  };
  for (int64_t l = 0; l < c.num_weight_layers(); ++l) {
    const LayerWeights& layer = shared_weights->layer(l);
    if (!layer.loaded) continue;
    const std::string p = LayerPrefix(l);
    if (c.mlp_kind(l) == MlpKind::kDense) {
      add_mlp(layer.dense, p + "mlp.");
      continue;
    }
    for (size_t e = 0; e < layer.moe.experts.size(); ++e) add_mlp(layer.moe.experts[e], absl::StrCat(p, "mlp.experts.", e, "."));
    if (layer.moe.has_shared) add_mlp(layer.moe.shared, p + "mlp.shared_experts.");
  }

  auto model = Glm5Model::Create(shared_weights, pool);
  if (!model.ok()) return model.status();
  std::mutex mu;
  const moe::MlpInputObserver observer = [&](const kernels::WeightView& weight, const float* x, int64_t n) {
    auto it = by_weight.find(weight.data);
    if (it == by_weight.end()) return;
    std::lock_guard<std::mutex> lock(mu);
    it->second->Add(x, n);
  };
  moe::SetMlpInputObserver(&observer);
  absl::Status status;
  for (size_t begin = 0; begin < ids.size() && status.ok(); begin += static_cast<size_t>(sequence_tokens)) {
    const size_t end = std::min(ids.size(), begin + static_cast<size_t>(sequence_tokens));
    auto cache = (*model)->NewCache();
    std::vector<SequenceInput> batch(1);
    batch[0].cache = cache.get();
    batch[0].tokens.assign(ids.begin() + static_cast<std::ptrdiff_t>(begin), ids.begin() + static_cast<std::ptrdiff_t>(end));
    status = (*model)->Forward(batch, LogitRows::kNone).status();
  }
  moe::SetMlpInputObserver(nullptr);
  if (!status.ok()) return status;
  // Matrices no token reached carry no information: leave them out (they quantise as usual).
  for (auto it = calibration->grams_.begin(); it != calibration->grams_.end();)
    it = it->second->samples == 0 ? calibration->grams_.erase(it) : std::next(it);
  calibration->tokens_ = static_cast<int64_t>(ids.size());
  return std::shared_ptr<const MlpCalibration>(std::move(calibration));
}

absl::Status MlpCalibration::Quantize(const std::string& name, const kernels::WeightView& src, int64_t col_begin,
                                      kernels::DType dtype, int64_t group_size, uint8_t* out, uint16_t* scales) const {
  // GPTQ's damping: 1% of the inputs' mean square added to every column's (the usual choice; it
  // keeps columns that calibration barely reached from taking large corrections).
  constexpr double kDamp = 0.01;
  const kernels::InputGram* gram = Find(name);
  if (gram == nullptr) return absl::NotFoundError(absl::StrCat("no calibration statistics for tensor '", name, "'"));
  if (col_begin < 0 || col_begin + src.cols > gram->cols)
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': calibration statistics of ", gram->cols,
                                                   " columns for columns [", col_begin, ", ", col_begin + src.cols, ")"));
  kernels::InputGram block(src.cols);
  block.samples = gram->samples;
  for (int64_t i = 0; i < src.cols; ++i)
    for (int64_t j = 0; j <= i; ++j)  // InputGram keeps the lower triangle
      block.sum[i * src.cols + j] = gram->sum[(col_begin + i) * gram->cols + col_begin + j];
  std::vector<float> w(static_cast<size_t>(src.rows * src.cols));
  for (int64_t r = 0; r < src.rows; ++r) src.RowToF32(r, w.data() + r * src.cols);
  const int threads = glm::kernels::AvailableCpus();
  auto st = kernels::GptqQuantizeMatrix(dtype, w.data(), src.rows, src.cols, group_size, block, kDamp, threads, out, scales);
  if (!st.ok()) return absl::Status(st.code(), absl::StrCat("tensor '", name, "': ", st.message()));
  return absl::OkStatus();
}

const kernels::InputGram* MlpCalibration::Find(const std::string& name) const {
  auto it = grams_.find(name);
  return it == grams_.end() ? nullptr : it->second.get();
}

}  // namespace glm::model
