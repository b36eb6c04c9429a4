#include "coordinator/api/response_format.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "coordinator/api/api_status.h"
#include "coordinator/api/json_fields.h"

namespace glm::api {

using nlohmann::json;
using nlohmann::ordered_json;

namespace {

// The member at `path` of `root` (numbers index arrays), or null.
const ordered_json* Member(const ordered_json& root, const std::vector<std::string>& path) {
  const ordered_json* at = &root;
  for (const std::string& key : path) {
    if (at->is_object() && at->contains(key)) {
      at = &(*at)[key];
    } else if (at->is_array() && !key.empty() && key.find_first_not_of("0123456789") == std::string::npos &&
               std::stoul(key) < at->size()) {
      at = &(*at)[std::stoul(key)];
    } else {
      return nullptr;
    }
  }
  return at;
}

// The schema in the client's key order: the member at `path` of the request text, else the
// parsed one (sorted keys).
ordered_json OrderedSchema(const json& schema, const ResponseFormatSource& source) {
  if (source.raw_body != nullptr) {
    const ordered_json body = ordered_json::parse(*source.raw_body, nullptr, /*allow_exceptions=*/false);
    if (const ordered_json* at = Member(body, source.path); at != nullptr) return *at;
  }
  return ordered_json(schema);
}

// A grammar's refusal ("field/pointer: what") as an InvalidField naming field/pointer.
absl::Status AsInvalidField(const absl::Status& status, const std::string& fallback_field) {
  const absl::string_view message = status.message();
  const size_t colon = message.find(": ");
  if (colon == absl::string_view::npos) return InvalidField(fallback_field, message);
  return InvalidField(message.substr(0, colon), message.substr(colon + 2));
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
  return AsInvalidField(grammar.status(), at + ".schema");
}

absl::Status ParseGuidedDecoding(const json& body, const std::string* raw_body,
                                 std::shared_ptr<const structured::JsonGrammar>* grammar, std::string* field,
                                 const std::string& outputs_field) {
  struct Given {
    std::string field;  // as clients spell it
    std::string kind;   // json, regex, choice, json_object, grammar
    std::vector<std::string> path;
  };
  std::vector<Given> given;
  for (const char* kind : {"json", "regex", "choice", "grammar"}) {
    const std::string key = absl::StrCat("guided_", kind);
    if (Present(body, key.c_str())) given.push_back({key, kind, {key}});
  }
  // llama.cpp's server: `grammar`, GBNF text (as guided_grammar), and `json_schema` (as guided_json).
  if (Present(body, "grammar")) given.push_back({"grammar", "grammar", {"grammar"}});
  if (Present(body, "json_schema")) given.push_back({"json_schema", "json", {"json_schema"}});
  if (Present(body, "guided_whitespace_pattern"))
    return InvalidField("guided_whitespace_pattern", "is not supported: JSON output has at most one space between tokens");
  if (Present(body, "structured_outputs")) {
    const json& so = body["structured_outputs"];
    if (!so.is_object()) return InvalidField(outputs_field, "must be an object");
    // A misspelt kind would leave the output unconstrained without a word: only vLLM's keys.
    for (const auto& [key, unused] : so.items()) {
      static const char* const kKnown[] = {"json", "regex", "choice", "json_object", "grammar", "structural_tag",
                                           "whitespace_pattern", "disable_fallback", "disable_any_whitespace",
                                           "disable_additional_properties", "backend", "_backend",
                                           "_backend_was_auto"};
      if (std::none_of(std::begin(kKnown), std::end(kKnown), [&](const char* k) { return key == k; }))
        return InvalidField(absl::StrCat(outputs_field, ".", key),
                            "is not a structured_outputs key (json, regex, choice, json_object, grammar)");
    }
    for (const char* kind : {"json", "regex", "choice", "json_object", "grammar", "structural_tag"})
      if (Present(so, kind)) given.push_back({absl::StrCat(outputs_field, ".", kind), kind, {"structured_outputs", kind}});
    if (Present(so, "whitespace_pattern"))
      return InvalidField(absl::StrCat(outputs_field, ".whitespace_pattern"),
                          "is not supported: JSON output has at most one space between tokens");
  }
  grammar->reset();
  if (given.empty()) return absl::OkStatus();
  if (given.size() > 1) return InvalidField(given[1].field, absl::StrCat("cannot be combined with ", given[0].field));
  const Given& g = given[0];
  const json& value = g.path.size() == 1 ? body[g.path[0]] : body[g.path[0]][g.path[1]];
  *field = g.field;
  if (g.kind == "structural_tag")
    return InvalidField(g.field, "is not supported by this server (json, regex, choice and grammar are)");
  if (g.kind == "grammar") {
    if (!value.is_string() || value.get<std::string>().empty())
      return InvalidField(g.field, "must be a non-empty string: a GBNF grammar with a rule named root");
    auto compiled = structured::JsonGrammar::ForGbnf(value.get<std::string>(), g.field);
    if (!compiled.ok()) return AsInvalidField(compiled.status(), g.field);
    *grammar = *std::move(compiled);
    return absl::OkStatus();
  }
  if (g.kind == "json_object") {
    if (!value.is_boolean()) return InvalidField(g.field, "must be true or false");
    if (value.get<bool>()) *grammar = structured::JsonGrammar::AnyObject();
    return absl::OkStatus();
  }
  if (g.kind == "regex") {
    if (!value.is_string() || value.get<std::string>().empty()) return InvalidField(g.field, "must be a non-empty string");
    auto compiled = structured::JsonGrammar::ForRegex(value.get<std::string>(), g.field);
    if (!compiled.ok()) return AsInvalidField(compiled.status(), g.field);
    *grammar = *std::move(compiled);
    return absl::OkStatus();
  }
  if (g.kind == "choice") {
    if (!value.is_array() || value.empty()) return InvalidField(g.field, "must be a non-empty array of strings");
    std::vector<std::string> choices;
    for (const json& c : value) {
      if (!c.is_string()) return InvalidField(g.field, "must be a non-empty array of strings");
      choices.push_back(c.get<std::string>());
    }
    auto compiled = structured::JsonGrammar::ForChoice(choices, g.field);
    if (!compiled.ok()) return AsInvalidField(compiled.status(), g.field);
    *grammar = *std::move(compiled);
    return absl::OkStatus();
  }
  // json: a schema object (or boolean), or the schema as JSON text.
  ordered_json schema;
  if (value.is_string()) {
    schema = ordered_json::parse(value.get<std::string>(), nullptr, /*allow_exceptions=*/false);
    if (schema.is_discarded() || !(schema.is_object() || schema.is_boolean()))
      return InvalidField(g.field, "must be a JSON schema (an object, or its JSON text)");
  } else if (value.is_object() || value.is_boolean()) {
    schema = OrderedSchema(value, {g.field, false, raw_body, g.path});
  } else {
    return InvalidField(g.field, "must be a JSON schema (an object, or its JSON text)");
  }
  auto compiled = structured::JsonGrammar::FromSchema(schema, g.field);
  if (!compiled.ok()) return AsInvalidField(compiled.status(), g.field);
  *grammar = *std::move(compiled);
  return absl::OkStatus();
}

absl::Status ParseToolChoice(const json& choice, const std::string& field, bool flat, ordered_json* tools,
                             std::string* forced) {
  forced->clear();
  if (choice.is_object()) {
    const json* name = nullptr;
    if (flat) {
      if (choice.contains("name")) name = &choice["name"];
    } else if (choice.contains("function") && choice["function"].is_object() && choice["function"].contains("name")) {
      name = &choice["function"]["name"];
    }
    if (name == nullptr || !name->is_string())
      return flat ? InvalidField(absl::StrCat(field, ".name"), "is required (a string): only function tools can be forced")
                  : InvalidField(absl::StrCat(field, ".function.name"), "is required (a string)");
    *forced = name->get<std::string>();
    return absl::OkStatus();
  }
  if (!choice.is_string())
    return InvalidField(field, flat ? "must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"name\"}"
                                    : "must be \"auto\", \"none\", \"required\" or a named function");
  if (choice != "auto" && choice != "none" && choice != "required")
    return InvalidField(field, absl::StrCat("'", choice.get<std::string>(), "' is not one of \"auto\", \"none\", \"required\""));
  if (choice == "none") *tools = nullptr;
  if (choice == "required") forced->push_back('*');  // (operator= of a literal trips GCC 12's -Wrestrict)
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const structured::JsonGrammar>> ForcedToolCall(const ordered_json& tools,
                                                                              const std::string& name,
                                                                              const std::string& field, bool parallel) {
  if (!tools.is_array() || tools.empty()) return InvalidField(field, "forces a tool call, but there are no tools");
  std::vector<structured::ToolSpec> specs;
  for (size_t i = 0; i < tools.size(); ++i) {
    const ordered_json& fn = tools[i].contains("function") ? tools[i]["function"] : tools[i];
    const std::string tool_name = fn.value("name", "");
    if (!name.empty() && tool_name != name) continue;
    structured::ToolSpec spec{tool_name, nullptr, absl::StrCat("tools[", i, "]")};
    if (fn.contains("parameters")) spec.parameters = fn["parameters"];
    specs.push_back(std::move(spec));
  }
  if (specs.empty()) return InvalidField(field, absl::StrCat("names '", name, "', which is not among the tools"));
  auto grammar = structured::JsonGrammar::ForToolCalls(specs, "tools", parallel ? -1 : 1);
  if (!grammar.ok()) return AsInvalidField(grammar.status(), field);
  return grammar;
}

}  // namespace glm::api
