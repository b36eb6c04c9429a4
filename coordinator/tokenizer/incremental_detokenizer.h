// Streaming detokenization: feed ids one at a time, get back only complete UTF-8 text. A token
// that ends inside a multi-byte character (byte-level BPE splits Korean, Chinese and emoji
// across tokens) yields nothing until the character completes; the concatenated deltas always
// equal Tokenizer::Decode of all ids.
#ifndef GLM_COORDINATOR_TOKENIZER_INCREMENTAL_DETOKENIZER_H_
#define GLM_COORDINATOR_TOKENIZER_INCREMENTAL_DETOKENIZER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace glm::tokenizer {

class IncrementalDetokenizer {
 public:
  // `tokenizer` must outlive this object.
  explicit IncrementalDetokenizer(const Tokenizer* tokenizer, bool skip_special_tokens = false);

  // The text that `id` completes (possibly empty). An unknown id is InvalidArgument and leaves
  // the state unchanged.
  absl::StatusOr<std::string> Push(int32_t id);
  // End of stream: whatever is pending, with incomplete bytes as U+FFFD (as Decode would).
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  // Per-token (ByteLevel) path: bytes not yet emitted because they end in a partial character.
  std::string pending_;
  // Generic path (other decoders), Hugging Face's DecodeStream: re-decode a short window and
  // emit what it adds beyond the already-emitted prefix.
  std::vector<int32_t> ids_;
  std::string prefix_;
  size_t prefix_index_ = 0;
};

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_INCREMENTAL_DETOKENIZER_H_
