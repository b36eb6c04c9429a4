#include "coordinator/api/json_depth.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/api/api_status.h"

namespace glm::api {

int JsonDepth(const nlohmann::json& j, int limit) {
  // An explicit stack of (value, its depth): the input may be a million levels deep.
  std::vector<std::pair<const nlohmann::json*, int>> stack = {{&j, j.is_structured() ? 1 : 0}};
  int deepest = 0;
  while (!stack.empty()) {
    const auto [v, depth] = stack.back();
    stack.pop_back();
    if (depth > deepest) deepest = depth;
    if (deepest > limit) return limit + 1;
    if (!v->is_structured()) continue;
    for (const auto& child : *v)
      if (child.is_structured()) stack.emplace_back(&child, depth + 1);
  }
  return deepest;
}

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

absl::StatusOr<nlohmann::json> ParseClientJson(const std::string& text, absl::string_view field,
                                               nlohmann::json if_empty) {
  if (text.empty()) return if_empty;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidField(field, "is not valid JSON");
  if (auto s = CheckJsonDepth(j, field); !s.ok()) return s;
  return j;
}

}  // namespace glm::api
