// Where one sequence's tokens sit in a batched forward pass.
#ifndef GLM_SHARD_WORKER_ATTENTION_SEQUENCE_SPAN_H_
#define GLM_SHARD_WORKER_ATTENTION_SEQUENCE_SPAN_H_

#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"
#include "shard_worker/kv_cache/kv_cache.h"

namespace glm::attention {

struct SequenceSpan {
  int64_t token_offset = 0;    // first row in the batch's [T, ...] activations
  int64_t n_tokens = 0;        // a prefill chunk, or 1 for decode
  int64_t start_position = 0;  // position of the first token (= cached length before the step)
  kv_cache::KvCache* cache = nullptr;
};

// Token groups of one sequence running the same layer at once (model::Glm5Model): a later group's
// attention reads the cache rows an earlier group writes in that layer. Everything else in a layer
// is per token, so only the attention waits: after writing its own rows, before reading others'.
// Borrowed callables (absl::FunctionRef): a step builds them once per group, nothing is allocated.
struct CacheRowSync {
  absl::FunctionRef<void()> wait_for_earlier;  // returns once the earlier group's rows of the layer are written
  absl::FunctionRef<void()> rows_written;      // this group's rows of the layer are written (keys and index keys)
};

// Per batch token: the key positions its attention may read, ascending; empty = every causal
// key (the context is not longer than index_topk, so DSA selects all of them).
using KeySelection = std::vector<std::vector<int32_t>>;

}  // namespace glm::attention

#endif  // GLM_SHARD_WORKER_ATTENTION_SEQUENCE_SPAN_H_
