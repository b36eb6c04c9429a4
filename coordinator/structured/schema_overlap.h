// Whether two JSON schemas can match the same value, judged from what they declare: their types,
// const / enum values, or a required property whose const values tell objects apart (a
// discriminated union). oneOf ("exactly one branch matches") is compiled as anyOf only where its
// branches cannot overlap, so that every output matches exactly one of them.
#ifndef GLM_COORDINATOR_STRUCTURED_SCHEMA_OVERLAP_H_
#define GLM_COORDINATOR_STRUCTURED_SCHEMA_OVERLAP_H_

#include <string>

#include "nlohmann/json.hpp"

namespace glm::structured {

// A value's JSON type as a schema names it: "string", "integer" (an integral number), "number",
// "boolean", "null", "object" or "array".
std::string JsonTypeOf(const nlohmann::ordered_json& value);

// Whether a value of JSON type `type` (as JsonTypeOf gives it) satisfies a schema "type" of
// `wanted` ("number" takes integers too).
bool TypeSatisfies(const std::string& type, const std::string& wanted);

// True when no value can match both `a` and `b` (schemas inside `root`, whose local $refs are
// followed); false when they might, or when the schemas do not say enough to tell.
bool SchemasDisjoint(const nlohmann::ordered_json& root, const nlohmann::ordered_json& a,
                     const nlohmann::ordered_json& b);

}  // namespace glm::structured

#endif  // GLM_COORDINATOR_STRUCTURED_SCHEMA_OVERLAP_H_
