#include "coordinator/api/json_fields.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "coordinator/api/api_status.h"

namespace glm::api {

using json = nlohmann::json;

bool Present(const json& obj, const char* key) { return obj.contains(key) && !obj[key].is_null(); }

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

}  // namespace glm::api
