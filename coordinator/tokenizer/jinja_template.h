// A parsed Jinja2 template and its interpreter, with the semantics transformers uses for chat
// templates (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loop controls, default
// Undefined): undefined values print as "" and are falsy, but using one as an object is an
// error; lists and dicts cannot be mutated in place.
#ifndef GLM_COORDINATOR_TOKENIZER_JINJA_TEMPLATE_H_
#define GLM_COORDINATOR_TOKENIZER_JINJA_TEMPLATE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "coordinator/tokenizer/jinja_ast.h"
#include "coordinator/tokenizer/jinja_value.h"

namespace glm::tokenizer::jinja {

class Template {
 public:
  // Syntax errors are InvalidArgument with the line number.
  static absl::StatusOr<std::unique_ptr<Template>> Parse(std::string_view source);
  // Renders with `context` as the template's variables (plus the globals range, namespace,
  // raise_exception, strftime_now, dict). Errors (raise_exception, undefined used as an object,
  // type errors) are InvalidArgument naming the problem.
  absl::StatusOr<std::string> Render(const Value::Dict& context) const;

 private:
  Template() = default;
  Body body_;
};

}  // namespace glm::tokenizer::jinja

#endif  // GLM_COORDINATOR_TOKENIZER_JINJA_TEMPLATE_H_
