// quant_quality_bench: what re-quantising the weights at load costs in model quality. Runs the
// bundled model's held-out eval ids (tests/fixtures/ref-glm5-tiny-code/reference.json,
// `eval_ids_first_1024`) through the BF16 engine and through one engine per quantised format, and
// prints per format: perplexity (next-token NLL over the ids; the reference NLL is printed for
// comparison), mean KL(bf16 ‖ quant) over positions, top-1 agreement with BF16, and the weight
// bytes. Bars (issue 6): int8 mean KL ≤ 0.005 and top-1 ≥ 99%; int4 mean KL ≤ 0.05 and ≥ 95%.
// Simulated formats (sim-int5, sim-int6-g64, ...: bench/simulated_format.h) show what a bit width
// no kernel has would cost, e.g. how many bits the int4 top-1 bar needs on this model.
// FORMAT+gptq (int4+gptq, int8+gptq:all, ...): calibrated quantisation of the MLP matrices
// (kernels/gptq.h) with statistics gathered over the calibration tokens (never the eval text).
//
//   build/bin/quant_quality_bench [--model DIR] [--reference FILE] [--formats int8,int4:all,...]
//                                 [--quantize-scope experts|all]
//                                 [--calibration-text F1,F2 | --calibration-ids FILE] (for FORMAT+gptq)
//                                 [--only REGEX] (quantise only the matching matrices of the scope)
//                                 [--tokens N] [--threads N] [--json]
// Exit status 1 when a format named int8* / int4* misses its bar.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/simulated_format.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/model/mlp_calibration.h"
#include "shard_worker/runtime/dashed_flags.h"

ABSL_FLAG(std::string, model, GLM_SOURCE_DIR "/models/glm5-tiny-code", "model directory");
ABSL_FLAG(std::string, reference, GLM_SOURCE_DIR "/tests/fixtures/ref-glm5-tiny-code/reference.json",
          "reference.json with eval_ids_first_1024 and eval_nll_first_1024");
ABSL_FLAG(std::string, formats, "int8,int4,int8:all,int4:all",
          "comma-separated quantised formats (see decode_bench), each optionally FORMAT:experts|all, or "
          "bf16-activations (weights as stored, activations rounded to BF16: --activation-dtype bf16), or bf16-kv "
          "(weights as stored, the KV cache's rows in BF16: --kv-cache-dtype bf16), or fp8-kv (the same in FP8 e4m3 "
          "with a scale a row: --kv-cache-dtype fp8), or int8-kv (int8 codes, a scale a row), or bf16-index / "
          "fp8-index / int8-index (the DSA indexer's key rows in that dtype: --index-key-dtype; see --eval-text, "
          "--from-position: the selection acts past index_topk positions), or KV-kv+IDX-index (both), or "
          "sim-int<B>[-g<G>] (simulated: int4's recipe with B bits) or sim-uint<B>[-g<G>] (simulated asymmetric: "
          "scale and offset a group), either with -r[<N>] (rows Hadamard-rotated first; bench/simulated_format.h)");
ABSL_FLAG(std::string, quantize_scope, "experts",
          "matrices re-quantised unless a format says FORMAT:SCOPE: experts (routed + shared) | all");
ABSL_FLAG(std::string, calibration_ids, "",
          "JSON file with \"ids\" (as `glmctl tokenize` prints them): the calibration tokens of FORMAT+gptq "
          "formats (int4+gptq: calibrated quantisation, kernels/gptq.h); never the eval ids");
ABSL_FLAG(std::string, calibration_text, "",
          "comma-separated text files tokenized with the model's tokenizer: the calibration tokens of FORMAT+gptq "
          "formats (instead of --calibration-ids)");
ABSL_FLAG(int32_t, calibration_sequence, 512, "calibration tokens run as independent sequences of this length");
ABSL_FLAG(std::string, only, "",
          "ECMAScript regex: of the matrices in the scope only those whose checkpoint name it finds are quantised "
          "(e.g. 'shared_experts', 'experts\\.[0-9]+\\.down', 'layers\\.1\\.'): what each part costs alone");
ABSL_FLAG(int32_t, tokens, 1024, "eval ids to run (at most the reference's 1024, or the model's context with --eval-text)");
ABSL_FLAG(std::string, eval_text, "",
          "a text file tokenized with the model's tokenizer whose first --tokens ids are scored instead of the "
          "reference's eval ids (e.g. the held-out /usr/lib/python3.11/mailbox.py, for contexts past index_topk)");
ABSL_FLAG(int32_t, from_position, 0,
          "KL and top-1 over positions >= this only (e.g. the model's index_topk: where the indexer's selection acts)");
ABSL_FLAG(int32_t, threads, 0, "compute threads (0 = all cores)");
ABSL_FLAG(bool, json, false, "print one JSON object");

namespace {

int Fail(const std::string& msg) {
  std::fprintf(stderr, "quant_quality_bench: %s\n", msg.c_str());
  return 2;
}

struct Run {
  std::string name;
  std::vector<float> logits;  // [n, vocab]
  int64_t matrix_bytes = 0;
  double nll = 0, kl = 0, top1 = 1, max_kl = 0;
};

// Loads the model (matrices converted to `dtype`) and returns logits for every position.
absl::StatusOr<Run> Evaluate(const std::string& dir, const std::string& name, const glm::model::LoadOptions& load,
                             const std::vector<int32_t>& ids, glm::kernels::ThreadPool* pool,
                             glm::kv_cache::KvDType kv_dtype = glm::kv_cache::KvDType::kF32,
                             glm::kv_cache::KvDType index_key_dtype = glm::kv_cache::KvDType::kF32) {
  auto ckpt = glm::model::Checkpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  auto weights = glm::model::ModelWeights::Load(**ckpt, load);
  if (!weights.ok()) return weights.status();
  Run run;
  run.name = name;
  run.matrix_bytes = (*weights)->bytes_loaded();
  auto model = glm::model::Glm5Model::Create(std::shared_ptr<const glm::model::ModelWeights>(std::move(*weights)), pool);
  if (!model.ok()) return model.status();
  (*model)->set_kv_cache_dtype(kv_dtype);
  (*model)->set_index_key_dtype(index_key_dtype);
  auto cache = (*model)->NewCache();
  std::vector<glm::model::SequenceInput> batch(1);
  batch[0].cache = cache.get();
  batch[0].tokens = ids;
  auto out = (*model)->Forward(batch, glm::model::LogitRows::kAll);
  if (!out.ok()) return out.status();
  run.logits = std::move(out->logits);
  return run;
}

// log-softmax of one row into out.
void LogSoftmax(const float* logits, int64_t n, std::vector<double>& out) {
  out.resize(n);
  double mx = *std::max_element(logits, logits + n), sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double{logits[i]} - mx);
  const double lse = mx + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[i] = logits[i] - lse;
}

// Fills nll (next-token, positions 0..n-2), and against `base`: mean KL(base ‖ run) and top-1 over
// positions [from, n).
void Score(const Run* base, const std::vector<int32_t>& ids, int64_t vocab, int64_t from, Run* run) {
  const int64_t n = static_cast<int64_t>(ids.size());
  std::vector<double> lp, lb;
  double nll = 0, kl = 0;
  int64_t agree = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = run->logits.data() + i * vocab;
    LogSoftmax(row, vocab, lp);
    if (i + 1 < n) nll -= lp[ids[i + 1]];
    if (base == nullptr || i < from) continue;
    const float* brow = base->logits.data() + i * vocab;
    LogSoftmax(brow, vocab, lb);
    double k = 0;
    for (int64_t v = 0; v < vocab; ++v) k += std::exp(lb[v]) * (lb[v] - lp[v]);
    kl += k;
    run->max_kl = std::max(run->max_kl, k);
    agree += (std::max_element(row, row + vocab) - row) == (std::max_element(brow, brow + vocab) - brow);
  }
  run->nll = nll / std::max<int64_t>(1, n - 1);
  if (base != nullptr) {
    run->kl = kl / (n - from);
    run->top1 = static_cast<double>(agree) / (n - from);
  }
}

// The whole file at `path`.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The calibration tokens (--calibration-text or --calibration-ids).
absl::StatusOr<std::vector<int32_t>> CalibrationIds(const std::string& dir) {
  const std::string path = absl::GetFlag(FLAGS_calibration_ids), texts = absl::GetFlag(FLAGS_calibration_text);
  if (path.empty() == texts.empty())
    return absl::InvalidArgumentError("a +gptq format needs --calibration-ids FILE or --calibration-text FILE[,FILE...]");
  if (!texts.empty()) {
    auto tok = glm::tokenizer::Tokenizer::FromFile(dir);
    if (!tok.ok()) return tok.status();
    std::vector<int32_t> ids;
    for (absl::string_view file : absl::StrSplit(texts, ',', absl::SkipEmpty())) {
      auto text = ReadWholeFile(std::string(file));
      if (!text.ok()) return text.status();
      auto encoded = (*tok)->Encode(*text, /*add_special_tokens=*/false);
      if (!encoded.ok()) return encoded.status();
      ids.insert(ids.end(), encoded->begin(), encoded->end());
    }
    return ids;
  }
  auto text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.contains("ids") || !j["ids"].is_array())
    return absl::InvalidArgumentError(path + ": expected a JSON object with \"ids\"");
  std::vector<int32_t> ids;
  for (const auto& v : j["ids"]) {
    if (!v.is_number_integer()) return absl::InvalidArgumentError(path + ": ids must be integers");
    ids.push_back(v.get<int32_t>());
  }
  return ids;
}

// The calibration tokens' input statistics, for the +gptq formats. Refuses calibration tokens that
// contain the start of the eval ids (the statistics would have seen the text being scored).
absl::StatusOr<std::shared_ptr<const glm::model::MlpCalibration>> CollectCalibration(
    const std::string& dir, const std::vector<int32_t>& eval_ids, glm::kernels::ThreadPool* pool) {
  auto ids = CalibrationIds(dir);
  if (!ids.ok()) return ids.status();
  const size_t probe = std::min<size_t>(32, eval_ids.size());
  if (probe > 0 && std::search(ids->begin(), ids->end(), eval_ids.begin(), eval_ids.begin() + probe) != ids->end())
    return absl::InvalidArgumentError("the calibration tokens contain the eval text: calibrate on other text");
  auto ckpt = glm::model::Checkpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  return glm::model::MlpCalibration::Collect(**ckpt, *ids, absl::GetFlag(FLAGS_calibration_sequence), pool);
}

// The bar for a format name (int8* / int4*); false when there is none.
bool Bar(const std::string& name, double* max_kl, double* min_top1) {
  if (name.find(" only(") != std::string::npos) return false;  // part of a format (--only): no bar
  if (name.find("-kv") != std::string::npos || name.find("-index") != std::string::npos)
    return false;  // KV cache dtypes: no bar
  if (name.rfind("int8", 0) == 0) { *max_kl = 0.005; *min_top1 = 0.99; return true; }
  if (name.rfind("int4", 0) == 0) { *max_kl = 0.05; *min_top1 = 0.95; return true; }
  return false;
}

// A cache format: DTYPE-kv (the latent and rope rows), DTYPE-index (the indexer keys) or both joined
// by '+', DTYPE a kv_cache::ParseKvDType name; false for anything else.
bool ParseCacheFormat(absl::string_view format, glm::kv_cache::KvDType* kv, glm::kv_cache::KvDType* index) {
  bool any = false;
  for (absl::string_view part : absl::StrSplit(format, '+')) {
    const size_t dash = part.rfind('-');
    if (dash == absl::string_view::npos) return false;
    const absl::string_view what = part.substr(dash + 1);
    if (what != "kv" && what != "index") return false;
    if (!glm::kv_cache::ParseKvDType(std::string(part.substr(0, dash)), what == "kv" ? kv : index)) return false;
    any = true;
  }
  return any;
}

// The ids to score: --eval-text's first --tokens ids, or the reference's eval ids.
absl::StatusOr<std::vector<int32_t>> EvalIds(const std::string& dir, const nlohmann::json& ref, int tokens) {
  const std::string text_path = absl::GetFlag(FLAGS_eval_text);
  std::vector<int32_t> ids;
  if (text_path.empty()) {
    if (!ref.contains("eval_ids_first_1024")) return absl::InvalidArgumentError("reference has no eval_ids_first_1024");
    ids = ref["eval_ids_first_1024"].get<std::vector<int32_t>>();
  } else {
    auto tok = glm::tokenizer::Tokenizer::FromFile(dir);
    if (!tok.ok()) return tok.status();
    auto text = ReadWholeFile(text_path);
    if (!text.ok()) return text.status();
    auto encoded = (*tok)->Encode(*text, /*add_special_tokens=*/false);
    if (!encoded.ok()) return encoded.status();
    ids = *std::move(encoded);
  }
  if (static_cast<int64_t>(ids.size()) > tokens) ids.resize(tokens);
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  glm::runtime::NormalizeDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  auto reference = ReadWholeFile(absl::GetFlag(FLAGS_reference));
  if (!reference.ok()) return Fail(std::string(reference.status().message()));
  nlohmann::json ref = nlohmann::json::parse(*reference, nullptr, false);
  if (ref.is_discarded()) return Fail("reference is not JSON");
  const int tokens = absl::GetFlag(FLAGS_tokens);
  if (tokens < 2) return Fail("--tokens must be at least 2");
  auto eval_ids = EvalIds(absl::GetFlag(FLAGS_model), ref, tokens);
  if (!eval_ids.ok()) return Fail(std::string(eval_ids.status().message()));
  std::vector<int32_t> ids = *std::move(eval_ids);
  // The reference's NLL is of its own eval ids (printed for comparison with the BF16 engine's).
  const double ref_nll = absl::GetFlag(FLAGS_eval_text).empty() ? ref.value("eval_nll_first_1024", 0.0) : 0.0;
  const int64_t from = absl::GetFlag(FLAGS_from_position);
  if (from < 0 || from >= static_cast<int64_t>(ids.size()))
    return Fail(absl::StrFormat("--from-position %d is not below the %d eval ids", from, ids.size()));
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads <= 0) threads = glm::kernels::AvailableCpus();
  glm::kernels::ThreadPool pool(threads);
  const std::string dir = absl::GetFlag(FLAGS_model);

  std::shared_ptr<const glm::model::MlpCalibration> calibration;
  const std::string only = absl::GetFlag(FLAGS_only);
  std::vector<Run> runs;
  glm::model::LoadOptions bf16;
  bf16.matrix_dtype = glm::kernels::DType::kBF16;
  auto base = Evaluate(dir, "bf16", bf16, ids, &pool);
  if (!base.ok()) return Fail(std::string(base.status().message()));
  runs.push_back(*std::move(base));
  glm::model::QuantizeScope default_scope;
  if (!glm::model::ParseQuantizeScope(absl::GetFlag(FLAGS_quantize_scope), &default_scope))
    return Fail("--quantize-scope must be experts or all");
  for (absl::string_view f : absl::StrSplit(absl::GetFlag(FLAGS_formats), ',', absl::SkipEmpty())) {
    if (f == "bf16-activations") {  // BF16 weights as stored, activations rounded to BF16
      glm::model::LoadOptions load;
      load.matrix_dtype = glm::kernels::DType::kBF16;
      glm::kernels::SetBf16Activations(true);
      auto run = Evaluate(dir, std::string(f), load, ids, &pool);
      glm::kernels::SetBf16Activations(false);
      if (!run.ok()) return Fail(std::string(f) + ": " + std::string(run.status().message()));
      runs.push_back(*std::move(run));
      continue;
    }
    // Weights as stored, the KV rows (--kv-cache-dtype) and / or the indexer keys (--index-key-dtype)
    // rounded: DTYPE-kv, DTYPE-index or DTYPE-kv+DTYPE-index.
    if (glm::kv_cache::KvDType kv = glm::kv_cache::KvDType::kF32, index = glm::kv_cache::KvDType::kF32;
        ParseCacheFormat(f, &kv, &index)) {
      glm::model::LoadOptions load;
      load.matrix_dtype = glm::kernels::DType::kBF16;
      auto run = Evaluate(dir, std::string(f), load, ids, &pool, kv, index);
      if (!run.ok()) return Fail(std::string(f) + ": " + std::string(run.status().message()));
      runs.push_back(*std::move(run));
      continue;
    }
    // FORMAT or FORMAT:SCOPE (int8:all), the scope defaulting to --quantize-scope.
    const std::vector<std::string> parts = absl::StrSplit(f, ':');
    glm::model::LoadOptions load;
    load.quantize_scope = default_scope;
    if (parts.size() > 2 || (parts.size() == 2 && !glm::model::ParseQuantizeScope(parts[1], &load.quantize_scope)))
      return Fail("format '" + std::string(f) + "' must be FORMAT or FORMAT:experts|all");
    std::string format = parts[0];
    const std::string kGptq = "+gptq";
    const bool gptq = format.size() > kGptq.size() && format.compare(format.size() - kGptq.size(), kGptq.size(), kGptq) == 0;
    if (gptq) {
      format.resize(format.size() - kGptq.size());
      if (calibration == nullptr) {
        auto collected = CollectCalibration(dir, ids, &pool);
        if (!collected.ok()) return Fail(std::string(f) + ": " + std::string(collected.status().message()));
        calibration = *std::move(collected);
      }
      load.calibration = calibration;
    }
    if (glm::bench::SimulatedFormat sim; !gptq && glm::bench::ParseSimulatedFormat(format, &sim)) {
      load.simulate_rows = [sim](float* row, int64_t cols) { glm::bench::SimulateRow(sim, row, cols); };
    } else if (auto st = glm::model::ParseWeightDType(format, &load);
               !st.ok() || !load.matrix_dtype || !glm::kernels::IsGroupQuantized(*load.matrix_dtype)) {
      return Fail("unknown quantised format '" + parts[0] + "' (int8, int4, int{8,4}-g<N>, sim-[u]int<B>[-g<G>][-r[<N>]])");
    }
    if (!only.empty()) {
      std::regex pattern;
      try {
        pattern = std::regex(only);
      } catch (const std::regex_error& e) {
        return Fail("--only: " + std::string(e.what()));
      }
      load.quantize_only = [pattern](const std::string& tensor) { return std::regex_search(tensor, pattern); };
    }
    const std::string name = format + (gptq ? kGptq : "") +
                             (load.quantize_scope == glm::model::QuantizeScope::kAllMatrices ? ":all" : ":experts") +
                             (only.empty() ? "" : " only(" + only + ")");
    auto run = Evaluate(dir, name, load, ids, &pool);
    if (!run.ok()) return Fail(name + ": " + std::string(run.status().message()));
    runs.push_back(*std::move(run));
  }
  auto ckpt = glm::model::Checkpoint::Open(dir);
  const int64_t vocab = (*ckpt)->config().vocab_size;
  bool all_ok = true;
  for (size_t i = 0; i < runs.size(); ++i) Score(i == 0 ? nullptr : &runs[0], ids, vocab, from, &runs[i]);

  const bool json = absl::GetFlag(FLAGS_json);
  nlohmann::json out;
  out["model"] = dir;
  out["tokens"] = ids.size();
  out["from_position"] = from;
  out["reference_nll"] = ref_nll;
  out["reference_ppl"] = std::exp(ref_nll);
  out["matmul_path"] = glm::kernels::MatMulPathName();
  if (!json) {
    std::printf("model %s, %zu eval tokens (KL and top-1 from position %lld), matmul path %s; reference NLL %.4f "
                "(ppl %.3f)\n",
                dir.c_str(), ids.size(), static_cast<long long>(from), glm::kernels::MatMulPathName().c_str(), ref_nll,
                std::exp(ref_nll));
    std::printf("%-22s %10s %8s %9s %12s %10s %11s %7s %8s  %s\n", "format", "MiB", "NLL", "ppl", "KL(bf16||q)",
                "max KL", "top-1 agree", "+-95%", "bar", "");
  }
  for (const Run& r : runs) {
    double max_kl = 0, min_top1 = 0;
    const bool has_bar = Bar(r.name, &max_kl, &min_top1);
    const bool ok = !has_bar || (r.kl <= max_kl && r.top1 >= min_top1);
    all_ok = all_ok && ok;
    // The agreement is a fraction of ids.size() positions: its binomial 95% margin (1.96 standard
    // errors) says how far apart two formats must be to differ (~±1.9% at 89% over 1024 ids).
    const double margin = 1.96 * std::sqrt(r.top1 * (1 - r.top1) / static_cast<double>(ids.size() - from));
    nlohmann::json j = {{"format", r.name},         {"weight_bytes", r.matrix_bytes}, {"nll", r.nll},
                        {"ppl", std::exp(r.nll)},    {"mean_kl", r.kl},                {"max_kl", r.max_kl},
                        {"top1_agreement", r.top1}, {"top1_margin_95", margin}};
    // A simulated format's matrices are held as F32: their size says nothing about the format's.
    const bool simulated = r.name.rfind("sim-", 0) == 0;
    if (simulated) j["weight_bytes"] = nullptr;
    if (has_bar) j["bar"] = {{"max_mean_kl", max_kl}, {"min_top1", min_top1}, {"ok", ok}};
    out["formats"].push_back(j);
    if (!json)
      std::printf("%-22s %10s %8.4f %9.3f %12.6f %10.5f %10.2f%% %6.2f%% %8s\n", r.name.c_str(),
                  simulated ? "-" : absl::StrFormat("%.2f", r.matrix_bytes / 1048576.0).c_str(), r.nll,
                  std::exp(r.nll), r.kl, r.max_kl, 100 * r.top1, 100 * margin, !has_bar ? "-" : ok ? "ok" : "MISSED");
  }
  out["all_bars_met"] = all_ok;
  if (json) std::printf("%s\n", out.dump().c_str());
  return all_ok ? 0 : 1;
}
