#include "coordinator/api/api_keys.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace glm::api {

ApiKeys::ApiKeys(std::vector<std::string> keys) {
  for (std::string& k : keys)
    if (!k.empty()) keys_.push_back(std::move(k));
}

int ApiKeys::MatchIndex(absl::string_view candidate) const {
  int found = -1;
  for (size_t k = 0; k < keys_.size(); ++k) {
    const std::string& key = keys_[k];
    // Every byte of every key is looked at whatever the candidate holds: no early exit a client
    // could time to learn a prefix.
    unsigned diff = key.size() == candidate.size() ? 0u : 1u;
    for (size_t i = 0; i < key.size(); ++i)
      diff |= static_cast<unsigned char>(key[i]) ^ static_cast<unsigned char>(i < candidate.size() ? candidate[i] : 0);
    if (diff == 0 && found < 0) found = static_cast<int>(k);
  }
  return found;
}

int ApiKeys::PresentedIndex(absl::string_view authorization, absl::string_view x_api_key) const {
  absl::string_view auth = absl::StripAsciiWhitespace(authorization);
  int index = -1;
  if (auth.size() > 7 && absl::StartsWithIgnoreCase(auth, "bearer "))
    index = MatchIndex(absl::StripLeadingAsciiWhitespace(auth.substr(7)));
  if (index < 0 && !x_api_key.empty()) index = MatchIndex(absl::StripAsciiWhitespace(x_api_key));
  return index;
}

bool ApiKeys::Accepts(absl::string_view authorization, absl::string_view x_api_key) const {
  return !enabled() || PresentedIndex(authorization, x_api_key) >= 0;
}

std::string ApiKeys::Holder(absl::string_view authorization, absl::string_view x_api_key) const {
  if (!enabled()) return "";
  const int index = PresentedIndex(authorization, x_api_key);
  return index < 0 ? "" : absl::StrCat("key", index);
}

}  // namespace glm::api
