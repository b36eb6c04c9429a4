#include "shard_worker/attention/dsa_indexer.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <type_traits>

#include "shard_worker/attention/rope_layouts.h"
#include "shard_worker/kernels/int8_row_dots.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/norms.h"
#include "shard_worker/kernels/vector_ops.h"

namespace glm::attention {

void SelectTopPositions(const float* scores, int64_t n, int64_t k, std::vector<int32_t>* keep,
                        std::vector<float>* scratch) {
  scratch->assign(scores, scores + n);
  std::nth_element(scratch->begin(), scratch->begin() + (k - 1), scratch->end(), std::greater<float>());
  const float threshold = (*scratch)[k - 1];
  int64_t above = 0;
  for (int64_t s = 0; s < n; ++s) above += scores[s] > threshold;
  int64_t ties_left = k - above;
  keep->clear();
  keep->reserve(k);
  for (int64_t s = 0; s < n; ++s)
    if (scores[s] > threshold || (scores[s] == threshold && ties_left-- > 0)) keep->push_back(static_cast<int32_t>(s));
}

DsaIndexer::DsaIndexer(const model::ModelConfig& config, const kernels::RopeTable* rope,
                       kernels::ThreadPool* pool)
    : config_(config), rope_(rope), pool_(pool) {}

void DsaIndexer::Run(const model::IndexerWeights& w, int64_t layer, const float* x_norm,
                     const float* q_resid, int64_t total_tokens, const std::vector<SequenceSpan>& spans,
                     KeySelection* selection, const uint8_t* out_rows) const {
  const int64_t hidden = config_.hidden_size, d = config_.index_head_dim, heads = config_.index_n_heads;
  const int64_t q_lora = config_.q_lora_rank, topk = config_.index_topk;
  selection->assign(total_tokens, {});

  // Keys for every new position: k = rope(LayerNorm(wk · x)) on the first rope dims. [T, d]
  std::vector<float> keys(total_tokens * d);
  kernels::MatMul(x_norm, total_tokens, w.wk, keys.data(), pool_);
  for (const SequenceSpan& s : spans) {
    for (int64_t i = 0; i < s.n_tokens; ++i) {
      float* k = keys.data() + (s.token_offset + i) * d;
      kernels::LayerNorm(k, w.k_norm_weight.data(), w.k_norm_bias.data(), d, 1e-6f, k);
      rope_->Apply(k, s.start_position + i, kIndexerRopeLayout);
      s.cache->WriteIndexKey(layer, s.start_position + i, k);
    }
  }

  // Queries only for tokens whose context exceeds index_topk (others attend to every key) and
  // whose output is wanted.
  std::vector<int64_t> sparse_tokens;  // batch rows
  std::vector<int64_t> sparse_pos;
  std::vector<const SequenceSpan*> sparse_span;
  for (const SequenceSpan& s : spans) {
    for (int64_t i = 0; i < s.n_tokens; ++i) {
      if (s.start_position + i + 1 > topk && (out_rows == nullptr || out_rows[s.token_offset + i])) {
        sparse_tokens.push_back(s.token_offset + i);
        sparse_pos.push_back(s.start_position + i);
        sparse_span.push_back(&s);
      }
    }
  }
  const int64_t n = static_cast<int64_t>(sparse_tokens.size());
  if (n == 0) return;
  std::vector<float> xs(n * hidden), qs(n * q_lora);
  for (int64_t j = 0; j < n; ++j) {
    std::copy_n(x_norm + sparse_tokens[j] * hidden, hidden, xs.data() + j * hidden);
    std::copy_n(q_resid + sparse_tokens[j] * q_lora, q_lora, qs.data() + j * q_lora);
  }
  std::vector<float> q(n * heads * d), head_w(n * heads);
  kernels::MatMul(qs.data(), n, w.wq_b, q.data(), pool_);       // [n, heads * d]
  kernels::MatMul(xs.data(), n, w.weights_proj, head_w.data(), pool_);  // [n, heads]

  for (int64_t j = 0; j < n; ++j) {
    float* qj = q.data() + j * heads * d;
    for (int64_t h = 0; h < heads; ++h) rope_->Apply(qj + h * d, sparse_pos[j], kIndexerRopeLayout);
  }
  // Rows [b0, b1) at a time, their scores within score_budget_ (a row alone may exceed it).
  for (int64_t b0 = 0, b1 = 0; b0 < n; b0 = b1) {
    int64_t floats = 0;
    for (b1 = b0; b1 < n && (b1 == b0 || floats + sparse_pos[b1] + 1 <= score_budget_); ++b1) floats += sparse_pos[b1] + 1;
    // The stored rows' element type (one dtype a batch: Glm5Model checks).
    auto score = [&](auto row) {
      ScoreAndSelect<decltype(row)>(layer, b0, b1, sparse_tokens, sparse_pos, sparse_span, q, head_w, selection);
    };
    switch (spans.front().cache->index_key_dtype()) {
      case kv_cache::KvDType::kF32: score(float{}); break;
      case kv_cache::KvDType::kBf16: score(uint16_t{}); break;
      case kv_cache::KvDType::kFp8E4m3: score(uint8_t{}); break;
      case kv_cache::KvDType::kInt8: score(int8_t{}); break;
    }
  }
}

template <typename T>
void DsaIndexer::ScoreAndSelect(int64_t layer, int64_t b0, int64_t b1,
                                const std::vector<int64_t>& sparse_tokens, const std::vector<int64_t>& sparse_pos,
                                const std::vector<const SequenceSpan*>& sparse_span, const std::vector<float>& q,
                                const std::vector<float>& head_w, KeySelection* selection) const {
  const int64_t d = config_.index_head_dim, heads = config_.index_n_heads, topk = config_.index_topk;
  const float softmax_scale = 1.0f / std::sqrt(static_cast<float>(d));
  const float head_scale = 1.0f / std::sqrt(static_cast<float>(heads));
  const int64_t n = b1 - b0;
  // Scores [n][n_keys] in jobs of (token, block of kKeyBlock keys) — decode has one token, and
  // its keys are what there is to spread over the threads — then each token's top-k. A score's
  // arithmetic does not depend on the blocks.
  constexpr int64_t kKeyBlock = 256;
  std::vector<int64_t> first_job(n + 1, 0);
  for (int64_t j = 0; j < n; ++j) first_job[j + 1] = first_job[j] + (sparse_pos[b0 + j] + 1 + kKeyBlock - 1) / kKeyBlock;
  std::vector<std::vector<float>> scores(n);
  for (int64_t j = 0; j < n; ++j) scores[j].resize(sparse_pos[b0 + j] + 1);
  // int8 keys meet int8 queries in integer dot products (kernels/int8_row_dots.h): each row's
  // heads quantised once here, a scale a head.
  // Kept per calling thread (no allocation once warm); the pool's jobs read this thread's through
  // the reference (a thread_local named inside the lambda would be each job thread's own).
  thread_local std::vector<kernels::Int8QueryRows> int8_query_buffer;
  std::vector<kernels::Int8QueryRows>& int8_queries = int8_query_buffer;
  if constexpr (std::is_same_v<T, int8_t>) {
    if (static_cast<int64_t>(int8_queries.size()) < n) int8_queries.resize(n);
    for (int64_t jb = 0; jb < n; ++jb)
      int8_queries[jb].Quantize(q.data() + (b0 + jb) * heads * d, static_cast<int>(heads), d);
  }
  // A block's keys are read once for all heads (DotRows, up to kMaxQueries heads at a time):
  // dots [heads, block]; then score_s = Σ_h max(0, dot_hs · softmax_scale) · w_h, heads in order.
  pool_->ParallelFor(first_job[n], [&](int64_t begin, int64_t end) {
    std::vector<const T*> rows(kKeyBlock);
    std::vector<float> dots(heads * kKeyBlock);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t jb = std::upper_bound(first_job.begin(), first_job.end(), job) - first_job.begin() - 1;
      const int64_t j = b0 + jb;  // the row among all sparse rows
      const int64_t s0 = (job - first_job[jb]) * kKeyBlock;
      const int64_t s1 = std::min<int64_t>(sparse_pos[j] + 1, s0 + kKeyBlock);
      const int64_t nb = s1 - s0;
      const float* qj = q.data() + j * heads * d;
      sparse_span[j]->cache->IndexKeyRows(layer, s0, s1, rows.data());
      if constexpr (std::is_same_v<T, int8_t>) {
        kernels::Int8RowDots(int8_queries[jb], rows.data(), nb, dots.data(), nb);
      } else {
        for (int64_t h0 = 0; h0 < heads; h0 += kernels::kMaxQueries) {
          const int nh = static_cast<int>(std::min<int64_t>(kernels::kMaxQueries, heads - h0));
          kernels::DotRows(qj + h0 * d, d, nh, rows.data(), nb, d, dots.data() + h0 * nb, nb);
        }
      }
      float* out = scores[jb].data() + s0;
      std::fill(out, out + nb, 0.0f);
      for (int64_t h = 0; h < heads; ++h)
        kernels::ReluAccumulate(dots.data() + h * nb, softmax_scale, head_w[j * heads + h] * head_scale, out, nb);
    }
  });
  // Each token keeps its topk highest scores (the lower position on ties), in ascending position.
  pool_->ParallelFor(n, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch;
    for (int64_t jb = begin; jb < end; ++jb)
      SelectTopPositions(scores[jb].data(), static_cast<int64_t>(scores[jb].size()), topk,
                         &(*selection)[sparse_tokens[b0 + jb]], &scratch);
  });
}

}  // namespace glm::attention
