#include "shard_worker/runtime/speculative_generator.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "shard_worker/runtime/ngram_index.h"

namespace glm::runtime {
namespace {

// Runs the MTP layer over rows whose inputs are (token t[j+1], hidden h[j]) and returns its
// output: logits [rows, vocab] and its normed hidden [rows, hidden] (the chained "h").
absl::StatusOr<model::ForwardOutput> MtpRows(const model::Glm5Model& m, kv_cache::KvCache* cache,
                                             const std::vector<int32_t>& next_tokens, const std::vector<float>& hidden,
                                             model::LogitRows rows, const model::DraftVocabulary* vocab = nullptr,
                                             bool on_caller = false) {
  std::vector<model::SequenceInput> in(1);
  in[0].cache = cache;
  in[0].tokens = next_tokens;
  in[0].prev_hidden = hidden;
  in[0].draft_vocab = vocab;
  return m.ForwardMtp(in, rows, on_caller);
}

}  // namespace

absl::StatusOr<GenerateResult> GenerateSpeculative(const model::Glm5Model& model, const std::vector<int32_t>& prompt,
                                                   const GenerateOptions& options, const SpeculativeConfig& spec,
                                                   SpeculativeStats* stats) {
  if (spec.method == SpeculativeConfig::Method::kNone) return Generate(model, prompt, options);
  const model::ModelConfig& c = model.config();
  const bool mtp = spec.method == SpeculativeConfig::Method::kMtp;
  if (mtp && !c.has_mtp()) return absl::InvalidArgumentError("--speculative mtp: this model has no MTP layer");
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  if (static_cast<int64_t>(prompt.size()) + options.max_new_tokens + spec.k + 1 > c.max_position_embeddings)
    return absl::InvalidArgumentError("prompt + max_new_tokens exceeds the context");
  SpeculativeStats local_stats;
  SpeculativeStats& st = stats ? *stats : local_stats;
  st.drafted_at.assign(spec.k, 0);
  st.accepted_at.assign(spec.k, 0);
  const int64_t vocab = c.vocab_size, hidden = c.hidden_size;
  const SamplingParams& sp = options.sampling;
  const bool greedy = sp.temperature <= 0.0f;
  std::mt19937_64 rng(sp.seed * 0x9e3779b97f4a7c15ull + 1);

  auto cache = model.NewCache();
  auto mtp_cache = mtp ? model.NewMtpCache() : nullptr;
  std::vector<int32_t> tokens = prompt;  // everything so far; the last one is not in the cache yet
  NgramIndex ngram_index;                // prompt lookup's drafts without a scan of `tokens`
  GenerateResult result;
  result.finish_reason = "length";

  // Prefill: main model over the prompt (chunks), the MTP layer over rows 0..n-2.
  std::vector<float> last_logits, last_hidden;  // of the prompt's last position
  const int64_t chunk = std::max<int64_t>(1, options.prefill_chunk);
  for (size_t begin = 0; begin < prompt.size(); begin += chunk) {
    const size_t end = std::min(prompt.size(), begin + chunk);
    std::vector<model::SequenceInput> in(1);
    in[0].cache = cache.get();
    in[0].tokens.assign(prompt.begin() + begin, prompt.begin() + end);
    auto out = model.Forward(in, model::LogitRows::kLast);
    if (!out.ok()) return out.status();
    if (mtp) {
      // Rows j in [begin, end - 1) use t[j+1] and h[j]; row end-1 waits for the next token.
      if (!last_hidden.empty() || end - begin > 1) {
        std::vector<int32_t> next;
        std::vector<float> h;
        if (!last_hidden.empty()) {  // row begin-1, left over from the previous chunk
          next.push_back(prompt[begin]);
          h = last_hidden;
        }
        for (size_t j = begin; j + 1 < end; ++j) {
          next.push_back(prompt[j + 1]);
          h.insert(h.end(), out->hidden.begin() + (j - begin) * hidden, out->hidden.begin() + (j - begin + 1) * hidden);
        }
        if (!next.empty()) {
          auto m = MtpRows(model, mtp_cache.get(), next, h, model::LogitRows::kNone);
          if (!m.ok()) return m.status();
        }
      }
    }
    last_hidden.assign(out->hidden.end() - hidden, out->hidden.end());
    last_logits = std::move(out->logits);
  }
  if (auto s = CheckLogitsFinite(last_logits.data(), static_cast<int64_t>(last_logits.size()) / vocab, vocab); !s.ok())
    return s;

  // The next generated token as plain decoding draws it (its own generator, TokenSeed: the
  // cluster and the plain generator draw the same).
  auto sample = [&](const float* logits) -> int32_t {
    if (greedy) return GreedyToken(logits, vocab, sp, tokens, prompt.size());
    return DrawPlain(SamplingDistribution(logits, vocab, sp, tokens, prompt.size()), sp.seed,
                     static_cast<int64_t>(result.tokens.size()));
  };
  // What the drafts may propose: the common ids and every token so far (the newest included).
  std::unique_ptr<model::DraftVocabulary> draft_vocab;
  if (mtp && spec.draft_vocab > 0) {
    draft_vocab = std::make_unique<model::DraftVocabulary>(spec.draft_vocab, vocab);
    draft_vocab->Add(prompt);
  }
  auto emit = [&](int32_t t) -> bool {  // false: stop generating
    result.tokens.push_back(t);
    tokens.push_back(t);
    if (draft_vocab) draft_vocab->Add(&t, 1);
    if (options.on_token && !options.on_token(t)) return false;
    const bool eos = std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), t) != c.eos_token_ids.end();
    if (eos && !options.ignore_eos) {
      result.finish_reason = "stop";
      return false;
    }
    return static_cast<int64_t>(result.tokens.size()) < options.max_new_tokens;
  };
  if (options.max_new_tokens == 0) return result;
  if (!emit(sample(last_logits.data()))) return result;

  AdaptiveDraftLength adaptive(spec.k, VerifyCostModel::FromConfig(c), AdaptiveDraftLength::DraftCost(spec));
  // MTP state: the draft distribution input for the next row is (tokens.back(), last_hidden).
  // Rows of verified positions not yet in the MTP cache (inputs t[j+1], h[j]) wait in
  // pending_*: they go through the MTP layer together with the next step's first draft row, one
  // forward instead of two (the engine is batch-invariant, so every row is what it would be
  // alone).
  std::vector<int32_t> pending_tokens;
  std::vector<float> pending_hidden;
  auto with_pending = [&](std::vector<int32_t>* toks, std::vector<float>* h) {
    toks->insert(toks->begin(), pending_tokens.begin(), pending_tokens.end());
    h->insert(h->begin(), pending_hidden.begin(), pending_hidden.end());
    pending_tokens.clear();
    pending_hidden.clear();
  };
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  // The MTP drafts of one step: k tokens (and their draft distributions for sampled
  // verification) chained from row p-1, (t[p], h[p-1]) — true inputs; later rows chain on the
  // MTP's own hidden. on_caller: the MTP layer runs on this thread alone (drafting alongside).
  std::vector<SamplingCandidates> q;
  auto draft_mtp = [&](int64_t p, int k, bool on_caller, std::vector<int32_t>* drafts) -> absl::Status {
    const auto draft_start = Clock::now();
    std::vector<int32_t> next_tok = {tokens.back()};
    std::vector<float> h = last_hidden;
    with_pending(&next_tok, &h);
    for (int i = 0; i < k; ++i) {
      auto m = MtpRows(model, mtp_cache.get(), next_tok, h, model::LogitRows::kLast, draft_vocab.get(), on_caller);
      if (!m.ok()) return m.status();
      st.draft_weight_bytes += m->weight_bytes_read;
      // Greedy verification compares tokens only: no draft distribution needed.
      SamplingCandidates dist =
          greedy ? SamplingCandidates() : SamplingDistribution(m->logits.data(), vocab, sp, tokens, prompt.size());
      const int32_t d = greedy ? ArgMax(m->logits.data(), vocab) : DrawFrom(dist, rng);
      drafts->push_back(d);
      q.push_back(std::move(dist));
      st.mtp_head_rows += draft_vocab ? draft_vocab->size() : vocab;
      next_tok = {d};
      h.assign(m->hidden.end() - hidden, m->hidden.end());  // the last row's: chained next
    }
    // Keep only the row built from true inputs (row p-1); the chained rows are redone later.
    mtp_cache->Truncate(p);
    st.draft_seconds += since(draft_start);
    return absl::OkStatus();
  };
  // Drafting alongside (Glm5Model::ForwardDraftingAlongside): on a small model in token groups,
  // a second thread drafts while the caller already runs t[p] through the main model. Whether
  // that beats drafting first depends on the machine: the model's BlockPathChooser times runs of
  // each and keeps drafting first (kPreferred) unless alongside (kOther) is clearly faster — on 2
  // vCPUs here it was 5-10% faster, on a 16-core Xeon 1.5x slower at 16 threads, so a wrong pick
  // costs far more one way (TokenGroupMode kAlways: always alongside).
  const bool can_alongside = mtp && spec.draft_alongside && model.CanDraftAlongside();
  const bool timed = can_alongside && model::GetTokenGroupMode() == model::TokenGroupMode::kAuto;
  model::BlockPathChooser& chooser = model.draft_alongside_chooser();
  using ChosenPath = model::BlockPathChooser::Path;
  for (;;) {
    const auto draft_start = Clock::now();
    const int64_t p = cache->length();  // tokens[p] is the newest token, not yet cached
    const int k = std::min<int64_t>(adaptive.next(), options.max_new_tokens - static_cast<int64_t>(result.tokens.size()));
    const bool alongside = can_alongside && k > 0 && (!timed || chooser.Next() == ChosenPath::kOther);
    // 1. Draft up to k tokens (and their draft distributions for sampled verification).
    std::vector<int32_t> drafts;
    q.clear();
    absl::StatusOr<model::ForwardOutput> out;
    if (alongside) {
      // 1 + 2. Draft and verify in one step (verify_seconds counts the step, the draft its own part).
      const auto verify_start = Clock::now();
      out = model.ForwardDraftingAlongside(
          cache.get(), tokens.back(), k,
          [&](std::vector<int32_t>* d) { return draft_mtp(p, k, /*on_caller=*/true, d); }, &drafts);
      if (!out.ok()) return out.status();
      st.verify_seconds += since(verify_start);
      st.alongside_steps++;
    } else if (k > 0 && mtp) {
      if (auto s = draft_mtp(p, k, /*on_caller=*/false, &drafts); !s.ok()) return s;
    } else if (k > 0) {
      drafts = ngram_index.Draft(tokens, k);
      for (int32_t d : drafts) q.push_back(OneHot(d));
    } else if (mtp) {
      // Not drafting this step, but keep the MTP cache complete: the pending rows and row p-1.
      std::vector<int32_t> next_tok = {tokens.back()};
      std::vector<float> h = last_hidden;
      with_pending(&next_tok, &h);
      auto m = MtpRows(model, mtp_cache.get(), next_tok, h, model::LogitRows::kNone);
      if (!m.ok()) return m.status();
      st.draft_weight_bytes += m->weight_bytes_read;
    }
    if (!(k > 0 && mtp)) st.draft_seconds += since(draft_start);  // MTP drafts time themselves
    // 2. Verify: the main model over [t[p], d1..dk] in one forward.
    if (!alongside) {
      const auto verify_start = Clock::now();
      std::vector<model::SequenceInput> in(1);
      in[0].cache = cache.get();
      in[0].tokens = {tokens.back()};
      in[0].tokens.insert(in[0].tokens.end(), drafts.begin(), drafts.end());
      out = model.Forward(in, model::LogitRows::kAll);
      if (!out.ok()) return out.status();
      st.verify_seconds += since(verify_start);
    }
    if (auto s = CheckLogitsFinite(out->logits.data(), static_cast<int64_t>(out->logits.size()) / vocab, vocab);
        !s.ok())
      return s;
    // Per position verified: the adaptive draft length varies the steps' sizes alike on both paths.
    if (timed && k > 0)
      chooser.Done(alongside ? ChosenPath::kOther : ChosenPath::kPreferred, since(draft_start) / (k + 1));
    st.verify_weight_bytes += out->weight_bytes_read;
    st.steps++;
    // 3. Accept a prefix of the drafts; then one token from the target (correction or bonus).
    int accepted = 0;
    bool stop = false;
    int32_t next_token = -1;
    st.drafted += static_cast<int64_t>(drafts.size());
    for (size_t i = 0; i < drafts.size(); ++i) st.drafted_at[i]++;
    const bool one_hot = !mtp;  // prompt-lookup drafts; sampled MTP drafts come from q
    for (size_t i = 0; i < drafts.size(); ++i) {
      const float* logits = out->logits.data() + i * vocab;
      if (greedy) {
        const int32_t target = GreedyToken(logits, vocab, sp, tokens, prompt.size());
        if (target != drafts[i]) {
          next_token = target;
          break;
        }
      } else {
        const SamplingCandidates pdist = SamplingDistribution(logits, vocab, sp, tokens, prompt.size());
        // Sampled MTP drafts: their recorded distribution; prompt-lookup and argmax drafts are
        // one-hot, verified against the position's plain sample (emit has counted the accepted).
        RejectionOutcome r = one_hot ? VerifyOneHot(drafts[i], pdist, sp.seed, static_cast<int64_t>(result.tokens.size()))
                                     : AcceptOrResample(drafts[i], pdist, q[i], rng);
        if (!r.accepted) {
          next_token = r.token;
          break;
        }
      }
      st.accepted++;
      st.accepted_at[i]++;
      ++accepted;
      if (!emit(drafts[i])) {
        stop = true;
        break;
      }
    }
    adaptive.Update(static_cast<int>(drafts.size()), accepted);
    // Roll the main cache back to t[p] and the accepted drafts.
    cache->Truncate(p + 1 + accepted);
    if (stop) break;
    if (next_token < 0) next_token = sample(out->logits.data() + accepted * vocab);  // all accepted: bonus
    // MTP rows p..p+accepted from true inputs (t[j+1], h[j]); their last row feeds the next draft.
    const bool more = emit(next_token);
    if (mtp) {
      const int64_t rows = accepted;  // rows p .. p+accepted-1 (row p+accepted is drafted next step)
      pending_tokens.assign(tokens.end() - 1 - rows, tokens.end() - 1);
      pending_hidden.assign(out->hidden.begin(), out->hidden.begin() + rows * hidden);
      last_hidden.assign(out->hidden.begin() + accepted * hidden, out->hidden.begin() + (accepted + 1) * hidden);
    }
    if (!more) break;
  }
  return result;
}

}  // namespace glm::runtime
