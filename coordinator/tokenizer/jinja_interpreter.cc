#include "coordinator/tokenizer/jinja_interpreter.h"

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "coordinator/tokenizer/jinja_builtins.h"
#include "coordinator/tokenizer/status_macros.h"

namespace glm::tokenizer::jinja {
namespace {

constexpr int kMaxMacroDepth = 64;
// Eval + ExecStmt frames on the native stack at once. The parser caps one expression or block
// nest at Parser::kMaxNesting levels; macros stack those, so the interpreter needs its own cap.
// Measured at 1-2 KiB of stack per level, so a render stays within ~2 MiB of the 8 MiB
// thread stacks.
constexpr int kMaxEvalNesting = 1024;
// Loop iterations plus macro calls per render. A real chat template visits each message a few
// times (a 1000-message conversation even quadratically), far below 2^20; without a budget
// {% for i in range(100000) %}{% for j in range(100000) %} or a macro calling itself twice per
// level would hang the request thread for hours. The budget stops those in about a second.
constexpr int64_t kMaxSteps = int64_t{1} << 20;

// Nesting of lists/dicts built at render time (request JSON is checked against a lower bound
// by ChatTemplate); printing, comparing and freeing them recurse per level.
constexpr int kMaxValueDepth = 512;

using internal::CheckStringSize;
using internal::kMaxListItems;

class NestGuard {
 public:
  explicit NestGuard(int* n) : n_(n) { ++*n_; }
  ~NestGuard() { --*n_; }
  NestGuard(const NestGuard&) = delete;
  NestGuard& operator=(const NestGuard&) = delete;

 private:
  int* n_;
};

// Rough bytes a value's copy holds (strings, and strings one level down in lists): enough to
// price a list repetition, whose items are copied.
size_t ApproxBytes(const Value& v) {
  if (v.is_string()) return v.as_string().size();
  if (!v.is_list()) return sizeof(Value);
  size_t n = 0;
  for (const Value& item : v.list()) n += sizeof(Value) + (item.is_string() ? item.as_string().size() : 0);
  return n;
}

// Python's floor division and modulo on integers.
int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

}  // namespace

Interpreter::Interpreter(const Value::Dict& context) {
  globals_ = std::make_shared<Frame>();
  for (auto& [k, v] : Builtins::Globals()) globals_->vars[k] = v;
  auto root = std::make_shared<Frame>();
  root->parent = globals_;
  for (const auto& [k, v] : context) root->vars[k] = v;
  root_ = root;
  frame_ = root;
}

Interpreter::~Interpreter() {
  // Values stored in frames (namespaces holding macros, macros holding frames) can form
  // cycles through shared_ptr; clearing the frames breaks them.
  frame_.reset();
  if (root_ != nullptr) root_->vars.clear();
  if (globals_ != nullptr) globals_->vars.clear();
}

absl::Status Interpreter::Run(const Body& body, std::string* out) {
  GLM_ASSIGN_OR_RETURN(Flow flow, Exec(body, out));
  (void)flow;
  return absl::OkStatus();
}

absl::Status Interpreter::Error(int line, const std::string& msg) const {
  return absl::InvalidArgumentError(absl::StrCat("template error (line ", line, "): ", msg));
}

absl::Status Interpreter::Step(int line) {
  if (++steps_ <= kMaxSteps) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "template error (line ", line, "): more than ", kMaxSteps,
      " loop iterations and macro calls in one render"));
}

Value Interpreter::Lookup(const std::string& name) const {
  for (const Frame* f = frame_.get(); f != nullptr; f = f->parent.get()) {
    auto it = f->vars.find(name);
    if (it != f->vars.end()) return it->second;
  }
  return Value::Undefined(absl::StrCat("'", name, "' is undefined"));
}

absl::StatusOr<Interpreter::Flow> Interpreter::Exec(const Body& body, std::string* out) {
  for (const StmtPtr& s : body) {
    GLM_ASSIGN_OR_RETURN(Flow flow, ExecStmt(*s, out));
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

absl::StatusOr<Interpreter::Flow> Interpreter::ExecStmt(const Stmt& s, std::string* out) {
  NestGuard guard(&nesting_);
  if (nesting_ > kMaxEvalNesting) return Error(s.line, "template recursion too deep");
  // Every write to an output (the render's or a captured block's) is bounded, so a loop
  // printing a large value cannot grow the prompt without limit.
  auto append = [&](const std::string& text) -> absl::Status {
    GLM_RETURN_IF_ERROR(CheckStringSize(out->size() + text.size(), "template output"));
    out->append(text);
    return absl::OkStatus();
  };
  switch (s.kind) {
    case Stmt::Kind::kText:
      GLM_RETURN_IF_ERROR(append(s.text));
      return Flow::kNormal;
    case Stmt::Kind::kOutput: {
      GLM_ASSIGN_OR_RETURN(Value v, Eval(*s.expr));
      GLM_RETURN_IF_ERROR(append(v.Str()));
      return Flow::kNormal;
    }
    case Stmt::Kind::kIf:
      for (const auto& [cond, body] : s.branches) {
        bool take = true;
        if (cond != nullptr) {
          GLM_ASSIGN_OR_RETURN(Value v, Eval(*cond));
          take = v.Truthy();
        }
        if (take) return Exec(body, out);
      }
      return Flow::kNormal;
    case Stmt::Kind::kFor:
      return ExecFor(s, out);
    case Stmt::Kind::kSet:
      GLM_RETURN_IF_ERROR(ExecSet(s));
      return Flow::kNormal;
    case Stmt::Kind::kSetBlock: {
      std::string captured;
      GLM_RETURN_IF_ERROR(Exec(s.body, &captured).status());
      Value v = Value::String(std::move(captured));
      if (s.filter != nullptr) {
        GLM_ASSIGN_OR_RETURN(v, EvalFilterChain(*s.filter, v));
      }
      SetVar(s.targets[0], std::move(v));
      return Flow::kNormal;
    }
    case Stmt::Kind::kMacro:
      SetVar(s.attr, MakeMacro(s));
      return Flow::kNormal;
    case Stmt::Kind::kCallBlock: {
      // `caller()` inside the macro renders this block's body.
      GLM_ASSIGN_OR_RETURN(Value v, EvalCall(*s.expr, MakeMacro(s)));
      GLM_RETURN_IF_ERROR(append(v.Str()));
      return Flow::kNormal;
    }
    case Stmt::Kind::kFilterBlock: {
      std::string captured;
      GLM_RETURN_IF_ERROR(Exec(s.body, &captured).status());
      GLM_ASSIGN_OR_RETURN(Value v,
                           EvalFilterChain(*s.filter, Value::String(std::move(captured))));
      GLM_RETURN_IF_ERROR(append(v.Str()));
      return Flow::kNormal;
    }
    case Stmt::Kind::kBreak: return Flow::kBreak;
    case Stmt::Kind::kContinue: return Flow::kContinue;
    case Stmt::Kind::kDo:
      GLM_RETURN_IF_ERROR(Eval(*s.expr).status());
      return Flow::kNormal;
    case Stmt::Kind::kScope:
      return Exec(s.body, out);
  }
  return Flow::kNormal;
}

absl::Status Interpreter::Assign(const std::vector<std::string>& targets, const Value& v,
                                 int line) {
  if (targets.size() == 1) {
    SetVar(targets[0], v);
    return absl::OkStatus();
  }
  GLM_ASSIGN_OR_RETURN(ValueList items, Builtins::Iterate(v));
  if (items.size() != targets.size()) {
    return Error(line, absl::StrCat("cannot unpack ", items.size(), " values into ",
                                    targets.size(), " names"));
  }
  for (size_t i = 0; i < targets.size(); ++i) SetVar(targets[i], items[i]);
  return absl::OkStatus();
}

absl::Status Interpreter::ExecSet(const Stmt& s) {
  GLM_ASSIGN_OR_RETURN(Value v, Eval(*s.expr));
  if (s.attr.empty()) return Assign(s.targets, v, s.line);
  Value target = Lookup(s.targets[0]);
  if (!target.is_namespace()) {
    return Error(s.line, absl::StrCat("cannot assign attribute on non-namespace object '",
                                      s.targets[0], "'"));
  }
  target.Set(s.attr, std::move(v));
  return absl::OkStatus();
}

absl::StatusOr<Interpreter::Flow> Interpreter::ExecFor(const Stmt& s, std::string* out) {
  GLM_ASSIGN_OR_RETURN(Value iterable, Eval(*s.expr));
  if (iterable.is_none()) return Error(s.line, "'NoneType' object is not iterable");
  GLM_ASSIGN_OR_RETURN(ValueList items, Builtins::Iterate(iterable));
  auto saved = frame_;
  if (s.filter != nullptr) {
    // The loop filter runs before the loop: loop.length and loop.last see filtered items.
    ValueList kept;
    for (const Value& item : items) {
      GLM_RETURN_IF_ERROR(Step(s.line));
      frame_ = std::make_shared<Frame>();
      frame_->parent = saved;
      auto st = Assign(s.targets, item, s.line);
      if (!st.ok()) {
        frame_ = saved;
        return st;
      }
      auto cond = Eval(*s.filter);
      frame_ = saved;
      if (!cond.ok()) return cond.status();
      if (cond->Truthy()) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) return Exec(s.else_body, out);
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    if (auto st = Step(s.line); !st.ok()) {
      frame_ = saved;
      return st;
    }
    frame_ = std::make_shared<Frame>();
    frame_->parent = saved;
    Value::Dict loop = {
        {"index", Value::Int(i + 1)},      {"index0", Value::Int(i)},
        {"revindex", Value::Int(n - i)},   {"revindex0", Value::Int(n - i - 1)},
        {"first", Value::Bool(i == 0)},    {"last", Value::Bool(i == n - 1)},
        {"length", Value::Int(n)},         {"depth", Value::Int(1)},
        {"depth0", Value::Int(0)},
        {"previtem", i > 0 ? items[i - 1] : Value::Undefined("there is no previous item")},
        {"nextitem", i + 1 < n ? items[i + 1] : Value::Undefined("there is no next item")},
    };
    loop.emplace_back("cycle", Value::Function("cycle", [i](const ValueList& args, const KwArgs&)
                                                            -> absl::StatusOr<Value> {
      if (args.empty()) return absl::InvalidArgumentError("no items for cycling given");
      return args[i % args.size()];
    }));
    frame_->vars["loop"] = Value::MakeDict(std::move(loop));
    auto st = Assign(s.targets, items[i], s.line);
    if (!st.ok()) {
      frame_ = saved;
      return st;
    }
    auto flow = Exec(s.body, out);
    frame_ = saved;
    if (!flow.ok()) return flow.status();
    if (*flow == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

Value Interpreter::MakeMacro(const Stmt& s) {
  const Stmt* def = &s;
  // Weak: the defining frame usually stores the macro itself, and a strong reference would be
  // a cycle. A macro outliving its frame (stored in a namespace) falls back to the root frame.
  std::weak_ptr<Frame> closure = frame_;
  return Value::Function(
      s.kind == Stmt::Kind::kMacro ? s.attr : "caller",
      [this, def, closure](const ValueList& args, const KwArgs& kwargs) -> absl::StatusOr<Value> {
        if (depth_ >= kMaxMacroDepth) {
          return Error(def->line, "macro recursion too deep");
        }
        GLM_RETURN_IF_ERROR(Step(def->line));
        auto frame = std::make_shared<Frame>();
        frame->parent = closure.lock();
        if (frame->parent == nullptr) frame->parent = root_;
        std::vector<Value> varargs;
        for (size_t i = 0; i < args.size(); ++i) {
          if (i < def->params.size()) {
            frame->vars[def->params[i].name] = args[i];
          } else {
            varargs.push_back(args[i]);
          }
        }
        Value::Dict extra_kwargs;
        for (const auto& [k, v] : kwargs) {
          bool known = false;
          for (const auto& p : def->params) known = known || p.name == k;
          if (known || k == "caller") {
            frame->vars[k] = v;
          } else {
            extra_kwargs.emplace_back(k, v);
          }
        }
        auto saved = frame_;
        frame_ = frame;
        ++depth_;
        // Defaults are evaluated in the macro's scope, left to right.
        for (const auto& p : def->params) {
          if (frame->vars.contains(p.name)) continue;
          if (p.default_value == nullptr) {
            frame->vars[p.name] = Value::Undefined(absl::StrCat("'", p.name, "' is undefined"));
            continue;
          }
          auto dv = Eval(*p.default_value);
          if (!dv.ok()) {
            frame_ = saved;
            --depth_;
            return dv.status();
          }
          frame->vars[p.name] = *dv;
        }
        frame->vars["varargs"] = Value::List(std::move(varargs));
        frame->vars["kwargs"] = Value::MakeDict(std::move(extra_kwargs));
        std::string out;
        auto flow = Exec(def->body, &out);
        frame_ = saved;
        --depth_;
        if (!flow.ok()) return flow.status();
        return Value::String(std::move(out));
      });
}

absl::StatusOr<Value> Interpreter::Eval(const Expr& e) {
  NestGuard guard(&nesting_);
  if (nesting_ > kMaxEvalNesting) return Error(e.line, "template recursion too deep");
  auto v = EvalNode(e);
  // Every value a template builds passes through here before it can be wrapped again, so this
  // bounds the nesting of anything built at render time ({% set ns.x = [ns.x] %} in a loop).
  if (v.ok() && v->depth() > kMaxValueDepth) {
    return Error(e.line, absl::StrCat("value nested more than ", kMaxValueDepth, " levels deep"));
  }
  return v;
}

absl::StatusOr<Value> Interpreter::EvalNode(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::kLiteral: return e.value;
    case Expr::Kind::kName: return Lookup(e.name);
    case Expr::Kind::kList:
    case Expr::Kind::kTuple: {
      ValueList items;
      for (const auto& item : e.items) {
        GLM_ASSIGN_OR_RETURN(Value v, Eval(*item));
        items.push_back(std::move(v));
      }
      if (e.kind == Expr::Kind::kTuple) return Value::Tuple(std::move(items));
      return Value::List(std::move(items));
    }
    case Expr::Kind::kDict: {
      Value dict = Value::MakeDict();
      for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
        GLM_ASSIGN_OR_RETURN(Value k, Eval(*e.items[i]));
        GLM_ASSIGN_OR_RETURN(Value v, Eval(*e.items[i + 1]));
        dict.Set(k.Str(), std::move(v));
      }
      return dict;
    }
    case Expr::Kind::kGetAttr: {
      GLM_ASSIGN_OR_RETURN(Value obj, Eval(*e.a));
      auto v = Builtins::GetAttr(obj, e.name);
      if (!v.ok()) return Error(e.line, std::string(v.status().message()));
      return v;
    }
    case Expr::Kind::kGetItem: {
      GLM_ASSIGN_OR_RETURN(Value obj, Eval(*e.a));
      GLM_ASSIGN_OR_RETURN(Value key, Eval(*e.b));
      auto v = Builtins::GetItem(obj, key);
      if (!v.ok()) return Error(e.line, std::string(v.status().message()));
      return v;
    }
    case Expr::Kind::kSlice: {
      GLM_ASSIGN_OR_RETURN(Value obj, Eval(*e.a));
      Value parts[3];
      for (int i = 0; i < 3; ++i) {
        if (e.items[i] != nullptr) {
          GLM_ASSIGN_OR_RETURN(parts[i], Eval(*e.items[i]));
        } else {
          parts[i] = Value::None();
        }
      }
      auto v = Builtins::Slice(obj, parts[0], parts[1], parts[2]);
      if (!v.ok()) return Error(e.line, std::string(v.status().message()));
      return v;
    }
    case Expr::Kind::kCall: return EvalCall(e);
    case Expr::Kind::kFilter: {
      GLM_ASSIGN_OR_RETURN(Value input, Eval(*e.a));
      return EvalFilter(e, input);
    }
    case Expr::Kind::kTest: {
      GLM_ASSIGN_OR_RETURN(Value input, Eval(*e.a));
      ValueList args;
      for (const auto& item : e.items) {
        GLM_ASSIGN_OR_RETURN(Value v, Eval(*item));
        args.push_back(std::move(v));
      }
      auto r = ApplyTest(e.name, input, args);
      if (!r.ok()) return Error(e.line, std::string(r.status().message()));
      return Value::Bool(*r != e.negated);
    }
    case Expr::Kind::kNeg:
    case Expr::Kind::kPos: {
      GLM_ASSIGN_OR_RETURN(Value v, Eval(*e.a));
      if (!v.is_number()) {
        return Error(e.line, absl::StrCat("bad operand type for unary ",
                                          e.kind == Expr::Kind::kNeg ? "-" : "+", ": '",
                                          v.TypeName(), "'"));
      }
      if (e.kind == Expr::Kind::kPos) return v.is_bool() ? Value::Int(v.as_int()) : v;
      if (!v.is_float() && v.as_int() == INT64_MIN) return Error(e.line, "integer overflow in unary -");
      return v.is_float() ? Value::Float(-v.as_float()) : Value::Int(-v.as_int());
    }
    case Expr::Kind::kNot: {
      GLM_ASSIGN_OR_RETURN(Value v, Eval(*e.a));
      return Value::Bool(!v.Truthy());
    }
    case Expr::Kind::kAnd: {
      GLM_ASSIGN_OR_RETURN(Value a, Eval(*e.a));
      if (!a.Truthy()) return a;
      return Eval(*e.b);
    }
    case Expr::Kind::kOr: {
      GLM_ASSIGN_OR_RETURN(Value a, Eval(*e.a));
      if (a.Truthy()) return a;
      return Eval(*e.b);
    }
    case Expr::Kind::kCondition: {
      GLM_ASSIGN_OR_RETURN(Value cond, Eval(*e.b));
      if (cond.Truthy()) return Eval(*e.a);
      if (e.c == nullptr) return Value::Undefined("the inline if-expression evaluated to false");
      return Eval(*e.c);
    }
    case Expr::Kind::kBinary: {
      GLM_ASSIGN_OR_RETURN(Value a, Eval(*e.a));
      GLM_ASSIGN_OR_RETURN(Value b, Eval(*e.b));
      return EvalBinary(e.name, a, b, e.line);
    }
    case Expr::Kind::kCompare: {
      GLM_ASSIGN_OR_RETURN(Value a, Eval(*e.a));
      GLM_ASSIGN_OR_RETURN(Value b, Eval(*e.b));
      return EvalCompare(e.name, a, b, e.line);
    }
  }
  return Error(e.line, "unknown expression");
}

absl::StatusOr<Value> Interpreter::EvalCall(const Expr& e, const Value& caller) {
  GLM_ASSIGN_OR_RETURN(Value fn, Eval(*e.a));
  ValueList args;
  for (const auto& item : e.items) {
    GLM_ASSIGN_OR_RETURN(Value v, Eval(*item));
    args.push_back(std::move(v));
  }
  KwArgs kwargs;
  for (const auto& [k, item] : e.kwargs) {
    GLM_ASSIGN_OR_RETURN(Value v, Eval(*item));
    kwargs.emplace_back(k, std::move(v));
  }
  if (caller.is_function()) kwargs.emplace_back("caller", caller);
  if (fn.is_undefined()) {
    return Error(e.line, fn.undefined_hint().empty() ? "call of an undefined value"
                                                     : fn.undefined_hint());
  }
  if (!fn.is_function()) {
    return Error(e.line, absl::StrCat("'", fn.TypeName(), "' object is not callable"));
  }
  auto r = fn.Call(args, kwargs);
  if (!r.ok() && !absl::StartsWith(r.status().message(), "template error")) {
    return Error(e.line, std::string(r.status().message()));
  }
  return r;
}

absl::StatusOr<Value> Interpreter::EvalFilter(const Expr& e, const Value& input) {
  const Value& v = input;
  ValueList args;
  for (const auto& item : e.items) {
    GLM_ASSIGN_OR_RETURN(Value a, Eval(*item));
    args.push_back(std::move(a));
  }
  KwArgs kwargs;
  for (const auto& [k, item] : e.kwargs) {
    GLM_ASSIGN_OR_RETURN(Value a, Eval(*item));
    kwargs.emplace_back(k, std::move(a));
  }
  auto r = ApplyFilter(e.name, v, args, kwargs);
  if (!r.ok() && !absl::StartsWith(r.status().message(), "template error")) {
    return Error(e.line, std::string(r.status().message()));
  }
  return r;
}

absl::StatusOr<Value> Interpreter::EvalFilterChain(const Expr& e, const Value& input) {
  // Block filters nest innermost-first with a null innermost operand standing for the block.
  if (e.a == nullptr) return EvalFilter(e, input);
  GLM_ASSIGN_OR_RETURN(Value inner, EvalFilterChain(*e.a, input));
  return EvalFilter(e, inner);
}

absl::StatusOr<Value> Interpreter::ApplyFilter(const std::string& name, const Value& value,
                                               const ValueList& args, const KwArgs& kwargs) {
  return Builtins::Filter(this, name, value, args, kwargs);
}

absl::StatusOr<bool> Interpreter::ApplyTest(const std::string& name, const Value& value,
                                            const ValueList& args) {
  return Builtins::Test(this, name, value, args);
}

absl::StatusOr<Value> Interpreter::EvalBinary(const std::string& op, const Value& a,
                                              const Value& b, int line) {
  if (op == "~") {
    std::string x = a.Str();
    const std::string y = b.Str();
    if (auto st = CheckStringSize(x.size() + y.size(), "'~'"); !st.ok()) return Error(line, std::string(st.message()));
    return Value::String(std::move(x += y));
  }
  if (a.is_undefined() || b.is_undefined()) {
    const Value& u = a.is_undefined() ? a : b;
    return Error(line, u.undefined_hint().empty() ? "undefined value in arithmetic"
                                                  : u.undefined_hint());
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      if (auto st = CheckStringSize(a.as_string().size() + b.as_string().size(), "'+'"); !st.ok()) {
        return Error(line, std::string(st.message()));
      }
      return Value::String(a.as_string() + b.as_string());
    }
    if (a.is_list() && b.is_list()) {
      if (a.list().size() + b.list().size() > kMaxListItems) {
        return Error(line, absl::StrCat("'+' would build a list of ", a.list().size() + b.list().size(),
                                        " items, over the limit of ", kMaxListItems));
      }
      ValueList items = a.list();
      items.insert(items.end(), b.list().begin(), b.list().end());
      return Value::List(std::move(items));
    }
  }
  if (op == "*") {
    const Value* seq = a.is_string() || a.is_list() ? &a : (b.is_string() || b.is_list() ? &b : nullptr);
    const Value* count = seq == &a ? &b : &a;
    if (seq != nullptr && (count->is_int() || count->is_bool())) {
      const int64_t n = std::max<int64_t>(0, count->as_int());
      // Python repeats exactly; here the result is priced first (in bytes, or items for a
      // list) so "a" * 10**11 or [1] * 10**12 is an error instead of an endless loop, and
      // "" * 10**18 (nothing to build) returns at once.
      const uint64_t unit = seq->is_string() ? seq->as_string().size() : seq->list().size();
      if (unit == 0 || n == 0) return seq->is_string() ? Value::String("") : Value::List();
      const uint64_t limit = seq->is_string() ? internal::kMaxStringBytes : kMaxListItems;
      if (static_cast<uint64_t>(n) > limit / unit ||
          (seq->is_list() && static_cast<uint64_t>(n) > internal::kMaxStringBytes / ApproxBytes(*seq))) {
        return Error(line, absl::StrCat("'*' would repeat a ", unit, "-", seq->is_string() ? "byte string" : "item list",
                                        " ", n, " times, over the limit of ", limit,
                                        seq->is_string() ? " bytes" : " items (or 16 MiB)"));
      }
      if (seq->is_string()) {
        std::string s;
        for (int64_t i = 0; i < n; ++i) s += seq->as_string();
        return Value::String(std::move(s));
      }
      ValueList items;
      for (int64_t i = 0; i < n; ++i) items.insert(items.end(), seq->list().begin(), seq->list().end());
      return Value::List(std::move(items));
    }
  }
  if (!a.is_number() || !b.is_number()) {
    return Error(line, absl::StrCat("unsupported operand type(s) for ", op, ": '", a.TypeName(),
                                    "' and '", b.TypeName(), "'"));
  }
  const bool floats = a.is_float() || b.is_float();
  if (op == "/") {
    if (b.as_float() == 0) return Error(line, "division by zero");
    return Value::Float(a.as_float() / b.as_float());
  }
  if (op == "//" || op == "%") {
    if (b.as_float() == 0) return Error(line, "integer division or modulo by zero");
    if (floats) {
      const double q = std::floor(a.as_float() / b.as_float());
      return op == "//" ? Value::Float(q) : Value::Float(a.as_float() - q * b.as_float());
    }
    // INT64_MIN // -1 overflows, and the division traps (SIGFPE) on x86.
    if (b.as_int() == -1) {
      if (op == "%") return Value::Int(0);
      if (a.as_int() == INT64_MIN) return Error(line, "integer overflow in //");
      return Value::Int(-a.as_int());
    }
    const int64_t q = FloorDiv(a.as_int(), b.as_int());
    return op == "//" ? Value::Int(q) : Value::Int(a.as_int() - q * b.as_int());
  }
  if (op == "**") {
    if (!floats && b.as_int() >= 0) {
      // Python has big integers; 64-bit overflow is an error rather than a wrapped value.
      const int64_t base = a.as_int(), exp = b.as_int();
      if (base == 0) return Value::Int(exp == 0 ? 1 : 0);
      if (base == 1) return Value::Int(1);
      if (base == -1) return Value::Int(exp % 2 == 0 ? 1 : -1);
      int64_t r = 1;  // |base| >= 2: overflows within 63 steps.
      for (int64_t i = 0; i < exp; ++i) {
        if (__builtin_mul_overflow(r, base, &r)) return Error(line, "integer overflow in **");
      }
      return Value::Int(r);
    }
    return Value::Float(std::pow(a.as_float(), b.as_float()));
  }
  if (floats) {
    const double x = a.as_float(), y = b.as_float();
    return Value::Float(op == "+" ? x + y : op == "-" ? x - y : x * y);
  }
  const int64_t x = a.as_int(), y = b.as_int();
  int64_t r = 0;
  const bool overflow = op == "+"   ? __builtin_add_overflow(x, y, &r)
                        : op == "-" ? __builtin_sub_overflow(x, y, &r)
                                    : __builtin_mul_overflow(x, y, &r);
  if (overflow) return Error(line, absl::StrCat("integer overflow in ", op));
  return Value::Int(r);
}

absl::StatusOr<Value> Interpreter::EvalCompare(const std::string& op, const Value& a,
                                               const Value& b, int line) {
  if (op == "==") return Value::Bool(a.Equals(b));
  if (op == "!=") return Value::Bool(!a.Equals(b));
  if (op == "in" || op == "notin") {
    bool found = false;
    if (b.is_string()) {
      if (!a.is_string()) {
        return Error(line, absl::StrCat("'in <string>' requires string as left operand, not ",
                                        a.TypeName()));
      }
      found = b.as_string().find(a.as_string()) != std::string::npos;
    } else if (b.is_list()) {
      for (const Value& v : b.list()) found = found || v.Equals(a);
    } else if (b.is_dict() || b.is_namespace()) {
      found = a.is_string() && b.Find(a.as_string()) != nullptr;
    } else if (!b.is_undefined()) {
      return Error(line, absl::StrCat("argument of type '", b.TypeName(), "' is not iterable"));
    }
    return Value::Bool(op == "in" ? found : !found);
  }
  absl::StatusOr<bool> r = false;
  if (op == "<") r = Value::Less(a, b);
  if (op == ">") r = Value::Less(b, a);
  if (op == "<=") {
    r = Value::Less(b, a);
    if (r.ok()) r = !*r;
  }
  if (op == ">=") {
    r = Value::Less(a, b);
    if (r.ok()) r = !*r;
  }
  if (!r.ok()) return Error(line, std::string(r.status().message()));
  return Value::Bool(*r);
}

}  // namespace glm::tokenizer::jinja
