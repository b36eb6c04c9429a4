#include "coordinator/tokenizer/jinja_parser.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "coordinator/tokenizer/status_macros.h"

namespace glm::tokenizer::jinja {
namespace {

using TT = Token::Type;

ExprPtr MakeExpr(Expr::Kind kind, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  return e;
}

ExprPtr MakeBinary(Expr::Kind kind, std::string op, ExprPtr a, ExprPtr b, int line) {
  auto e = MakeExpr(kind, line);
  e->name = std::move(op);
  e->a = std::move(a);
  e->b = std::move(b);
  return e;
}

}  // namespace

absl::StatusOr<Body> Parser::Parse(std::string_view source) {
  GLM_ASSIGN_OR_RETURN(std::vector<Token> tokens, Lexer::Tokenize(source));
  Parser parser(std::move(tokens));
  GLM_ASSIGN_OR_RETURN(Body body, parser.ParseBody({}));
  if (parser.Peek().type != TT::kEof) return parser.Error("unexpected tag");
  return body;
}

const Token& Parser::Peek(size_t ahead) const {
  const size_t i = std::min(pos_ + ahead, tokens_.size() - 1);
  return tokens_[i];
}

const Token& Parser::Next() {
  const Token& t = Peek();
  if (pos_ < tokens_.size() - 1) ++pos_;
  return t;
}

bool Parser::IsOp(std::string_view op, size_t ahead) const {
  const Token& t = Peek(ahead);
  return t.type == TT::kOp && t.value == op;
}

bool Parser::IsName(std::string_view name, size_t ahead) const {
  const Token& t = Peek(ahead);
  return t.type == TT::kName && t.value == name;
}

bool Parser::SkipOp(std::string_view op) {
  if (!IsOp(op)) return false;
  Next();
  return true;
}

bool Parser::SkipName(std::string_view name) {
  if (!IsName(name)) return false;
  Next();
  return true;
}

absl::Status Parser::ExpectOp(std::string_view op) {
  if (SkipOp(op)) return absl::OkStatus();
  return Error(absl::StrCat("expected '", std::string(op), "'"));
}

absl::Status Parser::ExpectName(std::string_view name) {
  if (SkipName(name)) return absl::OkStatus();
  return Error(absl::StrCat("expected '", std::string(name), "'"));
}

absl::Status Parser::ExpectBlockEnd() {
  if (Peek().type == TT::kBlockEnd) {
    Next();
    return absl::OkStatus();
  }
  return Error("expected end of block tag");
}

absl::Status Parser::ExpectEndTag(std::string_view name) {
  GLM_RETURN_IF_ERROR(ExpectName(name));
  return ExpectBlockEnd();
}

absl::Status Parser::Error(std::string_view msg) const {
  const Token& t = Peek();
  std::string near = t.type == TT::kEof ? "end of template" : absl::StrCat("'", t.value, "'");
  if (t.type == TT::kBlockEnd) near = "'%}'";
  if (t.type == TT::kVarEnd) near = "'}}'";
  return absl::InvalidArgumentError(absl::StrCat("template syntax error (line ", t.line, "): ",
                                                 std::string(msg), " near ", near));
}

absl::Status Parser::TooDeep(int line) const {
  return absl::InvalidArgumentError(absl::StrCat(
      "template nested too deeply (line ", line, "): more than ", kMaxNesting,
      " levels of blocks, brackets or operators"));
}

absl::Status Parser::CheckNesting() const {
  if (nesting_ > kMaxNesting) return TooDeep(Peek().line);
  return absl::OkStatus();
}

absl::Status Parser::Finish(Expr* e) const {
  int d = 0;
  auto take = [&d](const ExprPtr& c) {
    if (c != nullptr) d = std::max(d, c->depth);
  };
  take(e->a);
  take(e->b);
  take(e->c);
  for (const ExprPtr& item : e->items) take(item);
  for (const auto& [key, value] : e->kwargs) take(value);
  e->depth = d + 1;
  if (e->depth > kMaxNesting) return TooDeep(e->line);
  return absl::OkStatus();
}

absl::StatusOr<Body> Parser::ParseBody(const std::vector<std::string_view>& end_tags) {
  Body body;
  while (true) {
    const Token& t = Peek();
    if (t.type == TT::kEof) {
      if (!end_tags.empty()) {
        return Error(absl::StrCat("missing '", std::string(end_tags.back()), "'"));
      }
      return body;
    }
    if (t.type == TT::kText) {
      auto s = std::make_unique<Stmt>();
      s->kind = Stmt::Kind::kText;
      s->text = Next().value;
      body.push_back(std::move(s));
      continue;
    }
    if (t.type == TT::kVarBegin) {
      const int line = Next().line;
      auto s = std::make_unique<Stmt>();
      s->kind = Stmt::Kind::kOutput;
      s->line = line;
      GLM_ASSIGN_OR_RETURN(s->expr, ParseTupleOrExpression());
      if (Peek().type != TT::kVarEnd) return Error("expected '}}'");
      Next();
      body.push_back(std::move(s));
      continue;
    }
    if (t.type == TT::kBlockBegin) {
      const Token& name = Peek(1);
      if (name.type == TT::kName &&
          std::find(end_tags.begin(), end_tags.end(), name.value) != end_tags.end()) {
        Next();  // Leave positioned on the tag name.
        return body;
      }
      Next();
      GLM_ASSIGN_OR_RETURN(StmtPtr s, ParseStatement());
      if (s != nullptr) body.push_back(std::move(s));
      continue;
    }
    return Error("unexpected token");
  }
}

absl::StatusOr<StmtPtr> Parser::ParseStatement() {
  Nest nest(this);
  GLM_RETURN_IF_ERROR(CheckNesting());
  const Token& t = Peek();
  if (t.type != TT::kName) return Error("expected a statement name");
  const std::string name = t.value;
  const int line = t.line;
  if (name == "if") return ParseIf();
  if (name == "for") return ParseFor();
  if (name == "set") return ParseSet();
  if (name == "macro") return ParseMacro();
  if (name == "call") return ParseCallBlock();
  if (name == "filter") return ParseFilterBlock();
  auto s = std::make_unique<Stmt>();
  s->line = line;
  if (name == "break" || name == "continue") {
    Next();
    s->kind = name == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
    GLM_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }
  if (name == "do") {
    Next();
    s->kind = Stmt::Kind::kDo;
    GLM_ASSIGN_OR_RETURN(s->expr, ParseTupleOrExpression());
    GLM_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }
  if (name == "generation") {
    // transformers' AssistantTracker extension: marks assistant text, renders its body.
    Next();
    GLM_RETURN_IF_ERROR(ExpectBlockEnd());
    s->kind = Stmt::Kind::kScope;
    GLM_ASSIGN_OR_RETURN(s->body, ParseBody({"endgeneration"}));
    GLM_RETURN_IF_ERROR(ExpectEndTag("endgeneration"));
    return s;
  }
  return Error(absl::StrCat("unsupported statement '", name, "'"));
}

absl::StatusOr<StmtPtr> Parser::ParseIf() {
  auto s = std::make_unique<Stmt>();
  s->kind = Stmt::Kind::kIf;
  s->line = Next().line;  // 'if'
  while (true) {
    GLM_ASSIGN_OR_RETURN(ExprPtr cond, ParseTupleOrExpression());
    GLM_RETURN_IF_ERROR(ExpectBlockEnd());
    GLM_ASSIGN_OR_RETURN(Body body, ParseBody({"elif", "else", "endif"}));
    s->branches.emplace_back(std::move(cond), std::move(body));
    if (SkipName("elif")) continue;
    if (SkipName("else")) {
      GLM_RETURN_IF_ERROR(ExpectBlockEnd());
      GLM_ASSIGN_OR_RETURN(Body else_body, ParseBody({"endif"}));
      s->branches.emplace_back(nullptr, std::move(else_body));
    }
    GLM_RETURN_IF_ERROR(ExpectEndTag("endif"));
    return s;
  }
}

absl::StatusOr<std::vector<std::string>> Parser::ParseTargets() {
  std::vector<std::string> targets;
  const bool paren = SkipOp("(");
  do {
    if (Peek().type != TT::kName) return Error("expected a variable name");
    targets.push_back(Next().value);
  } while (SkipOp(","));
  if (paren) GLM_RETURN_IF_ERROR(ExpectOp(")"));
  return targets;
}

absl::StatusOr<StmtPtr> Parser::ParseFor() {
  auto s = std::make_unique<Stmt>();
  s->kind = Stmt::Kind::kFor;
  s->line = Next().line;  // 'for'
  GLM_ASSIGN_OR_RETURN(s->targets, ParseTargets());
  GLM_RETURN_IF_ERROR(ExpectName("in"));
  // The iterable may not contain a bare conditional: `if` starts the loop filter.
  GLM_ASSIGN_OR_RETURN(s->expr, ParseExpression(/*allow_condition=*/false));
  if (SkipName("if")) {
    GLM_ASSIGN_OR_RETURN(s->filter, ParseExpression());
  }
  if (SkipName("recursive")) s->recursive = true;
  GLM_RETURN_IF_ERROR(ExpectBlockEnd());
  GLM_ASSIGN_OR_RETURN(s->body, ParseBody({"else", "endfor"}));
  if (SkipName("else")) {
    GLM_RETURN_IF_ERROR(ExpectBlockEnd());
    GLM_ASSIGN_OR_RETURN(s->else_body, ParseBody({"endfor"}));
  }
  GLM_RETURN_IF_ERROR(ExpectEndTag("endfor"));
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseSet() {
  auto s = std::make_unique<Stmt>();
  s->line = Next().line;  // 'set'
  if (Peek().type == TT::kName && IsOp(".", 1)) {
    s->kind = Stmt::Kind::kSet;
    s->targets.push_back(Next().value);
    Next();
    if (Peek().type != TT::kName) return Error("expected an attribute name");
    s->attr = Next().value;
    GLM_RETURN_IF_ERROR(ExpectOp("="));
    GLM_ASSIGN_OR_RETURN(s->expr, ParseTupleOrExpression());
    GLM_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }
  GLM_ASSIGN_OR_RETURN(s->targets, ParseTargets());
  if (SkipOp("=")) {
    s->kind = Stmt::Kind::kSet;
    GLM_ASSIGN_OR_RETURN(s->expr, ParseTupleOrExpression());
    GLM_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }
  s->kind = Stmt::Kind::kSetBlock;
  if (IsOp("|")) {
    GLM_ASSIGN_OR_RETURN(s->filter, ParseFilter(nullptr));
  }
  GLM_RETURN_IF_ERROR(ExpectBlockEnd());
  GLM_ASSIGN_OR_RETURN(s->body, ParseBody({"endset"}));
  GLM_RETURN_IF_ERROR(ExpectEndTag("endset"));
  return s;
}

absl::StatusOr<std::vector<MacroParam>> Parser::ParseParams() {
  std::vector<MacroParam> params;
  GLM_RETURN_IF_ERROR(ExpectOp("("));
  while (!IsOp(")")) {
    if (!params.empty()) GLM_RETURN_IF_ERROR(ExpectOp(","));
    if (Peek().type != TT::kName) return Error("expected a parameter name");
    MacroParam p;
    p.name = Next().value;
    if (SkipOp("=")) {
      GLM_ASSIGN_OR_RETURN(p.default_value, ParseExpression());
    }
    params.push_back(std::move(p));
  }
  Next();
  return params;
}

absl::StatusOr<StmtPtr> Parser::ParseMacro() {
  auto s = std::make_unique<Stmt>();
  s->kind = Stmt::Kind::kMacro;
  s->line = Next().line;  // 'macro'
  if (Peek().type != TT::kName) return Error("expected a macro name");
  s->attr = Next().value;
  GLM_ASSIGN_OR_RETURN(s->params, ParseParams());
  GLM_RETURN_IF_ERROR(ExpectBlockEnd());
  GLM_ASSIGN_OR_RETURN(s->body, ParseBody({"endmacro"}));
  GLM_RETURN_IF_ERROR(ExpectEndTag("endmacro"));
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseCallBlock() {
  auto s = std::make_unique<Stmt>();
  s->kind = Stmt::Kind::kCallBlock;
  s->line = Next().line;  // 'call'
  if (IsOp("(")) {
    GLM_ASSIGN_OR_RETURN(s->params, ParseParams());
  }
  GLM_ASSIGN_OR_RETURN(s->expr, ParseExpression());
  if (s->expr->kind != Expr::Kind::kCall) return Error("expected a macro call");
  GLM_RETURN_IF_ERROR(ExpectBlockEnd());
  GLM_ASSIGN_OR_RETURN(s->body, ParseBody({"endcall"}));
  GLM_RETURN_IF_ERROR(ExpectEndTag("endcall"));
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseFilterBlock() {
  auto s = std::make_unique<Stmt>();
  s->kind = Stmt::Kind::kFilterBlock;
  s->line = Peek().line;
  // Reuse the filter-chain parser: the keyword itself plays the role of the first '|'.
  GLM_ASSIGN_OR_RETURN(s->filter, ParseFilter(nullptr));
  GLM_RETURN_IF_ERROR(ExpectBlockEnd());
  GLM_ASSIGN_OR_RETURN(s->body, ParseBody({"endfilter"}));
  GLM_RETURN_IF_ERROR(ExpectEndTag("endfilter"));
  return s;
}

absl::StatusOr<ExprPtr> Parser::ParseTupleOrExpression() {
  const int line = Peek().line;
  GLM_ASSIGN_OR_RETURN(ExprPtr first, ParseExpression());
  if (!IsOp(",")) return first;
  auto tuple = MakeExpr(Expr::Kind::kTuple, line);
  tuple->items.push_back(std::move(first));
  while (SkipOp(",")) {
    if (Peek().type == TT::kBlockEnd || Peek().type == TT::kVarEnd || IsOp(")")) break;
    GLM_ASSIGN_OR_RETURN(ExprPtr next, ParseExpression());
    tuple->items.push_back(std::move(next));
  }
  GLM_RETURN_IF_ERROR(Finish(tuple.get()));
  return tuple;
}

absl::StatusOr<ExprPtr> Parser::ParseExpression(bool allow_condition) {
  Nest nest(this);
  GLM_RETURN_IF_ERROR(CheckNesting());
  const int line = Peek().line;
  GLM_ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
  if (!allow_condition) return expr;
  while (SkipName("if")) {
    auto cond = MakeExpr(Expr::Kind::kCondition, line);
    cond->a = std::move(expr);
    GLM_ASSIGN_OR_RETURN(cond->b, ParseOr());
    if (SkipName("else")) {
      GLM_ASSIGN_OR_RETURN(cond->c, ParseExpression());
    }
    GLM_RETURN_IF_ERROR(Finish(cond.get()));
    expr = std::move(cond);
  }
  return expr;
}

absl::StatusOr<ExprPtr> Parser::ParseOr() {
  GLM_ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
  while (IsName("or")) {
    const int line = Next().line;
    GLM_ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
    left = MakeBinary(Expr::Kind::kOr, "or", std::move(left), std::move(right), line);
    GLM_RETURN_IF_ERROR(Finish(left.get()));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseAnd() {
  GLM_ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
  while (IsName("and")) {
    const int line = Next().line;
    GLM_ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
    left = MakeBinary(Expr::Kind::kAnd, "and", std::move(left), std::move(right), line);
    GLM_RETURN_IF_ERROR(Finish(left.get()));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseNot() {
  Nest nest(this);
  GLM_RETURN_IF_ERROR(CheckNesting());
  if (IsName("not")) {
    const int line = Next().line;
    auto e = MakeExpr(Expr::Kind::kNot, line);
    GLM_ASSIGN_OR_RETURN(e->a, ParseNot());
    GLM_RETURN_IF_ERROR(Finish(e.get()));
    return e;
  }
  return ParseCompare();
}

absl::StatusOr<ExprPtr> Parser::ParseCompare() {
  GLM_ASSIGN_OR_RETURN(ExprPtr left, ParseMath1());
  while (true) {
    const int line = Peek().line;
    std::string op;
    if (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp("<=") || IsOp(">") || IsOp(">=")) {
      op = Next().value;
    } else if (IsName("in")) {
      Next();
      op = "in";
    } else if (IsName("not") && IsName("in", 1)) {
      Next();
      Next();
      op = "notin";
    } else {
      return left;
    }
    GLM_ASSIGN_OR_RETURN(ExprPtr right, ParseMath1());
    left = MakeBinary(Expr::Kind::kCompare, op, std::move(left), std::move(right), line);
    GLM_RETURN_IF_ERROR(Finish(left.get()));
  }
}

absl::StatusOr<ExprPtr> Parser::ParseMath1() {
  GLM_ASSIGN_OR_RETURN(ExprPtr left, ParseConcat());
  while (IsOp("+") || IsOp("-")) {
    const Token& t = Next();
    const std::string op = t.value;
    GLM_ASSIGN_OR_RETURN(ExprPtr right, ParseConcat());
    left = MakeBinary(Expr::Kind::kBinary, op, std::move(left), std::move(right), t.line);
    GLM_RETURN_IF_ERROR(Finish(left.get()));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseConcat() {
  GLM_ASSIGN_OR_RETURN(ExprPtr left, ParseMath2());
  while (IsOp("~")) {
    const int line = Next().line;
    GLM_ASSIGN_OR_RETURN(ExprPtr right, ParseMath2());
    left = MakeBinary(Expr::Kind::kBinary, "~", std::move(left), std::move(right), line);
    GLM_RETURN_IF_ERROR(Finish(left.get()));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseMath2() {
  GLM_ASSIGN_OR_RETURN(ExprPtr left, ParsePow());
  while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
    const Token& t = Next();
    const std::string op = t.value;
    GLM_ASSIGN_OR_RETURN(ExprPtr right, ParsePow());
    left = MakeBinary(Expr::Kind::kBinary, op, std::move(left), std::move(right), t.line);
    GLM_RETURN_IF_ERROR(Finish(left.get()));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParsePow() {
  GLM_ASSIGN_OR_RETURN(ExprPtr left, ParseUnary(true));
  while (IsOp("**")) {
    const int line = Next().line;
    GLM_ASSIGN_OR_RETURN(ExprPtr right, ParseUnary(true));
    left = MakeBinary(Expr::Kind::kBinary, "**", std::move(left), std::move(right), line);
    GLM_RETURN_IF_ERROR(Finish(left.get()));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseUnary(bool with_filter) {
  Nest nest(this);
  GLM_RETURN_IF_ERROR(CheckNesting());
  ExprPtr node;
  if (IsOp("-") || IsOp("+")) {
    const Token& t = Next();
    node = MakeExpr(t.value == "-" ? Expr::Kind::kNeg : Expr::Kind::kPos, t.line);
    GLM_ASSIGN_OR_RETURN(node->a, ParseUnary(false));
    GLM_RETURN_IF_ERROR(Finish(node.get()));
  } else {
    GLM_ASSIGN_OR_RETURN(node, ParsePrimary());
    GLM_ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
  }
  if (with_filter) return ParseFilterExpr(std::move(node));
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParsePrimary() {
  const Token& t = Peek();
  const int line = t.line;
  switch (t.type) {
    case TT::kName: {
      const std::string name = Next().value;
      auto e = MakeExpr(Expr::Kind::kLiteral, line);
      if (name == "true" || name == "True") {
        e->value = Value::Bool(true);
      } else if (name == "false" || name == "False") {
        e->value = Value::Bool(false);
      } else if (name == "none" || name == "None") {
        e->value = Value::None();
      } else {
        e->kind = Expr::Kind::kName;
        e->name = name;
      }
      return e;
    }
    case TT::kString: {
      std::string s = Next().value;
      while (Peek().type == TT::kString) s += Next().value;  // Adjacent literals concatenate.
      auto e = MakeExpr(Expr::Kind::kLiteral, line);
      e->value = Value::String(std::move(s));
      return e;
    }
    case TT::kInt: {
      auto e = MakeExpr(Expr::Kind::kLiteral, line);
      e->value = Value::Int(std::strtoll(Next().value.c_str(), nullptr, 10));
      return e;
    }
    case TT::kFloat: {
      auto e = MakeExpr(Expr::Kind::kLiteral, line);
      e->value = Value::Float(std::strtod(Next().value.c_str(), nullptr));
      return e;
    }
    case TT::kOp:
      if (t.value == "(") {
        Next();
        if (SkipOp(")")) return MakeExpr(Expr::Kind::kTuple, line);
        GLM_ASSIGN_OR_RETURN(ExprPtr inner, ParseExpression());
        if (IsOp(",")) {
          auto tuple = MakeExpr(Expr::Kind::kTuple, line);
          tuple->items.push_back(std::move(inner));
          while (SkipOp(",")) {
            if (IsOp(")")) break;
            GLM_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
            tuple->items.push_back(std::move(item));
          }
          GLM_RETURN_IF_ERROR(Finish(tuple.get()));
          inner = std::move(tuple);
        }
        GLM_RETURN_IF_ERROR(ExpectOp(")"));
        return inner;
      }
      if (t.value == "[") {
        Next();
        auto list = MakeExpr(Expr::Kind::kList, line);
        while (!IsOp("]")) {
          if (!list->items.empty()) GLM_RETURN_IF_ERROR(ExpectOp(","));
          if (IsOp("]")) break;
          GLM_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
          list->items.push_back(std::move(item));
        }
        Next();
        GLM_RETURN_IF_ERROR(Finish(list.get()));
        return list;
      }
      if (t.value == "{") {
        Next();
        auto dict = MakeExpr(Expr::Kind::kDict, line);
        while (!IsOp("}")) {
          if (!dict->items.empty()) GLM_RETURN_IF_ERROR(ExpectOp(","));
          if (IsOp("}")) break;
          GLM_ASSIGN_OR_RETURN(ExprPtr key, ParseExpression());
          GLM_RETURN_IF_ERROR(ExpectOp(":"));
          GLM_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
          dict->items.push_back(std::move(key));
          dict->items.push_back(std::move(value));
        }
        Next();
        GLM_RETURN_IF_ERROR(Finish(dict.get()));
        return dict;
      }
      break;
    default:
      break;
  }
  return Error("unexpected token in expression");
}

absl::StatusOr<ExprPtr> Parser::ParsePostfix(ExprPtr node) {
  while (true) {
    if (IsOp(".")) {
      const int line = Next().line;
      const Token& t = Next();
      if (t.type == TT::kName) {
        auto e = MakeExpr(Expr::Kind::kGetAttr, line);
        e->name = t.value;
        e->a = std::move(node);
        GLM_RETURN_IF_ERROR(Finish(e.get()));
        node = std::move(e);
      } else if (t.type == TT::kInt) {
        auto e = MakeExpr(Expr::Kind::kGetItem, line);
        e->a = std::move(node);
        e->b = MakeExpr(Expr::Kind::kLiteral, line);
        e->b->value = Value::Int(std::strtoll(t.value.c_str(), nullptr, 10));
        GLM_RETURN_IF_ERROR(Finish(e.get()));
        node = std::move(e);
      } else {
        return Error("expected an attribute name after '.'");
      }
    } else if (IsOp("[")) {
      GLM_ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node)));
    } else if (IsOp("(")) {
      auto call = MakeExpr(Expr::Kind::kCall, Peek().line);
      call->a = std::move(node);
      GLM_RETURN_IF_ERROR(ParseCallArgs(call.get()));
      GLM_RETURN_IF_ERROR(Finish(call.get()));
      node = std::move(call);
    } else {
      return node;
    }
  }
}

absl::StatusOr<ExprPtr> Parser::ParseSubscript(ExprPtr node) {
  const int line = Next().line;  // '['
  ExprPtr parts[3];
  int part = 0;
  bool is_slice = false;
  while (!IsOp("]")) {
    if (SkipOp(":")) {
      is_slice = true;
      if (++part > 2) return Error("too many ':' in slice");
      continue;
    }
    if (parts[part] != nullptr) return Error("expected ']'");
    GLM_ASSIGN_OR_RETURN(parts[part], ParseExpression());
  }
  Next();
  if (!is_slice) {
    if (parts[0] == nullptr) return Error("empty subscript");
    auto e = MakeExpr(Expr::Kind::kGetItem, line);
    e->a = std::move(node);
    e->b = std::move(parts[0]);
    GLM_RETURN_IF_ERROR(Finish(e.get()));
    return e;
  }
  auto e = MakeExpr(Expr::Kind::kSlice, line);
  e->a = std::move(node);
  e->items.push_back(std::move(parts[0]));
  e->items.push_back(std::move(parts[1]));
  e->items.push_back(std::move(parts[2]));
  GLM_RETURN_IF_ERROR(Finish(e.get()));
  return e;
}

absl::Status Parser::ParseCallArgs(Expr* call) {
  GLM_RETURN_IF_ERROR(ExpectOp("("));
  bool first = true;
  while (!IsOp(")")) {
    if (!first) GLM_RETURN_IF_ERROR(ExpectOp(","));
    first = false;
    if (IsOp(")")) break;
    if (Peek().type == TT::kName && IsOp("=", 1)) {
      std::string key = Next().value;
      Next();
      GLM_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
      call->kwargs.emplace_back(std::move(key), std::move(value));
      continue;
    }
    if (!call->kwargs.empty()) return Error("positional argument follows keyword argument");
    GLM_ASSIGN_OR_RETURN(ExprPtr arg, ParseExpression());
    call->items.push_back(std::move(arg));
  }
  Next();
  return absl::OkStatus();
}

absl::StatusOr<ExprPtr> Parser::ParseFilter(ExprPtr node) {
  // Called on '|' (or on the 'filter' keyword of a filter block).
  do {
    Next();
    if (Peek().type != TT::kName) return Error("expected a filter name");
    const Token& t = Next();
    std::string name = t.value;
    while (IsOp(".") && Peek(1).type == TT::kName) {  // Dotted filter names.
      Next();
      name += "." + Next().value;
    }
    auto f = MakeExpr(Expr::Kind::kFilter, t.line);
    f->name = std::move(name);
    f->a = std::move(node);
    if (IsOp("(")) GLM_RETURN_IF_ERROR(ParseCallArgs(f.get()));
    GLM_RETURN_IF_ERROR(Finish(f.get()));
    node = std::move(f);
  } while (IsOp("|"));
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParseFilterExpr(ExprPtr node) {
  while (true) {
    if (IsOp("|")) {
      GLM_ASSIGN_OR_RETURN(node, ParseFilter(std::move(node)));
    } else if (IsName("is")) {
      const int line = Next().line;
      auto test = MakeExpr(Expr::Kind::kTest, line);
      test->negated = SkipName("not");
      if (Peek().type != TT::kName) return Error("expected a test name");
      test->name = Next().value;
      while (IsOp(".") && Peek(1).type == TT::kName) {
        Next();
        test->name += "." + Next().value;
      }
      test->a = std::move(node);
      if (IsOp("(")) {
        GLM_RETURN_IF_ERROR(ParseCallArgs(test.get()));
      } else {
        // One bare argument: `is divisibleby 3`, `is sameas none`.
        const Token& n = Peek();
        const bool arg_start =
            n.type == TT::kString || n.type == TT::kInt || n.type == TT::kFloat ||
            (n.type == TT::kOp && (n.value == "[" || n.value == "{" || n.value == "-")) ||
            (n.type == TT::kName && n.value != "else" && n.value != "or" && n.value != "and" &&
             n.value != "if" && n.value != "in" && n.value != "is" && n.value != "not");
        if (arg_start) {
          GLM_ASSIGN_OR_RETURN(ExprPtr arg, ParseUnary(false));
          test->items.push_back(std::move(arg));
        }
      }
      GLM_RETURN_IF_ERROR(Finish(test.get()));
      node = std::move(test);
    } else if (IsOp("(")) {
      auto call = MakeExpr(Expr::Kind::kCall, Peek().line);
      call->a = std::move(node);
      GLM_RETURN_IF_ERROR(ParseCallArgs(call.get()));
      GLM_RETURN_IF_ERROR(Finish(call.get()));
      node = std::move(call);
    } else {
      return node;
    }
  }
}

}  // namespace glm::tokenizer::jinja
