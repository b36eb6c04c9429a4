#include "shard_worker/runtime/ngram_index.h"

#include <algorithm>
#include <cassert>

namespace glm::runtime {
namespace {

// A hash of the n-gram t[0..len): the tokens mixed in one at a time (splitmix64's finaliser).
uint64_t NgramHash(const int32_t* t, int len) {
  uint64_t h = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(len);
  for (int i = 0; i < len; ++i) {
    h ^= static_cast<uint32_t>(t[i]);
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
  }
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 29);
}

// Lexicographic order of two n-grams of `len` tokens.
int CompareNgrams(const int32_t* a, const int32_t* b, int len) {
  for (int i = 0; i < len; ++i)
    if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}

}  // namespace

void NgramIndex::Insert(const std::vector<int32_t>& tokens, int len, int64_t start) {
  Level& level = levels_[len - 1];
  if ((level.distinct + 1) * 2 > static_cast<int64_t>(level.slots.size())) Grow(tokens, len);
  const int32_t* gram = tokens.data() + start;
  const size_t mask = level.slots.size() - 1;
  for (size_t i = NgramHash(gram, len) & mask;; i = (i + 1) & mask) {
    const int32_t latest = level.slots[i];
    if (latest < 0) {
      level.previous.push_back(-1);
      level.slots[i] = static_cast<int32_t>(start);
      ++level.distinct;
      return;
    }
    if (CompareNgrams(tokens.data() + latest, gram, len) == 0) {
      level.previous.push_back(latest);
      level.slots[i] = static_cast<int32_t>(start);
      return;
    }
  }
}

// Doubles the table (at least 64 slots) and re-places every n-gram's latest start.
void NgramIndex::Grow(const std::vector<int32_t>& tokens, int len) {
  Level& level = levels_[len - 1];
  std::vector<int32_t> old = std::move(level.slots);
  level.slots.assign(std::max<size_t>(64, old.size() * 2), -1);
  const size_t mask = level.slots.size() - 1;
  for (int32_t latest : old) {
    if (latest < 0) continue;
    size_t i = NgramHash(tokens.data() + latest, len) & mask;
    while (level.slots[i] >= 0) i = (i + 1) & mask;
    level.slots[i] = latest;
  }
}

void NgramIndex::Update(const std::vector<int32_t>& tokens) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n < seen_) *this = NgramIndex();
  for (int len = 1; len <= kMaxIndexedNgram; ++len)
    for (int64_t start = static_cast<int64_t>(levels_[len - 1].previous.size()); start + len <= n; ++start)
      Insert(tokens, len, start);
  seen_ = n;
}

std::vector<int32_t> NgramIndex::Draft(const std::vector<int32_t>& tokens, int k, int max_ngram, int min_ngram) {
  assert(max_ngram <= kMaxIndexedNgram);
  Update(tokens);
  const int64_t n = static_cast<int64_t>(tokens.size());
  for (int len = std::min(max_ngram, kMaxIndexedNgram); len >= std::max(1, min_ngram); --len) {
    if (n <= len) continue;
    // The suffix is the newest n-gram of this length; its previous occurrence ends before the
    // last token, so at least one token follows it.
    const int32_t earlier = levels_[len - 1].previous[n - len];
    if (earlier < 0) continue;
    const int64_t begin = earlier + len, end = std::min(n, begin + std::max(0, k));
    if (begin < end) return std::vector<int32_t>(tokens.begin() + begin, tokens.begin() + end);
  }
  return {};
}

PredictionIndex::PredictionIndex(const std::vector<int32_t>& prediction) {
  const int64_t m = static_cast<int64_t>(prediction.size());
  for (int len = 1; len <= kMaxIndexedNgram; ++len) {
    std::vector<int32_t>& starts = starts_[len - 1];
    for (int64_t s = 0; s + len <= m - 1; ++s) starts.push_back(static_cast<int32_t>(s));
    std::sort(starts.begin(), starts.end(), [&](int32_t a, int32_t b) {
      const int c = CompareNgrams(prediction.data() + a, prediction.data() + b, len);
      return c != 0 ? c < 0 : a < b;
    });
  }
}

std::vector<int32_t> PredictionIndex::Draft(const std::vector<int32_t>& prediction, const std::vector<int32_t>& tokens,
                                            int64_t anchor, int k, int64_t* from, int max_ngram, int min_ngram) const {
  assert(max_ngram <= kMaxIndexedNgram);
  const int64_t m = static_cast<int64_t>(prediction.size()), n = static_cast<int64_t>(tokens.size());
  if (k <= 0 || m == 0) return {};
  auto continuation = [&](int64_t start) {
    if (from != nullptr) *from = start;
    return std::vector<int32_t>(prediction.begin() + start, prediction.begin() + std::min(m, start + k));
  };
  if (anchor <= 0) return continuation(0);
  for (int len = std::min(max_ngram, kMaxIndexedNgram); len >= std::max(1, min_ngram); --len) {
    if (n < len || m - 1 < len) continue;
    const int32_t* suffix = tokens.data() + n - len;
    const std::vector<int32_t>& starts = starts_[len - 1];
    // The suffix's occurrences: a run of `starts`, ascending by position.
    auto first = std::lower_bound(starts.begin(), starts.end(), suffix, [&](int32_t s, const int32_t* key) {
      return CompareNgrams(prediction.data() + s, key, len) < 0;
    });
    auto last = std::upper_bound(first, starts.end(), suffix, [&](const int32_t* key, int32_t s) {
      return CompareNgrams(key, prediction.data() + s, len) < 0;
    });
    if (first == last) continue;
    // The continuation (start + len) nearest the anchor (clamped as the scan clamps it), the
    // earlier of two as near.
    const int64_t a = std::clamp<int64_t>(anchor, len, m - 1);
    auto right = std::lower_bound(first, last, a - len, [](int32_t s, int64_t v) { return s < v; });
    int64_t best;
    if (right == first) {
      best = *right + len;
    } else if (right == last) {
      best = *(right - 1) + len;
    } else {
      const int64_t after = *right + len, before = *(right - 1) + len;
      best = a - before <= after - a ? before : after;
    }
    return continuation(best);
  }
  return {};
}

}  // namespace glm::runtime
