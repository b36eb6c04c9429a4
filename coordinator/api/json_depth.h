// A bound on how deeply client JSON may nest, checked right after parsing and before anything
// else touches the value. nlohmann's parser and destructor are iterative, but copying,
// comparing, dump() and the chat template's conversion recurse once per level: a ~2 MB body of
// a million nested brackets would overflow the stack and take the whole coordinator down. Both
// front ends (HTTP bodies, gRPC JSON string fields) use these.
#ifndef GLM_COORDINATOR_API_JSON_DEPTH_H_
#define GLM_COORDINATOR_API_JSON_DEPTH_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace glm::api {

// The most arrays/objects one client JSON document may nest (`{}` is 1, `{"a": [1]}` is 2).
// Real OpenAI requests nest under 10 (body → messages → message → content part); tool
// parameter JSON schemas add perhaps 20. 64 leaves room for both and keeps every recursive walk
// far from the stack's end.
inline constexpr int kMaxJsonDepth = 64;

// How deeply `j` nests, counted without recursion; stops counting past `limit` (returns
// limit + 1 then).
int JsonDepth(const nlohmann::json& j, int limit = kMaxJsonDepth);

// INVALID_ARGUMENT naming `field` when `j` nests deeper than `max_depth`.
absl::Status CheckJsonDepth(const nlohmann::json& j, absl::string_view field, int max_depth = kMaxJsonDepth);

// A request body: a JSON object's too-deep member is named by its key (counting the body's own
// level), anything else is "body".
absl::Status CheckBodyDepth(const nlohmann::json& body);

// Parses an HTTP request body: INVALID_ARGUMENT "body: is not valid JSON", or CheckBodyDepth's.
absl::StatusOr<nlohmann::json> ParseRequestBody(const std::string& text);

// Parses a client JSON string (a gRPC `*_json` field) and checks its depth; `field` names it
// in errors. Empty text gives `if_empty`.
absl::StatusOr<nlohmann::json> ParseClientJson(const std::string& text, absl::string_view field,
                                               nlohmann::json if_empty);

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_JSON_DEPTH_H_
