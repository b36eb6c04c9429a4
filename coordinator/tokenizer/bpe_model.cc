#include "coordinator/tokenizer/bpe_model.h"

#include <algorithm>
#include <queue>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/tokenizer/utf8.h"

namespace glm::tokenizer {

using nlohmann::json;

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const json& model, size_t cache_words) {
  if (!model.is_object()) return absl::InvalidArgumentError("model: expected an object");
  // Every json access below is type-checked or inside the try block: a json exception escaping
  // here would terminate the coordinator at startup.
  std::string type = "BPE";
  if (model.contains("type")) {
    if (!model["type"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.type must be a string, got ", model["type"].type_name()));
    }
    type = model["type"].get<std::string>();
  }
  if (type != "BPE") {
    return absl::UnimplementedError(absl::StrCat("unsupported model type '", type,
                                                 "' (only BPE is supported)"));
  }
  auto bpe = std::unique_ptr<BpeModel>(new BpeModel());
  // Two generations per shard, each half the shard's share of the bound (at least one word).
  bpe->generation_words_ = cache_words == 0 ? 0 : std::max<size_t>(1, cache_words / (2 * kCacheShards));
  try {
    if (!model.contains("vocab")) return absl::InvalidArgumentError("model: no 'vocab'");
    const json& vocab = model["vocab"];
    if (!vocab.is_object()) return absl::InvalidArgumentError("model.vocab: expected an object");
    // Validate every id before AddToken sizes the id tables by the largest one.
    int64_t max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      if (!it.value().is_number_integer()) {
        return absl::InvalidArgumentError(absl::StrCat("model.vocab['", it.key(),
                                                       "']: id must be an integer, got ",
                                                       it.value().type_name()));
      }
      const int64_t id = it.value().get<int64_t>();
      if (id < 0 || id > kMaxTokenId) {
        return absl::InvalidArgumentError(
            absl::StrCat("model.vocab['", it.key(), "']: bad id ", id));
      }
      max_id = std::max(max_id, id);
    }
    if (!IdTableFits(max_id, vocab.size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.vocab: largest id ", max_id, " is far beyond the ", vocab.size(),
          " entries (ids must stay below 2 x entries + ", kIdSlack, ")"));
    }
    bpe->vocab_.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      bpe->AddToken(it.key(), static_cast<int32_t>(it.value().get<int64_t>()));
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      auto unk = bpe->TokenToId(model["unk_token"].get<std::string>());
      if (!unk) return absl::InvalidArgumentError("model.unk_token is not in the vocabulary");
      bpe->unk_id_ = *unk;
    }
    bpe->fuse_unk_ = model.value("fuse_unk", false);
    bpe->byte_fallback_ = model.value("byte_fallback", false);
    bpe->ignore_merges_ = model.value("ignore_merges", false);
    if (model.contains("continuing_subword_prefix") &&
        model["continuing_subword_prefix"].is_string()) {
      bpe->continuing_subword_prefix_ = model["continuing_subword_prefix"].get<std::string>();
    }
    if (model.contains("end_of_word_suffix") && model["end_of_word_suffix"].is_string()) {
      bpe->end_of_word_suffix_ = model["end_of_word_suffix"].get<std::string>();
    }
    const json& merges = model.value("merges", json::array());
    if (!merges.is_array()) return absl::InvalidArgumentError("model.merges: expected an array");
    bpe->merges_.reserve(merges.size());
    const size_t prefix_len = bpe->continuing_subword_prefix_.size();
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const json& m = merges[rank];
      std::string a, b;
      if (m.is_string()) {
        // Legacy format: "a b" (tokens cannot contain a space in this format).
        const std::string& s = m.get_ref<const std::string&>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
          return absl::InvalidArgumentError(absl::StrCat("model.merges[", rank, "]: '", s,
                                                         "' is not two space-separated tokens"));
        }
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        return absl::InvalidArgumentError(absl::StrCat("model.merges[", rank, "]: bad entry"));
      }
      const auto ia = bpe->TokenToId(a), ib = bpe->TokenToId(b);
      std::string merged = a + (prefix_len > 0 && b.size() >= prefix_len ? b.substr(prefix_len) : b);
      const auto im = bpe->TokenToId(merged);
      if (!ia || !ib || !im) {
        return absl::InvalidArgumentError(
            absl::StrCat("model.merges[", rank, "]: token not in vocabulary ('", a, "' + '", b,
                         "')"));
      }
      bpe->merges_[PairKey(*ia, *ib)] = {static_cast<int32_t>(rank), *im};
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("model: ", e.what()));
  }
  bpe->RebuildSmallCharIds();
  return bpe;
}

void BpeModel::RebuildSmallCharIds() {
  for (size_t key = 0; key < small_char_ids_.size(); ++key) {
    std::string ch;
    if (key < 0x80) {
      ch.push_back(static_cast<char>(key));
    } else {
      AppendCodepoint(static_cast<char32_t>(key), &ch);
    }
    auto id = TokenToId(ch);
    small_char_ids_[key] = id ? *id : -1;
  }
}

void BpeModel::AddToken(const std::string& token, int32_t id) {
  vocab_[token] = id;
  if (static_cast<size_t>(id) >= id_to_token_.size()) {
    id_to_token_.resize(id + 1);
    has_id_.resize(id + 1, false);
  }
  id_to_token_[id] = token;
  has_id_[id] = true;
  if (token.size() <= 2 && ValidSequenceLength(token, 0) == token.size()) {
    char32_t cp;
    DecodeCodepoint(token, 0, &cp);
    if (cp < small_char_ids_.size()) small_char_ids_[cp] = id;
  }
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(absl::string_view(token.data(), token.size()));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::InitialSymbols(std::string_view word, std::vector<int32_t>* ids) const {
  const bool plain = continuing_subword_prefix_.empty() && end_of_word_suffix_.empty();
  std::string piece;
  bool last_was_unk = false;
  size_t pos = 0;
  while (pos < word.size()) {
    size_t n = ValidSequenceLength(word, pos);
    if (n == 0) n = 1;
    const std::string_view ch = word.substr(pos, n);
    std::optional<int32_t> id;
    if (plain && (n == 2 || static_cast<unsigned char>(ch[0]) < 0x80)) {
      // Cache by the character's value: ASCII directly, 2-byte UTF-8 by its 11-bit payload.
      const size_t key = n == 1 ? static_cast<unsigned char>(ch[0])
                                : (((ch[0] & 0x1F) << 6) | (ch[1] & 0x3F));
      if (small_char_ids_[key] >= 0) id = small_char_ids_[key];
    } else {
      piece.clear();
      if (pos > 0) piece += continuing_subword_prefix_;
      piece.append(ch);
      if (pos + n == word.size()) piece += end_of_word_suffix_;
      id = TokenToId(piece);
    }
    pos += n;
    if (id) {
      ids->push_back(*id);
      last_was_unk = false;
      continue;
    }
    if (byte_fallback_) {
      std::vector<int32_t> bytes;
      for (unsigned char b : ch) {
        auto bid = TokenToId(absl::StrFormat("<0x%02X>", b));
        if (!bid) break;
        bytes.push_back(*bid);
      }
      if (bytes.size() == ch.size()) {
        ids->insert(ids->end(), bytes.begin(), bytes.end());
        last_was_unk = false;
        continue;
      }
    }
    if (unk_id_) {
      if (!(fuse_unk_ && last_was_unk)) ids->push_back(*unk_id_);
      last_was_unk = true;
    }
    // Without an unk token Hugging Face drops the character; so do we.
  }
}

void BpeModel::MergeWord(std::string_view word, std::vector<int32_t>* out) const {
  if (ignore_merges_) {
    if (auto id = TokenToId(word)) {
      out->push_back(*id);
      return;
    }
  }
  std::vector<int32_t> sym;
  sym.reserve(word.size());
  InitialSymbols(word, &sym);
  const size_t n = sym.size();
  if (n <= 1) {
    out->insert(out->end(), sym.begin(), sym.end());
    return;
  }
  if (n <= 48) {
    // Short words: repeatedly merge the best-ranked (then leftmost) adjacent pair. Same result
    // as the priority queue below, with less overhead for the common case.
    size_t len = n;
    while (len > 1) {
      int32_t best_rank = INT32_MAX, best_id = -1;
      size_t best_pos = 0;
      for (size_t i = 0; i + 1 < len; ++i) {
        auto it = merges_.find(PairKey(sym[i], sym[i + 1]));
        if (it != merges_.end() && it->second.first < best_rank) {
          best_rank = it->second.first;
          best_id = it->second.second;
          best_pos = i;
        }
      }
      if (best_id < 0) break;
      sym[best_pos] = best_id;
      sym.erase(sym.begin() + best_pos + 1);
      --len;
    }
    out->insert(out->end(), sym.begin(), sym.begin() + len);
    return;
  }
  // Long words: linked list plus a min-heap of candidate merges ordered by (rank, position),
  // as Hugging Face's Word::merge_all does; stale entries are skipped on pop.
  std::vector<int> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int>(i + 1) : -1;
  }
  struct Cand {
    int32_t rank;
    int pos;
    int32_t new_id;
    bool operator>(const Cand& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int left) {
    if (left < 0 || next[left] < 0) return;
    auto it = merges_.find(PairKey(sym[left], sym[next[left]]));
    if (it != merges_.end()) heap.push({it->second.first, left, it->second.second});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int>(i));
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    if (!alive[c.pos] || next[c.pos] < 0) continue;
    const int right = next[c.pos];
    auto it = merges_.find(PairKey(sym[c.pos], sym[right]));
    if (it == merges_.end() || it->second.second != c.new_id) continue;
    sym[c.pos] = c.new_id;
    alive[right] = false;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  for (int i = 0; i >= 0; i = next[i]) out->push_back(sym[i]);
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (word.size() > kMaxCachedWordBytes || generation_words_ == 0) {
    uncached_words_.fetch_add(1, std::memory_order_relaxed);
    MergeWord(word, out);
    return;
  }
  const size_t h = absl::Hash<absl::string_view>()(absl::string_view(word.data(), word.size()));
  CacheShard& shard = cache_[h % kCacheShards];
  {
    std::lock_guard<std::mutex> lock(shard.mu);
    if (CacheLookup(shard, word, out)) {
      ++shard.hits;
      return;
    }
    ++shard.misses;
  }
  const size_t mark = out->size();
  MergeWord(word, out);  // outside the lock: the merge loop is the slow part
  std::lock_guard<std::mutex> lock(shard.mu);
  CacheInsert(shard, word, std::vector<int32_t>(out->begin() + mark, out->end()));
}

bool BpeModel::CacheLookup(CacheShard& shard, std::string_view word, std::vector<int32_t>* out) const {
  const absl::string_view key(word.data(), word.size());
  if (auto it = shard.young.find(key); it != shard.young.end()) {
    out->insert(out->end(), it->second.begin(), it->second.end());
    return true;
  }
  auto it = shard.old.find(key);
  if (it == shard.old.end()) return false;
  out->insert(out->end(), it->second.begin(), it->second.end());
  shard.young.insert(shard.old.extract(it));  // still in use: into the young generation
  RotateIfFull(shard);
  return true;
}

void BpeModel::CacheInsert(CacheShard& shard, std::string_view word, std::vector<int32_t> ids) const {
  // Another thread may have merged and inserted the same word meanwhile: keep the first.
  shard.young.try_emplace(std::string(word), std::move(ids));
  RotateIfFull(shard);
}

void BpeModel::RotateIfFull(CacheShard& shard) const {
  if (shard.young.size() < generation_words_) return;
  shard.old = std::move(shard.young);
  shard.young = WordIds();
}

BpeModel::CacheStats BpeModel::cache_stats() const {
  CacheStats stats;
  for (CacheShard& shard : cache_) {
    std::lock_guard<std::mutex> lock(shard.mu);
    stats.words += shard.young.size() + shard.old.size();
    stats.hits += shard.hits;
    stats.misses += shard.misses;
  }
  stats.misses += uncached_words_.load(std::memory_order_relaxed);
  return stats;
}

}  // namespace glm::tokenizer
