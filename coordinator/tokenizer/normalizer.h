// Hugging Face normalizers (the `normalizer` field of tokenizer.json): Sequence, NFC, NFD,
// NFKC, NFKD, Lowercase, Replace, Prepend, Strip. Built from JSON; unknown types are an error
// at load time rather than a silent mismatch at encode time.
#ifndef GLM_COORDINATOR_TOKENIZER_NORMALIZER_H_
#define GLM_COORDINATOR_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace glm::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // A null `config` means "no normalizer" and yields nullptr.
  static absl::StatusOr<std::unique_ptr<Normalizer>> FromJson(const nlohmann::json& config);
  // Rewrites `text` (valid UTF-8) in place. Fails only where a regex does
  // (Regex::Matcher::FindAll).
  virtual absl::Status Normalize(std::string* text) const = 0;
  // False when Normalize is the identity (an empty Sequence): lets encode skip copies.
  virtual bool IsIdentity() const { return false; }
};

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_NORMALIZER_H_
