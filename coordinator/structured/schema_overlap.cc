#include "coordinator/structured/schema_overlap.h"

#include <set>

namespace glm::structured {
namespace {

using json = nlohmann::ordered_json;

// `s` with local $refs followed (a few hops), or null where one does not resolve.
const json* Resolve(const json& root, const json& s) {
  const json* at = &s;
  for (int hops = 0; hops < 8 && at->is_object() && at->contains("$ref"); ++hops) {
    const json& ref = (*at)["$ref"];
    if (!ref.is_string()) return nullptr;
    const std::string target = ref.get<std::string>();
    if (target == "#") {
      at = &root;
      continue;
    }
    const json* next = nullptr;
    for (const char* container : {"$defs", "definitions"}) {
      const std::string prefix = std::string("#/") + container + "/";
      if (target.rfind(prefix, 0) != 0 || !root.is_object() || !root.contains(container)) continue;
      const json& defs = root[container];
      const std::string name = target.substr(prefix.size());
      if (defs.is_object() && defs.contains(name)) next = &defs[name];
    }
    if (next == nullptr) return nullptr;
    at = next;
  }
  return at->is_object() && at->contains("$ref") ? nullptr : at;
}

// The values a const / enum schema allows (compact JSON); false when it has neither.
bool Literals(const json& s, std::set<std::string>* out) {
  if (s.contains("const")) {
    out->insert(s["const"].dump());
    return true;
  }
  if (s.contains("enum") && s["enum"].is_array()) {
    for (const json& v : s["enum"]) out->insert(v.dump());
    return true;
  }
  return false;
}

// The JSON types a schema allows; false when it does not say (no type, const or enum).
bool Types(const json& s, std::set<std::string>* out) {
  if (s.contains("const") || s.contains("enum")) {
    if (s.contains("const")) out->insert(JsonTypeOf(s["const"]));
    if (s.contains("enum") && s["enum"].is_array())
      for (const json& v : s["enum"]) out->insert(JsonTypeOf(v));
    return true;
  }
  if (!s.contains("type")) return false;
  const json& t = s["type"];
  if (t.is_string()) out->insert(t.get<std::string>());
  if (t.is_array())
    for (const json& x : t)
      if (x.is_string()) out->insert(x.get<std::string>());
  return !out->empty();
}

bool TypesOverlap(const std::set<std::string>& a, const std::set<std::string>& b) {
  for (const std::string& x : a)
    for (const std::string& y : b)
      if (TypeSatisfies(x, y) || TypeSatisfies(y, x)) return true;
  return false;
}

bool Required(const json& s, const std::string& name) {
  if (!s.contains("required") || !s["required"].is_array()) return false;
  for (const json& r : s["required"])
    if (r.is_string() && r.get<std::string>() == name) return true;
  return false;
}

}  // namespace

std::string JsonTypeOf(const json& v) {
  if (v.is_string()) return "string";
  if (v.is_boolean()) return "boolean";
  if (v.is_null()) return "null";
  if (v.is_object()) return "object";
  if (v.is_array()) return "array";
  if (v.is_number_integer()) return "integer";
  return "number";
}

bool TypeSatisfies(const std::string& type, const std::string& wanted) {
  return type == wanted || (type == "integer" && wanted == "number");
}

bool SchemasDisjoint(const json& root, const json& a_in, const json& b_in) {
  const json* a = Resolve(root, a_in);
  const json* b = Resolve(root, b_in);
  if (a == nullptr || b == nullptr || !a->is_object() || !b->is_object()) return false;
  std::set<std::string> ta, tb;
  if (Types(*a, &ta) && Types(*b, &tb) && !TypesOverlap(ta, tb)) return true;
  std::set<std::string> la, lb;
  if (Literals(*a, &la) && Literals(*b, &lb)) {
    for (const std::string& v : la)
      if (lb.contains(v)) return false;
    return true;
  }
  // Objects told apart by a property both require, whose allowed const / enum values differ.
  if (a->contains("properties") && b->contains("properties") && (*a)["properties"].is_object() &&
      (*b)["properties"].is_object()) {
    for (const auto& [name, pa] : (*a)["properties"].items()) {
      if (!(*b)["properties"].contains(name) || !Required(*a, name) || !Required(*b, name)) continue;
      const json* sa = Resolve(root, pa);
      const json* sb = Resolve(root, (*b)["properties"][name]);
      std::set<std::string> va, vb;
      if (sa == nullptr || sb == nullptr || !sa->is_object() || !sb->is_object() || !Literals(*sa, &va) ||
          !Literals(*sb, &vb))
        continue;
      bool shared = false;
      for (const std::string& v : va) shared = shared || vb.contains(v);
      if (!shared) return true;
    }
  }
  return false;
}

}  // namespace glm::structured
