#include "coordinator/api/json_fields.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "coordinator/api/api_status.h"

namespace glm::api {

using json = nlohmann::json;

bool Present(const json& obj, const char* key) { return obj.contains(key) && !obj[key].is_null(); }

nlohmann::ordered_json OrderedBody(const json& body, const std::string* raw_body) {
  if (raw_body != nullptr) {
    // The same text the body was parsed from (and its depth checked), so the same values.
    nlohmann::ordered_json ordered = nlohmann::ordered_json::parse(*raw_body, nullptr, /*allow_exceptions=*/false);
    if (!ordered.is_discarded()) return ordered;
  }
  return nlohmann::ordered_json(body);
}

absl::Status ToFloat(const json& v, const std::string& field, float* out) {
  if (!v.is_number()) return InvalidField(field, "must be a number");
  const double d = v.get<double>();
  if (!(std::fabs(d) <= std::numeric_limits<float>::max()))
    return InvalidField(field, absl::StrCat(v.dump(), " is out of range"));
  *out = static_cast<float>(d);
  return absl::OkStatus();
}

absl::Status GetOptionalFloat(const json& body, const char* key, float* out) {
  if (!Present(body, key)) return absl::OkStatus();
  return ToFloat(body[key], key, out);
}

absl::Status GetOptionalBool(const json& body, const char* key, bool* out) {
  if (!Present(body, key)) return absl::OkStatus();
  if (!body[key].is_boolean()) return InvalidField(key, "must be true or false");
  *out = body[key].get<bool>();
  return absl::OkStatus();
}

absl::StatusOr<std::string> RequiredString(const json& obj, const char* key, const std::string& at) {
  if (!Present(obj, key) || !obj[key].is_string()) return InvalidField(absl::StrCat(at, ".", key), "is required (a string)");
  return obj[key].get<std::string>();
}

absl::StatusOr<std::string> JoinTextParts(const json& content, const std::string& field,
                                          std::initializer_list<TextPartType> types) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return InvalidField(field, "must be a string or an array of content parts");
  std::string text;
  for (size_t j = 0; j < content.size(); ++j) {
    const std::string at = absl::StrCat(field, "[", j, "]");
    const json& part = content[j];
    if (!part.is_object()) return InvalidField(at, "must be an object (a content part)");
    auto type = RequiredString(part, "type", at);
    if (!type.ok()) return type.status();
    const char* key = nullptr;
    for (const TextPartType& t : types)
      if (*type == t.type) key = t.key;
    if (key == nullptr)
      return InvalidField(at + ".type", absl::StrCat("'", *type, "' is not supported by this model (text only)"));
    auto part_text = RequiredString(part, key, at);
    if (!part_text.ok()) return part_text.status();
    if (j > 0) text += "\n";
    text += *part_text;
  }
  return text;
}

}  // namespace glm::api
