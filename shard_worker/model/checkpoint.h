// A Hugging Face checkpoint directory: config.json plus sharded safetensors named by
// `model.safetensors.index.json` (or a single `model.safetensors`).
#ifndef GLM_SHARD_WORKER_MODEL_CHECKPOINT_H_
#define GLM_SHARD_WORKER_MODEL_CHECKPOINT_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shard_worker/model/model_config.h"
#include "shard_worker/model/safetensors_file.h"

namespace glm::model {

class Checkpoint {
 public:
  // Opens config.json and every shard file, validating each header and that every tensor the
  // index names is present in the shard it names.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }

  struct Located {
    const SafetensorsFile* file = nullptr;
    const TensorInfo* info = nullptr;
    // "FILE: tensor 'NAME'", for errors (file and info non-null).
    std::string Where() const;
  };
  // nullptr file when the checkpoint has no such tensor.
  Located Find(const std::string& name) const;
  // Every tensor name in the checkpoint.
  std::vector<std::string> TensorNames() const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  std::string dir_;
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Located> tensors_;
};

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_CHECKPOINT_H_
