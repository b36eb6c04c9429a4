#include "coordinator/tokenizer/jinja_template.h"

#include <new>
#include <stdexcept>

#include "coordinator/tokenizer/jinja_interpreter.h"
#include "coordinator/tokenizer/jinja_parser.h"
#include "coordinator/tokenizer/status_macros.h"

namespace glm::tokenizer::jinja {

absl::StatusOr<std::unique_ptr<Template>> Template::Parse(std::string_view source) {
  auto t = std::unique_ptr<Template>(new Template());
  GLM_ASSIGN_OR_RETURN(t->body_, Parser::Parse(source));
  return t;
}

absl::StatusOr<std::string> Template::Render(const Value::Dict& context) const {
  // The interpreter bounds what a template may build (jinja_builtins.h); this is the backstop
  // for an allocation that still fails, which must fail the request, not the process.
  try {
    Interpreter interp(context);
    std::string out;
    GLM_RETURN_IF_ERROR(interp.Run(body_, &out));
    return out;
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("template rendering ran out of memory");
  } catch (const std::length_error&) {
    return absl::ResourceExhaustedError("template rendering built an oversized value");
  }
}

}  // namespace glm::tokenizer::jinja
