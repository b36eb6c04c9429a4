// The API keys clients must present (--api-key, or GLM_API_KEY): "Authorization: Bearer KEY" (the
// OpenAI SDKs and gRPC metadata "authorization") or "x-api-key: KEY" (the Anthropic SDKs). With no
// key configured every request is let through, as before. Health, metrics and CORS preflights
// never need one (probes and scrapers carry no key).
#ifndef GLM_COORDINATOR_API_API_KEYS_H_
#define GLM_COORDINATOR_API_API_KEYS_H_

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

namespace glm::api {

class ApiKeys {
 public:
  ApiKeys() = default;
  // Empty keys are dropped; no key left means no authentication.
  explicit ApiKeys(std::vector<std::string> keys);

  bool enabled() const { return !keys_.empty(); }
  // Whether the request's Authorization value ("Bearer KEY", scheme case-insensitive) or x-api-key
  // value carries one of the keys. Compared in time independent of where a wrong key differs.
  bool Accepts(absl::string_view authorization, absl::string_view x_api_key) const;
  // Which configured key the request presents, as "key<index>" ("" with no keys configured or
  // none presented): whose stored responses it may read (response_store.h).
  std::string Holder(absl::string_view authorization, absl::string_view x_api_key) const;

 private:
  // Index of the key equal to `candidate`, or -1.
  int MatchIndex(absl::string_view candidate) const;
  // Index of the key the Authorization ("Bearer KEY") or x-api-key value carries, or -1.
  int PresentedIndex(absl::string_view authorization, absl::string_view x_api_key) const;
  std::vector<std::string> keys_;
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_API_KEYS_H_
