#include "coordinator/api/response_format.h"

#include "absl/strings/str_cat.h"
#include "coordinator/api/api_status.h"
#include "coordinator/api/json_fields.h"

namespace glm::api {

using nlohmann::json;
using nlohmann::ordered_json;

namespace {

// The schema in the client's key order: the member at `path` of the request text, else the
// parsed one (sorted keys).
ordered_json OrderedSchema(const json& schema, const ResponseFormatSource& source) {
  if (source.raw_body != nullptr) {
    ordered_json body = ordered_json::parse(*source.raw_body, nullptr, /*allow_exceptions=*/false);
    const ordered_json* at = &body;
    for (const std::string& key : source.path) {
      if (!at->is_object() || !at->contains(key)) {
        at = nullptr;
        break;
      }
      at = &(*at)[key];
    }
    if (at != nullptr) return *at;
  }
  return ordered_json(schema);
}

}  // namespace

absl::StatusOr<std::shared_ptr<const structured::JsonGrammar>> ParseResponseFormat(const json& format,
                                                                                  const ResponseFormatSource& source) {
  const std::string& f = source.field;
  if (!format.is_object()) return InvalidField(f, "must be an object");
  if (!Present(format, "type") || !format["type"].is_string()) return InvalidField(f + ".type", "is required (a string)");
  const std::string type = format["type"].get<std::string>();
  if (type == "text") return std::shared_ptr<const structured::JsonGrammar>();
  if (type == "json_object") return structured::JsonGrammar::AnyObject();
  if (type != "json_schema")
    return InvalidField(f + ".type", absl::StrCat("'", type, "' is not one of \"text\", \"json_object\", \"json_schema\""));
  const json* spec = &format;
  std::string at = f;
  if (!source.flat) {
    if (!Present(format, "json_schema") || !format["json_schema"].is_object())
      return InvalidField(f + ".json_schema", "is required (an object with the schema)");
    spec = &format["json_schema"];
    at = f + ".json_schema";
  }
  if (Present(*spec, "name") && !(*spec)["name"].is_string()) return InvalidField(at + ".name", "must be a string");
  if (Present(*spec, "strict") && !(*spec)["strict"].is_boolean()) return InvalidField(at + ".strict", "must be true or false");
  if (!Present(*spec, "schema")) return InvalidField(at + ".schema", "is required");
  std::vector<std::string> path = source.path;
  if (!source.flat) path.push_back("json_schema");
  path.push_back("schema");
  ResponseFormatSource schema_source = source;
  schema_source.path = std::move(path);
  auto grammar = structured::JsonGrammar::FromSchema(OrderedSchema((*spec)["schema"], schema_source), at + ".schema");
  if (grammar.ok()) return grammar;
  // The grammar's refusals read "response_format.json_schema.schema/properties/when/format: ...":
  // the part before ": " is the param clients show.
  const absl::string_view message = grammar.status().message();
  const size_t colon = message.find(": ");
  if (colon == absl::string_view::npos) return InvalidField(at + ".schema", message);
  return InvalidField(message.substr(0, colon), message.substr(colon + 2));
}

}  // namespace glm::api
