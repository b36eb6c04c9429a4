#include "coordinator/api/json_depth.h"

#include "absl/strings/str_cat.h"
#include "coordinator/api/api_status.h"
#include "coordinator/tokenizer/json_depth.h"

namespace glm::api {

int JsonDepth(const nlohmann::json& j, int limit) { return tokenizer::JsonDepth(j, limit); }

absl::Status CheckJsonDepth(const nlohmann::json& j, absl::string_view field, int max_depth) {
  if (JsonDepth(j, max_depth) <= max_depth) return absl::OkStatus();
  return InvalidField(field, absl::StrCat("nests arrays/objects more than ", max_depth, " levels deep"));
}

absl::Status CheckBodyDepth(const nlohmann::json& body) {
  if (!body.is_object()) return CheckJsonDepth(body, "body");
  for (const auto& [key, value] : body.items()) {
    // One level is the body itself; the message counts from there.
    if (JsonDepth(value, kMaxJsonDepth - 1) > kMaxJsonDepth - 1)
      return InvalidField(key, absl::StrCat("nests arrays/objects more than ", kMaxJsonDepth,
                                            " levels deep (counting the request body)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> ParseRequestBody(const std::string& text) {
  nlohmann::json body = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return InvalidField("body", "is not valid JSON");
  // Before anything copies or dumps it (both recurse per level; destruction does not).
  if (auto s = CheckBodyDepth(body); !s.ok()) return s;
  return body;
}

absl::StatusOr<nlohmann::json> ParseClientJson(const std::string& text, absl::string_view field,
                                               nlohmann::json if_empty) {
  if (text.empty()) return if_empty;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidField(field, "is not valid JSON");
  if (auto s = CheckJsonDepth(j, field); !s.ok()) return s;
  return j;
}

}  // namespace glm::api
