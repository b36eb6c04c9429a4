// Hugging Face decoders: ByteLevel, ByteFallback, Metaspace, Replace, Strip, Fuse and Sequence.
// Decoders work on raw bytes; the tokenizer turns the final bytes into text with Rust's lossy
// UTF-8 rules, so a decoder never has to care about split characters.
#ifndef GLM_COORDINATOR_TOKENIZER_DECODER_H_
#define GLM_COORDINATOR_TOKENIZER_DECODER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace glm::tokenizer {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // A null `config` yields nullptr (tokens are then joined with spaces).
  static absl::StatusOr<std::unique_ptr<Decoder>> FromJson(const nlohmann::json& config);
  // Hugging Face's decode_chain: rewrites the token strings; the result is concatenated.
  virtual void DecodeChain(std::vector<std::string>* tokens) const = 0;
  // True when decoding is plain per-token concatenation of ByteLevel bytes; lets the tokenizer
  // precompute every token's bytes and stream without re-decoding.
  virtual bool IsByteLevel() const { return false; }
};

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_DECODER_H_
