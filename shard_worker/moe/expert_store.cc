#include "shard_worker/moe/expert_store.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace glm::moe {

namespace {
double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

ExpertStore::Handle& ExpertStore::Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    Release();
    store_ = o.store_;
    key_ = o.key_;
    weights_ = o.weights_;
    o.store_ = nullptr;
  }
  return *this;
}

void ExpertStore::Handle::Release() {
  if (store_ != nullptr) store_->ReleaseKey(key_);
  store_ = nullptr;
}

ExpertStore::ExpertStore(std::vector<const model::MoeWeights*> layers)
    : streaming_(false), resident_(std::move(layers)) {}

ExpertStore::ExpertStore(Loader loader, std::vector<int64_t> moe_layers, int64_t capacity_bytes, int64_t expert_bytes,
                         int io_threads)
    : streaming_(true),
      loader_(std::move(loader)),
      moe_layers_(std::move(moe_layers)),
      capacity_bytes_(capacity_bytes),
      expert_bytes_(expert_bytes) {
  std::sort(moe_layers_.begin(), moe_layers_.end());
  for (int i = 0; i < io_threads; ++i) io_threads_.emplace_back([this] { IoLoop(); });
}

ExpertStore::~ExpertStore() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  queue_cv_.notify_all();
  for (auto& t : io_threads_) t.join();
}

int64_t ExpertStore::NextLayer(int64_t layer) const {
  if (!streaming_) {
    for (int64_t l = layer + 1; l < static_cast<int64_t>(resident_.size()); ++l)
      if (resident_[l] != nullptr) return l;
    return -1;
  }
  auto it = std::upper_bound(moe_layers_.begin(), moe_layers_.end(), layer);
  return it == moe_layers_.end() ? -1 : *it;
}

absl::StatusOr<ExpertStore::Handle> ExpertStore::Acquire(int64_t layer, int64_t expert) {
  Handle h;
  if (!streaming_) {
    const model::MoeWeights* w =
        layer >= 0 && layer < static_cast<int64_t>(resident_.size()) ? resident_[layer] : nullptr;
    if (w == nullptr || expert < 0 || expert >= static_cast<int64_t>(w->experts.size()) || !w->expert_loaded[expert])
      return absl::NotFoundError(absl::StrCat("expert ", expert, " of layer ", layer, " is not held by this rank"));
    h.weights_ = &w->experts[expert];
    return h;
  }
  if (!std::binary_search(moe_layers_.begin(), moe_layers_.end(), layer) || expert < 0 || expert >= kKeyStride)
    return absl::NotFoundError(absl::StrCat("layer ", layer, " has no streamed experts"));
  const int64_t key = Key(layer, expert);
  const auto t0 = Clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  bool counted = false, waited = false;
  for (;;) {
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      Entry& e = *it->second;
      if (!counted) {
        counted = true;
        if (e.demand) ++stats_.misses;
        else ++stats_.hits;
        e.demand = false;
        if (e.speculative) ++stats_.prefetches_used;
        e.speculative = false;
      }
      if (!e.ready) {  // an I/O thread is reading it: wait (it may also fail and vanish)
        waited = true;
        loaded_cv_.wait(lock);
        continue;
      }
      ++e.pins;
      lru_.splice(lru_.begin(), lru_, e.lru);
      if (waited) stats_.wait_seconds += Since(t0);
      h.store_ = this;
      h.key_ = key;
      h.weights_ = &e.data.weights;
      return h;
    }
    // Not resident: read it on this thread, taking it out of the queue if it waits there.
    if (!counted) {
      counted = true;
      ++stats_.misses;
    }
    queued_.erase(key);
    auto owned = std::make_unique<Entry>();
    Entry* entry = owned.get();
    entry->pins = 1;
    entries_.emplace(key, std::move(owned));
    absl::Status s = LoadLocked(lock, key, entry);
    stats_.wait_seconds += Since(t0);
    if (!s.ok()) return s;
    h.store_ = this;
    h.key_ = key;
    h.weights_ = &entry->data.weights;
    return h;
  }
}

absl::Status ExpertStore::LoadLocked(std::unique_lock<std::mutex>& lock, int64_t key, Entry* entry) {
  if (in_flight_++ == 0) busy_since_ = Clock::now();
  lock.unlock();
  absl::StatusOr<model::LoadedExpert> loaded = loader_(key / kKeyStride, key % kKeyStride);
  lock.lock();
  if (--in_flight_ == 0) stats_.read_seconds += Since(busy_since_);
  if (!loaded.ok()) {
    entries_.erase(key);  // waiters retry (and report the error themselves)
    loaded_cv_.notify_all();
    return loaded.status();
  }
  ++stats_.loads;
  stats_.direct_loads += loaded->read_direct;
  stats_.bytes_read += loaded->file_bytes;
  entry->data = *std::move(loaded);
  entry->ready = true;
  lru_.push_front(key);
  entry->lru = lru_.begin();
  expert_bytes_ = entry->data.memory_bytes();
  resident_bytes_ += expert_bytes_;
  EvictLocked();
  loaded_cv_.notify_all();
  return absl::OkStatus();
}

void ExpertStore::EvictLocked() {
  auto it = lru_.end();
  while (resident_bytes_ > capacity_bytes_ && it != lru_.begin()) {
    --it;
    auto e = entries_.find(*it);
    if (e->second->pins > 0 || e->second->demand) continue;  // in use, or wanted by this layer
    resident_bytes_ -= e->second->data.memory_bytes();
    ++stats_.evictions;
    entries_.erase(e);
    it = lru_.erase(it);
  }
}

void ExpertStore::ReleaseKey(int64_t key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  if (--it->second->pins == 0 && resident_bytes_ > capacity_bytes_) EvictLocked();
}

int64_t ExpertStore::speculative_limit() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (expert_bytes_ <= 0) return 1;
  return std::max<int64_t>(1, capacity_bytes_ / expert_bytes_ / 2);
}

std::vector<int64_t> ExpertStore::Prefetch(int64_t layer, const std::vector<int64_t>& experts, bool urgent) {
  std::vector<int64_t> pending;
  if (!streaming_ || !std::binary_search(moe_layers_.begin(), moe_layers_.end(), layer)) return pending;
  const int64_t limit = urgent ? std::numeric_limits<int64_t>::max() : speculative_limit();
  std::lock_guard<std::mutex> lock(mu_);
  if (!urgent) {
    // Speculative requests still queued predicted a layer the forward pass has reached: drop them.
    for (auto it = queued_.begin(); it != queued_.end();) it = it->second ? std::next(it) : queued_.erase(it);
    queue_.erase(std::remove_if(queue_.begin(), queue_.end(), [&](const Request& r) { return !queued_.count(r.key); }),
                 queue_.end());
  }
  std::vector<Request> front;  // urgent requests, in the caller's order, ahead of everything queued
  int64_t queued_now = 0;
  for (int64_t e : experts) {
    if (e < 0 || e >= kKeyStride) continue;
    const int64_t key = Key(layer, e);
    if (auto it = entries_.find(key); it != entries_.end()) {
      if (!it->second->ready) pending.push_back(e);  // in flight already
      continue;
    }
    if (auto q = queued_.find(key); q != queued_.end()) {
      if (urgent && !q->second) {
        q->second = true;
        front.push_back({key, true});
      }
      pending.push_back(e);
      continue;
    }
    if (!urgent && queued_now >= limit) break;
    ++queued_now;
    queued_[key] = urgent;
    if (urgent) front.push_back({key, true});
    else queue_.push_back({key, false});
    pending.push_back(e);
  }
  queue_.insert(queue_.begin(), front.begin(), front.end());
  if (!pending.empty()) queue_cv_.notify_all();
  return pending;
}

void ExpertStore::IoLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    queue_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    const Request r = queue_.front();
    queue_.pop_front();
    auto q = queued_.find(r.key);
    if (q == queued_.end()) continue;  // taken by Acquire, dropped, or a duplicate
    const bool urgent = q->second;
    queued_.erase(q);
    if (entries_.count(r.key)) continue;
    auto owned = std::make_unique<Entry>();
    Entry* entry = owned.get();
    entry->demand = urgent;
    entry->speculative = !urgent;
    if (!urgent) ++stats_.prefetches;
    entries_.emplace(r.key, std::move(owned));
    ++busy_io_threads_;
    (void)LoadLocked(lock, r.key, entry);  // a failed read is reported by the Acquire that needs it
    --busy_io_threads_;
    loaded_cv_.notify_all();
  }
}

bool ExpertStore::Resident(int64_t layer, int64_t expert) const {
  if (!streaming_) {
    const model::MoeWeights* w =
        layer >= 0 && layer < static_cast<int64_t>(resident_.size()) ? resident_[layer] : nullptr;
    return w != nullptr && expert >= 0 && expert < static_cast<int64_t>(w->expert_loaded.size()) &&
           w->expert_loaded[expert];
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(Key(layer, expert));
  return it != entries_.end() && it->second->ready;
}

std::vector<std::pair<int64_t, int64_t>> ExpertStore::LruOrder() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t key : lru_) out.emplace_back(key / kKeyStride, key % kKeyStride);
  return out;
}

ExpertStoreStats ExpertStore::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  ExpertStoreStats s = stats_;
  s.resident_bytes = resident_bytes_;
  s.capacity_bytes = capacity_bytes_;
  if (in_flight_ > 0) s.read_seconds += Since(busy_since_);
  return s;
}

void ExpertStore::ResetStats() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_ = ExpertStoreStats();
  if (in_flight_ > 0) busy_since_ = Clock::now();
}

void ExpertStore::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  loaded_cv_.wait(lock, [&] { return queued_.empty() && busy_io_threads_ == 0; });
}

}  // namespace glm::moe
