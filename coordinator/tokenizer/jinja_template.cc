#include "coordinator/tokenizer/jinja_template.h"

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
  Interpreter interp(context);
  std::string out;
  GLM_RETURN_IF_ERROR(interp.Run(body_, &out));
  return out;
}

}  // namespace glm::tokenizer::jinja
