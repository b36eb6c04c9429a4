// Stored Responses API replies ("store": true, the API's default), so that a client can continue
// a conversation with `previous_response_id` instead of resending it, and read a reply back with
// GET /v1/responses/{id} (DELETE removes it).
//
// Each entry holds the response object as it was sent and the conversation it ends: the chat
// messages of every turn so far (the previous responses' included, `instructions` excluded: the
// API does not carry them over) plus the reply as one assistant message. A continued request is
// that conversation plus its new input, rendered by the chat template as if sent whole, so the
// prefix cache serves the shared part.
//
// With API keys configured, an entry belongs to the key whose request made it: other keys can
// neither read, continue nor delete it. Bounded by bytes: the entries' JSON text, as they are
// held, and ~256 bytes each; the least recently used entries go first. Memory only: a restarted
// coordinator has forgotten them (a continuation then gets a clear 400).
#ifndef GLM_COORDINATOR_API_RESPONSE_STORE_H_
#define GLM_COORDINATOR_API_RESPONSE_STORE_H_

#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"

namespace glm::api {

class ResponseStore {
 public:
  static constexpr int64_t kDefaultBytes = int64_t{256} << 20;

  struct Entry {
    nlohmann::json response;      // the Responses API object, as sent
    nlohmann::json conversation;  // chat messages (role, content, reasoning_content, tool_calls, ...)
    std::string holder;           // the API key that made it (ApiKeys::Holder; "" without keys)
  };
  struct Stats {
    int64_t entries = 0;
    int64_t bytes = 0;
    int64_t evicted = 0;
  };

  explicit ResponseStore(int64_t capacity_bytes = kDefaultBytes) : capacity_(capacity_bytes) {}

  // 0 keeps nothing (every Put is dropped). Shrinking evicts at once.
  void SetCapacity(int64_t bytes);
  // Stores (or replaces) `id`. An entry larger than the whole capacity is not kept.
  void Put(const std::string& id, Entry entry);
  // A copy of the entry, when `holder` made it (another key's entries read as absent, so ids
  // reveal nothing); marks it recently used.
  std::optional<Entry> Get(const std::string& id, const std::string& holder);
  bool Delete(const std::string& id, const std::string& holder);
  Stats stats() const;

 private:
  // An entry as JSON text: parsed nlohmann trees took ~6x their text in memory (5.8 KB a short
  // reply against 0.9 KB of text), so a store of trees held ~6x --responses-store-mib. Text costs
  // what it counts; a Get parses it again (microseconds against a reply's generation).
  struct Slot {
    std::string id;
    std::string response;      // Entry::response, dumped
    std::string conversation;  // Entry::conversation, dumped
    std::string holder;
    int64_t bytes = 0;
  };
  // What a slot costs: its strings and ~the list node, index entry and string headers.
  static int64_t SlotBytes(const Slot& s);
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  int64_t capacity_ ABSL_GUARDED_BY(mu_);
  std::list<Slot> lru_ ABSL_GUARDED_BY(mu_);  // most recent first
  absl::flat_hash_map<std::string, std::list<Slot>::iterator> index_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_RESPONSE_STORE_H_
