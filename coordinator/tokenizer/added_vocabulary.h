// Added tokens of tokenizer.json (special or not, with lstrip/rstrip/single_word/normalized),
// and how they are cut out of the input before pre-tokenization: leftmost-longest matches, the
// non-normalized tokens on the raw text and the normalized ones on the normalized text, exactly
// in Hugging Face's AddedVocabulary order.
#ifndef GLM_COORDINATOR_TOKENIZER_ADDED_VOCABULARY_H_
#define GLM_COORDINATOR_TOKENIZER_ADDED_VOCABULARY_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "coordinator/tokenizer/normalizer.h"
#include "coordinator/tokenizer/pre_tokenizer.h"
#include "nlohmann/json.hpp"

namespace glm::tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

class AddedVocabulary {
 public:
  // `normalizer` (may be null) normalizes the content of normalized tokens for matching.
  static absl::StatusOr<AddedVocabulary> FromJson(const nlohmann::json& added_tokens,
                                                  const Normalizer* normalizer);
  AddedVocabulary() = default;

  // Cuts the non-normalized tokens out of every piece with id < 0.
  void SplitRaw(std::vector<Piece>* pieces) const { raw_.Split(tokens_, pieces); }
  // Same for the normalized tokens (call after normalizing the pieces).
  void SplitNormalized(std::vector<Piece>* pieces) const {
    normalized_.Split(tokens_, pieces);
  }

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  const AddedToken* FindById(int32_t id) const;
  const AddedToken* FindByContent(std::string_view content) const;
  bool empty() const { return tokens_.empty(); }

 private:
  // A byte trie over token contents for leftmost-longest matching.
  class Matcher {
   public:
    void Add(const std::string& pattern, int32_t token_index);
    void Split(const std::vector<AddedToken>& tokens, std::vector<Piece>* pieces) const;

   private:
    struct Node {
      std::vector<std::pair<uint8_t, int32_t>> children;  // Sorted by byte.
      int32_t token_index = -1;  // Into the owner's tokens_.
    };
    int32_t Child(int32_t node, uint8_t b) const;
    // Index of the longest token starting at `pos` (-1 if none); sets `*end`.
    int32_t LongestAt(std::string_view text, size_t pos, size_t* end) const;
    void FindMatches(const std::vector<AddedToken>& tokens, const std::string& text,
                     std::vector<Piece>* out) const;
    std::vector<Node> nodes_{Node{}};
    bool first_byte_[256] = {};
    bool empty_ = true;
  };

  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, size_t> by_id_;
  absl::flat_hash_map<std::string, size_t> by_content_;
  Matcher raw_;
  Matcher normalized_;
};

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_ADDED_VOCABULARY_H_
