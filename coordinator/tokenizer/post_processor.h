// Hugging Face post-processors for a single sequence with add_special_tokens: TemplateProcessing,
// BertProcessing, RobertaProcessing, ByteLevel (adds nothing: it only trims offsets) and
// Sequence.
#ifndef GLM_COORDINATOR_TOKENIZER_POST_PROCESSOR_H_
#define GLM_COORDINATOR_TOKENIZER_POST_PROCESSOR_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace glm::tokenizer {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // A null `config` yields nullptr.
  static absl::StatusOr<std::unique_ptr<PostProcessor>> FromJson(const nlohmann::json& config);
  // Adds the special tokens of a single sequence around `ids`.
  virtual void Process(std::vector<int32_t>* ids) const = 0;
};

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_POST_PROCESSOR_H_
