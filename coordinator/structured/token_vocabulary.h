// The bytes each token id writes, sorted so that tokens sharing a prefix sit together: the token
// masker walks the vocabulary once per state, advancing a matcher only past the bytes a token does
// not share with the previous one (a trie walk without building the trie).
#ifndef GLM_COORDINATOR_STRUCTURED_TOKEN_VOCABULARY_H_
#define GLM_COORDINATOR_STRUCTURED_TOKEN_VOCABULARY_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace glm::structured {

class TokenVocabulary {
 public:
  // bytes[id]: what token id writes into the output; "" for tokens never generated inside a
  // format (special tokens, which the detokenizer drops).
  explicit TokenVocabulary(std::vector<std::string> bytes);

  // What a token is in the table: a special token is `mark` + its text (JsonGrammar::kSpecialMark;
  // a byte UTF-8 never has, so only a grammar that asks for the tag matches it); a normal token
  // whose bytes hold the mark byte (a byte-level vocabulary's raw 0xFF) is "", never allowed: no
  // valid UTF-8 text has it, and it would pass for a special token's first byte.
  static std::string Spelling(std::string_view bytes, bool special, std::string_view special_text, char mark);

  int64_t size() const { return static_cast<int64_t>(bytes_.size()); }
  const std::string& bytes(int32_t id) const { return bytes_[id]; }
  // The ids with bytes, in byte order, and for each the length of the prefix it shares with the
  // one before it (0 for the first).
  const std::vector<int32_t>& sorted() const { return sorted_; }
  const std::vector<int32_t>& shared_prefix() const { return shared_prefix_; }

  // Tokens that continue any unbounded JSON string whatever came before in it: whole UTF-8
  // characters, none of them '"', '\\' or a control character (most of a vocabulary). In such a
  // string state the masker takes them without walking them, and walks only the others
  // (xgrammar's context-independent tokens, for strings). Their code points count against a
  // maxLength.
  bool string_safe(int32_t id) const { return code_points_[id] > 0; }
  int32_t code_points(int32_t id) const { return code_points_[id]; }
  const std::vector<int32_t>& string_safe_ids() const { return safe_; }
  // The other tokens with bytes, sorted, and their shared prefixes (as sorted(), shared_prefix()).
  const std::vector<int32_t>& unsafe_sorted() const { return unsafe_sorted_; }
  const std::vector<int32_t>& unsafe_shared_prefix() const { return unsafe_shared_prefix_; }

 private:
  std::vector<std::string> bytes_;
  std::vector<int32_t> sorted_;
  std::vector<int32_t> shared_prefix_;
  std::vector<int32_t> code_points_;  // 0: not string-safe
  std::vector<int32_t> safe_;
  std::vector<int32_t> unsafe_sorted_;
  std::vector<int32_t> unsafe_shared_prefix_;
};

}  // namespace glm::structured

#endif  // GLM_COORDINATOR_STRUCTURED_TOKEN_VOCABULARY_H_
