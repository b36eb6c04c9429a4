#include "shard_worker/model/draft_vocabulary.h"

#include <algorithm>
#include <limits>

#include "shard_worker/kernels/matmul.h"

namespace glm::model {

DraftVocabulary::DraftVocabulary(int64_t common, int64_t vocab)
    : vocab_(std::max<int64_t>(0, vocab)),
      common_(std::clamp<int64_t>(common, 0, std::max<int64_t>(0, vocab))),
      held_(static_cast<size_t>((vocab_ - common_ + 63) / 64), 0) {}

bool DraftVocabulary::Contains(int32_t id) const {
  if (id < 0 || id >= vocab_) return false;
  if (id < common_) return true;
  const int64_t bit = id - common_;
  return (held_[bit / 64] >> (bit % 64)) & 1;
}

void DraftVocabulary::Add(const int32_t* tokens, size_t n) {
  std::vector<int32_t> fresh;
  for (size_t i = 0; i < n; ++i) {
    const int32_t id = tokens[i];
    if (id < common_ || id >= vocab_) continue;
    const int64_t bit = id - common_;
    uint64_t& word = held_[bit / 64];
    const uint64_t mask = uint64_t{1} << (bit % 64);
    if (word & mask) continue;
    word |= mask;
    fresh.push_back(id);
  }
  if (fresh.empty()) return;
  // A decode step adds a token or two (an insertion each); a prompt adds many (one sort).
  if (fresh.size() <= 8) {
    for (int32_t id : fresh) extra_.insert(std::lower_bound(extra_.begin(), extra_.end(), id), id);
  } else {
    extra_.insert(extra_.end(), fresh.begin(), fresh.end());
    std::sort(extra_.begin(), extra_.end());
  }
}

namespace {

// One row's ids [begin, end) of the head (a run of consecutive extra ids).
struct RowRun {
  int64_t row;
  int32_t begin;
  int32_t end;
};

// Below this many bytes of extra rows the runs are computed on the calling thread: a fork and
// join of the pool costs about what ~128 KiB of streamed weights do (kernels/matmul.cc).
constexpr int64_t kMinParallelExtraBytes = 128 * 1024;

}  // namespace

void DraftLogits(const float* x, int64_t n, const kernels::WeightView& head,
                 const std::vector<const DraftVocabulary*>& vocab_of_row, float* logits,
                 kernels::ThreadPool* pool) {
  const int64_t vocab = head.rows, cols = head.cols;
  auto common_of = [&](int64_t i) {
    const DraftVocabulary* v = vocab_of_row[i];
    return v == nullptr ? vocab : std::min(vocab, v->common());
  };
  // 1. Every id a row leaves out: -inf (probability 0 for the sampler, never the argmax).
  for (int64_t i = 0; i < n; ++i)
    if (common_of(i) < vocab) std::fill_n(logits + i * vocab, vocab, -std::numeric_limits<float>::infinity());
  // 2. The common block: consecutive rows with the same count in one matmul (all rows usually).
  for (int64_t i = 0; i < n;) {
    const int64_t common = common_of(i);
    int64_t j = i + 1;
    while (j < n && common_of(j) == common) ++j;
    if (common > 0)
      kernels::MatMulStrided(x + i * cols, j - i, cols, head.Rows(0, common), logits + i * vocab, vocab, pool);
    i = j;
  }
  // 3. The sequences' own tokens past the common block, in runs of consecutive ids.
  std::vector<RowRun> runs;
  int64_t extra_rows = 0;
  for (int64_t i = 0; i < n; ++i) {
    const DraftVocabulary* v = vocab_of_row[i];
    if (v == nullptr) continue;
    const std::vector<int32_t>& ids = v->extra();
    extra_rows += static_cast<int64_t>(ids.size());
    for (size_t a = 0; a < ids.size();) {
      size_t b = a + 1;
      while (b < ids.size() && ids[b] == ids[b - 1] + 1) ++b;
      runs.push_back({i, ids[a], ids[b - 1] + 1});
      a = b;
    }
  }
  if (runs.empty()) return;
  const kernels::MatMulRowsFn rows_fn = kernels::BestMatMulRows();
  auto compute = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const RowRun& run = runs[r];
      rows_fn(x + run.row * cols, 1, cols, head, run.begin, run.end, logits + run.row * vocab, vocab);
    }
  };
  const int64_t extra_bytes = extra_rows * head.bytes() / std::max<int64_t>(1, vocab);
  if (pool == nullptr || pool->size() == 1 || extra_bytes < kMinParallelExtraBytes) {
    compute(0, static_cast<int64_t>(runs.size()));
  } else {
    pool->ParallelFor(static_cast<int64_t>(runs.size()), compute);
  }
}

int64_t DraftLogitsBytes(const kernels::WeightView& head, const std::vector<const DraftVocabulary*>& vocab_of_row) {
  if (head.rows <= 0) return 0;
  const int64_t row_bytes = head.bytes() / head.rows;
  int64_t common = 0, extra = 0;
  for (const DraftVocabulary* v : vocab_of_row) {
    common = std::max(common, v == nullptr ? head.rows : std::min(head.rows, v->common()));
    if (v != nullptr) extra += static_cast<int64_t>(v->extra().size());
  }
  return (common + extra) * row_bytes;
}

}  // namespace glm::model
