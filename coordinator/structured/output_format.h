// A JSON grammar bound to a vocabulary: which tokens may come next from a matcher state, computed
// by one walk over the sorted vocabulary and cached by state (an unbounded string's state is the
// same at every length, so inside strings and between repeated structures masks come from the
// cache). Shared by every request with the same schema; thread-safe.
#ifndef GLM_COORDINATOR_STRUCTURED_OUTPUT_FORMAT_H_
#define GLM_COORDINATOR_STRUCTURED_OUTPUT_FORMAT_H_

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/structured/json_grammar.h"
#include "coordinator/structured/json_matcher.h"
#include "coordinator/structured/token_vocabulary.h"

namespace glm::structured {

class OutputFormat {
 public:
  struct Stats {
    int64_t hits = 0;
    int64_t misses = 0;
    int64_t entries = 0;
    double compute_seconds = 0;  // spent computing the misses' masks
  };
  // Masks kept at most (by their bytes), by default: 16 MiB holds ~850 masks of a 155K vocabulary.
  static constexpr int64_t kDefaultCacheBytes = int64_t{16} << 20;

  // A GBNF grammar's walk numbers the states it meets and tables their transitions, up to this
  // many states (a walk that meets more is redone without the table).
  static constexpr int64_t kDefaultWalkStates = 4096;

  OutputFormat(std::shared_ptr<const JsonGrammar> grammar, std::shared_ptr<const TokenVocabulary> vocabulary,
               int64_t cache_bytes = kDefaultCacheBytes, int64_t walk_states = kDefaultWalkStates);

  // The tokens that may follow `state` (bitmap over `vocab` ids, as TokenConstraint's); ids past
  // the vocabulary's size are never allowed.
  std::shared_ptr<const std::string> Mask(const JsonMatcher& state, int64_t vocab);
  // The same computed without the cache and the prefix sharing, token by token (the reference
  // the tests hold Mask to).
  std::string MaskReference(const JsonMatcher& state, int64_t vocab) const;

  const JsonGrammar& grammar() const { return *grammar_; }
  const TokenVocabulary& vocabulary() const { return *vocabulary_; }
  Stats stats() const;

 private:
  std::string Compute(const JsonMatcher& state, int64_t vocab) const;

  std::shared_ptr<const JsonGrammar> grammar_;
  std::shared_ptr<const TokenVocabulary> vocabulary_;
  mutable absl::Mutex mu_;
  // LRU: most recent first.
  std::list<std::pair<std::string, std::shared_ptr<const std::string>>> lru_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, decltype(lru_)::iterator> index_ ABSL_GUARDED_BY(mu_);
  int64_t cache_bytes_;
  int64_t walk_states_;
  int64_t cached_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace glm::structured

#endif  // GLM_COORDINATOR_STRUCTURED_OUTPUT_FORMAT_H_
