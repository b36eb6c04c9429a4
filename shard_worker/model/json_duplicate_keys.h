// JSON parsing that notices a key written twice in one object. nlohmann (like Python's json)
// keeps the last of duplicate keys without a word; in a safetensors header or an index's
// weight_map that silently picks one of two tensor entries, so those parsers reject them.
#ifndef GLM_SHARD_WORKER_MODEL_JSON_DUPLICATE_KEYS_H_
#define GLM_SHARD_WORKER_MODEL_JSON_DUPLICATE_KEYS_H_

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace glm::model {

struct DuplicateJsonKey {
  std::string key;        // the key written twice
  int depth = 0;          // 1: a key of the top-level object; 2: of an object inside it; ...
  std::string outer_key;  // the top-level key whose value holds it (empty when depth is 1)
};

// Parses like nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false) (discarded on a
// syntax error, never throws; nesting depth costs heap, not stack) and fills *duplicates with
// every repeat of a key already seen in the same object, in text order (the parsed value keeps
// the last of them).
nlohmann::json ParseJsonFindingDuplicateKeys(const std::string& text, std::vector<DuplicateJsonKey>* duplicates);

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_JSON_DUPLICATE_KEYS_H_
