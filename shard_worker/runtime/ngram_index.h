// Indexes that answer prompt lookup's questions in time independent of the text's length.
//
// NgramDraft and PredictionDraft (speculative_sampling.h) scan: a step whose suffix has no
// earlier occurrence reads the whole context once per n-gram length (measured on random tokens:
// 0.32 ms a step at 20K tokens, 1.4 ms at 100K, per sequence), on the scheduler's thread, every
// step. These give exactly the same drafts (tested against the scans) from hash and sorted
// indexes, and stay the scans' reference twins.
#ifndef GLM_SHARD_WORKER_RUNTIME_NGRAM_INDEX_H_
#define GLM_SHARD_WORKER_RUNTIME_NGRAM_INDEX_H_

#include <array>
#include <cstdint>
#include <vector>

namespace glm::runtime {

// Longest n-gram the indexes know (NgramDraft's and PredictionDraft's default max_ngram).
inline constexpr int kMaxIndexedNgram = 4;

// The n-grams (1..kMaxIndexedNgram tokens) of a growing token sequence (prompt + generated), each
// linked to its previous occurrence. Memory: four 4-byte links a token and hash tables at most
// half full, with the vectors' growth slack 42-63 bytes a token at 100K tokens (measured; repeating
// and novel text) — next to GLM-5's ~90 KB of KV cache a token, nothing; built only for
// sequences that draft by prompt lookup.
class NgramIndex {
 public:
  // Brings the index up to `tokens`. The engines only append accepted tokens, so `tokens` extends
  // what the index saw last; a shorter sequence is indexed afresh. (A sequence of the same length
  // or longer whose earlier tokens changed is not detected: callers never do that.)
  void Update(const std::vector<int32_t>& tokens);

  // NgramDraft(tokens, k, max_ngram, min_ngram) exactly (max_ngram <= kMaxIndexedNgram): the
  // tokens after the most recent earlier occurrence of the longest suffix, at most k. Brings the
  // index up to `tokens` first (Update).
  std::vector<int32_t> Draft(const std::vector<int32_t>& tokens, int k, int max_ngram = kMaxIndexedNgram,
                             int min_ngram = 1);

 private:
  // One n-gram length: an open-addressing table of each distinct n-gram's latest start (the
  // n-gram's tokens are read back from the sequence to compare, so no key is stored), and for
  // every start the previous start of the same n-gram (-1: none).
  struct Level {
    std::vector<int32_t> slots;     // power-of-two size, -1 = empty
    std::vector<int32_t> previous;  // [starts indexed]
    int64_t distinct = 0;
  };
  void Insert(const std::vector<int32_t>& tokens, int len, int64_t start);
  void Grow(const std::vector<int32_t>& tokens, int len);

  std::array<Level, kMaxIndexedNgram> levels_;
  int64_t seen_ = 0;  // tokens Update last saw
};

// The n-grams of a fixed prediction (OpenAI predicted outputs): for each length, every start
// whose continuation exists, sorted by the n-gram and then by position, so the occurrence nearest
// an anchor is two binary searches. Built once per request (O(m log m) for m tokens); 16 bytes a
// prediction token.
class PredictionIndex {
 public:
  explicit PredictionIndex(const std::vector<int32_t>& prediction);

  // PredictionDraft(prediction, tokens, anchor, k, from, max_ngram, min_ngram) exactly
  // (max_ngram <= kMaxIndexedNgram); `prediction` must be the one the index was built from.
  std::vector<int32_t> Draft(const std::vector<int32_t>& prediction, const std::vector<int32_t>& tokens,
                             int64_t anchor, int k, int64_t* from = nullptr, int max_ngram = kMaxIndexedNgram,
                             int min_ngram = 1) const;

 private:
  // [len - 1]: the starts s in [0, m - 1 - len] (a continuation follows), by (n-gram, s).
  std::array<std::vector<int32_t>, kMaxIndexedNgram> starts_;
};

}  // namespace glm::runtime

#endif  // GLM_SHARD_WORKER_RUNTIME_NGRAM_INDEX_H_
