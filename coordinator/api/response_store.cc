#include "coordinator/api/response_store.h"

namespace glm::api {

void ResponseStore::SetCapacity(int64_t bytes) {
  absl::MutexLock lock(&mu_);
  capacity_ = bytes < 0 ? 0 : bytes;
  EvictLocked();
}

void ResponseStore::Put(const std::string& id, Entry entry) {
  // The JSON text is what the entry costs, near enough: nlohmann's nodes take about as much again.
  const int64_t bytes = static_cast<int64_t>(id.size() + entry.response.dump().size() +
                                             entry.conversation.dump().size());
  absl::MutexLock lock(&mu_);
  if (auto it = index_.find(id); it != index_.end()) {
    stats_.bytes -= it->second->bytes;
    lru_.erase(it->second);
    index_.erase(it);
  }
  if (bytes > capacity_) return;
  lru_.push_front({id, std::move(entry), bytes});
  index_[id] = lru_.begin();
  stats_.bytes += bytes;
  EvictLocked();
}

std::optional<ResponseStore::Entry> ResponseStore::Get(const std::string& id, const std::string& holder) {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(id);
  if (it == index_.end() || it->second->entry.holder != holder) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->entry;
}

bool ResponseStore::Delete(const std::string& id, const std::string& holder) {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(id);
  if (it == index_.end() || it->second->entry.holder != holder) return false;
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
