// Evaluates a template syntax tree: statements write to an output string, expressions produce
// Values. Scoping follows Jinja2: a for-loop iteration and a macro call get their own frame,
// `if` does not; `set` writes to the innermost frame.
#ifndef GLM_COORDINATOR_TOKENIZER_JINJA_INTERPRETER_H_
#define GLM_COORDINATOR_TOKENIZER_JINJA_INTERPRETER_H_

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "coordinator/tokenizer/jinja_ast.h"
#include "coordinator/tokenizer/jinja_value.h"

namespace glm::tokenizer::jinja {

class Interpreter {
 public:
  explicit Interpreter(const Value::Dict& context);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;
  absl::Status Run(const Body& body, std::string* out);

  // Filters and tests, callable from builtins (map, select, ...).
  absl::StatusOr<Value> ApplyFilter(const std::string& name, const Value& value,
                                    const ValueList& args, const KwArgs& kwargs);
  absl::StatusOr<bool> ApplyTest(const std::string& name, const Value& value,
                                 const ValueList& args);

 private:
  struct Frame {
    absl::flat_hash_map<std::string, Value> vars;
    std::shared_ptr<Frame> parent;
  };
  enum class Flow { kNormal, kBreak, kContinue };

  absl::StatusOr<Flow> Exec(const Body& body, std::string* out);
  absl::StatusOr<Flow> ExecStmt(const Stmt& s, std::string* out);
  absl::StatusOr<Flow> ExecFor(const Stmt& s, std::string* out);
  absl::Status ExecSet(const Stmt& s);
  absl::Status Assign(const std::vector<std::string>& targets, const Value& v, int line);
  Value MakeMacro(const Stmt& s);
  // Eval bounds recursion and the nesting of the value; EvalNode does the work.
  absl::StatusOr<Value> Eval(const Expr& e);
  absl::StatusOr<Value> EvalNode(const Expr& e);
  // `caller`, when a function, is passed as the `caller` keyword ({% call %} blocks).
  absl::StatusOr<Value> EvalCall(const Expr& e, const Value& caller = Value());
  absl::StatusOr<Value> EvalBinary(const std::string& op, const Value& a, const Value& b, int line);
  absl::StatusOr<Value> EvalCompare(const std::string& op, const Value& a, const Value& b,
                                    int line);
  // Applies one filter node to `input`; the chain variant first applies the nested ones.
  absl::StatusOr<Value> EvalFilter(const Expr& e, const Value& input);
  absl::StatusOr<Value> EvalFilterChain(const Expr& e, const Value& input);

  Value Lookup(const std::string& name) const;
  void SetVar(const std::string& name, Value v) { frame_->vars[name] = std::move(v); }
  absl::Status Error(int line, const std::string& msg) const;

  std::shared_ptr<Frame> globals_;
  std::shared_ptr<Frame> root_;  // The template's top-level variables.
  std::shared_ptr<Frame> frame_;
  int depth_ = 0;  // Macro recursion guard.
  // Eval/ExecStmt recursion (expressions inside statements inside macro calls): bounds the
  // native stack whatever the parser accepted times the macro depth.
  int nesting_ = 0;
  // Loop iterations and macro calls of this render, against a budget (see kMaxSteps).
  int64_t steps_ = 0;
  absl::Status Step(int line);
};

}  // namespace glm::tokenizer::jinja

#endif  // GLM_COORDINATOR_TOKENIZER_JINJA_INTERPRETER_H_
