// Loads a fixtures/ref-<model> directory: reference.json (prompts, greedy tokens, gaps) and
// reference.safetensors (F32 logits), for comparisons against the engine.
#ifndef GLM_TESTS_SHARD_WORKER_MODEL_REFERENCE_FIXTURE_H_
#define GLM_TESTS_SHARD_WORKER_MODEL_REFERENCE_FIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/model_weights.h"
#include "shard_worker/model/safetensors_file.h"

namespace glm::testing {

// A model's directory: models/<name> if bundled, else tests/fixtures/<name>.
std::string ModelDir(const std::string& name);

struct ReferencePrompt {
  std::vector<int32_t> ids;
  bool all_rows = true;  // logits for every position, else the last 4
  std::vector<int32_t> greedy;
  std::vector<double> greedy_gaps;
  bool has_mtp = false;
};

class ReferenceFixture {
 public:
  // name: "glm5-tiny-code" etc. Model dir: ModelDir(name).
  static std::unique_ptr<ReferenceFixture> Load(const std::string& name);
  const std::string& model_dir() const { return model_dir_; }
  const std::vector<ReferencePrompt>& prompts() const { return prompts_; }
  const nlohmann::json& json() const { return json_; }
  // F32 tensor from reference.safetensors as a flat vector, with its shape.
  std::vector<float> Tensor(const std::string& name, std::vector<int64_t>* shape = nullptr) const;
  bool HasTensor(const std::string& name) const { return file_->Find(name) != nullptr; }

 private:
  std::string model_dir_;
  std::vector<ReferencePrompt> prompts_;
  nlohmann::json json_;
  std::unique_ptr<model::SafetensorsFile> file_;
};

// Per-row tolerance from fixtures/README.md: max|Δ| ≤ 1e-3 · max|ref| + 1e-4. Returns the worst
// ratio |Δ| / allowed over the row (≤ 1 passes).
double RowErrorRatio(const float* got, const float* ref, int64_t n, double rel = 1e-3, double abs = 1e-4);

// The checkpoint of model `name` (ModelDir); null, with a test failure, if it does not open.
std::unique_ptr<model::Checkpoint> OpenCheckpoint(const std::string& name);

// The model `name` (ModelDir) loaded with weight dtype `dtype` ("stored", "int4", ...) and quantize
// scope `scope`; null, with a test failure, if it does not load.
std::shared_ptr<const model::ModelWeights> LoadModelWeights(const std::string& name, const char* dtype = "stored",
                                                            const char* scope = "experts");

}  // namespace glm::testing

#endif  // GLM_TESTS_SHARD_WORKER_MODEL_REFERENCE_FIXTURE_H_
