// Structured outputs in the OpenAI APIs: the format a reply must follow, as a JSON grammar.
//   chat / completions `response_format`: {"type": "text"} | {"type": "json_object"} |
//     {"type": "json_schema", "json_schema": {"name", "schema", "strict", "description"}}
//   Responses `text.format`: the same types, json_schema's members flat beside "type".
// json_object asks for any JSON object; json_schema for a value of the schema (JsonGrammar says
// which keywords are honoured; the others are refused with their place).
#ifndef GLM_COORDINATOR_API_RESPONSE_FORMAT_H_
#define GLM_COORDINATOR_API_RESPONSE_FORMAT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/structured/json_grammar.h"
#include "nlohmann/json.hpp"

namespace glm::api {

struct ResponseFormatSource {
  std::string field;                     // the format's spelling in errors: "response_format", "text.format"
  bool flat = false;                     // Responses: name/schema beside type
  // The request text and the path to the format in it: the schema is read again from the text in
  // the client's key order (properties are generated in the schema's order). Without the text
  // the parsed body's (sorted) order is used.
  const std::string* raw_body = nullptr;
  std::vector<std::string> path;
};

// The grammar `format` asks for; nullptr for plain text.
absl::StatusOr<std::shared_ptr<const structured::JsonGrammar>> ParseResponseFormat(const nlohmann::json& format,
                                                                                  const ResponseFormatSource& source);

// vLLM's structured-output fields of chat and completions requests: `structured_outputs`
// {"json": SCHEMA, "regex": PATTERN, "choice": [TEXT, ...], "json_object": true, "grammar": GBNF}
// or the older `guided_json`, `guided_regex`, `guided_choice`, `guided_grammar` (a schema may also
// be sent as JSON text), and llama.cpp's `grammar` (GBNF) and `json_schema`. At most one of them;
// `structural_tag` is refused.
// *grammar stays null when the body has none; *field names the one given ("guided_regex",
// "structured_outputs.choice", ...; `outputs_field` spells structured_outputs there).
absl::Status ParseGuidedDecoding(const nlohmann::json& body, const std::string* raw_body,
                                 std::shared_ptr<const structured::JsonGrammar>* grammar, std::string* field,
                                 const std::string& outputs_field = "structured_outputs");

// tool_choice: "auto" (the default), "none", "required" or a named function, spelt
// {"type": "function", "function": {"name"}} (chat) or, with `flat`, {"type": "function", "name"}
// (Responses). "none" clears *tools (the model must not see, so not call, them). *forced: ""
// (not forced), "*" (a call of any tool) or the tool's name.
absl::Status ParseToolChoice(const nlohmann::json& choice, const std::string& field, bool flat,
                             nlohmann::ordered_json* tools, std::string* forced);

// tool_choice "required" (any of `tools`) or a named function (`name`): the grammar of the
// call(s) in GLM's tool-call format. `tools` are OpenAI function tools as the chat path holds them
// (ApiRequest::tools, in the client's key order: arguments are generated in the schema's property
// order). `field` names the choice in errors. `parallel`: one or more calls (OpenAI's
// parallel_tool_calls, the default), else exactly one.
absl::StatusOr<std::shared_ptr<const structured::JsonGrammar>> ForcedToolCall(const nlohmann::ordered_json& tools,
                                                                              const std::string& name,
                                                                              const std::string& field, bool parallel);

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_RESPONSE_FORMAT_H_
