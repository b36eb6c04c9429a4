// The BPE model of tokenizer.json: vocabulary, ranked merges (either "a b" strings or [a, b]
// pairs), optional unk/byte fallback/continuing-subword prefix, and a word cache so repeated
// pre-tokens (most of any real text) skip the merge loop.
#ifndef GLM_COORDINATOR_TOKENIZER_BPE_MODEL_H_
#define GLM_COORDINATOR_TOKENIZER_BPE_MODEL_H_

#include <array>
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
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& model);

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

  // Sharded so concurrent encodes rarely contend.
  struct CacheShard {
    std::mutex mu;
    absl::flat_hash_map<std::string, std::vector<int32_t>> map;
  };
  static constexpr size_t kCacheShards = 16;
  static constexpr size_t kCacheEntriesPerShard = 8192;
  static constexpr size_t kMaxCachedWordBytes = 256;
  mutable std::array<CacheShard, kCacheShards> cache_;
};

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_BPE_MODEL_H_
