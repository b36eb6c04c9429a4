#include "shard_worker/runtime/last_stage_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "shard_worker/kernels/activations.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/kv_cache/kv_cache.h"
#include "shard_worker/runtime/sampler.h"
#include "shard_worker/runtime/speculative_sampling.h"

namespace glm::runtime {
namespace {

SamplingParams ParamsOf(const shard::SequenceStep& s) {
  SamplingParams p;
  p.temperature = s.sampling().temperature();
  p.top_k = s.sampling().top_k();
  p.top_p = s.sampling().top_p() > 0 ? s.sampling().top_p() : 1.0f;
  p.min_p = s.sampling().min_p();
  p.repetition_penalty = s.sampling().repetition_penalty() > 0 ? s.sampling().repetition_penalty() : 1.0f;
  p.presence_penalty = s.sampling().presence_penalty();
  p.frequency_penalty = s.sampling().frequency_penalty();
  // Biases add to distinct tokens' logits: the map's (unspecified) order does not matter.
  for (const auto& [token, bias] : s.sampling().logit_bias()) p.logit_bias.emplace_back(token, bias);
  return p;
}

// One generator per (request seed, token index, purpose): a request's samples do not depend on
// its batch or on the ranks.
std::mt19937_64 Rng(uint64_t seed, int64_t index, uint64_t purpose) {
  return std::mt19937_64(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(index) * 0xbf58476d1ce4e5b9ull + purpose);
}

// The `top` most likely tokens of a row (ties: lower id first) with their log-probabilities.
template <typename AddFn>
void TopLogprobs(const float* logits, int64_t vocab, float log_z, int top, AddFn add) {
  if (top <= 0) return;
  thread_local std::vector<int32_t> ids;
  TopTokens(logits, vocab, top, &ids);
  for (int32_t id : ids) add(id, logits[id] - log_z);
}

void AddLogprobs(const float* logits, int64_t vocab, int32_t token, int top, shard::SequenceResult* r) {
  const float log_z = kernels::LogSumExp(logits, vocab);
  r->set_logprob(logits[token] - log_z);
  TopLogprobs(logits, vocab, log_z, top, [&](int32_t id, float lp) {
    auto* t = r->add_top_logprobs();
    t->set_token(id);
    t->set_logprob(lp);
  });
}

// Prompt scoring: the logprob of the token each row of the chunk predicts (see shard.proto).
void AddPromptLogprobs(const shard::SequenceStep& s, const float* rows, int64_t vocab, shard::SequenceResult* r) {
  const int64_t n = s.tokens_size();
  for (int64_t row = 0; row < n; ++row) {
    int32_t next = -1;
    if (row + 1 < n) {
      next = s.tokens(static_cast<int>(row + 1));
    } else if (s.has_prompt_next_token()) {
      next = s.prompt_next_token();
    }
    if (next < 0 || next >= vocab) continue;
    const float* logits = rows + row * vocab;
    const float log_z = kernels::LogSumExp(logits, vocab);
    auto* p = r->add_prompt_logprobs();
    p->set_token(next);
    p->set_logprob(logits[next] - log_z);
    p->set_rank(1 + static_cast<int32_t>(std::count_if(logits, logits + vocab, [&](float v) { return v > logits[next]; })));
    TopLogprobs(logits, vocab, log_z, s.prompt_top_logprobs(), [&](int32_t id, float lp) {
      auto* t = p->add_top();
      t->set_token(id);
      t->set_logprob(lp);
    });
  }
}

// The row with every token the bitmap leaves out at -inf (allowed_tokens in shard.proto).
std::vector<float> MaskedLogits(const float* logits, int64_t vocab, const std::string& allowed) {
  std::vector<float> out(logits, logits + vocab);
  for (int64_t t = 0; t < vocab; ++t)
    if (!((static_cast<uint8_t>(allowed[t >> 3]) >> (t & 7)) & 1)) out[t] = -std::numeric_limits<float>::infinity();
  return out;
}

}  // namespace

namespace {

// Whether the step carries (part of) the history the penalties need.
bool NeedsPenaltyHistory(const shard::SequenceStep& s) { return s.penalty_tokens_size() > 0 || s.penalty_tokens_from() > 0; }

}  // namespace

LastStageSampler::Decision LastStageSampler::Decide(const shard::SequenceStep& s, const float* tail,
                                                    shard::SequenceResult* r) {
  const int64_t vocab = model_->config().vocab_size;
  const SamplingParams p = ParamsOf(s);
  const bool greedy = p.temperature <= 0.0f;
  // The prompt and the output so far (kept here when a penalty needs them: earlier steps' part,
  // then this step's penalty_tokens; Process checked the split); drafts join it as they are
  // accepted, for this step only.
  // Process created the state of every sequence that needs one; only looked up here (Decide runs
  // for several sequences at once).
  SequenceState* state = nullptr;
  if (auto it = states_.find(s.seq_id()); it != states_.end()) state = &it->second;
  std::vector<int32_t> no_history;
  std::vector<int32_t>* kept = &no_history;
  if (NeedsPenaltyHistory(s)) {
    kept = &state->penalty_history;
    kept->resize(s.penalty_tokens_from());
    kept->insert(kept->end(), s.penalty_tokens().begin(), s.penalty_tokens().end());
  }
  std::vector<int32_t>& history = *kept;
  const size_t history_size = history.size();
  const size_t output_start = static_cast<size_t>(std::max(0, s.penalty_output_start()));
  std::mt19937_64 rng = Rng(s.sampling().seed(), s.sample_index(), 1);
  const int nd = s.num_drafts();
  const std::vector<int32_t> drafts(s.tokens().end() - nd, s.tokens().end());
  Decision d;
  int32_t next = -1;
  for (int k = 0; k < nd; ++k) {
    const float* logits = tail + k * vocab;
    if (greedy) {
      const int32_t target = GreedyToken(logits, vocab, p, history, output_start);
      if (target != drafts[k]) {
        next = target;
        break;
      }
    } else {
      const SamplingCandidates pd = SamplingDistribution(logits, vocab, p, history, output_start);
      // MTP drafts were drawn from their recorded distribution; prompt-lookup and argmax drafts
      // are deterministic: a one-hot proposal, verified against the position's plain sample.
      const bool recorded = s.use_mtp() && state != nullptr && k < static_cast<int>(state->q.size()) &&
                            !state->q[k].probs.empty();
      const RejectionOutcome o = recorded ? AcceptOrResample(drafts[k], pd, state->q[k], rng)
                                          : VerifyOneHot(drafts[k], pd, s.sampling().seed(), s.sample_index() + k);
      if (!o.accepted) {
        next = o.token;
        break;
      }
    }
    d.tokens.push_back(drafts[k]);
    history.push_back(drafts[k]);
    ++d.accepted;
  }
  const float* last = tail + d.accepted * vocab;
  // Structured outputs: the tokens the format allows (Process checked the bitmap; no drafts).
  std::vector<float> masked;
  const float* choose_from = last;
  if (!s.allowed_tokens().empty()) {
    masked = MaskedLogits(last, vocab, s.allowed_tokens());
    choose_from = masked.data();
  }
  if (next < 0) {
    if (greedy) {
      next = GreedyToken(choose_from, vocab, p, history, output_start);
    } else {
      SamplingParams sp = p;
      // The generated index of this token: a plain decode's own draw there.
      sp.seed = TokenSeed(s.sampling().seed(), s.sample_index() + d.accepted);
      Sampler sampler(sp);
      // Sample adjusts its row in place: the masked row is already a copy.
      std::vector<float> work = masked.empty() ? std::vector<float>(last, last + vocab) : std::move(masked);
      next = sampler.Sample(work.data(), vocab, history, output_start);
    }
  }
  d.tokens.push_back(next);
  history.resize(history_size);  // the accepted drafts enter with the next step's plan
  r->set_token(next);
  if (s.sampling().logprobs() || s.sampling().top_logprobs() > 0) {
    AddLogprobs(last, vocab, next, s.sampling().top_logprobs(), r);
    // Each accepted draft from its own verify row (row k predicted drafts[k]).
    for (int k = 0; k < d.accepted; ++k) {
      const float* row = tail + k * vocab;
      const float log_z = kernels::LogSumExp(row, vocab);
      auto* lp = r->add_accepted_logprobs();
      lp->set_token(drafts[k]);
      lp->set_logprob(row[drafts[k]] - log_z);
      TopLogprobs(row, vocab, log_z, s.sampling().top_logprobs(), [&](int32_t id, float v) {
        auto* t = lp->add_top();
        t->set_token(id);
        t->set_logprob(v);
      });
    }
  }
  if (nd > 0) {
    r->mutable_tokens()->Add(d.tokens.begin(), d.tokens.end());
    r->set_accepted(d.accepted);
  }
  return d;
}

absl::Status LastStageSampler::Process(const shard::StepPlan& plan, const model::ForwardOutput& out, bool all_rows,
                                       const std::vector<const std::vector<int32_t>*>& block_tables,
                                       shard::StepResult* result) {
  for (const auto& s : plan.sequences()) {
    if (s.penalty_tokens_from() <= 0) continue;
    auto it = states_.find(s.seq_id());
    const size_t held = it == states_.end() ? 0 : it->second.penalty_history.size();
    if (static_cast<size_t>(s.penalty_tokens_from()) > held)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id(), ": penalty tokens start at ",
                                                     s.penalty_tokens_from(), " but the last stage holds ", held));
  }
  const int64_t vocab = model_->config().vocab_size;
  for (const auto& s : plan.sequences()) {
    if (s.allowed_tokens().empty()) continue;
    if (static_cast<int64_t>(s.allowed_tokens().size()) != (vocab + 7) / 8)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id(), ": allowed_tokens has ",
                                                     s.allowed_tokens().size(), " bytes, the vocabulary needs ",
                                                     (vocab + 7) / 8));
    if (s.num_drafts() > 0 || s.mtp_drafts() > 0)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id(), ": allowed_tokens with drafts"));
  }
  const int n_seqs = plan.sequences_size();
  std::vector<Decision> decisions(n_seqs);
  // 1. On this thread: every sequence's result entry, first logits row and sampler state.
  std::vector<shard::SequenceResult*> results(n_seqs);
  std::vector<int64_t> first_row(n_seqs), rows_of(n_seqs);
  int64_t row = 0;  // logits row of the current sequence's first wanted row
  for (int i = 0; i < n_seqs; ++i) {
    const auto& s = plan.sequences(i);
    auto* r = result->add_sequences();
    r->set_seq_id(s.seq_id());
    const int64_t n = s.tokens_size();
    const int64_t rows_here = all_rows ? n : std::min<int64_t>(n, LogitRowsFor(s));
    if (s.return_logits() && all_rows) r->mutable_logits()->Add(out.logits.begin() + row * vocab, out.logits.begin() + (row + n) * vocab);
    if (s.sample() && NeedsPenaltyHistory(s)) states_[s.seq_id()];
    results[i] = r;
    first_row[i] = row;
    rows_of[i] = rows_here;
    row += rows_here;
  }
  // 2. Prompt scoring and the decisions, sequences spread over the compute threads: each one's
  // result depends only on its own logits, parameters and seeds (a sampled token over a 150K
  // vocabulary costs ~0.2-0.5 ms; a batch of them is no longer serial).
  auto work = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const auto& s = plan.sequences(static_cast<int>(i));
      const float* rows = out.logits.data() + first_row[i] * vocab;
      if (s.want_prompt_logprobs() && rows_of[i] == s.tokens_size()) AddPromptLogprobs(s, rows, vocab, results[i]);
      if (!s.sample()) continue;
      const float* tail = rows + (rows_of[i] - TailRows(s)) * vocab;
      if (absl::Status finite = CheckLogitsFinite(tail, TailRows(s), vocab); !finite.ok()) {
        results[i]->set_error(std::string(finite.message()));
        continue;
      }
      decisions[i] = Decide(s, tail, results[i]);
    }
  };
  if (kernels::ThreadPool* pool = model_->pool(); pool != nullptr && n_seqs > 1)
    pool->ParallelFor(n_seqs, work);
  else
    work(0, n_seqs);
  if (model_->config().has_mtp()) return RunMtp(plan, out, block_tables, decisions, result);
  return absl::OkStatus();
}

absl::Status LastStageSampler::RunMtp(const shard::StepPlan& plan, const model::ForwardOutput& out,
                                      const std::vector<const std::vector<int32_t>*>& block_tables,
                                      const std::vector<Decision>& decisions, shard::StepResult* result) {
  const model::ModelConfig& c = model_->config();
  const int64_t hidden = c.hidden_size, vocab = c.vocab_size;
  std::vector<std::unique_ptr<kv_cache::KvCache>> caches;
  std::vector<model::SequenceInput> batch;
  std::vector<int> who;  // plan index of each batch entry
  int64_t offset = 0;    // row of the sequence's first token in out.hidden
  for (int i = 0; i < plan.sequences_size(); ++i) {
    const auto& s = plan.sequences(i);
    const int64_t start = s.start_position(), n = s.tokens_size();
    const int64_t base = offset;
    offset += n;
    if (!s.use_mtp() || !result->sequences(i).error().empty()) continue;
    SequenceState& st = states_[s.seq_id()];
    // Valid main positions this step: the whole chunk, or (verification) the last token and the
    // accepted drafts. t[pos] for those, plus the sampled token right after them.
    const int64_t n_valid = s.sample() ? n - s.num_drafts() + decisions[i].accepted : n;
    auto token_at = [&](int64_t pos) -> int32_t {
      const int64_t k = pos - start;
      if (k < n_valid) return s.tokens(static_cast<int>(k));
      return decisions[i].tokens.back();
    };
    // MTP row j = (t[j+1], h[j]), for j from the pending row (if it is start-1) to the last row
    // whose next token is known.
    const int64_t first = (st.pending_row == start - 1 && start > 0) ? start - 1 : start;
    const int64_t last = s.sample() ? start + n_valid - 1 : start + n - 2;
    model::SequenceInput in;
    for (int64_t j = first; j <= last; ++j) {
      in.tokens.push_back(token_at(j + 1));
      if (j == start - 1) {
        in.prev_hidden.insert(in.prev_hidden.end(), st.pending_hidden.begin(), st.pending_hidden.end());
      } else {
        const float* h = out.hidden.data() + (base + j - start) * hidden;
        in.prev_hidden.insert(in.prev_hidden.end(), h, h + hidden);
      }
    }
    if (s.sample()) {
      st.pending_row = -1;
    } else {
      st.pending_row = start + n - 1;
      st.pending_hidden.assign(out.hidden.begin() + (base + n - 1) * hidden, out.hidden.begin() + (base + n) * hidden);
    }
    st.q.clear();
    if (in.tokens.empty()) continue;
    caches.push_back(std::make_unique<kv_cache::KvCache>(pool_, *block_tables[i], first));
    in.cache = caches.back().get();
    batch.push_back(std::move(in));
    who.push_back(i);
  }
  if (batch.empty()) return absl::OkStatus();
  // Draft vocabularies: the sequence's history (the prompt and output up to this step's first
  // token), then this step's accepted drafts and new token — every token up to the newest, as
  // the single-process generator has them (runtime/speculative_generator.cc). A sequence that
  // does not draft this step (a prefill chunk, a paused request) only needs its cache rows: an
  // empty vocabulary skips its row of the head.
  for (size_t b = 0; b < batch.size(); ++b) {
    const int i = who[b];
    const auto& s = plan.sequences(i);
    if (!s.sample() || s.mtp_drafts() <= 0) {
      batch[b].draft_vocab = &no_drafts_;
      continue;
    }
    if (s.draft_vocab() <= 0) continue;
    SequenceState& st = states_[s.seq_id()];
    if (st.draft_vocab == nullptr || st.draft_vocab->common() != std::min<int64_t>(s.draft_vocab(), vocab)) {
      st.draft_vocab = std::make_unique<model::DraftVocabulary>(s.draft_vocab(), vocab);
      st.draft_vocab_added = 0;
    }
    const std::vector<int32_t>& history = st.penalty_history;
    if (st.draft_vocab_added < history.size()) {
      st.draft_vocab->Add(history.data() + st.draft_vocab_added, history.size() - st.draft_vocab_added);
      st.draft_vocab_added = history.size();
    }
    st.draft_vocab->Add(decisions[i].tokens);
    batch[b].draft_vocab = st.draft_vocab.get();
  }
  auto mtp = model_->ForwardMtp(batch, model::LogitRows::kLast);
  if (!mtp.ok()) return mtp.status();
  // Drafts: the last row of each sampled sequence proposes d1; chaining on the MTP's own hidden
  // state proposes the rest (those cache rows are overwritten once the true tokens are known).
  std::vector<int> drafting;
  for (size_t b = 0; b < batch.size(); ++b) {
    const auto& s = plan.sequences(who[b]);
    if (s.sample() && s.mtp_drafts() > 0) drafting.push_back(static_cast<int>(b));
  }
  std::vector<float> logits = std::move(mtp->logits), hid = std::move(mtp->hidden);
  std::vector<int64_t> last_row(batch.size());
  {
    int64_t r = 0;
    for (size_t b = 0; b < batch.size(); ++b) {
      r += static_cast<int64_t>(batch[b].tokens.size());
      last_row[b] = r - 1;  // in `hid`
    }
  }
  int max_k = 0;
  for (int b : drafting) max_k = std::max(max_k, plan.sequences(who[b]).mtp_drafts());
  std::vector<std::vector<int32_t>> drafts(batch.size());
  std::vector<int> active = drafting;
  for (int k = 0; k < max_k && !active.empty(); ++k) {
    std::vector<model::SequenceInput> next_batch;
    std::vector<int> next_active;
    for (size_t a = 0; a < active.size(); ++a) {
      const int b = active[a];
      const auto& s = plan.sequences(who[b]);
      // kLast rows: one per batch entry on the first pass, one per chained entry afterwards.
      const float* l = logits.data() + (k == 0 ? b : static_cast<int64_t>(a)) * vocab;
      const SamplingParams p = ParamsOf(s);
      // Greedy verification compares tokens only: no draft distribution (a softmax over the
      // vocabulary in double) is needed.
      SamplingCandidates dist;
      int32_t d;
      if (p.temperature <= 0.0f) {
        d = ArgMax(l, vocab);
      } else {
        dist = SamplingDistribution(l, vocab, p, {}, 0);  // a proposal: no history needed
        std::mt19937_64 rng = Rng(s.sampling().seed(), s.sample_index() + k, 2);
        d = DrawFrom(dist, rng);
      }
      drafts[b].push_back(d);
      states_[s.seq_id()].q.push_back(std::move(dist));
      const int64_t h_row = k == 0 ? last_row[b] : static_cast<int64_t>(a);
      if (k + 1 < s.mtp_drafts()) {
        // The chained row sits right after the previous one; it needs a block to live in, and
        // a position within the model's context (drafts past it could never be verified).
        const int64_t pos = batch[b].cache->length();
        if (pos + 1 > pool_->shape().max_positions ||
            (pos + 1 + pool_->block_size() - 1) / pool_->block_size() >
                static_cast<int64_t>(block_tables[who[b]]->size()))
          continue;
        model::SequenceInput in;
        in.cache = batch[b].cache;
        in.draft_vocab = batch[b].draft_vocab;
        in.tokens = {d};
        in.prev_hidden.assign(hid.begin() + h_row * hidden, hid.begin() + (h_row + 1) * hidden);
        next_batch.push_back(std::move(in));
        next_active.push_back(b);
      }
    }
    if (next_batch.empty()) break;
    auto chained = model_->ForwardMtp(next_batch, model::LogitRows::kLast);
    if (!chained.ok()) return chained.status();
    logits = std::move(chained->logits);
    hid = std::move(chained->hidden);
    active = std::move(next_active);
  }
  for (size_t b = 0; b < batch.size(); ++b) {
    if (drafts[b].empty()) continue;
    auto* r = result->mutable_sequences(who[b]);
    r->mutable_drafts()->Add(drafts[b].begin(), drafts[b].end());
  }
  return absl::OkStatus();
}

}  // namespace glm::runtime
