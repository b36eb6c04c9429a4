#include "shard_worker/model/quantized_checkpoint.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/model_file.h"
#include "shard_worker/model/checkpoint_layout.h"
#include "shard_worker/model/model_weights.h"
#include "shard_worker/model/safetensors_file.h"
#include "shard_worker/model/synth_checkpoint.h"

namespace glm::model {
namespace {

namespace fs = std::filesystem;

// "model.layers.L.mlp.experts.E.gate_proj.weight" -> L, E, "gate_proj"; the shared expert's
// "model.layers.L.mlp.shared_experts.down_proj.weight" -> L, -1, "down_proj".
bool ParseExpertMatrix(const std::string& name, int64_t* layer, int64_t* expert, std::string* proj) {
  if (!IsExpertMatrix(name)) return false;
  static const std::string kRouted = ".experts.", kSuffix = ".weight";
  *layer = TensorLayer(name);
  const size_t routed = name.find(kRouted);
  *expert = routed == std::string::npos ? -1 : std::strtoll(name.c_str() + routed + kRouted.size(), nullptr, 10);
  const size_t end = name.size() - kSuffix.size();  // IsExpertMatrix: the name ends "X_proj.weight"
  const size_t dot = name.rfind('.', end - 1);
  *proj = name.substr(dot + 1, end - dot - 1);
  return *layer >= 0;
}

// The loader's matrices of the experts, as a load with the same options holds them. Routed
// experts are quantised a window at a time on every core (LoadExpert is thread-safe and one
// expert's work is one thread's): the next `window` experts in the order the shard holds them
// (Prepare), kept until the window moves on. The shared expert comes with a load of its layer.
class ExpertSource {
 public:
  ExpertSource(const Checkpoint& ckpt, LoadOptions options) : ckpt_(ckpt), options_(std::move(options)) {}

  // The routed experts (layer, expert) of the next shard, in the order its tensors come.
  void Prepare(std::vector<std::pair<int64_t, int64_t>> order) {
    order_ = std::move(order);
    window_.clear();
  }

  absl::StatusOr<WeightView> View(int64_t layer, int64_t expert, const std::string& proj) {
    const MlpWeights* mlp = nullptr;
    if (expert >= 0) {
      auto it = window_.find({layer, expert});
      if (it == window_.end()) {
        if (auto s = LoadWindowFrom(layer, expert); !s.ok()) return s;
        it = window_.find({layer, expert});
      }
      mlp = &it->second.weights;
    } else {
      if (shared_layer_ != layer) {
        shared_.reset();
        LoadOptions o = options_;
        o.layer_begin = layer;
        o.layer_end = layer + 1;
        o.load_embedding = o.load_head = false;
        o.owns_expert = [](int64_t, int64_t) { return false; };
        auto w = ModelWeights::Load(ckpt_, o);
        if (!w.ok()) return w.status();
        shared_ = *std::move(w);
        shared_layer_ = layer;
      }
      mlp = &shared_->layer(layer).moe.shared;
    }
    if (proj == "gate_proj") return mlp->gate_proj;
    if (proj == "up_proj") return mlp->up_proj;
    return mlp->down_proj;
  }

 private:
  absl::Status LoadWindowFrom(int64_t layer, int64_t expert) {
    window_.clear();
    std::vector<std::pair<int64_t, int64_t>> keys;
    auto at = std::find(order_.begin(), order_.end(), std::make_pair(layer, expert));
    const size_t window = 2 * static_cast<size_t>(kernels::AvailableCpus());
    for (; at != order_.end() && keys.size() < window; ++at) keys.push_back(*at);
    if (keys.empty()) keys.push_back({layer, expert});
    std::vector<absl::StatusOr<LoadedExpert>> loaded(keys.size());
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i = next++; i < keys.size(); i = next++)
        loaded[i] = ModelWeights::LoadExpert(ckpt_, options_, keys[i].first, keys[i].second);
    };
    std::vector<std::thread> threads;
    for (int t = 1; t < std::min<int>(kernels::AvailableCpus(), static_cast<int>(keys.size())); ++t) threads.emplace_back(work);
    work();
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < keys.size(); ++i) {
      if (!loaded[i].ok()) return loaded[i].status();
      window_.emplace(keys[i], *std::move(loaded[i]));
    }
    return absl::OkStatus();
  }

  const Checkpoint& ckpt_;
  const LoadOptions options_;
  std::vector<std::pair<int64_t, int64_t>> order_;
  std::map<std::pair<int64_t, int64_t>, LoadedExpert> window_;
  int64_t shared_layer_ = -1;
  std::unique_ptr<ModelWeights> shared_;
};

absl::Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path.string(), ": write failed"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> WriteQuantizedCheckpoint(const std::string& model_dir, const std::string& out_dir,
                                                     const QuantizeCheckpointOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  if (options.dtype != kernels::DType::kI8 && options.dtype != kernels::DType::kI4)
    return absl::InvalidArgumentError("quantize: the format must be int8 or int4 (int8, int8-row, int4, int{8,4}-g<N>)");
  if (out_dir.empty()) return absl::InvalidArgumentError("quantize: --out DIR is required");
  auto opened = Checkpoint::Open(model_dir);
  if (!opened.ok()) return opened.status();
  const Checkpoint& ckpt = **opened;
  const ModelConfig& c = ckpt.config();
  if (auto s = ValidateCheckpointTensors(ckpt, ExpectedTensors(c)); !s.ok()) return s;
  if (!c.expert_quant_format.empty())
    return absl::FailedPreconditionError(absl::StrCat(model_dir, ": its experts are already pre-quantised (",
                                                      c.expert_quant_format, "); quantize the original checkpoint"));
  if (c.n_routed_experts == 0) return absl::FailedPreconditionError(absl::StrCat(model_dir, ": the model has no experts"));
  const int64_t group = options.group_size != 0 ? options.group_size
                        : options.dtype == kernels::DType::kI8 ? kernels::kDefaultI8GroupSize
                                                               : kernels::kDefaultI4GroupSize;
  if (group < -1 || group == 0 || (group > 0 && group % 32 != 0))
    return absl::InvalidArgumentError(absl::StrCat("quantize: group size ", group, " is not a positive multiple of 32 or -1"));
  std::error_code ec;
  if (fs::exists(out_dir, ec) && fs::equivalent(out_dir, model_dir, ec))
    return absl::InvalidArgumentError("quantize: --out must be another directory than --model");
  if (auto s = PrepareCheckpointDir(out_dir, options.replace); !s.ok()) return s;
  fs::create_directories(out_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(out_dir, ": cannot create: ", ec.message()));

  LoadOptions load;
  load.matrix_dtype = options.dtype;
  load.matrix_group_size = group;
  load.quantize_scope = QuantizeScope::kExperts;
  ExpertSource experts(ckpt, load);
  absl::Status failed;  // the first error of a fill (SafetensorsWriter's callbacks return nothing)
  nlohmann::json weight_map = nlohmann::json::object();
  int64_t bytes_in = 0, bytes_out = 0;
  for (const auto& file : ckpt.files()) {
    std::vector<const TensorInfo*> tensors;
    for (const auto& [name, info] : file->tensors()) tensors.push_back(&info);
    std::sort(tensors.begin(), tensors.end(), [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
    SafetensorsWriter writer;
    const std::string shard = fs::path(file->path()).filename().string();
    std::vector<std::pair<int64_t, int64_t>> routed;
    for (const TensorInfo* t : tensors) {
      int64_t layer = 0, expert = 0;
      std::string proj;
      if (ParseExpertMatrix(t->name, &layer, &expert, &proj) && expert >= 0 &&
          (routed.empty() || routed.back() != std::make_pair(layer, expert)))
        routed.push_back({layer, expert});
    }
    experts.Prepare(std::move(routed));
    for (const TensorInfo* t : tensors) {
      bytes_in += t->size;
      const std::string& name = t->name;
      int64_t layer = 0, expert = 0;
      std::string proj;
      if (absl::EndsWith(name, "weight_scale_inv") &&
          IsExpertMatrix(name.substr(0, name.size() - std::string("_scale_inv").size())))
        continue;  // an expert's FP8 block scales: the codes replace the weight
      if (!ParseExpertMatrix(name, &layer, &expert, &proj)) {
        SafetensorsWriter::Entry e{name, t->dtype, t->shape, {}, {}};
        e.fill = [&failed, f = file.get(), t](uint8_t* dst, int64_t size) {
          if (auto s = f->Read(*t, 0, size, dst); !s.ok() && failed.ok()) failed = s;
        };
        writer.Add(std::move(e));
        weight_map[name] = shard;
        continue;
      }
      const int64_t rows = t->shape[0], cols = ExpertMatrixCols(c, name);
      const int64_t row_bytes = kernels::DTypeRowBytes(options.dtype, cols);
      const int64_t groups = kernels::QuantGroupsPerRow(cols, group);  // -1: one a row
      // The expert's matrix as the loader holds it (nullopt, with `failed` set, on an error).
      auto fetch = [&experts, &failed, layer, expert, proj, name, rows, cols](kernels::DType want) -> std::optional<WeightView> {
        auto v = experts.View(layer, expert, proj);
        if (!v.ok()) {
          if (failed.ok()) failed = v.status();
          return std::nullopt;
        }
        if (v->dtype != want || v->rows != rows || v->cols != cols) {
          if (failed.ok()) failed = absl::InternalError(absl::StrCat("quantize: '", name, "' did not load as codes"));
          return std::nullopt;
        }
        return *v;
      };
      const kernels::DType dt = options.dtype;
      SafetensorsWriter::Entry codes{name, dt == kernels::DType::kI8 ? "I8" : "U8", {rows, row_bytes}, {}, {}};
      codes.fill = [fetch, dt, rows, row_bytes](uint8_t* dst, int64_t size) {
        const std::optional<WeightView> v = fetch(dt);
        if (!v || size != rows * row_bytes) return;
        std::memcpy(dst, v->data, static_cast<size_t>(size));
      };
      SafetensorsWriter::Entry scales{QuantScaleName(name), "F16", {rows, groups}, {}, {}};
      scales.fill = [fetch, dt, rows, groups](uint8_t* dst, int64_t size) {
        const std::optional<WeightView> v = fetch(dt);
        if (!v || v->groups_per_row() != groups || size != rows * groups * 2) return;
        std::memcpy(dst, v->group_scales, static_cast<size_t>(size));
      };
      weight_map[codes.name] = shard;
      weight_map[scales.name] = shard;
      writer.Add(std::move(codes));
      writer.Add(std::move(scales));
    }
    // A shard whose tensors could not all be read or quantised is removed. config.json is written
    // last, so a failed run never leaves a directory that opens as a checkpoint.
    auto written = writer.Write((fs::path(out_dir) / shard).string());
    if (!written.ok() || !failed.ok()) {
      fs::remove(fs::path(out_dir) / shard, ec);
      return !written.ok() ? written.status() : failed;
    }
    bytes_out += *written;
    if (options.progress) options.progress(absl::StrCat("wrote ", (fs::path(out_dir) / shard).string(), " (", *written >> 20, " MiB)"));
  }
  // config.json as it was, plus the experts' format; the index; the directory's other files.
  const std::string config_path = (fs::path(model_dir) / "config.json").string();
  auto config_text = ReadModelFile(config_path, kMaxSmallModelFileBytes);
  if (!config_text.ok()) return config_text.status();
  auto parsed_config = ParseModelJson<nlohmann::json>(*config_text, config_path);
  if (!parsed_config.ok() || !parsed_config->is_object())
    return absl::DataLossError(absl::StrCat(config_path, ": cannot be read back"));
  nlohmann::json config = *std::move(parsed_config);
  const std::string format = options.dtype == kernels::DType::kI8 ? "int8" : "int4";
  config["expert_quantization"] = {{"format", format}, {"group_size", group}};
  if (auto s = WriteText(fs::path(out_dir) / "config.json", config.dump(2) + "\n"); !s.ok()) return s;
  nlohmann::json index = {{"metadata", {{"total_size", bytes_out}}}, {"weight_map", weight_map}};
  if (auto s = WriteText(fs::path(out_dir) / "model.safetensors.index.json", index.dump(1) + "\n"); !s.ok()) return s;
  for (fs::directory_iterator it(model_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string file = p.filename().string();
    if (!it->is_regular_file() || p.extension() == ".safetensors" || file == "config.json" ||
        file == "model.safetensors.index.json")
      continue;
    fs::copy_file(p, fs::path(out_dir) / file, fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::PermissionDeniedError(absl::StrCat(p.string(), ": cannot copy: ", ec.message()));
  }
  if (ec) return absl::PermissionDeniedError(absl::StrCat(model_dir, ": cannot list: ", ec.message()));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::json summary = {{"dir", out_dir},           {"format", format},       {"group_size", group},
                            {"bytes_in", bytes_in},     {"bytes_out", bytes_out}, {"seconds", seconds}};
  return summary.dump();
}

}  // namespace glm::model
