// The BPE model of tokenizer.json: vocabulary, ranked merges (either "a b" strings or [a, b]
// pairs), optional unk/byte fallback/continuing-subword prefix, and a word cache so repeated
// pre-tokens (most of any real text) skip the merge loop.
//
// The cache is bounded and keeps what is used: each shard holds a young and an old generation;
// a hit in the old one moves the word to the young one, and when the young one is full it
// becomes the old one (the previous old one is dropped). Words used at least once per
// generation stay; one-off words (random ids rendered as text, hashes, numbers) age out after
// two. Hugging Face's cache stops inserting once full instead, so a burst of one-off words early
// in a server's life would leave it without the common words for good.
#ifndef GLM_COORDINATOR_TOKENIZER_BPE_MODEL_H_
#define GLM_COORDINATOR_TOKENIZER_BPE_MODEL_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace glm::tokenizer {

class BpeModel {
 public:
  // At most this many words cached (16 shards x 8192, as Hugging Face's cache).
  static constexpr size_t kDefaultCacheWords = 16 * 8192;
  // `cache_words`: the cache's bound (0 = no cache).
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& model,
                                                            size_t cache_words = kDefaultCacheWords);

  // Appends the ids of one pre-token. Thread-safe.
  void Tokenize(std::string_view word, std::vector<int32_t>* out) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // nullptr when no vocabulary entry has this id.
  const std::string* IdToToken(int32_t id) const;
  // One past the largest id in the vocabulary.
  int32_t size() const { return static_cast<int32_t>(id_to_token_.size()); }
  // Adds (or renames) an entry; used for added tokens absent from the model vocabulary.
  void AddToken(const std::string& token, int32_t id);

  // Token ids index dense tables here and in Tokenizer (id -> token, special flag, decoded
  // bytes; ~70 bytes per slot), sized by the largest id. Real vocabularies are dense: ids run
  // 0..N-1 with at most a few reserved gaps (padded embeddings, added tokens after the BPE
  // vocabulary). So the largest id must stay below 2 x the number of entries plus a fixed
  // slack (small test tokenizers with scattered ids), which bounds the tables by the size of
  // the file instead of letting one entry like "x": 1073741824 allocate tens of GiB.
  static constexpr int64_t kMaxTokenId = (int64_t{1} << 30);
  static constexpr int64_t kIdSlack = 65536;
  static bool IdTableFits(int64_t max_id, size_t entries) {
    return max_id < 2 * static_cast<int64_t>(entries) + kIdSlack;
  }
  // Number of vocabulary entries (not the largest id).
  size_t num_entries() const { return vocab_.size(); }

  struct CacheStats {
    size_t words = 0;    // cached now (both generations)
    int64_t hits = 0;    // Tokenize calls answered from the cache
    int64_t misses = 0;  // Tokenize calls that ran the merge loop (words too long to cache included)
  };
  CacheStats cache_stats() const;

 private:
  BpeModel() = default;
  void MergeWord(std::string_view word, std::vector<int32_t>* out) const;
  void RebuildSmallCharIds();
  void InitialSymbols(std::string_view word, std::vector<int32_t>* ids) const;
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  // (left id, right id) -> (rank, merged id).
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  // Fast initial-symbol lookup for single-byte characters and 2-byte UTF-8 (covers the 256
  // byte-level characters), indexed by code point; -1 = not in the vocabulary.
  std::array<int32_t, 2048> small_char_ids_{};

  // Sharded so concurrent encodes rarely contend. Each generation holds at most
  // generation_words_ words, so a shard holds at most twice that.
  using WordIds = absl::flat_hash_map<std::string, std::vector<int32_t>>;
  struct CacheShard {
    std::mutex mu;
    WordIds young, old;
    int64_t hits = 0, misses = 0;  // counted under mu, which every lookup takes anyway
  };
  static constexpr size_t kCacheShards = 16;
  static constexpr size_t kMaxCachedWordBytes = 256;
  // Appends the cached ids of `word` (moving an old-generation word to the young one); false
  // when it is not cached. Holds shard.mu.
  bool CacheLookup(CacheShard& shard, std::string_view word, std::vector<int32_t>* out) const;
  // Adds `ids` to the young generation, turning it into the old one when full. Holds shard.mu.
  void CacheInsert(CacheShard& shard, std::string_view word, std::vector<int32_t> ids) const;
  // The young generation became full: it becomes the old one. Holds shard.mu.
  void RotateIfFull(CacheShard& shard) const;
  size_t generation_words_ = 0;  // 0: no cache
  mutable std::array<CacheShard, kCacheShards> cache_;
  mutable std::atomic<int64_t> uncached_words_{0};  // too long to cache, or no cache: always merged
};

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_BPE_MODEL_H_
