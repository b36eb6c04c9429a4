#include "shard_worker/model/json_duplicate_keys.h"

#include <new>
#include <set>

namespace glm::model {

nlohmann::json ParseJsonFindingDuplicateKeys(const std::string& text, std::vector<DuplicateJsonKey>* duplicates) {
  using nlohmann::json;
  duplicates->clear();
  // The keys seen so far in each object still open, innermost last (arrays push nothing: a key
  // always belongs to the innermost open object).
  std::vector<std::set<std::string>> open;
  std::string outer;  // the latest top-level key
  json::parser_callback_t callback = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open.empty()) open.pop_back();
        break;
      case json::parse_event_t::key: {
        if (!parsed.is_string() || open.empty()) break;
        const std::string& key = parsed.get_ref<const std::string&>();
        if (depth == 1) outer = key;
        if (!open.back().insert(key).second)
          duplicates->push_back(DuplicateJsonKey{key, depth, depth == 1 ? std::string() : outer});
        break;
      }
      default:
        break;
    }
    return true;  // keep everything: the caller decides what a duplicate means
  };
  try {
    return json::parse(text, callback, /*allow_exceptions=*/false);
  } catch (const std::bad_alloc&) {  // a huge document: refused as unreadable, not a crash
    return json(json::value_t::discarded);
  }
}

}  // namespace glm::model
