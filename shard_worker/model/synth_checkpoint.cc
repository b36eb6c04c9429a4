#include "shard_worker/model/synth_checkpoint.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "shard_worker/kernels/dtype.h"
#include "shard_worker/model/checkpoint_layout.h"
#include "shard_worker/model/safetensors_file.h"

namespace glm::model {
namespace {

ModelConfig Glm5Shape() {
  ModelConfig c;
  c.model_type = "glm_moe_dsa";
  c.vocab_size = 154880;
  c.hidden_size = 6144;
  c.intermediate_size = 12288;
  c.moe_intermediate_size = 2048;
  c.num_hidden_layers = 78;
  c.num_attention_heads = 64;
  c.n_shared_experts = 1;
  c.n_routed_experts = 256;
  c.num_experts_per_tok = 8;
  c.n_group = 1;
  c.topk_group = 1;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5f;
  c.q_lora_rank = 2048;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 192;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 256;
  c.max_position_embeddings = 202752;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 1000000.0;
  c.eos_token_ids = {154820, 154827, 154829};
  c.pad_token_id = 154820;
  c.index_topk = 2048;
  c.index_head_dim = 128;
  c.index_n_heads = 32;
  c.num_nextn_predict_layers = 1;
  c.fp8_weights = true;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    c.mlp_layer_types.push_back(i < 3 ? MlpKind::kDense : MlpKind::kSparse);
    c.indexer_types.push_back(IndexerKind::kFull);
  }
  return c;
}

// GLM-5's proportions at ~4 GiB of BF16: 6 layers (1 dense + 5 MoE) + MTP, 64 experts top 8.
ModelConfig BenchShape() {
  ModelConfig c = Glm5Shape();
  c.vocab_size = 32768;
  c.hidden_size = 2048;
  c.intermediate_size = 5632;
  c.moe_intermediate_size = 768;
  c.num_hidden_layers = 6;
  c.num_attention_heads = 16;
  c.n_routed_experts = 64;
  c.num_experts_per_tok = 8;
  c.q_lora_rank = 512;
  c.kv_lora_rank = 256;
  c.qk_nope_head_dim = 64;
  c.qk_rope_head_dim = 32;
  c.v_head_dim = 64;
  c.max_position_embeddings = 16384;
  c.eos_token_ids = {0};
  c.pad_token_id = 1;
  c.index_head_dim = 64;
  c.index_n_heads = 8;
  c.fp8_weights = false;
  c.mlp_layer_types.clear();
  c.indexer_types.clear();
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    c.mlp_layer_types.push_back(i < 1 ? MlpKind::kDense : MlpKind::kSparse);
    c.indexer_types.push_back(i % 3 == 0 ? IndexerKind::kFull : IndexerKind::kShared);
  }
  return c;
}

ModelConfig TinyShape() {
  ModelConfig c = BenchShape();
  c.vocab_size = 512;
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.moe_intermediate_size = 64;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.n_routed_experts = 8;
  c.num_experts_per_tok = 2;
  c.n_group = 2;
  c.topk_group = 1;
  c.q_lora_rank = 64;
  c.kv_lora_rank = 32;
  c.qk_nope_head_dim = 16;
  c.qk_rope_head_dim = 8;
  c.v_head_dim = 16;
  c.max_position_embeddings = 1024;
  c.index_topk = 8;
  c.index_head_dim = 16;
  c.index_n_heads = 2;
  c.mlp_layer_types = {MlpKind::kDense, MlpKind::kSparse, MlpKind::kSparse};
  c.indexer_types = {IndexerKind::kFull, IndexerKind::kShared, IndexerKind::kFull};
  return c;
}

// splitmix64: fast, seedable, good enough for random weights.
struct Rng {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [-a, a).
  float Uniform(float a) { return (static_cast<float>(Next() >> 40) / 16777216.0f * 2.0f - 1.0f) * a; }
};

uint64_t HashName(const std::string& s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

std::string ShardName(int64_t index, int64_t count) {
  return absl::StrFormat("model-%05d-of-%05d.safetensors", index + 1, count);
}

}  // namespace

absl::StatusOr<SynthPreset> SynthPresetByName(const std::string& name) {
  SynthPreset p;
  p.name = name;
  if (name == "bench") {
    p.config = BenchShape();
  } else if (name == "bench-fp8") {
    p.config = BenchShape();
    p.config.fp8_weights = true;
  } else if (name == "glm5") {
    p.config = Glm5Shape();
    p.write_weights = false;
  } else if (name == "tiny") {
    p.config = TinyShape();
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--preset '", name, "' is unknown (bench, bench-fp8, glm5, tiny)"));
  }
  return p;
}

namespace {

// What a checkpoint directory holds that a new checkpoint must not be mixed with: its shards,
// config, index, generation config and tokenizer files.
bool IsCheckpointFile(const std::filesystem::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".safetensors" || ext == ".json";
}

}  // namespace

// `dir` absent or empty, or (with `replace`) emptied of checkpoint files. Writing into another
// model's directory used to mix the two: the new config and index beside the old shards, and
// the old tokenizer for a model of another vocabulary.
absl::Status PrepareCheckpointDir(const std::string& dir, bool replace) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return absl::OkStatus();
  if (!fs::is_directory(dir, ec)) return absl::AlreadyExistsError(absl::StrCat(dir, ": exists and is not a directory"));
  std::vector<fs::path> entries;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) entries.push_back(it->path());
  if (ec) return absl::PermissionDeniedError(absl::StrCat(dir, ": cannot list: ", ec.message()));
  if (entries.empty()) return absl::OkStatus();
  if (!replace)
    return absl::AlreadyExistsError(absl::StrCat(dir, " is not empty (", entries.size(),
                                                 " entries): give an empty or new directory, or --force to "
                                                 "replace the model files (*.safetensors, *.json) in it"));
  for (const fs::path& p : entries) {
    if (!IsCheckpointFile(p) || fs::is_directory(p, ec)) continue;
    if (!fs::remove(p, ec) && ec) return absl::PermissionDeniedError(absl::StrCat(p.string(), ": cannot remove: ", ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> WriteSynthCheckpoint(const SynthPreset& preset, const std::string& dir, uint64_t seed,
                                                 bool replace) {
  namespace fs = std::filesystem;
  const ModelConfig& c = preset.config;
  if (dir.empty()) return absl::InvalidArgumentError("synth: the output directory is empty");
  if (auto s = PrepareCheckpointDir(dir, replace); !s.ok()) return s;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(dir, ": cannot create: ", ec.message()));
  auto write_text = [&](const std::string& file, const std::string& text) -> absl::Status {
    std::ofstream out(fs::path(dir) / file, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) return absl::DataLossError(absl::StrCat(dir, "/", file, ": write failed"));
    return absl::OkStatus();
  };
  if (auto s = write_text("config.json", c.ToJson()); !s.ok()) return s;
  nlohmann::json gen = {{"eos_token_id", c.eos_token_ids}, {"do_sample", false}};
  if (auto s = write_text("generation_config.json", gen.dump(2)); !s.ok()) return s;

  // Shards: one per group of layers; embedding/head go with the first/last.
  const ExpectedMap expected = ExpectedTensors(c);
  const int64_t layers = c.num_weight_layers();
  const int64_t per = std::max<int64_t>(1, preset.layers_per_shard);
  const int64_t n_shards = (layers + per - 1) / per;
  auto shard_of = [&](const std::string& name) {
    int64_t l = TensorLayer(name);
    if (l < 0) return name == "model.embed_tokens.weight" ? int64_t{0} : n_shards - 1;
    return l / per;
  };
  std::vector<SafetensorsWriter> shards(n_shards);
  nlohmann::json weight_map = nlohmann::json::object();
  int64_t total_bytes = 0;
  for (const auto& [name, spec] : expected) {
    if (spec.optional) continue;  // leave out what a real checkpoint may omit
    const int64_t shard = shard_of(name);
    const bool fp8 = c.fp8_weights && spec.role == TensorRole::kMatrix && name.find("mlp.gate.weight") == std::string::npos &&
                     name.find("embed_tokens") == std::string::npos && name != "lm_head.weight" &&
                     name.find("shared_head.head") == std::string::npos && name.find("weights_proj") == std::string::npos;
    const bool is_bias = name.find("e_score_correction_bias") != std::string::npos;
    const int64_t fan_in = spec.shape.size() > 1 ? spec.shape[1] : 1;
    const uint64_t tensor_seed = HashName(name, seed);
    SafetensorsWriter::Entry e;
    e.name = name;
    e.shape = spec.shape;
    int64_t numel = 1;
    for (int64_t d : spec.shape) numel *= d;
    if (spec.role == TensorRole::kVector) {
      e.dtype = is_bias ? "F32" : "BF16";
      e.fill = [is_bias, tensor_seed](uint8_t* dst, int64_t size) {
        Rng rng{tensor_seed};
        if (is_bias) {
          for (int64_t i = 0; i < size / 4; ++i) {
            float v = rng.Uniform(0.01f);
            std::memcpy(dst + 4 * i, &v, 4);
          }
        } else {
          for (int64_t i = 0; i < size / 2; ++i) {
            uint16_t b = kernels::F32ToBf16(1.0f + rng.Uniform(0.1f));
            std::memcpy(dst + 2 * i, &b, 2);
          }
        }
      };
    } else if (fp8) {
      e.dtype = "F8_E4M3";
      e.fill = [tensor_seed](uint8_t* dst, int64_t size) {
        Rng rng{tensor_seed};
        for (int64_t i = 0; i < size; ++i) dst[i] = kernels::F32ToFp8E4M3(rng.Uniform(448.0f));
      };
      // Scales map the full e4m3 range onto ±1/sqrt(fan_in).
      SafetensorsWriter::Entry s;
      s.name = name.substr(0, name.size() - 6) + "weight_scale_inv";
      s.dtype = "F32";
      s.shape = {(spec.shape[0] + c.fp8_block_rows - 1) / c.fp8_block_rows,
                 (spec.shape[1] + c.fp8_block_cols - 1) / c.fp8_block_cols};
      const float scale = 1.0f / (448.0f * std::sqrt(static_cast<float>(fan_in)));
      s.fill = [scale](uint8_t* dst, int64_t size) {
        for (int64_t i = 0; i < size / 4; ++i) std::memcpy(dst + 4 * i, &scale, 4);
      };
      weight_map[s.name] = ShardName(shard, n_shards);
      if (preset.write_weights) shards[shard].Add(std::move(s));
    } else {
      e.dtype = "BF16";
      const float a = std::sqrt(3.0f / static_cast<float>(fan_in));  // unit variance per output
      e.fill = [a, tensor_seed](uint8_t* dst, int64_t size) {
        Rng rng{tensor_seed};
        for (int64_t i = 0; i < size / 2; ++i) {
          uint16_t b = kernels::F32ToBf16(rng.Uniform(a));
          std::memcpy(dst + 2 * i, &b, 2);
        }
      };
    }
    total_bytes += numel * SafetensorsDTypeSize(e.dtype);
    weight_map[name] = ShardName(shard, n_shards);
    if (preset.write_weights) shards[shard].Add(std::move(e));
  }
  nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
  if (auto s = write_text("model.safetensors.index.json", index.dump(1)); !s.ok()) return s;
  if (preset.write_weights) {
    for (int64_t i = 0; i < n_shards; ++i) {
      auto w = shards[i].Write((fs::path(dir) / ShardName(i, n_shards)).string());
      if (!w.ok()) return w.status();
    }
  }
  return absl::StrCat("{\"dir\":\"", dir, "\",\"preset\":\"", preset.name, "\",\"weight_bytes\":", total_bytes,
                      ",\"weights_written\":", preset.write_weights ? "true" : "false", "}");
}

}  // namespace glm::model
