#include "coordinator/structured/token_vocabulary.h"

#include <algorithm>
#include <cstdint>
#include <utility>

namespace glm::structured {

namespace {

// Code points of `b` when it is whole UTF-8 characters with no '"', '\\' or control character
// (what a JSON string takes as is) and no '<' (which could begin a tool call's closing tag, which
// the text of a forced call may not spell: JsonMatcher's tag guard), else 0. The ranges are the matcher's (no overlongs,
// surrogates or code points past U+10FFFF).
int32_t StringSafeCodePoints(const std::string& b) {
  int32_t n = 0;
  for (size_t i = 0; i < b.size();) {
    const uint8_t c = static_cast<uint8_t>(b[i]);
    size_t len = 0;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
      if (c < 0x20 || c == '"' || c == '\\' || c == '<') return 0;
      len = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return 0;
    }
    if (i + len > b.size()) return 0;
    for (size_t k = 1; k < len; ++k) {
      const uint8_t d = static_cast<uint8_t>(b[i + k]);
      if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xBF)) return 0;
    }
    i += len;
    ++n;
  }
  return n;
}

// Sorts `ids` by their bytes and gives each the prefix it shares with the one before.
void SortByBytes(const std::vector<std::string>& bytes, std::vector<int32_t>* ids, std::vector<int32_t>* shared) {
  std::sort(ids->begin(), ids->end(), [&bytes](int32_t a, int32_t b) {
    return bytes[a] != bytes[b] ? bytes[a] < bytes[b] : a < b;
  });
  shared->assign(ids->size(), 0);
  for (size_t i = 1; i < ids->size(); ++i) {
    const std::string& p = bytes[(*ids)[i - 1]];
    const std::string& q = bytes[(*ids)[i]];
    size_t n = 0;
    while (n < p.size() && n < q.size() && p[n] == q[n]) ++n;
    (*shared)[i] = static_cast<int32_t>(n);
  }
}

}  // namespace

TokenVocabulary::TokenVocabulary(std::vector<std::string> bytes) : bytes_(std::move(bytes)) {
  code_points_.assign(bytes_.size(), 0);
  for (size_t id = 0; id < bytes_.size(); ++id) {
    if (bytes_[id].empty()) continue;
    sorted_.push_back(static_cast<int32_t>(id));
    code_points_[id] = StringSafeCodePoints(bytes_[id]);
    (code_points_[id] > 0 ? safe_ : unsafe_sorted_).push_back(static_cast<int32_t>(id));
  }
  SortByBytes(bytes_, &sorted_, &shared_prefix_);
  SortByBytes(bytes_, &unsafe_sorted_, &unsafe_shared_prefix_);
}

std::string TokenVocabulary::Spelling(std::string_view bytes, bool special, std::string_view special_text, char mark) {
  if (special) return special_text.empty() ? std::string() : std::string(1, mark) + std::string(special_text);
  if (bytes.find(mark) != std::string_view::npos) return std::string();
  return std::string(bytes);
}

}  // namespace glm::structured
