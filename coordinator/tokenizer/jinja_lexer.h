// Jinja2 lexer with the environment transformers uses for chat templates: trim_blocks and
// lstrip_blocks on, `{%-`/`-%}` (and `+`) whitespace control, comments, raw blocks, newline
// normalization and keep_trailing_newline off.
#ifndef GLM_COORDINATOR_TOKENIZER_JINJA_LEXER_H_
#define GLM_COORDINATOR_TOKENIZER_JINJA_LEXER_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace glm::tokenizer::jinja {

struct Token {
  enum class Type { kText, kBlockBegin, kBlockEnd, kVarBegin, kVarEnd, kName, kString, kInt,
                    kFloat, kOp, kEof };
  Type type;
  std::string value;
  int line = 1;
};

class Lexer {
 public:
  struct Options {
    bool trim_blocks = true;
    bool lstrip_blocks = true;
  };
  static absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source,
                                                     const Options& options);
  static absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source) {
    return Tokenize(source, Options{});
  }
};

}  // namespace glm::tokenizer::jinja

#endif  // GLM_COORDINATOR_TOKENIZER_JINJA_LEXER_H_
