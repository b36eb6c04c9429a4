#include "coordinator/api/api_status.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/cord.h"

namespace glm::api {
namespace {
constexpr char kFieldPayload[] = "type.googleapis.com/glm.api.InvalidField";
}  // namespace

absl::Status InvalidField(absl::string_view field, absl::string_view message) {
  absl::Status s = absl::InvalidArgumentError(
      absl::StrCat(field, ": ", message));
  s.SetPayload(kFieldPayload, absl::Cord(field));
  return s;
}

std::string FieldOf(const absl::Status& status) {
  auto payload = status.GetPayload(kFieldPayload);
  return payload.has_value() ? std::string(*payload) : std::string();
}

}  // namespace glm::api
