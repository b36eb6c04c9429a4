// A Hugging Face `tokenizer.json` (byte-level BPE family) loaded into C++: encode text to ids
// and decode ids to text exactly as the `tokenizers` library does.
//
// Encode pipeline (tokenizers' order): cut out non-normalized added tokens -> normalize ->
// cut out normalized added tokens -> pre-tokenize -> BPE each piece -> post-process.
#ifndef GLM_COORDINATOR_TOKENIZER_TOKENIZER_H_
#define GLM_COORDINATOR_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/tokenizer/added_vocabulary.h"
#include "coordinator/tokenizer/bpe_model.h"
#include "coordinator/tokenizer/decoder.h"
#include "coordinator/tokenizer/normalizer.h"
#include "coordinator/tokenizer/post_processor.h"
#include "coordinator/tokenizer/pre_tokenizer.h"

namespace glm::tokenizer {

class Tokenizer {
 public:
  // `path` is a tokenizer.json file or a model directory containing one.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);
  // `json_text` is the content of a tokenizer.json.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJsonString(std::string_view json_text);

  // Fails with InvalidArgument on invalid UTF-8. Thread-safe.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens = false) const;
  // Fails with InvalidArgument on an id the tokenizer does not know (Hugging Face silently
  // drops those; a serving stack should not). Invalid UTF-8 produced by the token bytes
  // becomes U+FFFD, as in Hugging Face.
  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids,
                                     bool skip_special_tokens = false) const;
  // Decode without the final lossy UTF-8 step: the raw bytes the tokens stand for.
  absl::StatusOr<std::string> DecodeBytes(const std::vector<int32_t>& ids,
                                          bool skip_special_tokens = false) const;

  // One past the largest id (model vocabulary and added tokens).
  int32_t vocab_size() const { return vocab_size_; }
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The vocabulary string of `id` (byte-level characters for BPE tokens).
  std::optional<std::string> IdToToken(int32_t id) const;
  bool IsSpecial(int32_t id) const;
  // True when decoding is per-token concatenation of bytes (ByteLevel decoder), which makes
  // streaming a matter of concatenating TokenBytes.
  bool decodes_per_token() const { return !token_bytes_.empty(); }
  // The bytes one token decodes to; requires decodes_per_token() and a valid id.
  std::string_view TokenBytes(int32_t id) const { return token_bytes_[id]; }
  const AddedVocabulary& added_vocabulary() const { return added_; }
  // The BPE word cache: words held, and Encode's word lookups answered from it or merged anew.
  BpeModel::CacheStats word_cache_stats() const { return model_->cache_stats(); }

 private:
  Tokenizer() = default;
  absl::Status CheckId(int32_t id) const;

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  AddedVocabulary added_;
  std::vector<bool> special_;
  std::vector<std::string> token_bytes_;
  int32_t vocab_size_ = 0;
};

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_TOKENIZER_H_
