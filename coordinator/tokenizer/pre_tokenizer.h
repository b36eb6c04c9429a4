// Hugging Face pre-tokenizers (the `pre_tokenizer` field of tokenizer.json): Sequence, Split
// (regex or literal, every `behavior`, `invert`), ByteLevel (`add_prefix_space`, `use_regex`),
// Digits, Whitespace, WhitespaceSplit, Punctuation and Metaspace.
#ifndef GLM_COORDINATOR_TOKENIZER_PRE_TOKENIZER_H_
#define GLM_COORDINATOR_TOKENIZER_PRE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace glm::tokenizer {

// One split of the input. Pieces that are already a token (an added token: `id` >= 0) pass
// through every later stage untouched, as in Hugging Face's PreTokenizedString.
struct Piece {
  std::string text;
  int32_t id = -1;
};

// How matches of a Split pattern become pieces (tokenizers' SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Turns the match ranges of one piece into the resulting piece ranges. `matches` are sorted,
// non-overlapping [start, end) byte ranges inside a text of `size` bytes. Exposed for tests.
std::vector<std::pair<size_t, size_t>> SplitRanges(
    size_t size, const std::vector<std::pair<size_t, size_t>>& matches, SplitBehavior behavior,
    bool invert);

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // A null `config` yields nullptr (no pre-tokenizer).
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> FromJson(const nlohmann::json& config);
  // Splits (and for ByteLevel, rewrites) every piece with id < 0, in order.
  // Fails only where a regex does (Regex::Matcher::FindAll).
  virtual absl::Status Apply(std::vector<Piece>* pieces) const = 0;
  // True when the pipeline maps bytes to GPT-2 characters (the BPE vocabulary is byte-level).
  virtual bool IsByteLevel() const { return false; }
};

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_PRE_TOKENIZER_H_
