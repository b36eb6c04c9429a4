// prefill_bench: prefill is compute-bound, so it is measured against the machine's own GEMM rate.
//   (a) peak: the prefill GEMM kernel family (kernels::MatMul at n_tokens > 8) on a large
//       square-ish GEMM (default 2048 tokens × 4096×4096) in BF16, or in the --weight-dtype
//       format the model is converted to, GFLOP/s, best of --reps before and after the model runs;
//   (b) model: Glm5Model::Forward over a --prompt-token prompt in --chunk-token chunks
//       (LogitRows::kLast), tokens/s, best of --reps, and the achieved model FLOP/s — 2 · params
//       touched · tokens for every projection (attention, indexer keys, dense MLP, router,
//       active + shared experts, one lm_head row per chunk) plus the attention core as executed
//       (absorbed MLA over the latent cache: q·W_uk, scores over rank + rope dims, the weighted
//       latent sum, ·W_uv) — as a fraction of (a). The bar is >= 0.5.
//
//   build/bin/prefill_bench --model /tmp/models/bench [--threads N] [--prompt 2048] [--chunk 2048]
//                           [--reps 2] [--gemm-tokens 2048 --gemm-rows 4096 --gemm-cols 4096]
//                           [--json]
//                           [--weight-dtype int8|int4 [--quantize-scope experts|all]]
// Numbers on a shared machine are noisy: best-of reps is reported.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "bench/baseline_store.h"
#include "bench/model_flops.h"
#include "shard_worker/kernels/dtype.h"
#include "bench/kernel_settings.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/matmul_simd_driver.h"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/runtime/dashed_flags.h"

ABSL_FLAG(std::string, matmul_path, "auto",
          "matmul kernels: auto (the fastest this CPU has) or a path it supports (avx512, avx512_f16c_fp8, avx2, portable)");
ABSL_FLAG(std::string, model, "/tmp/models/bench", "model directory (glmctl synth --preset bench)");
ABSL_FLAG(int32_t, threads, 0, "compute threads (0 = all cores)");
ABSL_FLAG(int32_t, prompt, 2048, "prompt tokens");
ABSL_FLAG(int32_t, chunk, 2048, "prefill chunk (tokens per Forward)");
ABSL_FLAG(std::string, kv_cache_dtype, "f32", "the KV cache's attention rows: f32 | bf16 | fp8 (the coordinator's --kv-cache-dtype)");
ABSL_FLAG(int32_t, reps, 2, "repetitions of each measurement (best is reported)");
ABSL_FLAG(int32_t, gemm_tokens, 2048, "peak GEMM: tokens");
ABSL_FLAG(int32_t, gemm_rows, 4096, "peak GEMM: weight rows");
ABSL_FLAG(int32_t, gemm_cols, 4096, "peak GEMM: weight columns");
ABSL_FLAG(bool, skip_model, false, "only the peak GEMM");
ABSL_FLAG(std::string, weight_dtype, "stored",
          "stored | int8 | int4 | int{8,4}-g<N>: the model converted at load, and the peak GEMM in that "
          "format (the same kernel family); stored = BF16");
ABSL_FLAG(std::string, quantize_scope, "experts", "with int8/int4: experts | all");
ABSL_FLAG(bool, amx_tiles, true,
          "with --activation-dtype bf16 on CPUs with AMX: run the matmuls on AMX tiles (false: the vdpbf16ps "
          "kernels, to compare)");
ABSL_FLAG(std::string, activation_dtype, "f32",
          "activations of BF16-weight matmuls: f32 | bf16 (vdpbf16ps where the CPU has AVX512-BF16; the peak "
          "GEMM then measures that kernel family too)");
ABSL_FLAG(bool, json, false, "print one JSON object");
ABSL_FLAG(std::string, token_groups, "auto",
          "small models' steps of a few tokens: auto (timed choice), never (matmul rows split across threads), "
          "always (token groups; Glm5Model)");
ABSL_FLAG(int32_t, min_gemm_tokens, 0,
          "matmuls of this many tokens or more go to the prefill GEMM (0 = each path's own tile/GEMM crossover; "
          "9 = every one past the decode tiles): to compare the two on the model");
ABSL_FLAG(std::string, baseline, GLM_BENCH_BASELINE_FILE, "JSON file of previous best results");
ABSL_FLAG(bool, record, false, "store this prefill tokens/s as the new best in --baseline if it is better");

namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

int Fail(const std::string& msg) {
  std::fprintf(stderr, "prefill_bench: %s\n", msg.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  glm::runtime::NormalizeDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  glm::bench::KernelSettings settings;
  settings.activation_dtype = absl::GetFlag(FLAGS_activation_dtype);
  settings.amx_tiles = absl::GetFlag(FLAGS_amx_tiles);
  settings.matmul_path = absl::GetFlag(FLAGS_matmul_path);
  settings.min_gemm_tokens = absl::GetFlag(FLAGS_min_gemm_tokens);
  settings.token_groups = absl::GetFlag(FLAGS_token_groups);
  if (std::string err = glm::bench::ApplyKernelSettings(settings); !err.empty()) {
    std::fprintf(stderr, "prefill_bench: %s\n", err.c_str());
    return 2;
  }
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads <= 0) threads = glm::kernels::AvailableCpus();
  const int reps = std::max(1, absl::GetFlag(FLAGS_reps));
  const int64_t prompt = std::max(1, absl::GetFlag(FLAGS_prompt));
  const int64_t chunk = std::max(1, absl::GetFlag(FLAGS_chunk));
  glm::kernels::ThreadPool pool(threads);
  glm::kv_cache::KvDType kv_dtype = glm::kv_cache::KvDType::kF32;
  if (!glm::kv_cache::ParseKvDType(absl::GetFlag(FLAGS_kv_cache_dtype), &kv_dtype))
    return Fail(glm::kv_cache::KvDTypeNameError("--kv-cache-dtype", absl::GetFlag(FLAGS_kv_cache_dtype)));

  const int64_t gt = absl::GetFlag(FLAGS_gemm_tokens), gr = absl::GetFlag(FLAGS_gemm_rows),
                gc = absl::GetFlag(FLAGS_gemm_cols);
  glm::model::LoadOptions load;
  const std::string dtype_name = absl::GetFlag(FLAGS_weight_dtype);
  if (auto st = glm::model::ParseWeightDType(dtype_name, &load); !st.ok()) return Fail(std::string(st.message()));
  if (!glm::model::ParseQuantizeScope(absl::GetFlag(FLAGS_quantize_scope), &load.quantize_scope))
    return Fail("--quantize-scope must be experts or all");
  const glm::bench::PeakGemmFormat gemm = glm::bench::PeakGemmFormatFor(dtype_name, gc);
  const std::string& gemm_name = gemm.name;
  double peak = glm::bench::PeakGemmGflops(gt, gr, gc, reps, gemm, &pool);

  double best_s = 0, load_s = 0;
  glm::bench::ModelFlops flops;
  if (!absl::GetFlag(FLAGS_skip_model)) {
    auto t0 = Clock::now();
    auto ckpt = glm::model::Checkpoint::Open(absl::GetFlag(FLAGS_model));
    if (!ckpt.ok()) return Fail(std::string(ckpt.status().message()));
    auto weights = glm::model::ModelWeights::Load(**ckpt, load);
    if (!weights.ok()) return Fail(std::string(weights.status().message()));
    auto model = glm::model::Glm5Model::Create(
        std::shared_ptr<const glm::model::ModelWeights>(std::move(*weights)), &pool);
    if (!model.ok()) return Fail(std::string(model.status().message()));
    (*model)->set_kv_cache_dtype(kv_dtype);
    load_s = Seconds(Clock::now() - t0);
    const auto& config = (*model)->config();
    if (prompt > config.max_position_embeddings) return Fail("--prompt exceeds the model's context");
    flops = glm::bench::PrefillFlops(config, prompt, chunk);
    std::vector<int32_t> tokens(prompt);
    for (int64_t i = 0; i < prompt; ++i)
      tokens[i] = static_cast<int32_t>((i * 104729 + 7919) % config.vocab_size);
    for (int r = 0; r < reps; ++r) {
      auto cache = (*model)->NewCache();
      auto t1 = Clock::now();
      for (int64_t p = 0; p < prompt; p += chunk) {
        std::vector<glm::model::SequenceInput> in(1);
        in[0].cache = cache.get();
        in[0].tokens.assign(tokens.begin() + p, tokens.begin() + std::min(prompt, p + chunk));
        auto out = (*model)->Forward(in, glm::model::LogitRows::kLast);
        if (!out.ok()) return Fail(std::string(out.status().message()));
      }
      const double s = Seconds(Clock::now() - t1);
      best_s = r == 0 ? s : std::min(best_s, s);
    }
  }

  // Once more after the model: on a shared machine either pass may be disturbed.
  if (best_s > 0) peak = std::max(peak, glm::bench::PeakGemmGflops(gt, gr, gc, reps, gemm, &pool));
  const double total = flops.total();
  const double model_gflops = best_s > 0 ? total / best_s / 1e9 : 0;
  const double tok_s = best_s > 0 ? prompt / best_s : 0;
  const double ratio = peak > 0 ? model_gflops / peak : 0;
  // Previous best prefill tokens/s for this model, format, prompt and chunk, and thread count.
  const std::string key = absl::StrCat("prefill_bench/", std::filesystem::path(absl::GetFlag(FLAGS_model)).filename().string(),
                                       "/", absl::GetFlag(FLAGS_weight_dtype), ":", absl::GetFlag(FLAGS_quantize_scope),
                                       glm::kernels::Bf16Activations() ? ":bf16-activations" : "",
                                       kv_dtype == glm::kv_cache::KvDType::kBf16 ? ":kv-bf16" : "", "/prompt", prompt, "/chunk", chunk, "/threads", threads);
  glm::bench::BaselineStore baselines(absl::GetFlag(FLAGS_baseline));
  const double previous = best_s > 0 ? baselines.Get(key) : 0.0;
  const double vs_previous = previous > 0 ? tok_s / previous : 0.0;
  if (absl::GetFlag(FLAGS_record) && best_s > 0) baselines.RecordIfBetter(key, tok_s);
  if (absl::GetFlag(FLAGS_json)) {
    std::printf(
        "{\"path\":\"%s\",\"bf16_activations\":%s,\"threads\":%d,\"reps\":%d,\"gemm\":{\"tokens\":%lld,\"rows\":%lld,"
        "\"cols\":%lld,\"dtype\":\"%s\",\"gflops\":%.1f},\"prefill\":{\"prompt\":%lld,"
        "\"chunk\":%lld,\"seconds\":%.3f,\"tokens_per_s\":%.1f,\"projection_gflop\":%.2f,"
        "\"attention_gflop\":%.2f,\"gflops\":%.1f,\"ratio_to_peak\":%.3f,\"load_s\":%.2f,"
        "\"previous_best_tokens_per_s\":%.1f,\"ratio_to_previous_best\":%.4f}}\n",
        glm::kernels::MatMulPathName().c_str(), glm::kernels::Bf16Activations() ? "true" : "false", threads,
        reps, static_cast<long long>(gt),
        static_cast<long long>(gr), static_cast<long long>(gc), gemm_name.c_str(), peak,
        static_cast<long long>(prompt), static_cast<long long>(chunk), best_s, tok_s,
        flops.projections / 1e9, flops.attention / 1e9, model_gflops, ratio, load_s, previous, vs_previous);
    return 0;
  }
  std::printf("matmul path %s, %d threads, best of %d%s\n", glm::kernels::MatMulPathName().c_str(),
              threads, reps,
              glm::kernels::Bf16Activations()
                  ? (", BF16 activations (" + glm::kernels::Bf16ActivationsDetails() + ")").c_str()
                  : "");
  std::printf("%-44s %12s\n", "measurement", "value");
  std::printf("%-44s %12.1f\n",
              ("peak GEMM GFLOP/s (" + gemm_name + " " + std::to_string(gt) + " x " + std::to_string(gr) +
               "x" + std::to_string(gc) + ")").c_str(),
              peak);
  if (best_s > 0) {
    std::printf("%-44s %12.3f\n", ("prefill seconds (" + std::to_string(prompt) + " tokens, chunk " +
                                   std::to_string(chunk) + ")").c_str(), best_s);
    std::printf("%-44s %12.1f\n", "prefill tokens/s", tok_s);
    std::printf("%-44s %12.1f\n", "model GFLOP: projections", flops.projections / 1e9);
    std::printf("%-44s %12.1f\n", "model GFLOP: attention core (absorbed MLA)", flops.attention / 1e9);
    std::printf("%-44s %12.1f\n", "model GFLOP/s achieved", model_gflops);
    std::printf("%-44s %12.3f %s\n", "ratio to peak GEMM (bar >= 0.5)", ratio,
                ratio >= 0.5 ? "ok" : "BELOW");
    if (previous > 0) std::printf("%-44s %12.3f (%.1f tokens/s)\n", "ratio to the previous best", vs_previous, previous);
  }
  return 0;
}
