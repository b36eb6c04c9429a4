// spec_bench: speculative decoding on the bundled model.
//  1. Teacher-forced MTP agreement on held-out code (the fixture's eval ids): how often the MTP
//     head's top token equals the main model's own next-next greedy token (what a first draft
//     needs to be accepted).
//  2. Batch-1 decode with --speculative mtp:K / ngram:K vs plain decoding on prompts from the
//     held-out text: acceptance per draft position, tokens/s and speedup.
//  3. The speedup the measured acceptance would give at GLM-5's ratio (the MTP layer is 1/78 of
//     the per-token weight reads there, 1/6 here), and at GLM-5's bytes (Glm5StepBytes: a verify
//     reads the routed experts of every position, and a draft reads the 1.9 GB lm_head).
//   build/bin/spec_bench [--model DIR] [--reference FILE] [--tokens N] [--threads N] [--json]
//                        [--methods mtp:1,ngram:3] [--repeat N (longer runs, e.g. under perf)]
//                        [--workload continue|edit] [--weight_dtype int4 --quantize_scope mtp]
//                        [--draft_alongside=false (MTP: draft first, then verify)]
// --workload edit: a code-editing shape, where the prompt already holds much of the output: each
// prompt is the model's own earlier answer to an excerpt, then the excerpt again (an agent asking
// again with the previous draft in context); the output then repeats much of that draft, and the
// bench reports how much. (An excerpt followed by its own first tokens does not work here: this
// small model does not copy text it has seen — 1.6% of such outputs reproduced the excerpt.)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/placement/cost_model.h"
#include "coordinator/placement/weight_format.h"
#include "nlohmann/json.hpp"
#include "bench/kernel_settings.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/model/synth_checkpoint.h"
#include "shard_worker/runtime/dashed_flags.h"
#include "shard_worker/runtime/speculative_generator.h"

ABSL_FLAG(std::string, activation_dtype, "f32",
          "activations of BF16-weight matmuls: f32 | bf16 (vdpbf16ps where the CPU has AVX512-BF16)");
ABSL_FLAG(std::string, token_groups, "auto",
          "small models' decode steps: auto (timed choice), never (matmul rows split across threads), always "
          "(token groups; Glm5Model)");
ABSL_FLAG(std::string, matmul_path, "auto",
          "matmul kernels: auto (the fastest this CPU has) or a path it supports (avx512, avx512_f16c_fp8, avx2, portable)");
ABSL_FLAG(std::string, model, GLM_BENCH_DEFAULT_MODEL, "model directory");
ABSL_FLAG(std::string, reference, GLM_BENCH_DEFAULT_REFERENCE, "reference.json with eval_ids_first_1024");
ABSL_FLAG(int32_t, tokens, 128, "tokens generated per prompt");
ABSL_FLAG(int32_t, prompts, 4, "prompts cut from the held-out text");
ABSL_FLAG(int32_t, threads, 1, "compute threads");
ABSL_FLAG(bool, json, false, "print one JSON object");
ABSL_FLAG(std::vector<std::string>, methods, (std::vector<std::string>{"mtp:1", "mtp:2", "mtp:3", "ngram:3"}),
          "speculative methods to run (comma-separated mtp:K / ngram:K)");
ABSL_FLAG(std::string, weight_dtype, "stored",
          "stored | int8 | int4 | int{8,4}-g<N> (converted at load; with --quantize_scope mtp the MTP draft "
          "layer only, so plain decoding is unchanged)");
ABSL_FLAG(std::string, quantize_scope, "experts", "with int8/int4: experts | all | mtp (the MTP draft layer only)");
ABSL_FLAG(int64_t, draft_vocab, 0,
          "MTP drafts propose only ids below this count and the prompt's and output's own tokens "
          "(0: the whole vocabulary)");
ABSL_FLAG(bool, draft_alongside, true,
          "MTP: draft on a second thread while the main model already runs the newest token, where the model "
          "runs in token groups (SpeculativeConfig::draft_alongside); false: draft first, then verify");
ABSL_FLAG(int32_t, repeat, 1, "times each method decodes every prompt (longer runs for profiling)");
ABSL_FLAG(std::string, workload, "continue",
          "continue (each prompt is a held-out excerpt; the model continues it) | edit (the model's earlier answer to "
          "the excerpt, then the excerpt again: the prompt holds much of the output, as in code editing)");

namespace {
using Clock = std::chrono::steady_clock;
double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Bytes a batch-1 GLM-5 step reads on one rank holding the whole model as released (block FP8),
// from the planner's cost model (placement::CostModel: what the workers hold and read), where
// decode is bandwidth-bound and time follows bytes:
//   Main(n)  the main model over n positions of one sequence: everything a decoded token reads,
//            plus the routed experts that the n − 1 further positions add: E·(1 − (1 − k/E)^n)
//            distinct experts with independent routing (neighbouring tokens share experts more
//            often, so this overstates a verify a little);
//   Mtp()    one draft position: the MTP layer, eh_proj and the lm_head again.
class Glm5StepBytes {
 public:
  // weight_dtype / quantize_scope: as this run's model holds its weights (scope "mtp": the MTP
  // draft layer and its head re-quantised, the main model as stored).
  static absl::StatusOr<Glm5StepBytes> Create(const std::string& weight_dtype, const std::string& quantize_scope) {
    auto preset = glm::model::SynthPresetByName("glm5");
    if (!preset.ok()) return preset.status();
    auto format = glm::placement::ParseWeightFormat(weight_dtype, quantize_scope, preset->config);
    if (!format.ok()) return format.status();
    return Glm5StepBytes(preset->config, *format);
  }
  double Main(double n) const {
    const double e = c_.n_routed_experts, k = c_.num_experts_per_tok;
    const double extra_experts = e * (1.0 - std::pow(1.0 - k / e, n)) - k;
    return main1_ + sparse_layers_ * extra_experts * static_cast<double>(cost_.RoutedExpertBytes());
  }
  // One draft position reading `head_rows` rows of the MTP head (a draft vocabulary), or all.
  double Mtp(int64_t head_rows = -1) const {
    glm::placement::RankAssignment r = whole_;
    if (head_rows >= 0) r.set_vocab_end(static_cast<int32_t>(std::min<int64_t>(head_rows, c_.vocab_size)));
    return static_cast<double>(cost_.MtpDraft(r).decode_bytes);
  }
  int64_t vocab() const { return c_.vocab_size; }

 private:
  Glm5StepBytes(const glm::model::ModelConfig& c, const glm::placement::WeightFormat& format)
      : c_(c), cost_(c, format) {
    whole_.set_head_begin(0);
    whole_.set_head_end(static_cast<int32_t>(c.num_attention_heads));
    whole_.set_dense_begin(0);
    whole_.set_dense_end(static_cast<int32_t>(c.intermediate_size));
    whole_.set_shared_begin(0);
    whole_.set_shared_end(static_cast<int32_t>(c.moe_intermediate_size * c.n_shared_experts));
    for (int32_t e = 0; e < c.n_routed_experts; ++e) whole_.add_experts(e);
    whole_.set_vocab_begin(0);
    whole_.set_vocab_end(static_cast<int32_t>(c.vocab_size));
    main1_ = static_cast<double>(cost_.Embedding().decode_bytes + cost_.Head(whole_).decode_bytes);
    for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
      main1_ += static_cast<double>(cost_.Layer(whole_, layer, false).decode_bytes);
      sparse_layers_ += c.mlp_kind(layer) == glm::model::MlpKind::kSparse;
    }
  }

  glm::model::ModelConfig c_;
  glm::placement::CostModel cost_;
  glm::placement::RankAssignment whole_;
  double main1_ = 0;
  int64_t sparse_layers_ = 0;
};
}  // namespace

int main(int argc, char** argv) {
  glm::runtime::NormalizeDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  glm::bench::KernelSettings settings;
  settings.activation_dtype = absl::GetFlag(FLAGS_activation_dtype);
  settings.token_groups = absl::GetFlag(FLAGS_token_groups);
  settings.matmul_path = absl::GetFlag(FLAGS_matmul_path);
  if (std::string err = glm::bench::ApplyKernelSettings(settings); !err.empty()) {
    std::fprintf(stderr, "spec_bench: %s\n", err.c_str());
    return 2;
  }
  const std::string workload = absl::GetFlag(FLAGS_workload);
  if (workload != "continue" && workload != "edit") {
    std::fprintf(stderr, "spec_bench: --workload must be continue or edit\n");
    return 2;
  }
  std::vector<std::pair<std::string, glm::runtime::SpeculativeConfig>> methods;
  for (const std::string& method : absl::GetFlag(FLAGS_methods)) {
    auto spec = glm::runtime::ParseSpeculative(method);
    if (!spec.ok()) {
      std::fprintf(stderr, "spec_bench: --methods: %s\n", std::string(spec.status().message()).c_str());
      return 2;
    }
    spec->draft_vocab = absl::GetFlag(FLAGS_draft_vocab);
    spec->draft_alongside = absl::GetFlag(FLAGS_draft_alongside);
    methods.emplace_back(method, *spec);
  }
  auto ckpt = glm::model::Checkpoint::Open(absl::GetFlag(FLAGS_model));
  if (!ckpt.ok()) {
    std::fprintf(stderr, "spec_bench: %s\n", std::string(ckpt.status().message()).c_str());
    return 1;
  }
  glm::model::LoadOptions load;
  if (auto s = glm::model::ParseWeightDType(absl::GetFlag(FLAGS_weight_dtype), &load); !s.ok()) {
    std::fprintf(stderr, "spec_bench: --weight_dtype: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (!glm::model::ParseQuantizeScope(absl::GetFlag(FLAGS_quantize_scope), &load.quantize_scope)) {
    std::fprintf(stderr, "spec_bench: --quantize_scope must be experts, all or mtp\n");
    return 2;
  }
  auto weights = glm::model::ModelWeights::Load(**ckpt, load);
  if (!weights.ok()) {
    std::fprintf(stderr, "spec_bench: %s\n", std::string(weights.status().message()).c_str());
    return 1;
  }
  glm::kernels::ThreadPool pool(absl::GetFlag(FLAGS_threads));
  auto model = glm::model::Glm5Model::Create(std::shared_ptr<const glm::model::ModelWeights>(std::move(*weights)), &pool);
  if (!model.ok()) return 1;
  const auto& m = **model;
  if (!m.config().has_mtp()) {
    std::fprintf(stderr, "spec_bench: the model has no MTP layer\n");
    return 1;
  }
  std::ifstream in(absl::GetFlag(FLAGS_reference));
  std::stringstream ss;
  ss << in.rdbuf();
  const nlohmann::json ref = nlohmann::json::parse(ss.str(), nullptr, false);
  if (ref.is_discarded() || !ref.contains("eval_ids_first_1024")) {
    std::fprintf(stderr, "spec_bench: no eval_ids_first_1024 in %s\n", absl::GetFlag(FLAGS_reference).c_str());
    return 1;
  }
  const std::vector<int32_t> eval = ref["eval_ids_first_1024"].get<std::vector<int32_t>>();
  const int64_t vocab = m.config().vocab_size, hidden = m.config().hidden_size, n = static_cast<int64_t>(eval.size());

  // 1. Teacher forcing over the held-out ids.
  auto cache = m.NewCache();
  std::vector<glm::model::SequenceInput> batch(1);
  batch[0].cache = cache.get();
  batch[0].tokens = eval;
  auto main_out = m.Forward(batch, glm::model::LogitRows::kAll);
  auto mtp_cache = m.NewMtpCache();
  std::vector<glm::model::SequenceInput> mtp(1);
  mtp[0].cache = mtp_cache.get();
  mtp[0].tokens.assign(eval.begin() + 1, eval.end());
  mtp[0].prev_hidden.assign(main_out->hidden.begin(), main_out->hidden.begin() + (n - 1) * hidden);
  auto mtp_out = m.ForwardMtp(mtp, glm::model::LogitRows::kAll);
  int64_t agree_main = 0, agree_text = 0, rows = 0;
  for (int64_t j = 0; j + 2 < n; ++j) {  // MTP row j predicts position j+2; main row j+1 predicts it too
    const int32_t d = glm::runtime::ArgMax(mtp_out->logits.data() + j * vocab, vocab);
    agree_main += d == glm::runtime::ArgMax(main_out->logits.data() + (j + 1) * vocab, vocab);
    agree_text += d == eval[j + 2];
    ++rows;
  }
  const double tf_agreement = static_cast<double>(agree_main) / rows;

  // 2. Generation on prompts cut from the held-out text.
  const int prompts = absl::GetFlag(FLAGS_prompts), new_tokens = absl::GetFlag(FLAGS_tokens);
  // Prompt p is eval ids [200p, 200p + 120).
  if (prompts < 1 || new_tokens < 2 || static_cast<int64_t>(prompts - 1) * 200 + 120 > n) {
    std::fprintf(stderr, "spec_bench: --prompts must be 1..%ld (prompt p is held-out ids [200p, 200p+120) of %ld) and "
                 "--tokens at least 2\n", static_cast<long>((n - 120) / 200 + 1), static_cast<long>(n));
    return 2;
  }
  // Prompt p: held-out ids [200p, 200p + 120); edit: the greedy answer to it first (drafts[p]).
  constexpr int64_t kExcerpt = 120;
  const int64_t prefix = workload == "edit" ? new_tokens : 0;
  std::vector<std::vector<int32_t>> earlier_answers(prompts);
  auto make_prompt = [&](int p) {
    std::vector<int32_t> prompt = earlier_answers[p];
    prompt.insert(prompt.end(), eval.begin() + p * 200, eval.begin() + p * 200 + kExcerpt);
    return prompt;
  };
  if (prefix + kExcerpt + new_tokens + 8 > m.config().max_position_embeddings) {
    std::fprintf(stderr, "spec_bench: --tokens %d does not fit the model's context of %ld\n", new_tokens,
                 static_cast<long>(m.config().max_position_embeddings));
    return 2;
  }
  glm::runtime::GenerateOptions g;
  g.max_new_tokens = new_tokens;
  g.ignore_eos = true;
  for (int p = 0; p < prompts && workload == "edit"; ++p) {
    auto answer = glm::runtime::Generate(m, make_prompt(p), g);
    if (!answer.ok()) {
      std::fprintf(stderr, "spec_bench: %s\n", std::string(answer.status().message()).c_str());
      return 1;
    }
    earlier_answers[p] = answer->tokens;
  }
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  // Decode only: each run's time minus the same method's prefill + first token (a run with
  // max_new_tokens 1), so the prompt's prefill (the same work with or without speculation, and
  // at 120 tokens comparable to the whole decode here) does not dilute the ratio.
  glm::runtime::GenerateOptions first = g;
  first.max_new_tokens = 1;
  const int decoded = std::max(1, new_tokens - 1);
  double plain_seconds = 0;
  std::vector<std::vector<int32_t>> plain_outputs;
  for (int p = 0; p < prompts; ++p) {
    const std::vector<int32_t> prompt = make_prompt(p);
    auto t0 = Clock::now();
    (void)glm::runtime::Generate(m, prompt, first);
    auto t1 = Clock::now();
    auto out = glm::runtime::Generate(m, prompt, g);
    plain_seconds += std::max(0.0, Seconds(Clock::now() - t1) - Seconds(t1 - t0));
    plain_outputs.push_back(out->tokens);
  }
  const double plain_tps = prompts * decoded / plain_seconds;
  // edit: the share of the output that repeats the earlier answer in the prompt, position by position.
  int64_t copied = 0, copy_slots = 0;
  for (int p = 0; p < prompts && workload == "edit"; ++p)
    for (size_t i = 0; i < plain_outputs[p].size() && i < earlier_answers[p].size(); ++i, ++copy_slots)
      copied += plain_outputs[p][i] == earlier_answers[p][i];
  const double copy_rate = copy_slots ? static_cast<double>(copied) / copy_slots : 0.0;
  if (!absl::GetFlag(FLAGS_json)) {
    std::printf("teacher-forced MTP agreement with the main model's next-next token: %.3f over %ld positions "
                "(with the text itself: %.3f)\n", tf_agreement, static_cast<long>(rows),
                static_cast<double>(agree_text) / rows);
    std::printf("plain decode: %.1f tokens/s (batch 1, %d threads)\n", plain_tps, absl::GetFlag(FLAGS_threads));
    if (workload == "edit")
      std::printf("edit workload: %.1f%% of the output repeats the earlier answer held in the prompt\n", 100.0 * copy_rate);
    std::printf("%-9s %8s %9s %10s %8s %8s  %s\n", "method", "accept", "tok/s", "speedup", "GLM-5*", "bytes**",
                "per-position acceptance (drafts)");
  }
  // Where a speculative step's time goes: after a 120-token prompt, the median time of one
  // plain decode forward, of a verify forward over 2 and 3 positions, of the MTP layer's pass
  // over the prompt, and of the MTP layer over 1 and 2 rows (the draft row, plus the accepted
  // row it catches up on) — each rolled back.
  std::vector<std::pair<std::string, double>> costs;
  {
    std::vector<int32_t> prompt(eval.begin(), eval.begin() + 120);
    auto c = m.NewCache();
    auto mc = m.NewMtpCache();
    std::vector<glm::model::SequenceInput> in(1);
    in[0].cache = c.get();
    in[0].tokens = prompt;
    auto pre = m.Forward(in, glm::model::LogitRows::kLast);
    std::vector<glm::model::SequenceInput> mi(1);
    mi[0].cache = mc.get();
    mi[0].tokens.assign(prompt.begin() + 1, prompt.end());
    mi[0].prev_hidden.assign(main_out->hidden.begin(), main_out->hidden.begin() + 119 * hidden);
    (void)m.ForwardMtp(mi, glm::model::LogitRows::kNone);
    auto median_us = [&](const std::function<void()>& f) {
      std::vector<double> t;
      for (int i = 0; i < 301; ++i) {
        auto a = Clock::now();
        f();
        t.push_back(Seconds(Clock::now() - a) * 1e6);
      }
      std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
      return t[t.size() / 2];
    };
    for (int n : {1, 2, 3}) {
      costs.emplace_back(absl::StrCat("forward_", n, "_positions_us"), median_us([&] {
        in[0].tokens.assign(eval.begin() + 120, eval.begin() + 120 + n);
        (void)m.Forward(in, glm::model::LogitRows::kAll);
        c->Truncate(120);
      }));
    }
    // The MTP layer's pass over a prompt (rows 0..118: only their cache rows are needed).
    costs.emplace_back("mtp_prompt_119_rows_us", median_us([&] {
      mc->Truncate(0);
      mi[0].tokens.assign(prompt.begin() + 1, prompt.end());
      mi[0].prev_hidden.assign(main_out->hidden.begin(), main_out->hidden.begin() + 119 * hidden);
      (void)m.ForwardMtp(mi, glm::model::LogitRows::kNone);
    }));
    for (int n : {1, 2}) {
      costs.emplace_back(absl::StrCat("mtp_", n, "_rows_us"), median_us([&] {
        mi[0].tokens.assign(eval.begin() + 120, eval.begin() + 120 + n);
        mi[0].prev_hidden.assign(main_out->hidden.begin() + (119 - n + 1) * hidden, main_out->hidden.begin() + 120 * hidden);
        (void)m.ForwardMtp(mi, glm::model::LogitRows::kLast);
        mc->Truncate(119);
      }));
    }
    if (!absl::GetFlag(FLAGS_json)) {
      std::printf("step costs (median us):");
      for (const auto& [name, us] : costs) std::printf(" %s %.1f", name.c_str(), us);
      std::printf("\n");
    }
  }
  auto glm5_bytes = Glm5StepBytes::Create(absl::GetFlag(FLAGS_weight_dtype), absl::GetFlag(FLAGS_quantize_scope));
  if (!glm5_bytes.ok()) {
    std::fprintf(stderr, "spec_bench: %s\n", std::string(glm5_bytes.status().message()).c_str());
    return 1;
  }
  const Glm5StepBytes& glm5 = *glm5_bytes;
  for (const auto& [method, parsed] : methods) {
    const glm::runtime::SpeculativeConfig* spec = &parsed;
    glm::runtime::SpeculativeStats total;
    total.drafted_at.assign(spec->k, 0);
    total.accepted_at.assign(spec->k, 0);
    double seconds = 0, method_plain_seconds = 0;
    // Weights the decode forwards read, plain and speculative (each weight once per step on
    // either step path): what a step would cost where it costs its weight bytes alone.
    double plain_bytes = 0, spec_bytes = 0;
    bool identical = true;
    std::vector<double> pair_speedups;  // per paired run: its plain time / its speculative time
    const int repeat = std::max(1, absl::GetFlag(FLAGS_repeat));
    for (int run = 0; run < prompts * repeat; ++run) {
      const int p = run % prompts;
      const std::vector<int32_t> prompt = make_prompt(p);
      // Each speculative run is paired with a plain run of the same prompt, in alternating order,
      // and the speedup compares the pairs' sums: this machine's speed drifts by 2x over
      // seconds, which separately timed passes turned into +-15% on the ratio.
      double pair_plain = 0, pair_spec = 0;
      auto plain_run = [&] {
        auto a = Clock::now();
        (void)glm::runtime::Generate(m, prompt, first);
        auto b = Clock::now();
        auto plain = glm::runtime::Generate(m, prompt, g);
        pair_plain = std::max(0.0, Seconds(Clock::now() - b) - Seconds(b - a));
        method_plain_seconds += pair_plain;
        if (plain.ok()) plain_bytes += static_cast<double>(plain->decode_weight_bytes);
      };
      if (run % 2 == 0) plain_run();
      glm::runtime::SpeculativeStats st;
      auto t0 = Clock::now();
      (void)glm::runtime::GenerateSpeculative(m, prompt, first, *spec, nullptr);
      auto t1 = Clock::now();
      auto out = glm::runtime::GenerateSpeculative(m, prompt, g, *spec, &st);
      pair_spec = std::max(0.0, Seconds(Clock::now() - t1) - Seconds(t1 - t0));
      seconds += pair_spec;
      if (run % 2 == 1) plain_run();
      if (pair_spec > 0) pair_speedups.push_back(pair_plain / pair_spec);
      identical &= out.ok() && out->tokens == plain_outputs[p];
      spec_bytes += static_cast<double>(st.verify_weight_bytes + st.draft_weight_bytes);
      total.steps += st.steps;
      total.draft_seconds += st.draft_seconds;
      total.mtp_head_rows += st.mtp_head_rows;
      total.verify_seconds += st.verify_seconds;
      total.alongside_steps += st.alongside_steps;
      total.drafted += st.drafted;
      total.accepted += st.accepted;
      for (int i = 0; i < spec->k; ++i) {
        total.drafted_at[i] += st.drafted_at[i];
        total.accepted_at[i] += st.accepted_at[i];
      }
    }
    const double tps = static_cast<double>(prompts) * repeat * decoded / seconds;
    const double paired_plain_tps = static_cast<double>(prompts) * repeat * decoded / method_plain_seconds;
    std::vector<double> per_pos;
    for (int i = 0; i < spec->k; ++i)
      per_pos.push_back(total.drafted_at[i] ? static_cast<double>(total.accepted_at[i]) / total.drafted_at[i] : -1.0);
    // Tokens per verify step, and the speedup at GLM-5's ratio: a verify of k+1 tokens reads
    // about one decode step's weights (bandwidth-bound), each MTP draft 1/78 of them.
    const double tokens_per_step =
        static_cast<double>(prompts) * repeat * new_tokens / std::max<int64_t>(1, total.steps);
    const bool is_mtp = spec->method == glm::runtime::SpeculativeConfig::Method::kMtp;
    const double mtp_cost = is_mtp ? spec->k / 78.0 : 0.0;
    const double glm5_speedup = tokens_per_step / (1.0 + mtp_cost);
    // The same tokens per step at GLM-5's bytes: a step verifies 1 + (drafts per step) positions
    // and, with MTP, drafts them one MTP forward each.
    const double drafts_per_step = static_cast<double>(total.drafted) / std::max<int64_t>(1, total.steps);
    // With a draft vocabulary, GLM-5's drafts read its common rows plus as many of the sequence's
    // own tokens beyond them as the drafts here did (a GLM-5-sized vocabulary holds the common
    // ids whole; the extra ids are a property of the text).
    const int64_t vocab_here = m.config().vocab_size, common = absl::GetFlag(FLAGS_draft_vocab);
    const double rows_per_draft = total.drafted ? static_cast<double>(total.mtp_head_rows) / total.drafted : vocab_here;
    const int64_t glm5_head_rows =
        common > 0 ? std::min<int64_t>(glm5.vocab(), common + static_cast<int64_t>(std::max(
                                                                  0.0, rows_per_draft - std::min(common, vocab_here))))
                   : -1;
    const double glm5_bytes_speedup =
        tokens_per_step * glm5.Main(1) /
        (glm5.Main(1 + drafts_per_step) + (is_mtp ? drafts_per_step * glm5.Mtp(glm5_head_rows) : 0.0));
    // Where a step's time went in generation, against a plain decode step of the paired runs; with
    // a free draft the speedup could reach tokens per step x plain step / verify.
    const double steps = static_cast<double>(std::max<int64_t>(1, total.steps));
    const double plain_step_us = method_plain_seconds / (static_cast<double>(prompts) * repeat * decoded) * 1e6;
    const double verify_us = total.verify_seconds / steps * 1e6, draft_us = total.draft_seconds / steps * 1e6;
    // A step's wall time in generation (drafting, verifying, accepting), from the timed decode.
    const double step_us = seconds / steps * 1e6;
    const double free_draft_ceiling = tokens_per_step * plain_step_us / verify_us;
    const double per_token = 1.0 / (static_cast<double>(prompts) * repeat * decoded * (1 << 20));
    const double bytes_ceiling = spec_bytes > 0 ? plain_bytes / spec_bytes : 0.0;
    nlohmann::ordered_json r;
    r["method"] = method;
    r["acceptance_rate"] = total.acceptance_rate();
    nlohmann::ordered_json per_pos_json = nlohmann::ordered_json::array();  // null: never drafted
    for (double v : per_pos) per_pos_json.push_back(v < 0 ? nlohmann::ordered_json() : nlohmann::ordered_json(v));
    r["acceptance_per_position"] = per_pos_json;
    r["drafted_per_position"] = total.drafted_at;
    r["tokens_per_verify_step"] = tokens_per_step;
    r["tokens_per_s"] = tps;
    r["plain_tokens_per_s"] = paired_plain_tps;
    r["speedup"] = tps / paired_plain_tps;
    // The median pair's ratio: a burst of the machine's slowness in one pair moves it less.
    std::sort(pair_speedups.begin(), pair_speedups.end());
    const double pair_median = pair_speedups.empty() ? 0.0 : pair_speedups[pair_speedups.size() / 2];
    r["speedup_pair_median"] = pair_median;
    r["glm5_ratio_speedup_estimate"] = glm5_speedup;
    r["glm5_bytes_speedup_estimate"] = glm5_bytes_speedup;
    r["outputs_identical_to_plain"] = identical;
    r["plain_step_us"] = plain_step_us;
    r["verify_us_per_step"] = verify_us;
    r["step_us"] = step_us;
    r["draft_us_per_step"] = draft_us;
    // Steps drafted alongside: their verify time is the whole step, their draft time ran meanwhile.
    r["alongside_steps"] = total.alongside_steps;
    if (is_mtp) {
      r["mtp_head_rows_per_draft"] = rows_per_draft;
      r["glm5_mtp_draft_bytes"] = glm5.Mtp(glm5_head_rows);
    }
    r["free_draft_speedup_ceiling"] = free_draft_ceiling;
    r["plain_weight_mib_per_token"] = plain_bytes * per_token;
    r["speculative_weight_mib_per_token"] = spec_bytes * per_token;
    r["weight_bytes_speedup_ceiling"] = bytes_ceiling;
    results.push_back(r);
    if (!absl::GetFlag(FLAGS_json)) {
      // Each position's rate with how often it was drafted: the adaptive length may draft the
      // last positions rarely (e.g. 0/1), which a bare rate would hide.
      std::string pp;
      for (size_t i = 0; i < per_pos.size(); ++i)
        absl::StrAppend(&pp, pp.empty() ? "" : " ",
                        per_pos[i] < 0 ? std::string("-")
                                       : absl::StrFormat("%.2f(%d)", per_pos[i], total.drafted_at[i]));
      std::printf("%-9s %8.3f %9.1f %9.2fx %7.2fx %7.2fx  [%s]%s\n", method.c_str(), total.acceptance_rate(), tps,
                  tps / paired_plain_tps, glm5_speedup, glm5_bytes_speedup, pp.c_str(), identical ? "" : "  OUTPUT DIFFERS");
      std::printf("          speedup of the median pair (of %zu paired runs): %.2fx\n", pair_speedups.size(), pair_median);
      // A step drafted alongside counts wholly as verify time (and its draft as draft time too), so
      // with some steps alongside, verify + draft is not a step's cost: the step's wall time is.
      if (total.alongside_steps > 0)
        std::printf("          in generation, per step: %.1f us (%.2f plain steps of %.1f us); verify %.1f us (alongside "
                    "steps: with their draft), draft %.1f us, on a second thread alongside in %.0f%% of the steps\n",
                    step_us, step_us / plain_step_us, plain_step_us, verify_us, draft_us,
                    100.0 * static_cast<double>(total.alongside_steps) / steps);
      else
        std::printf("          in generation, per step: verify %.1f us (%.2f plain steps of %.1f us), draft %.1f us; "
                    "a free draft would give %.2fx\n",
                    verify_us, verify_us / plain_step_us, plain_step_us, draft_us, free_draft_ceiling);
      std::printf("          weights read per token: plain %.2f MiB, speculative %.2f MiB; where steps cost their "
                  "weight bytes alone: %.2fx\n",
                  plain_bytes * per_token, spec_bytes * per_token, bytes_ceiling);
      if (is_mtp && common > 0)
        std::printf("          draft vocabulary: %.0f of %ld head rows per draft here; GLM-5 %ld of %ld: %.2f GB per draft "
                    "(whole head: %.2f GB)\n",
                    rows_per_draft, static_cast<long>(vocab_here), static_cast<long>(glm5_head_rows),
                    static_cast<long>(glm5.vocab()), glm5.Mtp(glm5_head_rows) / 1e9, glm5.Mtp() / 1e9);
    }
  }
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::ordered_json j;
    j["teacher_forced_mtp_agreement"] = tf_agreement;
    j["plain_tokens_per_s"] = plain_tps;
    j["workload"] = workload;
    j["weight_dtype"] = absl::GetFlag(FLAGS_weight_dtype);
    j["quantize_scope"] = absl::GetFlag(FLAGS_quantize_scope);
    if (workload == "edit") j["edit_copy_rate"] = copy_rate;
    for (const auto& [name, us] : costs) j["step_costs"][name] = us;
    j["methods"] = results;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("* GLM-5: tokens per verify step / (1 + k/78), a bandwidth-bound estimate.\n");
    std::printf("** GLM-5's bytes, batch 1: a verify of n positions reads the routed experts of all of them (%.1f GB for\n"
                "   1 position, %.1f GB for 2, independent routing) and every MTP draft %.1f GB (its layer and its head%s).\n",
                glm5.Main(1) / 1e9, glm5.Main(2) / 1e9, glm5.Mtp() / 1e9,
                absl::GetFlag(FLAGS_quantize_scope) == "mtp" ? ", re-quantised" : "");
  }
  return 0;
}
