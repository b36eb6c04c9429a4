#include "coordinator/structured/token_vocabulary.h"

#include <algorithm>
#include <utility>

namespace glm::structured {

TokenVocabulary::TokenVocabulary(std::vector<std::string> bytes) : bytes_(std::move(bytes)) {
  for (size_t id = 0; id < bytes_.size(); ++id)
    if (!bytes_[id].empty()) sorted_.push_back(static_cast<int32_t>(id));
  std::sort(sorted_.begin(), sorted_.end(), [this](int32_t a, int32_t b) {
    return bytes_[a] != bytes_[b] ? bytes_[a] < bytes_[b] : a < b;
  });
  shared_prefix_.resize(sorted_.size(), 0);
  for (size_t i = 1; i < sorted_.size(); ++i) {
    const std::string& p = bytes_[sorted_[i - 1]];
    const std::string& q = bytes_[sorted_[i]];
    size_t n = 0;
    while (n < p.size() && n < q.size() && p[n] == q[n]) ++n;
    shared_prefix_[i] = static_cast<int32_t>(n);
  }
}

std::string TokenVocabulary::Spelling(std::string_view bytes, bool special, std::string_view special_text, char mark) {
  if (special) return special_text.empty() ? std::string() : std::string(1, mark) + std::string(special_text);
  if (bytes.find(mark) != std::string_view::npos) return std::string();
  return std::string(bytes);
}

}  // namespace glm::structured
