#include "shard_worker/model/glm5_model.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>

#include "absl/strings/str_cat.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/norms.h"
#include "shard_worker/kernels/scratch.h"
#include "shard_worker/kernels/vector_ops.h"

namespace glm::model {
namespace {

// The batch rows `rows` asks logits for, in order: every row (kAll), none (kNone), or each
// sequence's last row (kLast) / last logit_tail rows (kTail).
std::vector<int64_t> LogitRowIndices(LogitRows rows, int64_t T, const std::vector<attention::SequenceSpan>& spans,
                                     const std::vector<SequenceInput>& batch) {
  std::vector<int64_t> picked;
  if (rows == LogitRows::kAll)
    for (int64_t t = 0; t < T; ++t) picked.push_back(t);
  if (rows == LogitRows::kLast || rows == LogitRows::kTail)
    for (size_t i = 0; i < spans.size(); ++i) {
      const int64_t tail = rows == LogitRows::kLast ? 1 : std::clamp<int64_t>(batch[i].logit_tail, 1, spans[i].n_tokens);
      for (int64_t r = spans[i].n_tokens - tail; r < spans[i].n_tokens; ++r) picked.push_back(spans[i].token_offset + r);
    }
  return picked;
}

// The draft vocabulary of each logit row (`indices`: the rows' tokens, LogitRowIndices, in
// ascending order); empty when no sequence has one.
std::vector<const DraftVocabulary*> DraftVocabularyOfRows(const std::vector<int64_t>& indices,
                                                          const std::vector<attention::SequenceSpan>& spans,
                                                          const std::vector<SequenceInput>& batch) {
  if (std::none_of(batch.begin(), batch.end(), [](const SequenceInput& in) { return in.draft_vocab != nullptr; }))
    return {};
  std::vector<const DraftVocabulary*> of_row;
  size_t span = 0;
  for (int64_t t : indices) {
    while (t >= spans[span].token_offset + spans[span].n_tokens) ++span;
    of_row.push_back(batch[span].draft_vocab);
  }
  return of_row;
}

std::vector<float> RopeInverseFrequencies(const ModelConfig& c) {
  // inv_freq[i] = 1 / theta^(2i / d), formed in f32 like the reference.
  std::vector<float> inv(c.qk_rope_head_dim / 2);
  for (size_t i = 0; i < inv.size(); ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(c.qk_rope_head_dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(c.rope_theta), exponent);
  }
  return inv;
}

// Token groups: at most this many tokens in the step (decode batches, speculative verifies,
// prefill chunks and the steps that mix them with decodes), and stage weights that stay in the
// last-level cache (every group reads all of them; a larger model is bound by memory bandwidth,
// where every thread reading the weights would multiply the traffic). A large model's prefill
// chunk is a GEMM that splits well across threads; a small model's is not: its matrices are
// small, and a fork-join per matmul costs about what the split saves — on the 2-vCPU VM here 32-
// to 1024-token chunks of the bundled model ran 1.1-1.6x faster as token groups (prefill_bench
// --token-groups always vs never; 2048 came out either way). The chooser times both per step size.
constexpr int64_t kTokenGroupMaxTokens = StepPathChooser::kMaxTokens;
constexpr int64_t kTokenGroupMaxStageBytes = int64_t{32} << 20;

std::atomic<int64_t> g_token_group_stagger_us{0};

// The matmul weights of a layer on this rank (resident experts only): bytes and matrix count.
struct LayerMatrices {
  int64_t bytes = 0, count = 0;
  void Add(const WeightView& w) {
    bytes += w.bytes();
    ++count;
  }
  void Add(const MlpWeights& m) {
    Add(m.gate_proj);
    Add(m.up_proj);
    Add(m.down_proj);
  }
};

LayerMatrices Matrices(const LayerWeights& w) {
  LayerMatrices m;
  for (const WeightView* v : {&w.attn.q_a_proj, &w.attn.q_b_proj, &w.attn.kv_a_proj, &w.attn.o_proj}) m.Add(*v);
  if (w.attn.indexer.present)
    for (const WeightView* v : {&w.attn.indexer.wk, &w.attn.indexer.wq_b, &w.attn.indexer.weights_proj}) m.Add(*v);
  if (w.mlp_kind == MlpKind::kDense) {
    m.Add(w.dense);
    return m;
  }
  for (size_t e = 0; e < w.moe.experts.size(); ++e)
    if (e < w.moe.expert_loaded.size() && w.moe.expert_loaded[e]) m.Add(w.moe.experts[e]);
  if (w.moe.has_shared) m.Add(w.moe.shared);
  return m;
}

// Token groups need small matrices as well as a small stage: splitting a matmul's rows across the
// pool pays once it reads more than about a fork-join's worth (~1 us) of weights per thread.
constexpr int64_t kTokenGroupMaxMeanMatrixBytes = 256 * 1024;
// ... and an lm_head up to this size runs on the caller after a one-group step.
constexpr int64_t kInlineHeadMaxBytes = int64_t{4} << 20;

}  // namespace

void SetTokenGroupStaggerForTesting(int64_t microseconds) { g_token_group_stagger_us.store(microseconds); }

Glm5Model::Glm5Model(std::shared_ptr<const ModelWeights> weights, kernels::ThreadPool* pool, StageContext stage)
    : weights_(std::move(weights)), pool_(pool), stage_(stage) {
  rope_ = std::make_unique<kernels::RopeTable>(RopeInverseFrequencies(config()), 1.0f);
  attention_ = std::make_unique<attention::MlaAttention>(config(), rope_.get(), pool_);
  moe_ = std::make_unique<moe::MoeLayer>(config(), pool_);
  inline_pool_ = std::make_unique<kernels::ThreadPool>(1);
  inline_attention_ = std::make_unique<attention::MlaAttention>(config(), rope_.get(), inline_pool_.get());
  inline_moe_ = std::make_unique<moe::MoeLayer>(config(), inline_pool_.get());
  const int64_t counters = config().num_weight_layers() * config().n_routed_experts;
  routed_tokens_ = std::make_unique<std::atomic<int64_t>[]>(counters);
  for (int64_t i = 0; i < counters; ++i) routed_tokens_[i].store(0, std::memory_order_relaxed);
  // The layers' matrices, which every token group reads (the lm_head runs on the pool).
  int64_t count = 0;
  for (int64_t l = stage_.layer_begin; l < stage_.layer_end; ++l) {
    const LayerMatrices m = Matrices(weights_->layer(l));
    stage_weight_bytes_ += m.bytes;
    count += m.count;
  }
  small_matrices_ = count > 0 && stage_weight_bytes_ / count <= kTokenGroupMaxMeanMatrixBytes;
}

absl::StatusOr<std::unique_ptr<Glm5Model>> Glm5Model::Create(std::shared_ptr<const ModelWeights> weights,
                                                             kernels::ThreadPool* pool, StageContext stage) {
  if (weights == nullptr || pool == nullptr) return absl::InvalidArgumentError("Glm5Model needs weights and a pool");
  const ModelConfig& c = weights->config();
  if (stage.layer_end < 0) stage.layer_end = c.num_hidden_layers;
  if (stage.layer_begin < 0 || stage.layer_begin >= stage.layer_end || stage.layer_end > c.num_hidden_layers)
    return absl::InvalidArgumentError(absl::StrCat("stage layers [", stage.layer_begin, ", ", stage.layer_end,
                                                   ") outside the model's ", c.num_hidden_layers));
  for (int64_t l = stage.layer_begin; l < stage.layer_end; ++l)
    if (!weights->layer(l).loaded) return absl::FailedPreconditionError(absl::StrCat("layer ", l, " is not loaded"));
  if (stage.has_head && c.has_mtp() && !weights->layer(c.num_hidden_layers).loaded)
    return absl::FailedPreconditionError("the MTP layer is not loaded on the last stage");
  if (stage.has_embedding && weights->embed_tokens().data == nullptr)
    return absl::FailedPreconditionError("the first stage needs the embedding");
  if (stage.has_head && weights->lm_head().data == nullptr)
    return absl::FailedPreconditionError("the last stage needs lm_head");
  return std::unique_ptr<Glm5Model>(new Glm5Model(std::move(weights), pool, stage));
}

std::unique_ptr<kv_cache::KvCache> Glm5Model::NewCache() const {
  const ModelConfig& c = config();
  kv_cache::KvCacheShape s{c.kv_lora_rank, c.qk_rope_head_dim, c.index_head_dim, 0, {}, c.max_position_embeddings,
                           kv_dtype_, index_key_dtype_};
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) s.layer_has_index_keys.push_back(c.indexer_kind(l) == IndexerKind::kFull);
  return std::make_unique<kv_cache::KvCache>(s);
}

std::unique_ptr<kv_cache::KvCache> Glm5Model::NewMtpCache() const {
  const ModelConfig& c = config();
  kv_cache::KvCacheShape s{c.kv_lora_rank, c.qk_rope_head_dim, c.index_head_dim, c.num_hidden_layers, {true},
                           c.max_position_embeddings, kv_dtype_, index_key_dtype_};
  return std::make_unique<kv_cache::KvCache>(s);
}

absl::Status Glm5Model::ReduceOverStage(float* data, int64_t n) const {
  if (stage_.tp == nullptr || stage_.tp->size() == 1) return absl::OkStatus();
  return stage_.tp->AllReduceSum(data, n);
}

absl::Status Glm5Model::Prepare(std::vector<SequenceInput>& batch, bool mtp,
                                std::vector<attention::SequenceSpan>* spans, int64_t* total) const {
  const ModelConfig& c = config();
  if (batch.empty()) return absl::InvalidArgumentError("empty batch");
  *total = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    SequenceInput& in = batch[i];
    if (in.cache == nullptr) return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " has no cache"));
    // Attention reads a step's rows with one element type (MlaAttention::Forward).
    if (in.cache->dtype() != batch.front().cache->dtype())
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, "'s KV cache holds ",
                                                     kv_cache::KvDTypeName(in.cache->dtype()), " rows, sequence 0's ",
                                                     kv_cache::KvDTypeName(batch.front().cache->dtype())));
    if (in.cache->index_key_dtype() != batch.front().cache->index_key_dtype())  // so does the indexer
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", i, "'s KV cache holds ", kv_cache::KvDTypeName(in.cache->index_key_dtype()),
                       " indexer keys, sequence 0's ", kv_cache::KvDTypeName(batch.front().cache->index_key_dtype())));
    if (in.tokens.empty()) return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " has no tokens"));
    for (int32_t t : in.tokens)
      if (t < 0 || t >= c.vocab_size)
        return absl::InvalidArgumentError(absl::StrCat("token id ", t, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    if (mtp && static_cast<int64_t>(in.prev_hidden.size()) != static_cast<int64_t>(in.tokens.size()) * c.hidden_size)
      return absl::InvalidArgumentError("MTP input needs one hidden state per token");
    int64_t start = in.cache->length();
    if (auto s = in.cache->Reserve(start + static_cast<int64_t>(in.tokens.size())); !s.ok()) return s;
    spans->push_back({*total, static_cast<int64_t>(in.tokens.size()), start, in.cache});
    *total += static_cast<int64_t>(in.tokens.size());
  }
  return absl::OkStatus();
}

void Glm5Model::Embed(const WeightView& table, const std::vector<SequenceInput>& batch, float* x) const {
  const int64_t hidden = config().hidden_size;
  int64_t t = 0;
  for (const SequenceInput& in : batch)
    for (int32_t id : in.tokens) table.RowToF32(id, x + (t++) * hidden);
}

absl::Status Glm5Model::RunLayer(const Runners& run, int64_t layer, float* x, int64_t T,
                                 const std::vector<attention::SequenceSpan>& spans,
                                 attention::KeySelection* selection, int64_t* bytes,
                                 const attention::CacheRowSync* sync, const uint8_t* output_rows,
                                 const GroupByteCount* group) const {
  const ModelConfig& c = config();
  const bool count_attention = group == nullptr || group->attention_weights;
  const LayerWeights& w = weights_->layer(layer);
  const int64_t hidden = c.hidden_size;
  // [T, hidden] each, written before read (kernels/scratch.h).
  thread_local std::vector<float> normed_buf, delta_buf;
  float* normed = kernels::GrowScratch(normed_buf, T * hidden);
  float* delta = kernels::GrowScratch(delta_buf, T * hidden);
  // Attention block: x += o_proj(attn(RMSNorm(x))), this rank's heads summed over the stage.
  for (int64_t t = 0; t < T; ++t)
    kernels::RmsNorm(x + t * hidden, w.input_norm.data(), hidden, c.rms_norm_eps, normed + t * hidden);
  run.attention->Forward(w.attn, layer, normed, T, spans, selection, delta, sync, output_rows);
  if (auto s = ReduceOverStage(delta, T * hidden); !s.ok()) return s;
  kernels::Axpy(1.0f, delta, x, T * hidden);  // x += delta (one rounding per element)
  // The absorbed attention reads W_uk transposed and kv_b_proj's W_uv rows (not its W_uk rows).
  if (count_attention)
    *bytes += w.attn.q_a_proj.bytes() + w.attn.q_b_proj.bytes() + w.attn.kv_a_proj.bytes() + w.attn.o_proj.bytes() +
              w.attn.AbsorptionBytes(c.qk_nope_head_dim, c.v_head_dim) +
              (w.attn.indexer.present ? w.attn.indexer.wk.bytes() : 0);
  // MLP block: x += mlp(RMSNorm(x)); dense slices, or this rank's experts + shared slice. Only
  // over the rows in output_rows, packed: a token's MLP output does not depend on the other tokens
  // of the batch, so the rows kept are exactly what the whole batch gives.
  thread_local std::vector<int64_t> kept_buf;
  const int64_t* kept = nullptr;
  if (output_rows != nullptr) {
    kept_buf.clear();
    for (int64_t t = 0; t < T; ++t)
      if (output_rows[t]) kept_buf.push_back(t);
    if (static_cast<int64_t>(kept_buf.size()) < T) {
      kept = kept_buf.data();
      T = static_cast<int64_t>(kept_buf.size());
      if (T == 0) return absl::OkStatus();  // every rank of the stage skips alike (same rows)
    }
  }
  auto row = [&](int64_t i) { return kept ? kept[i] : i; };
  // This group is the first of the step to run the layer's MLP block (or there are no groups).
  const bool count_mlp = group == nullptr || !(group->counted[0].fetch_or(1, std::memory_order_relaxed) & 1);
  for (int64_t i = 0; i < T; ++i)
    kernels::RmsNorm(x + row(i) * hidden, w.post_attention_norm.data(), hidden, c.rms_norm_eps, normed + i * hidden);
  if (w.mlp_kind == MlpKind::kDense) {
    moe::RunMlp(w.dense, normed, T, delta, run.pool);
    if (count_mlp) *bytes += w.dense.bytes();
  } else {
    moe::MoeStats stats;
    stats.tokens_per_expert = routed_tokens_.get() + layer * c.n_routed_experts;
    moe::ExpertSource source;  // streamed experts: the store, and the next layer to prefetch for
    if (group != nullptr) source.counted_experts = group->counted + 1;
    if (moe::ExpertStore* store = weights_->expert_store(); store != nullptr && store->streaming()) {
      source.store = store;
      source.layer = layer;
      const int64_t next = store->NextLayer(layer);
      const int64_t stage_end = stage_.layer_end < 0 ? c.num_hidden_layers : stage_.layer_end;
      if (next >= 0 && next < std::min(stage_end, c.num_hidden_layers) && layer < c.num_hidden_layers) {
        source.next = &weights_->layer(next).moe;
        source.next_layer = next;
      }
    }
    if (auto s = run.moe->Forward(w.moe, normed, T, delta, &stats, source); !s.ok()) return s;
    routed_expert_bytes_.fetch_add(stats.expert_bytes_read, std::memory_order_relaxed);
    *bytes += stats.expert_bytes_read;
    if (count_mlp)
      *bytes += (w.moe.has_shared ? w.moe.shared.bytes() : 0) + static_cast<int64_t>(w.moe.router.size() * sizeof(float));
  }
  if (auto s = ReduceOverStage(delta, T * hidden); !s.ok()) return s;
  if (kept == nullptr) {
    kernels::Axpy(1.0f, delta, x, T * hidden);  // x += delta (one rounding per element)
  } else {
    for (int64_t i = 0; i < T; ++i) kernels::Axpy(1.0f, delta + i * hidden, x + kept[i] * hidden, hidden);
  }
  return absl::OkStatus();
}

std::map<int64_t, std::vector<int64_t>> Glm5Model::routed_tokens() const {
  const int64_t E = config().n_routed_experts;
  std::map<int64_t, std::vector<int64_t>> out;
  for (int64_t l = 0; l < config().num_weight_layers(); ++l) {
    std::vector<int64_t> counts(E);
    int64_t sum = 0;
    for (int64_t e = 0; e < E; ++e) sum += counts[e] = routed_tokens_[l * E + e].load(std::memory_order_relaxed);
    if (sum > 0) out.emplace(l, std::move(counts));
  }
  return out;
}

bool Glm5Model::TokenGroupsAllowed() const {
  // One thread: the pooled path already runs everything on the caller.
  if (pool_->size() < 2) return false;
  if (GetTokenGroupMode() == TokenGroupMode::kNever || !small_matrices_ ||
      stage_weight_bytes_ > kTokenGroupMaxStageBytes)
    return false;
  // Collectives inside a layer (tensor/expert parallelism) need every thread of the stage in
  // step; streamed experts pin cache slots across the whole step.
  if (stage_.tp != nullptr && stage_.tp->size() > 1) return false;
  if (moe::ExpertStore* store = weights_->expert_store(); store != nullptr && store->streaming()) return false;
  return true;
}

int Glm5Model::TokenGroups(const std::vector<SequenceInput>& batch, int64_t T,
                           const std::vector<float>* layer_outputs) const {
  if (!TokenGroupsAllowed() || layer_outputs != nullptr || T > kTokenGroupMaxTokens) return 0;
  for (size_t i = 0; i < batch.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (batch[j].cache == batch[i].cache) return 0;  // two groups would race on one cache
  return static_cast<int>(std::min<int64_t>(pool_->size(), T));
}

absl::Status Glm5Model::RunLayersByTokenGroup(int groups, int64_t layer_begin, int64_t layer_end, float* x, int64_t T,
                                              const std::vector<attention::SequenceSpan>& spans,
                                              attention::KeySelection* selection, int64_t* bytes,
                                              const uint8_t* output_rows, const LateGroup* late) const {
  const int64_t hidden = config().hidden_size, n_layers = layer_end - layer_begin;
  // A step of whole short sequences (decode tokens, speculative verifies of a few positions: no
  // group reads another's cache rows) balances its groups by work stealing, in whole sequences
  // (TokenGroupSteals over the spans). Longer ones (prefill chunks) split as a wavefront instead.
  constexpr int64_t kStealSpanTokens = 16;
  const bool steal_batch = groups > 1 && late == nullptr && spans.size() >= 2 &&
                           std::all_of(spans.begin(), spans.end(), [](const attention::SequenceSpan& sp) {
                             return sp.n_tokens <= kStealSpanTokens;
                           });
  // The wavefront: group g takes tokens [first[g], first[g + 1]), about T / groups each; a cut
  // moves to the nearest sequence boundary when that keeps the groups within 1/8 of their size of
  // each other.
  std::vector<int64_t> first(groups + 1, T);
  first[0] = 0;
  for (int g = 1; g < groups && !steal_batch; ++g) {
    const int64_t target = T * g / groups;
    int64_t cut = target, distance = T;
    for (const attention::SequenceSpan& sp : spans)
      if (std::abs(sp.token_offset - target) < distance) {
        distance = std::abs(sp.token_offset - target);
        cut = sp.token_offset;
      }
    if (distance * 8 * groups > T) cut = target;
    first[g] = std::clamp<int64_t>(cut, first[g - 1] + 1, T - (groups - g));
  }
  if (late != nullptr && groups > 1) first[groups - 1] = late->first_token;
  // Each group's part of every sequence it touches, and whether it continues a sequence the
  // previous group began: then its attention in layer l reads cache rows that group writes in
  // layer l, so it waits for them (CacheRowSync) — a wavefront a fraction of a layer apart: the
  // projections before and the MLP after run side by side.
  std::vector<std::vector<attention::SequenceSpan>> parts(groups);
  std::vector<bool> continues(groups, false);
  for (int g = 0; g < groups && !steal_batch; ++g)
    for (const attention::SequenceSpan& sp : spans) {
      const int64_t a = std::max(first[g], sp.token_offset), b = std::min(first[g + 1], sp.token_offset + sp.n_tokens);
      if (a >= b) continue;
      parts[g].push_back({a - first[g], b - a, sp.start_position + (a - sp.token_offset), sp.cache});
      if (a == first[g] && a > sp.token_offset) continues[g] = true;
    }
  const bool shared_start = !selection->empty();  // a later stage starting on a shared-indexer layer
  // Every group reads the layers' weights: the step counts them once (GroupByteCount), with one
  // set of bits per layer for the routed experts the groups computed.
  const int64_t count_words = 1 + (config().n_routed_experts + 63) / 64;
  std::vector<std::atomic<uint64_t>> counted(static_cast<size_t>(n_layers * count_words));
  for (auto& bits : counted) bits.store(0, std::memory_order_relaxed);
  const Runners single{inline_attention_.get(), inline_moe_.get(), inline_pool_.get()};
  const int64_t stagger_us = g_token_group_stagger_us.load(std::memory_order_relaxed);  // group 0's, tests
  std::vector<int64_t> span_offsets;  // steal_batch: each sequence's first token, then T
  if (steal_batch) {
    for (const attention::SequenceSpan& sp : spans) span_offsets.push_back(sp.token_offset);
    span_offsets.push_back(T);
  }
  const int64_t units = steal_batch ? static_cast<int64_t>(spans.size()) : groups;
  // Each group's results (status, bytes, key selections) as a task; a steal batch's groups may
  // split theirs (at most one task per sequence).
  TokenGroupSteals tasks(units, pool_->size(), n_layers, span_offsets);
  const int steal_groups = static_cast<int>(std::min<int64_t>(groups, units));  // steal_batch: its first tasks
  if (steal_batch) {
    // Groups of whole sequences, cut where their tokens reach T · g / groups.
    for (int64_t g = 0, u = 0; g < steal_groups; ++g) {
      int64_t end = g + 1 == steal_groups ? units : u + 1;
      while (end < units - (steal_groups - g - 1) && span_offsets[end] < T * (g + 1) / steal_groups) ++end;
      tasks.AddGroup(u, end, g == 0,
                     shared_start ? attention::KeySelection(selection->begin() + span_offsets[u],
                                                            selection->begin() + span_offsets[end])
                                  : attention::KeySelection());
      u = end;
    }
  } else {
    for (int g = 0; g < groups; ++g)
      tasks.AddGroup(first[g], first[g + 1], g == 0,
                     shared_start ? attention::KeySelection(selection->begin() + first[g], selection->begin() + first[g + 1])
                                  : attention::KeySelection());
  }
  if (steal_batch) {
    auto run_task = [&](int64_t k) {
      TokenGroupSteals::Task& task = tasks.task(k);
      std::vector<attention::SequenceSpan> part;  // the task's sequences, from its first token
      for (int64_t i = task.layer; i < n_layers; ++i) {
        if (k == 0 && stagger_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(stagger_us));
        tasks.AtBoundary(k, i);  // may hand over the later half of the sequences
        const int64_t u0 = task.first, u1 = task.end.load(std::memory_order_relaxed);
        const int64_t t0 = span_offsets[u0], t1 = span_offsets[u1];
        part.clear();
        for (int64_t u = u0; u < u1; ++u)
          part.push_back({span_offsets[u] - t0, spans[u].n_tokens, spans[u].start_position, spans[u].cache});
        const GroupByteCount count{task.counts_attention, counted.data() + i * count_words};
        task.status = RunLayer(single, layer_begin + i, x + t0 * hidden, t1 - t0, part, &task.selection, &task.bytes,
                               nullptr, output_rows ? output_rows + t0 : nullptr, &count);
        if (!task.status.ok()) break;
      }
      tasks.Finish(k);
    };
    pool_->RunOnAll([&](int g) {
      if (g < steal_groups) run_task(g);
      for (int64_t k = tasks.Steal(g); k >= 0; k = tasks.Steal(g)) run_task(k);
    });
    token_group_steals_.fetch_add(tasks.steals(), std::memory_order_relaxed);
    return MergeTokenGroups(tasks, selection, bytes);
  }
  // rows_ready[g]: layers whose cache rows group g has written (n_layers once it stops).
  std::vector<std::atomic<int64_t>> rows_ready(groups);
  for (auto& d : rows_ready) d.store(0, std::memory_order_relaxed);
  auto run_group = [&](int g) {
    const int64_t t0 = first[g], t1 = first[g + 1];
    TokenGroupSteals::Task& task = tasks.task(g);
    int64_t i = 0;
    auto wait_for_earlier = [&] {
      if (!continues[g]) return;
      for (int spin = 0; rows_ready[g - 1].load(std::memory_order_acquire) <= i; ++spin) {
        kernels::CpuRelax();
        if (spin > 20000) std::this_thread::yield();  // ~0.1 ms: more threads than cores? let the peer run
      }
    };
    auto rows_written = [&] { rows_ready[g].store(i + 1, std::memory_order_release); };
    const attention::CacheRowSync sync{wait_for_earlier, rows_written};
    if (late != nullptr && g == groups - 1) task.status = late->fill();
    for (; i < n_layers && task.status.ok(); ++i) {
      if (g == 0 && stagger_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(stagger_us));
      const GroupByteCount count{g == 0, counted.data() + i * count_words};
      task.status = RunLayer(single, layer_begin + i, x + t0 * hidden, t1 - t0, parts[g], &task.selection, &task.bytes,
                             &sync, output_rows ? output_rows + t0 : nullptr, &count);
    }
    rows_ready[g].store(n_layers, std::memory_order_release);  // a failed group releases its waiters
    if (late != nullptr && g == 0 && task.status.ok() && late->first_done) late->first_done();
  };
  if (groups == 1)
    run_group(0);  // one token: the caller alone (and a small lm_head after it, HeadPool)
  else
    pool_->RunOnAll([&](int g) {
      if (g < groups) run_group(g);
    });
  return MergeTokenGroups(tasks, selection, bytes);
}

absl::Status Glm5Model::MergeTokenGroups(TokenGroupSteals& tasks, attention::KeySelection* selection,
                                         int64_t* bytes) {
  // The tasks cover the step's tokens in pieces (stolen ones were added after their groups):
  // their key selections in token order.
  std::vector<int64_t> order(tasks.count());
  for (int64_t k = 0; k < tasks.count(); ++k) order[k] = k;
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return tasks.task(a).first < tasks.task(b).first; });
  for (int64_t k : order)
    if (!tasks.task(k).status.ok()) return tasks.task(k).status;
  selection->clear();
  for (int64_t k : order) {
    TokenGroupSteals::Task& task = tasks.task(k);
    *bytes += task.bytes;
    selection->insert(selection->end(), std::make_move_iterator(task.selection.begin()),
                      std::make_move_iterator(task.selection.end()));
  }
  return absl::OkStatus();
}

kernels::ThreadPool* Glm5Model::HeadPool(const StepTiming& timing, const WeightView& head) const {
  // A step that ran on the caller alone keeps a small lm_head there too: a serving worker parks
  // its pool between steps, and waking it for one matmul costs about what the split saves.
  return timing.alone && head.bytes() <= kInlineHeadMaxBytes ? inline_pool_.get() : pool_;
}

void Glm5Model::StepTiming::Record() const {
  if (chooser != nullptr)
    chooser->Record(tokens, several, path,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

absl::Status Glm5Model::RunLayers(StepPathChooser& chooser, const std::vector<SequenceInput>& batch,
                                  int64_t layer_begin, int64_t layer_end, float* x, int64_t T,
                                  const std::vector<attention::SequenceSpan>& spans, attention::KeySelection* selection,
                                  int64_t* bytes, std::vector<float>* layer_outputs, StepTiming* timing,
                                  const uint8_t* output_rows) const {
  const int groups = TokenGroups(batch, T, layer_outputs);
  const bool several = batch.size() > 1, timed = groups > 0 && GetTokenGroupMode() == TokenGroupMode::kAuto;
  const StepPath path = groups == 0 ? StepPath::kPooled
                        : timed     ? chooser.Choose(T, several)
                                    : StepPath::kTokenGroups;
  if (!timed) chooser.OtherWorkRan();  // e.g. a prefill chunk: the next timed step runs cold
  *timing = StepTiming{timed ? &chooser : nullptr, T, several, path, path == StepPath::kTokenGroups && groups == 1,
                       std::chrono::steady_clock::now()};
  if (path == StepPath::kTokenGroups) {
    if (auto s = RunLayersByTokenGroup(groups, layer_begin, layer_end, x, T, spans, selection, bytes, output_rows);
        !s.ok())
      return s;
  } else {
    const Runners pooled{attention_.get(), moe_.get(), pool_};
    const int64_t hidden = config().hidden_size;
    for (int64_t l = layer_begin; l < layer_end; ++l) {
      if (auto s = RunLayer(pooled, l, x, T, spans, selection, bytes, nullptr, output_rows); !s.ok()) return s;
      if (layer_outputs) layer_outputs->insert(layer_outputs->end(), x, x + T * hidden);
    }
  }
  return absl::OkStatus();
}

absl::Status Glm5Model::Head(const std::vector<float>& norm, const WeightView& head, const float* x, int64_t T,
                             const std::vector<attention::SequenceSpan>& spans, const std::vector<SequenceInput>& batch,
                             LogitRows rows, kernels::ThreadPool* pool, ForwardOutput* out,
                             bool use_draft_vocab) const {
  const ModelConfig& c = config();
  const int64_t hidden = c.hidden_size;
  out->hidden.resize(T * hidden);
  for (int64_t t = 0; t < T; ++t)
    kernels::RmsNorm(x + t * hidden, norm.data(), hidden, c.rms_norm_eps, out->hidden.data() + t * hidden);
  if (rows == LogitRows::kNone) return absl::OkStatus();
  std::vector<float> picked;
  const float* src = out->hidden.data();
  int64_t n = T;
  // Every row with kAll: the list is only needed to pick rows or to find their draft vocabularies.
  const std::vector<int64_t> indices =
      rows != LogitRows::kAll || use_draft_vocab ? LogitRowIndices(rows, T, spans, batch) : std::vector<int64_t>();
  if (rows == LogitRows::kLast || rows == LogitRows::kTail) {
    n = static_cast<int64_t>(indices.size());
    picked.resize(n * hidden);
    for (int64_t i = 0; i < n; ++i)
      std::copy_n(out->hidden.data() + indices[i] * hidden, hidden, picked.data() + i * hidden);
    src = picked.data();
  }
  out->logit_rows = n;
  out->weight_bytes_read += head.bytes();
  const int64_t vocab = c.vocab_size;
  if (stage_.tp == nullptr || stage_.tp->size() == 1) {
    out->logits.resize(n * vocab);
    std::vector<const DraftVocabulary*> vocab_of_row;
    if (use_draft_vocab) vocab_of_row = DraftVocabularyOfRows(indices, spans, batch);
    if (vocab_of_row.empty()) {
      kernels::MatMul(src, n, head, out->logits.data(), pool);
    } else {
      out->weight_bytes_read += DraftLogitsBytes(head, vocab_of_row) - head.bytes();
      DraftLogits(src, n, head, vocab_of_row, out->logits.data(), pool);
    }
    return absl::OkStatus();
  }
  // Vocabulary-parallel: each rank computes its rows of lm_head, padded to the largest slice,
  // then every rank gathers all slices (ranks hold consecutive vocabulary ranges in tp order).
  const int P = stage_.tp->size();
  const int64_t local = head.rows;
  int64_t max_local = local;
  {
    std::vector<int64_t> sizes(P);
    if (auto s = stage_.tp->AllGather(&local, sizeof local, sizes.data()); !s.ok()) return s;
    max_local = *std::max_element(sizes.begin(), sizes.end());
    std::vector<float> part(n * max_local, 0.0f), all(static_cast<size_t>(P) * n * max_local);
    kernels::MatMulStrided(src, n, hidden, head, part.data(), max_local, pool);
    if (auto s = stage_.tp->AllGather(part.data(), static_cast<int64_t>(part.size() * sizeof(float)), all.data()); !s.ok())
      return s;
    out->logits.resize(n * vocab);
    int64_t offset = 0;
    for (int r = 0; r < P; ++r) {
      const float* block = all.data() + static_cast<size_t>(r) * n * max_local;
      for (int64_t i = 0; i < n; ++i) std::copy_n(block + i * max_local, sizes[r], out->logits.data() + i * vocab + offset);
      offset += sizes[r];
    }
    if (offset != vocab) return absl::InternalError("vocabulary slices do not cover the vocabulary");
  }
  return absl::OkStatus();
}

absl::StatusOr<ForwardOutput> Glm5Model::ForwardStage(std::vector<SequenceInput>& batch, const float* input_hidden,
                                                      LogitRows rows, std::vector<float>* layer_outputs,
                                                      const attention::KeySelection* input_selection) const {
  std::vector<attention::SequenceSpan> spans;
  int64_t T = 0;
  if (auto s = Prepare(batch, /*mtp=*/false, &spans, &T); !s.ok()) return s;
  const ModelConfig& c = config();
  std::vector<float> x(T * c.hidden_size);
  if (stage_.has_embedding) {
    Embed(weights_->embed_tokens(), batch, x.data());
  } else {
    if (input_hidden == nullptr) return absl::InvalidArgumentError("a later pipeline stage needs the previous stage's hidden states");
    std::copy_n(input_hidden, T * c.hidden_size, x.data());
  }
  ForwardOutput out;
  attention::KeySelection selection;
  if (c.indexer_kind(stage_.layer_begin) == IndexerKind::kShared) {
    if (input_selection == nullptr || static_cast<int64_t>(input_selection->size()) != T)
      return absl::InvalidArgumentError("a stage starting on a shared-indexer layer needs the previous stage's selection");
    selection = *input_selection;
  }
  if (layer_outputs) layer_outputs->assign(x.begin(), x.end());
  StepTiming timing;
  if (auto s = RunLayers(chooser_, batch, stage_.layer_begin, stage_.layer_end, x.data(), T, spans, &selection,
                         &out.weight_bytes_read, layer_outputs, &timing);
      !s.ok())
    return s;
  if (stage_.has_head) {
    if (auto s = Head(weights_->final_norm(), weights_->lm_head(), x.data(), T, spans, batch, rows,
                      HeadPool(timing, weights_->lm_head()), &out);
        !s.ok())
      return s;
  } else {
    out.hidden = std::move(x);
    out.selection = std::move(selection);
  }
  timing.Record();  // the layers and the head: where the path chose to run the head counts too
  for (const auto& s : spans) s.cache->SetLength(s.start_position + s.n_tokens);
  return out;
}

absl::StatusOr<ForwardOutput> Glm5Model::Forward(std::vector<SequenceInput>& batch, LogitRows rows,
                                                 std::vector<float>* layer_outputs) const {
  if (!stage_.has_embedding || !stage_.has_head || stage_.layer_begin != 0 ||
      stage_.layer_end != config().num_hidden_layers)
    return absl::FailedPreconditionError("Forward needs the whole model; a pipeline stage uses ForwardStage");
  return ForwardStage(batch, nullptr, rows, layer_outputs);
}

absl::StatusOr<ForwardOutput> Glm5Model::ForwardMtp(std::vector<SequenceInput>& batch, LogitRows rows,
                                                    bool on_caller) const {
  const ModelConfig& c = config();
  if (!c.has_mtp()) return absl::FailedPreconditionError("this model has no MTP layer (num_nextn_predict_layers = 0)");
  if (!stage_.has_head) return absl::FailedPreconditionError("the MTP layer runs on the last pipeline stage");
  std::vector<attention::SequenceSpan> spans;
  int64_t T = 0;
  if (auto s = Prepare(batch, /*mtp=*/true, &spans, &T); !s.ok()) return s;
  const int64_t hidden = c.hidden_size, layer = c.num_hidden_layers;
  const MtpHeadWeights& m = weights_->layer(layer).mtp;
  // x = eh_proj([enorm(embed(t)); hnorm(h)])  [T, hidden]
  // Per-thread scratch (kernels/scratch.h), every element written before it is read: fresh
  // vectors cost a zero fill and, for a prompt's rows, page faults on every call.
  thread_local std::vector<float> emb_buf, cat_buf, x_buf;
  float* emb = kernels::GrowScratch(emb_buf, T * hidden);
  float* cat = kernels::GrowScratch(cat_buf, T * 2 * hidden);
  float* x = kernels::GrowScratch(x_buf, T * hidden);
  Embed(m.embed_tokens, batch, emb);
  int64_t t = 0;
  for (const SequenceInput& in : batch)
    for (size_t i = 0; i < in.tokens.size(); ++i, ++t) {
      kernels::RmsNorm(emb + t * hidden, m.enorm.data(), hidden, c.rms_norm_eps, cat + t * 2 * hidden);
      kernels::RmsNorm(in.prev_hidden.data() + i * hidden, m.hnorm.data(), hidden, c.rms_norm_eps,
                       cat + t * 2 * hidden + hidden);
    }
  kernels::MatMul(cat, T, m.eh_proj, x, on_caller ? inline_pool_.get() : pool_);
  ForwardOutput out;
  out.weight_bytes_read += m.eh_proj.bytes();
  attention::KeySelection selection;
  // Rows nobody reads the output of (not in `rows`: caught-up rows and prompt rows) only need
  // their cache rows, which the attention writes from the layer's input: they skip the attention
  // output (scores, indexer query, o_proj) and the MLP block (RunLayer's output_rows).
  // So are the rows of a sequence whose draft vocabulary is empty (one that does not draft this
  // step: the last stage keeps only its cache rows current), the last row included: running it
  // through the MLP made a batch of 8 such sequences cost a whole main layer every step.
  std::vector<uint8_t> output_rows(T, 0);
  for (int64_t t : LogitRowIndices(rows, T, spans, batch)) output_rows[t] = 1;
  for (size_t i = 0; i < spans.size(); ++i)
    if (batch[i].draft_vocab != nullptr && batch[i].draft_vocab->size() == 0)
      std::fill_n(output_rows.begin() + spans[i].token_offset, spans[i].n_tokens, uint8_t{0});
  // Its own chooser: an MTP step is a different step from a main-layer one of the same shape.
  StepTiming timing;
  if (on_caller) {
    timing.alone = true;  // untimed (no chooser); the head stays on this thread too
    if (auto s = RunLayersByTokenGroup(1, layer, layer + 1, x, T, spans, &selection, &out.weight_bytes_read,
                                       output_rows.data());
        !s.ok())
      return s;
  } else if (auto s = RunLayers(mtp_chooser_, batch, layer, layer + 1, x, T, spans, &selection,
                                &out.weight_bytes_read, nullptr, &timing, output_rows.data());
             !s.ok()) {
    return s;
  }
  if (auto s = Head(m.head_norm, m.head, x, T, spans, batch, rows,
                    on_caller ? inline_pool_.get() : HeadPool(timing, m.head), &out, /*use_draft_vocab=*/true);
      !s.ok())
    return s;
  timing.Record();
  for (const auto& s : spans) s.cache->SetLength(s.start_position + s.n_tokens);
  return out;
}

bool Glm5Model::CanDraftAlongside() const {
  if (!stage_.has_embedding || !stage_.has_head || stage_.layer_begin != 0 ||
      stage_.layer_end != config().num_hidden_layers)
    return false;
  return TokenGroupsAllowed();
}

absl::StatusOr<ForwardOutput> Glm5Model::ForwardDraftingAlongside(
    kv_cache::KvCache* cache, int32_t token, int n_drafts,
    const std::function<absl::Status(std::vector<int32_t>*)>& draft, std::vector<int32_t>* drafts) const {
  if (!CanDraftAlongside()) return absl::FailedPreconditionError("drafting alongside needs token groups (CanDraftAlongside)");
  if (n_drafts < 1) return absl::InvalidArgumentError("drafting alongside needs at least one draft");
  const ModelConfig& c = config();
  const int64_t hidden = c.hidden_size;
  std::vector<SequenceInput> batch(1);
  batch[0].cache = cache;
  batch[0].tokens.assign(1 + n_drafts, token);  // the drafts' places: checked as `token` here, embedded once made
  std::vector<attention::SequenceSpan> spans;
  int64_t T = 0;
  if (auto s = Prepare(batch, /*mtp=*/false, &spans, &T); !s.ok()) return s;
  std::vector<float> x(T * hidden);  // [1 + n_drafts, hidden]
  weights_->embed_tokens().RowToF32(token, x.data());
  drafts->clear();
  // The output as Head gives it for LogitRows::kAll: hidden [T, hidden] after the final norm,
  // logits [T, vocab]. Row 0's head runs on the caller as soon as its layers are done (while the
  // drafts' group catches up), the drafts' rows on the pool after; a row's logits are the same
  // whichever rows share its matmul.
  const WeightView& lm_head = weights_->lm_head();
  ForwardOutput out;
  out.hidden.resize(T * hidden);
  out.logits.resize(T * c.vocab_size);
  out.logit_rows = T;
  auto head_rows = [&](int64_t begin, int64_t end, kernels::ThreadPool* pool) {
    for (int64_t t = begin; t < end; ++t)
      kernels::RmsNorm(x.data() + t * hidden, weights_->final_norm().data(), hidden, c.rms_norm_eps,
                       out.hidden.data() + t * hidden);
    kernels::MatMul(out.hidden.data() + begin * hidden, end - begin, lm_head, out.logits.data() + begin * c.vocab_size,
                    pool);
  };
  const LateGroup late{1, [&]() -> absl::Status {
                         if (auto s = draft(drafts); !s.ok()) return s;
                         if (static_cast<int64_t>(drafts->size()) != n_drafts)
                           return absl::InternalError(absl::StrCat("the drafter gave ", drafts->size(), " drafts, not ",
                                                                   n_drafts));
                         for (size_t i = 0; i < drafts->size(); ++i) {
                           const int32_t d = (*drafts)[i];
                           if (d < 0 || d >= c.vocab_size)
                             return absl::InternalError(absl::StrCat("draft id ", d, " is outside the vocabulary"));
                           weights_->embed_tokens().RowToF32(d, x.data() + (1 + i) * hidden);
                         }
                         return absl::OkStatus();
                       },
                       [&] { head_rows(0, 1, inline_pool_.get()); }};
  attention::KeySelection selection;
  if (auto s = RunLayersByTokenGroup(2, 0, c.num_hidden_layers, x.data(), T, spans, &selection, &out.weight_bytes_read,
                                     nullptr, &late);
      !s.ok())
    return s;
  head_rows(1, T, pool_);
  out.weight_bytes_read += lm_head.bytes();
  for (const auto& sp : spans) sp.cache->SetLength(sp.start_position + sp.n_tokens);
  return out;
}

}  // namespace glm::model
