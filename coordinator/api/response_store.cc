#include "coordinator/api/response_store.h"

namespace glm::api {

void ResponseStore::SetCapacity(int64_t bytes) {
  absl::MutexLock lock(&mu_);
  capacity_ = bytes < 0 ? 0 : bytes;
  EvictLocked();
}

int64_t ResponseStore::SlotBytes(const Slot& s) {
  constexpr int64_t kOverhead = 256;
  return static_cast<int64_t>(2 * s.id.size() + s.response.size() + s.conversation.size() + s.holder.size()) + kOverhead;
}

void ResponseStore::Put(const std::string& id, Entry entry) {
  constexpr auto kReplace = nlohmann::json::error_handler_t::replace;  // never throws on bad UTF-8
  Slot slot{id, entry.response.dump(-1, ' ', false, kReplace), entry.conversation.dump(-1, ' ', false, kReplace),
            std::move(entry.holder), 0};
  slot.response.shrink_to_fit();
  slot.conversation.shrink_to_fit();
  slot.bytes = SlotBytes(slot);
  const int64_t bytes = slot.bytes;
  absl::MutexLock lock(&mu_);
  if (auto it = index_.find(id); it != index_.end()) {
    stats_.bytes -= it->second->bytes;
    lru_.erase(it->second);
    index_.erase(it);
  }
  if (bytes > capacity_) return;
  lru_.push_front(std::move(slot));
  index_[id] = lru_.begin();
  stats_.bytes += bytes;
  EvictLocked();
}

std::optional<ResponseStore::Entry> ResponseStore::Get(const std::string& id, const std::string& holder) {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(id);
  if (it == index_.end() || it->second->holder != holder) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second);
  // Put wrote the text: it parses back (a failure reads as absent, never as a throw).
  Entry entry{nlohmann::json::parse(it->second->response, nullptr, false),
              nlohmann::json::parse(it->second->conversation, nullptr, false), it->second->holder};
  if (entry.response.is_discarded() || entry.conversation.is_discarded()) return std::nullopt;
  return entry;
}

bool ResponseStore::Delete(const std::string& id, const std::string& holder) {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(id);
  if (it == index_.end() || it->second->holder != holder) return false;
  stats_.bytes -= it->second->bytes;
  lru_.erase(it->second);
  index_.erase(it);
  return true;
}

ResponseStore::Stats ResponseStore::stats() const {
  absl::MutexLock lock(&mu_);
  Stats s = stats_;
  s.entries = static_cast<int64_t>(lru_.size());
  return s;
}

void ResponseStore::EvictLocked() {
  while (stats_.bytes > capacity_ && !lru_.empty()) {
    stats_.bytes -= lru_.back().bytes;
    index_.erase(lru_.back().id);
    lru_.pop_back();
    ++stats_.evicted;
  }
}

}  // namespace glm::api
