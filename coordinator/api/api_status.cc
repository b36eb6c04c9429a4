#include "coordinator/api/api_status.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

#include <vector>

namespace glm::api {
namespace {
constexpr char kFieldPayload[] = "type.googleapis.com/glm.api.InvalidField";
constexpr char kContextPayload[] = "type.googleapis.com/glm.api.ContextLengthExceeded";
}  // namespace

absl::Status InvalidField(absl::string_view field, absl::string_view message) {
  absl::Status s = absl::InvalidArgumentError(
      absl::StrCat(field, ": ", message));
  s.SetPayload(kFieldPayload, absl::Cord(field));
  return s;
}

absl::Status ContextLengthExceeded(absl::string_view field, absl::string_view message, ContextOverflow overflow) {
  absl::Status s = InvalidField(field, message);
  s.SetPayload(kContextPayload, absl::Cord(absl::StrCat(overflow.prompt_tokens, ",", overflow.max_tokens, ",",
                                                        overflow.context_tokens)));
  return s;
}

std::optional<ContextOverflow> ContextOverflowOf(const absl::Status& status) {
  if (!ExceedsContext(status)) return std::nullopt;
  const std::vector<std::string> parts = absl::StrSplit(std::string(*status.GetPayload(kContextPayload)), ',');
  ContextOverflow o;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &o.prompt_tokens) || !absl::SimpleAtoi(parts[1], &o.max_tokens) ||
      !absl::SimpleAtoi(parts[2], &o.context_tokens))
    return std::nullopt;
  return o;
}

bool ExceedsContext(const absl::Status& status) {
  return status.code() == absl::StatusCode::kInvalidArgument && status.GetPayload(kContextPayload).has_value();
}

std::string FieldOf(const absl::Status& status) {
  auto payload = status.GetPayload(kFieldPayload);
  if (payload.has_value()) return std::string(*payload);
  // The engine's request errors (scheduler::Engine::Submit) start with the field: "top_p: ...".
  if (status.code() != absl::StatusCode::kInvalidArgument && status.code() != absl::StatusCode::kResourceExhausted)
    return std::string();
  const absl::string_view m = status.message();
  size_t n = 0;
  while (n < m.size() && (absl::ascii_islower(m[n]) || m[n] == '_')) ++n;
  return n > 0 && m.substr(n, 2) == ": " ? std::string(m.substr(0, n)) : std::string();
}

}  // namespace glm::api
