// Syntax tree of a Jinja template: expressions and statements as plain tagged structs (the
// interpreter switches on `kind`; a class hierarchy would add nothing but boilerplate).
#ifndef GLM_COORDINATOR_TOKENIZER_JINJA_AST_H_
#define GLM_COORDINATOR_TOKENIZER_JINJA_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/tokenizer/jinja_value.h"

namespace glm::tokenizer::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,    // value
    kName,       // name
    kList,       // items
    kTuple,      // items (a list at run time)
    kDict,       // items: key, value, key, value, ...
    kGetAttr,    // a.name
    kGetItem,    // a[b]
    kSlice,      // a[b:c:d]; missing parts are null
    kCall,       // a(items, kwargs)
    kFilter,     // a | name(items, kwargs); a is null for `{% filter %}` blocks
    kTest,       // a is [not] name(items); negated
    kNeg,        // -a
    kPos,        // +a
    kNot,        // not a
    kBinary,     // a op b: + - * / // % ** ~
    kCompare,    // a op b: == != < <= > >= in notin
    kAnd,        // a and b
    kOr,         // a or b
    kCondition,  // a if b else c (c may be null)
  };
  Kind kind;
  Value value;
  std::string name;  // Name, attribute, filter/test name or operator.
  ExprPtr a, b, c;
  std::vector<ExprPtr> items;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool negated = false;
  int line = 0;
  // Height of this subtree (1 for a leaf). The parser bounds it: evaluation and destruction
  // recurse once per level.
  int depth = 1;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // Null when required.
};

struct Stmt {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // branches: (condition, body); a final else has a null condition
    kFor,       // targets in expr [if filter] body [else else_body]
    kSet,       // targets = expr, or target.attr = expr (attr non-empty)
    kSetBlock,  // {% set name %}body{% endset %}, optional filter
    kMacro,     // name(params) body
    kCallBlock, // {% call macro(...) %}body{% endcall %}: expr is the call, params caller's
    kFilterBlock,  // {% filter f %}body{% endfilter %}: expr is the filter chain
    kBreak,
    kContinue,
    kDo,        // {% do expr %}
    kScope,     // body only (generation blocks)
  };
  Kind kind;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;  // For: the loop filter; SetBlock: the filter chain.
  std::vector<std::string> targets;
  std::string attr;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
  std::vector<MacroParam> params;
  bool recursive = false;
  int line = 0;
};

}  // namespace glm::tokenizer::jinja

#endif  // GLM_COORDINATOR_TOKENIZER_JINJA_AST_H_
