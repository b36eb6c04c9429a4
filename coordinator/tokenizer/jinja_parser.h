// Recursive-descent parser from lexer tokens to the template syntax tree, following Jinja2's
// grammar and operator precedence (filters and tests bind tighter than arithmetic).
#ifndef GLM_COORDINATOR_TOKENIZER_JINJA_PARSER_H_
#define GLM_COORDINATOR_TOKENIZER_JINJA_PARSER_H_

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/tokenizer/jinja_ast.h"
#include "coordinator/tokenizer/jinja_lexer.h"

namespace glm::tokenizer::jinja {

class Parser {
 public:
  // Lexes and parses a whole template.
  static absl::StatusOr<Body> Parse(std::string_view source);

 private:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  // Parses statements until a block tag whose first name is in `end_tags` (left unconsumed,
  // positioned on its name) or EOF when `end_tags` is empty.
  absl::StatusOr<Body> ParseBody(const std::vector<std::string_view>& end_tags);
  absl::StatusOr<StmtPtr> ParseStatement();
  absl::StatusOr<StmtPtr> ParseIf();
  absl::StatusOr<StmtPtr> ParseFor();
  absl::StatusOr<StmtPtr> ParseSet();
  absl::StatusOr<StmtPtr> ParseMacro();
  absl::StatusOr<StmtPtr> ParseCallBlock();
  absl::StatusOr<StmtPtr> ParseFilterBlock();
  absl::StatusOr<std::vector<MacroParam>> ParseParams();
  absl::StatusOr<std::vector<std::string>> ParseTargets();

  absl::StatusOr<ExprPtr> ParseExpression(bool allow_condition = true);
  absl::StatusOr<ExprPtr> ParseTupleOrExpression();
  absl::StatusOr<ExprPtr> ParseOr();
  absl::StatusOr<ExprPtr> ParseAnd();
  absl::StatusOr<ExprPtr> ParseNot();
  absl::StatusOr<ExprPtr> ParseCompare();
  absl::StatusOr<ExprPtr> ParseMath1();
  absl::StatusOr<ExprPtr> ParseConcat();
  absl::StatusOr<ExprPtr> ParseMath2();
  absl::StatusOr<ExprPtr> ParsePow();
  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter);
  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseFilter(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node);
  absl::Status ParseCallArgs(Expr* call);

  const Token& Peek(size_t ahead = 0) const;
  const Token& Next();
  bool IsOp(std::string_view op, size_t ahead = 0) const;
  bool IsName(std::string_view name, size_t ahead = 0) const;
  bool SkipOp(std::string_view op);
  bool SkipName(std::string_view name);
  absl::Status ExpectOp(std::string_view op);
  absl::Status ExpectName(std::string_view name);
  absl::Status ExpectBlockEnd();
  // Consumes `{% name` ... checks that the next block tag is `name` and its end.
  absl::Status ExpectEndTag(std::string_view name);
  absl::Status Error(std::string_view msg) const;

  // Nesting limits. Parsing, evaluating and destroying the tree all recurse once per level, so
  // an unbounded template (10000 '(' or nested {% if %}) would overflow the stack at load.
  // Real chat templates nest a few tens of levels at most.
 public:
  static constexpr int kMaxNesting = 256;

 private:
  // Counts one level of parser recursion for its lifetime.
  class Nest {
   public:
    explicit Nest(Parser* p) : p_(p) { ++p_->nesting_; }
    ~Nest() { --p_->nesting_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;

   private:
    Parser* p_;
  };
  // Error when the recursion entered by the enclosing Nest is too deep.
  absl::Status CheckNesting() const;
  // Sets e->depth from its children once they are all attached; error when too deep.
  absl::Status Finish(Expr* e) const;
  absl::Status TooDeep(int line) const;

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int nesting_ = 0;
};

}  // namespace glm::tokenizer::jinja

#endif  // GLM_COORDINATOR_TOKENIZER_JINJA_PARSER_H_
