// How deeply a JSON value nests, counted without recursion. nlohmann's parser and destructor
// are iterative, but copying, dump() and conversions recurse once per level, so client JSON
// (request bodies, tool-call arguments, chat template inputs) is measured before any of that.
#ifndef GLM_COORDINATOR_TOKENIZER_JSON_DEPTH_H_
#define GLM_COORDINATOR_TOKENIZER_JSON_DEPTH_H_

#include <utility>
#include <vector>

namespace glm::tokenizer {

// Nesting of arrays/objects in `j` (`{}` is 1, `{"a": [1]}` is 2, a scalar 0), for nlohmann::json
// and ordered_json alike; stops counting past `limit` (returns limit + 1 then).
template <typename Json>
int JsonDepth(const Json& j, int limit) {
  // An explicit stack of (value, its depth): the input may be a million levels deep.
  std::vector<std::pair<const Json*, int>> stack = {{&j, j.is_structured() ? 1 : 0}};
  int deepest = 0;
  while (!stack.empty()) {
    const auto [v, depth] = stack.back();
    stack.pop_back();
    if (depth > deepest) deepest = depth;
    if (deepest > limit) return limit + 1;
    if (!v->is_structured()) continue;
    for (const auto& child : *v)
      if (child.is_structured()) stack.emplace_back(&child, depth + 1);
  }
  return deepest;
}

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_JSON_DEPTH_H_
