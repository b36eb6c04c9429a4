// Reading fields of a JSON request body, shared by the HTTP APIs' parsers (OpenAI chat and
// completions, OpenAI responses, Anthropic messages, tokenize). Every failure is an InvalidField
// status naming the field as the client spelled it.
#ifndef GLM_COORDINATOR_API_JSON_FIELDS_H_
#define GLM_COORDINATOR_API_JSON_FIELDS_H_

#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace glm::api {

// Whether `obj` has `key` with a non-null value (JSON null counts as absent, as clients mean it).
bool Present(const nlohmann::json& obj, const char* key);

// A JSON number as a float, range-checked as a double first (converting one outside the float
// range is undefined; 1e39 became inf).
absl::Status ToFloat(const nlohmann::json& v, const std::string& field, float* out);

// Optional fields: `out` is left as it is when the field is absent or null.
absl::Status GetOptionalFloat(const nlohmann::json& body, const char* key, float* out);
absl::Status GetOptionalBool(const nlohmann::json& body, const char* key, bool* out);

// A required string member `key` of `obj`; the error names "<at>.<key>".
absl::StatusOr<std::string> RequiredString(const nlohmann::json& obj, const char* key, const std::string& at);

// The request body in the client's key order. nlohmann::json keeps objects sorted by key, but
// the chat template prints what the client sent (tools, their parameter schemas, tool-call
// arguments, extra message fields) and the model was trained on the client's order, which
// transformers (Python dicts) keeps: so those parts are read again from the request text.
// Without the text (a body built in code), or should it not parse, the sorted body stands in.
nlohmann::ordered_json OrderedBody(const nlohmann::json& body, const std::string* raw_body);

// A content field as text: a string, or an array of parts {"type": T, <key of T>: "..."} with T
// one of `types`, joined with "\n" as the chat path joins OpenAI content parts. Other part types
// (images, files, audio) are refused, naming the part: the model reads text only.
struct TextPartType {
  const char* type;
  const char* key;  // the member holding the part's text
};
absl::StatusOr<std::string> JoinTextParts(const nlohmann::json& content, const std::string& field,
                                          std::initializer_list<TextPartType> types);

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_JSON_FIELDS_H_
