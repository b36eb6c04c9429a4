#include "shard_worker/attention/mla_attention.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "absl/functional/function_ref.h"
#include "shard_worker/attention/rope_layouts.h"
#include "shard_worker/kernels/activations.h"
#include "shard_worker/kernels/int8_row_dots.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/norms.h"
#include "shard_worker/kernels/scratch.h"
#include "shard_worker/kernels/vector_ops.h"

namespace glm::attention {
namespace {

// Below this much absorption work (weight bytes x rows) a block's heads run on the calling thread.
constexpr int64_t kMinParallelAbsorbBytes = 128 * 1024;

// q_a_layernorm and kv_a_layernorm are built with the RMSNorm default eps, not rms_norm_eps.
constexpr float kLatentNormEps = 1e-6f;

}  // namespace

MlaAttention::MlaAttention(const model::ModelConfig& config, const kernels::RopeTable* rope,
                           kernels::ThreadPool* pool)
    : config_(config), rope_(rope), pool_(pool), indexer_(config, rope, pool) {}

void MlaAttention::Forward(const model::AttentionWeights& w, int64_t layer, const float* x_norm,
                           int64_t total_tokens, const std::vector<SequenceSpan>& spans,
                           KeySelection* selection, float* out, const CacheRowSync* sync,
                           const uint8_t* out_rows) const {
  // This rank's heads (all of them without tensor parallelism).
  const int64_t T = total_tokens, heads = w.o_proj.cols / config_.v_head_dim;
  const int64_t q_lora = config_.q_lora_rank, rank = config_.kv_lora_rank;
  const int64_t nope = config_.qk_nope_head_dim, rope_dim = config_.qk_rope_head_dim;
  const int64_t qk = config_.qk_head_dim(), vd = config_.v_head_dim;

  // Query path: q_resid = RMSNorm(q_a_proj x) [T, q_lora]; q = q_b_proj q_resid [T, heads, qk].
  // q_a and kv_a read the same x_norm: one parallel region for both.
  // Per-thread scratch, written before read (kernels/scratch.h).
  thread_local std::vector<float> q_resid_buf, q_buf, kv_buf, attn_out_buf;
  float* q_resid = kernels::GrowScratch(q_resid_buf, T * q_lora);
  float* q = kernels::GrowScratch(q_buf, T * heads * qk);
  float* kv = kernels::GrowScratch(kv_buf, T * (rank + rope_dim));
  kernels::MatMulShared(x_norm, T, {{&w.q_a_proj, q_resid}, {&w.kv_a_proj, kv}}, pool_);
  for (int64_t t = 0; t < T; ++t)
    kernels::RmsNorm(q_resid + t * q_lora, w.q_a_norm.data(), q_lora, kLatentNormEps, q_resid + t * q_lora);
  kernels::MatMul(q_resid, T, w.q_b_proj, q, pool_);

  // Latent path: [latent | k_pe] = kv_a_proj x [T, rank + rope]; cache RMSNorm(latent), rope(k_pe)
  // (in place in kv, then stored in the cache's dtype).
  for (const SequenceSpan& s : spans) {
    for (int64_t i = 0; i < s.n_tokens; ++i) {
      const int64_t t = s.token_offset + i, pos = s.start_position + i;
      float* row = kv + t * (rank + rope_dim);
      kernels::RmsNorm(row, w.kv_a_norm.data(), rank, kLatentNormEps, row);
      rope_->Apply(row + rank, pos, kMlaRopeLayout);
      s.cache->WriteLatent(layer, pos, row);
      s.cache->WriteRopeKey(layer, pos, row + rank);
    }
  }

  // Reads of other positions' rows start here (the indexer writes this group's index keys, then
  // scores against everyone's; attention reads the latent rows).
  if (sync != nullptr) sync->wait_for_earlier();
  if (config_.indexer_kind(layer) == model::IndexerKind::kFull)
    indexer_.Run(w.indexer, layer, x_norm, q_resid, T, spans, selection, out_rows);
  if (sync != nullptr) sync->rows_written();

  // Absorbed attention over the selected latent positions, [T, heads * v]. A job is one token
  // and a group of heads: the group shares each cached latent row it reads (all heads attend
  // to the same compressed keys), so the cache is streamed once per group, not once per head.
  std::vector<int64_t> token_span(T), token_pos(T);
  for (const SequenceSpan& s : spans)
    for (int64_t i = 0; i < s.n_tokens; ++i) {
      token_span[s.token_offset + i] = &s - spans.data();
      token_pos[s.token_offset + i] = s.start_position + i;
    }
  // The rows whose output is wanted (out_rows), packed: attention and o_proj run over these.
  std::vector<int64_t> kept;
  if (out_rows != nullptr)
    for (int64_t t = 0; t < T; ++t)
      if (out_rows[t]) kept.push_back(t);
  const bool packed = out_rows != nullptr && static_cast<int64_t>(kept.size()) < T;
  const int64_t n_out = packed ? static_cast<int64_t>(kept.size()) : T;
  if (n_out == 0) {
    std::fill(out, out + T * config_.hidden_size, 0.0f);
    return;
  }
  float* attn_out = kernels::GrowScratch(attn_out_buf, n_out * heads * vd);  // [n_out, heads * vd]
  const float scale = 1.0f / std::sqrt(static_cast<float>(qk));
  // All heads a job, fewer when that would leave threads without a job (decode of one sequence:
  // T = 1), but no fewer than heads / threads: every job streams its token's cached rows, so
  // smaller jobs multiply the cache reads (one job per head made decode at 1,500 cached tokens 14%
  // slower on 2 threads). Within a job the kernels take 8 heads at a time (kernels::kMaxQueries)
  // over blocks of kKeyBlock keys, every group over a block before the next block, so a block's
  // rows come from memory once per pass however many groups the job has (attention_rows_bench
  // --key-block: 1.3x on GLM-5's 64 heads x 2048 keys). A head's arithmetic is the same in any
  // group and block (DotRows scores each row alone, WeightedRowSum adds the keys in order), so
  // neither the jobs nor the blocks change a result.
  const int64_t threads = pool_ != nullptr ? pool_->size() : 1;
  const int64_t kHeadsPerJob = std::clamp<int64_t>(heads * n_out / threads, 1, heads);
  constexpr int64_t kKeyBlock = 64;
  static_assert(kKeyBlock % kernels::kInt8SumBlock == 0, "int8 latents' weighted sums are blocked by 64 keys");
  const int64_t groups = (heads + kHeadsPerJob - 1) / kHeadsPerJob;
  const kernels::MatMulRowsFn matmul_rows = kernels::BestMatMulRows();
  // The output rows in blocks. Per block, each head maps all the block's queries into the latent
  // space at once (q_lat = W_uk^T q_nope) and, after the attention jobs, all their attended
  // latents to values (o = W_uv o_lat): a head's weights are read once per block, not once per
  // token (a GEMM in prefill). A row's result does not depend on how many rows a matmul call
  // takes (matmul.h), so blocks and batches never change one. Scratch: [block rows, heads, rank].
  constexpr int64_t kBlockRows = 64;
  thread_local std::vector<float> q_nope_buf, q_lat_buf, o_lat_buf;
  // A block's absorption split over the heads on the pool, or on the calling thread when it is
  // small (the bundled model's heads hold a few KiB: a fork and join per layer cost it ~10% of a
  // decode step); the split never changes a result.
  const int64_t absorb_bytes = w.AbsorptionBytes(nope, vd);
  auto for_heads = [&](int64_t rows, absl::FunctionRef<void(int64_t, int64_t)> fn) {
    if (absorb_bytes * rows < kMinParallelAbsorbBytes) fn(0, heads);
    else pool_->ParallelFor(heads, fn);
  };
  for (int64_t b0 = 0; b0 < n_out; b0 += kBlockRows) {
    const int64_t nb = std::min(kBlockRows, n_out - b0);
    // The block's query rows [nb, heads * qk]: q itself, or gathered when rows are skipped.
    const float* q_rows = q + b0 * heads * qk;
    if (packed) {
      float* gathered = kernels::GrowScratch(q_nope_buf, nb * heads * qk);
      for (int64_t i = 0; i < nb; ++i) std::copy_n(q + kept[b0 + i] * heads * qk, heads * qk, gathered + i * heads * qk);
      q_rows = gathered;
    }
    float* q_lat = kernels::GrowScratch(q_lat_buf, nb * heads * rank);  // [nb, heads, rank]
    float* o_lat = kernels::GrowScratch(o_lat_buf, nb * heads * rank);
    for_heads(nb, [&](int64_t h_begin, int64_t h_end) {
      for (int64_t h = h_begin; h < h_end; ++h)
        // W_uk^T of head h [rank, nope].
        matmul_rows(q_rows + h * qk, nb, heads * qk, w.w_uk_t.Rows(h * rank, (h + 1) * rank), 0, rank,
                    q_lat + h * rank, heads * rank);
    });
    // Jobs over the cache's rows as stored (Row: float, uint16_t BF16 bits, uint8_t FP8 or int8_t rows;
    // RopeRow: the rope keys', BF16 bits under 8-bit latents).
    auto attend = [&]<typename Row, typename RopeRow>(int64_t begin, int64_t end, std::vector<const Row*>& lat_rows,
                                                      std::vector<const RopeRow*>& kpe_rows) {
      // Per thread, kept across calls (a decode step makes several per layer): no allocation once warm.
      thread_local std::vector<float> scores, pe_scores;
      // int8 latents meet the heads' latent queries rounded to int8 (a scale a head) in integer dot
      // products (kernels/int8_row_dots.h: 64 multiply-adds an AVX512-VNNI instruction, not 16).
      thread_local kernels::Int8QueryRows q_lat_int8;
      constexpr bool kInt8Latents = std::is_same_v<Row, int8_t>;
      for (int64_t job = begin; job < end; ++job) {
        // Rows paired from both ends (0, nb-1, 1, nb-2, ...): a causal token's work grows with its
        // position, and the pool splits jobs into contiguous ranges, so this balances the threads.
        const int64_t u = job / groups, i = u % 2 == 0 ? u / 2 : nb - 1 - u / 2;  // i: row in the block
        const int64_t o = b0 + i, t = packed ? kept[o] : o;                       // o: output row
        const int64_t h0 = (job % groups) * kHeadsPerJob;
        const int nh = static_cast<int>(std::min(kHeadsPerJob, heads - h0));
        const int64_t pos = token_pos[t];
        const kv_cache::KvCache* cache = spans[token_span[t]].cache;
        const std::vector<int32_t>& sel = (*selection)[t];
        const int64_t n_keys = sel.empty() ? pos + 1 : static_cast<int64_t>(sel.size());
        // Rope on q_pe. q rows: [nh, qk]; this row's heads' latent queries: [nh, rank].
        float* q_heads = q + (t * heads + h0) * qk;
        for (int g = 0; g < nh; ++g) rope_->Apply(q_heads + g * qk + nope, pos, kMlaRopeLayout);
        const float* q_lat_row = q_lat + (i * heads + h0) * rank;
        float* o_lat_row = o_lat + (i * heads + h0) * rank;
        // The selected positions' cached rows: latent [rank] and rope key [rope_dim] each.
        lat_rows.resize(n_keys);
        kpe_rows.resize(n_keys);
        if (sel.empty())
          cache->RowPointers(layer, n_keys, lat_rows.data(), kpe_rows.data());
        else
          cache->RowPointers(layer, sel.data(), n_keys, lat_rows.data(), kpe_rows.data());
        // scores[g][k] = (q_lat·latent + q_pe·k_pe) · scale; every head reads each row once.
        scores.resize(nh * n_keys);
        pe_scores.resize(nh * n_keys);
        if constexpr (kInt8Latents) q_lat_int8.Quantize(q_lat_row, nh, rank);
        // One group reads each row once anyway: its keys in one call each (no per-block calls).
        const int64_t key_block = nh > kernels::kMaxQueries ? kKeyBlock : std::max<int64_t>(n_keys, 1);
        for (int64_t k0 = 0; k0 < n_keys; k0 += key_block) {
          const int64_t nk = std::min(key_block, n_keys - k0);
          if constexpr (kInt8Latents) kernels::Int8RowDots(q_lat_int8, lat_rows.data() + k0, nk, scores.data() + k0, n_keys);
          for (int g0 = 0; g0 < nh; g0 += kernels::kMaxQueries) {
            const int ng = std::min(kernels::kMaxQueries, nh - g0);
            if constexpr (!kInt8Latents)
              kernels::DotRows(q_lat_row + g0 * rank, rank, ng, lat_rows.data() + k0, nk, rank,
                               scores.data() + g0 * n_keys + k0, n_keys);
            kernels::DotRows(q_heads + g0 * qk + nope, qk, ng, kpe_rows.data() + k0, nk, rope_dim,
                             pe_scores.data() + g0 * n_keys + k0, n_keys);
          }
        }
        kernels::AddScale(scores.data(), pe_scores.data(), scale, scores.data(), nh * n_keys);
        for (int g = 0; g < nh; ++g) kernels::Softmax(scores.data() + g * n_keys, n_keys);
        // o_lat[g] = Σ_k p[g][k] · latent_k (k ascending).
        std::fill_n(o_lat_row, nh * rank, 0.0f);
        for (int64_t k0 = 0; k0 < n_keys; k0 += key_block) {
          const int64_t nk = std::min(key_block, n_keys - k0);
          if constexpr (kInt8Latents) {
            // Integer sums too (weights rounded to int16 per block of 64 keys: k0 is a multiple of
            // 64, so any key_block gives the bits of one call).
            kernels::Int8RowWeightedSum(scores.data() + k0, n_keys, nh, lat_rows.data() + k0, nk, rank, o_lat_row, rank);
            continue;
          }
          for (int g0 = 0; g0 < nh; g0 += kernels::kMaxQueries)
            kernels::WeightedRowSum(scores.data() + g0 * n_keys + k0, n_keys, std::min(kernels::kMaxQueries, nh - g0),
                                    lat_rows.data() + k0, nk, rank, o_lat_row + g0 * rank, rank);
        }
      }
    };
    // Every span's cache holds rows of one dtype (Glm5Model::Prepare checks).
    pool_->ParallelFor(nb * groups, [&](int64_t begin, int64_t end) {
      const kv_cache::KvDType dtype = spans.front().cache->dtype();
      if (dtype == kv_cache::KvDType::kBf16) {
        thread_local std::vector<const uint16_t*> lat_rows, kpe_rows;
        attend(begin, end, lat_rows, kpe_rows);
      } else if (dtype == kv_cache::KvDType::kFp8E4m3) {  // 8-bit latents, BF16 rope keys
        thread_local std::vector<const uint8_t*> lat_rows;
        thread_local std::vector<const uint16_t*> kpe_rows;
        attend(begin, end, lat_rows, kpe_rows);
      } else if (dtype == kv_cache::KvDType::kInt8) {
        thread_local std::vector<const int8_t*> lat_rows;
        thread_local std::vector<const uint16_t*> kpe_rows;
        attend(begin, end, lat_rows, kpe_rows);
      } else {
        thread_local std::vector<const float*> lat_rows, kpe_rows;
        attend(begin, end, lat_rows, kpe_rows);
      }
    });
    for_heads(nb, [&](int64_t h_begin, int64_t h_end) {
      for (int64_t h = h_begin; h < h_end; ++h)
        // W_uv of head h [vd, rank]: its rows of kv_b_proj.
        matmul_rows(o_lat + h * rank, nb, heads * rank, w.kv_b_proj.Rows(h * (nope + vd) + nope, (h + 1) * (nope + vd)),
                    0, vd, attn_out + (b0 * heads + h) * vd, heads * vd);
    });
  }
  if (!packed) {
    kernels::MatMul(attn_out, T, w.o_proj, out, pool_);
    return;
  }
  const int64_t hidden = config_.hidden_size;
  thread_local std::vector<float> packed_out_buf;
  float* packed_out = kernels::GrowScratch(packed_out_buf, n_out * hidden);
  kernels::MatMul(attn_out, n_out, w.o_proj, packed_out, pool_);
  std::fill(out, out + T * hidden, 0.0f);
  for (int64_t i = 0; i < n_out; ++i) std::copy_n(packed_out + i * hidden, hidden, out + kept[i] * hidden);
}

}  // namespace glm::attention
