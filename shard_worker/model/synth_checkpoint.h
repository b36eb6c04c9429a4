// Random-weight checkpoints in the real Hugging Face layout, at chosen scales: for benchmarks
// (bigger than any cache), for planning (the real GLM-5 shape, metadata only), and for tests.
#ifndef GLM_SHARD_WORKER_MODEL_SYNTH_CHECKPOINT_H_
#define GLM_SHARD_WORKER_MODEL_SYNTH_CHECKPOINT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shard_worker/model/model_config.h"

namespace glm::model {

struct SynthPreset {
  std::string name;
  ModelConfig config;
  bool write_weights = true;  // false: config.json + index only (planning)
  int64_t layers_per_shard = 1;
};

// "bench" (GLM-5's structure scaled to about 4 GiB of BF16 weights), "bench-fp8" (the same in
// block FP8), "glm5" (the real GLM-5 shape, no weight data), "tiny" (a few MiB, for tests).
absl::StatusOr<SynthPreset> SynthPresetByName(const std::string& name);

// Writes config.json, generation_config.json, model.safetensors.index.json and (unless
// metadata-only) the shards into `dir` (created). Returns a one-line JSON summary. `dir` must be
// new or empty (AlreadyExists otherwise, so another model is never overwritten or mixed with
// this one); with `replace` its *.safetensors and *.json files are deleted first (glmctl synth
// --force), other files left alone.
absl::StatusOr<std::string> WriteSynthCheckpoint(const SynthPreset& preset, const std::string& dir, uint64_t seed,
                                                 bool replace = false);

// `dir` absent or empty, or (with `replace`) emptied of checkpoint files (*.safetensors,
// *.json; other files are left alone): where a writer of checkpoints may write one without
// mixing it with another model. AlreadyExists naming the entries otherwise.
absl::Status PrepareCheckpointDir(const std::string& dir, bool replace);

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_SYNTH_CHECKPOINT_H_
