#include "shard_worker/attention/mla_attention.h"

#include <cmath>

#include "shard_worker/attention/rope_layouts.h"
#include "shard_worker/kernels/activations.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/norms.h"

namespace glm::attention {
namespace {

// q_a_layernorm and kv_a_layernorm are built with the RMSNorm default eps, not rms_norm_eps.
constexpr float kLatentNormEps = 1e-6f;

float Dot(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

}  // namespace

MlaAttention::MlaAttention(const model::ModelConfig& config, const kernels::RopeTable* rope,
                           kernels::ThreadPool* pool)
    : config_(config), rope_(rope), pool_(pool), indexer_(config, rope, pool) {}

void MlaAttention::Forward(const model::AttentionWeights& w, int64_t layer, const float* x_norm,
                           int64_t total_tokens, const std::vector<SequenceSpan>& spans,
                           KeySelection* selection, float* out) const {
  // This rank's heads (all of them without tensor parallelism).
  const int64_t T = total_tokens, heads = w.o_proj.cols / config_.v_head_dim;
  const int64_t q_lora = config_.q_lora_rank, rank = config_.kv_lora_rank;
  const int64_t nope = config_.qk_nope_head_dim, rope_dim = config_.qk_rope_head_dim;
  const int64_t qk = config_.qk_head_dim(), vd = config_.v_head_dim;

  // Query path: q_resid = RMSNorm(q_a_proj x) [T, q_lora]; q = q_b_proj q_resid [T, heads, qk].
  std::vector<float> q_resid(T * q_lora), q(T * heads * qk);
  kernels::MatMul(x_norm, T, w.q_a_proj, q_resid.data(), pool_);
  for (int64_t t = 0; t < T; ++t)
    kernels::RmsNorm(q_resid.data() + t * q_lora, w.q_a_norm.data(), q_lora, kLatentNormEps, q_resid.data() + t * q_lora);
  kernels::MatMul(q_resid.data(), T, w.q_b_proj, q.data(), pool_);

  // Latent path: [latent | k_pe] = kv_a_proj x [T, rank + rope]; cache RMSNorm(latent), rope(k_pe).
  std::vector<float> kv(T * (rank + rope_dim));
  kernels::MatMul(x_norm, T, w.kv_a_proj, kv.data(), pool_);
  for (const SequenceSpan& s : spans) {
    for (int64_t i = 0; i < s.n_tokens; ++i) {
      const int64_t t = s.token_offset + i, pos = s.start_position + i;
      float* row = kv.data() + t * (rank + rope_dim);
      kernels::RmsNorm(row, w.kv_a_norm.data(), rank, kLatentNormEps, s.cache->latent(layer, pos));
      float* kpe = s.cache->rope_key(layer, pos);
      std::copy(row + rank, row + rank + rope_dim, kpe);
      rope_->Apply(kpe, pos, kMlaRopeLayout);
    }
  }

  if (config_.indexer_kind(layer) == model::IndexerKind::kFull)
    indexer_.Run(w.indexer, layer, x_norm, q_resid.data(), T, spans, selection);

  // Per (token, head): absorbed attention over the selected latent positions. [T, heads * v]
  std::vector<int64_t> token_span(T), token_pos(T);
  for (const SequenceSpan& s : spans)
    for (int64_t i = 0; i < s.n_tokens; ++i) {
      token_span[s.token_offset + i] = &s - spans.data();
      token_pos[s.token_offset + i] = s.start_position + i;
    }
  std::vector<float> attn_out(T * heads * vd);
  const float scale = 1.0f / std::sqrt(static_cast<float>(qk));
  pool_->ParallelFor(T * heads, [&](int64_t begin, int64_t end) {
    std::vector<float> q_lat(rank), o_lat(rank), scores;
    for (int64_t job = begin; job < end; ++job) {
      const int64_t t = job / heads, h = job % heads, pos = token_pos[t];
      const kv_cache::KvCache* cache = spans[token_span[t]].cache;
      float* qh = q.data() + (t * heads + h) * qk;
      float* q_pe = qh + nope;
      rope_->Apply(q_pe, pos, kMlaRopeLayout);
      // q_lat = Σ_d q_nope[d] · W_uk[h][d][:]
      std::fill(q_lat.begin(), q_lat.end(), 0.0f);
      const float* wuk = w.w_uk.data() + h * nope * rank;
      for (int64_t d = 0; d < nope; ++d) {
        const float qd = qh[d];
        const float* row = wuk + d * rank;
        for (int64_t c = 0; c < rank; ++c) q_lat[c] += qd * row[c];
      }
      const std::vector<int32_t>& sel = (*selection)[t];
      const int64_t n_keys = sel.empty() ? pos + 1 : static_cast<int64_t>(sel.size());
      scores.resize(n_keys);
      for (int64_t k = 0; k < n_keys; ++k) {
        const int64_t s = sel.empty() ? k : sel[k];
        scores[k] = (Dot(q_lat.data(), cache->latent(layer, s), rank) +
                     Dot(q_pe, cache->rope_key(layer, s), rope_dim)) * scale;
      }
      kernels::Softmax(scores.data(), n_keys);
      std::fill(o_lat.begin(), o_lat.end(), 0.0f);
      for (int64_t k = 0; k < n_keys; ++k) {
        const float p = scores[k];
        const float* lat = cache->latent(layer, sel.empty() ? k : sel[k]);
        for (int64_t c = 0; c < rank; ++c) o_lat[c] += p * lat[c];
      }
      const float* wuv = w.w_uv.data() + h * vd * rank;
      float* o = attn_out.data() + (t * heads + h) * vd;
      for (int64_t v = 0; v < vd; ++v) o[v] = Dot(wuv + v * rank, o_lat.data(), rank);
    }
  });
  kernels::MatMul(attn_out.data(), T, w.o_proj, out, pool_);
}

}  // namespace glm::attention
