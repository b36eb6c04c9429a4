// bin/coordinator: MPI rank 0. Plans the placement from the workers' topologies (or loads an
// operator's plan), starts them, then serves gRPC and OpenAI-compatible HTTP over the
// continuous-batching engine until SIGINT/SIGTERM.
//   mpirun -np 1 coordinator --model DIR [--grpc-listen HOST:PORT] [--http-listen HOST:PORT]
//          [--placement plan.json] [--weight-dtype int8|int4|...] [--expert-memory-gib G] [options]
//          : -np N shard_worker
#include <algorithm>
#include <signal.h>

#include <cerrno>
#include <cstdlib>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/api/api_server.h"
#include "coordinator/api/loading_health_server.h"
#include "coordinator/api/serving_metrics.h"
#include "coordinator/api/text_frontend.h"
#include "coordinator/cluster/cluster_client.h"
#include "coordinator/placement/expert_replica_planner.h"
#include "coordinator/placement/model_name.h"
#include "coordinator/placement/planner.h"
#include "coordinator/placement/size_flags.h"
#include "coordinator/placement/weight_format.h"
#include "coordinator/scheduler/cluster_step_runner.h"
#include "coordinator/scheduler/engine.h"
#include "coordinator/scheduler/warm_up.h"
#include "coordinator/tokenizer/chat_template.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "shard_worker/comm/mpi_communicator.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kv_cache/kv_block_pool.h"
#include "shard_worker/model/model_config.h"
#include "shard_worker/runtime/dashed_flags.h"

ABSL_FLAG(std::string, model, "", "model directory (config.json, safetensors, optional tokenizer)");
ABSL_FLAG(std::string, grpc_listen, "127.0.0.1:50051", "gRPC address (\"\" = off)");
ABSL_FLAG(std::string, http_listen, "127.0.0.1:8000", "OpenAI-compatible HTTP address (\"\" = off)");
ABSL_FLAG(std::string, host, "",
          "vLLM's spelling of the HTTP address, with --port: the host (default 127.0.0.1; 0.0.0.0 = every "
          "interface); instead of --http-listen");
ABSL_FLAG(int32_t, port, 0, "vLLM's spelling of the HTTP address, with --host: the port (default 8000)");
ABSL_FLAG(std::string, placement, "", "a plan JSON (from `glmctl plan --json`) to use instead of planning");
ABSL_FLAG(int32_t, stages, 0, "pipeline stages (0 = one per host)");
ABSL_FLAG(std::string, expert_layout, "expert-parallel", "expert-parallel | expert-tensor-parallel");
ABSL_FLAG(double, memory_budget_gib, 0, "memory per rank (0 = 90% of its NUMA node's share)");
ABSL_FLAG(double, kv_cache_gib, glm::placement::kDefaultKvCacheGib, "KV cache per worker rank, GiB");
ABSL_FLAG(std::string, weight_dtype, "stored",
          "how workers hold matrices: stored | bf16 | f32 | int8 | int8-row | int4 | int8-g<N> | int4-g<N> "
          "(int8/int4 re-quantised at load)");
ABSL_FLAG(std::string, activation_dtype, "f32",
          "activations of matmuls with BF16 weights on every worker: f32 (exact to ~1e-5) | bf16 (rounded to "
          "BF16, BF16 dot products on CPUs with AVX512-BF16: ~1.5x prefill and batched decode)");
ABSL_FLAG(std::string, quantize_scope, "experts",
          "with int8/int4: experts (routed + shared experts re-quantised, the rest as stored) | all | mtp "
          "(the MTP draft layer only: cheaper drafts for --speculative mtp:K, the same outputs)");
ABSL_FLAG(double, expert_memory_gib, 0,
          "memory per worker rank for routed experts; beyond it they stay on disk and stream through an LRU "
          "cache of this size (0 = all resident)");
ABSL_FLAG(std::string, expert_load, "",
          "routing statistics recorded with `glmctl expert-load` (JSON): how often each routed expert was chosen, "
          "for --hot-expert-replicas");
ABSL_FLAG(std::string, hot_expert_replicas, "0",
          "copies of each MoE layer's N most-chosen experts (--expert-load) on other ranks of their expert-parallel "
          "stage, where memory allows, hottest first; each step the least-loaded holder computes a shared expert "
          "(0 = none; auto = every expert tokens chose, as far as memory allows)");
ABSL_FLAG(int32_t, kv_block_size, 32, "positions per KV block (the prefix cache's granularity)");
ABSL_FLAG(std::string, kv_cache_dtype, "f32",
          "what the KV cache stores attention's rows in: f32 (as computed; also 'auto', vLLM's default) | bf16 "
          "(latent and rope key rounded once when written: half their bytes, 1.5-2x the tokens --kv-cache-gib holds; "
          "the DSA indexer keys stay f32 unless --index-key-dtype) | int8 (the latent in a byte a value and a scale "
          "a row, the rope key in bf16: about 2.4x the tokens f32 holds, indexer keys included) | fp8 = fp8_e4m3 "
          "(vLLM's names: the latent in e4m3 with a power-of-two scale a row instead; less accurate than int8 in "
          "the same bytes: see the README)");
ABSL_FLAG(std::string, index_key_dtype, "f32",
          "what the KV cache stores the DSA indexer's keys in: f32 (default: the top-k selection of the reference "
          "arithmetic) | bf16 | int8 | fp8 (as --kv-cache-dtype: 1/2, about 1/4 of the bytes; the selection is then "
          "made from the rounded keys, so it can differ from f32's: see the README)");
ABSL_FLAG(int32_t, prefill_chunk, 2048, "prompt tokens per step (chunked prefill)");
ABSL_FLAG(int32_t, max_running, 64, "sequences decoding together");
// vLLM's names, so its users' command lines carry over.
ABSL_FLAG(int32_t, max_num_seqs, 0, "vLLM's name for --max-running (0: --max-running decides)");
ABSL_FLAG(int32_t, max_num_batched_tokens, 0,
          "tokens one step may carry, running decodes and prefill chunks together (0 = --prefill-chunk + "
          "--max-running)");
ABSL_FLAG(int64_t, max_model_len, 0,
          "the longest sequence (prompt + completion) served, at most the model's max_position_embeddings "
          "(0 = that): longer requests get a 400 context_length_exceeded, /v1/models reports it");
// vLLM's GLM command lines carry these; this server always parses GLM's tool calls and <think>
// reasoning, so the GLM parsers' names are accepted and any other is refused.
ABSL_FLAG(bool, enable_auto_tool_choice, true, "vLLM's flag: tool calls are always parsed here (it cannot be turned off)");
ABSL_FLAG(std::string, tool_call_parser, "", "vLLM's flag: glm45 | glm47 (GLM's <tool_call> format, always parsed here)");
ABSL_FLAG(std::string, reasoning_parser, "", "vLLM's flag: glm45 (GLM's <think> reasoning, always split off here)");
ABSL_FLAG(bool, trust_remote_code, false, "vLLM's flag: accepted; this server never runs code from a model directory");
ABSL_FLAG(bool, enable_prefix_caching, true,
          "reuse the KV blocks of prompts' common prefixes (--no-enable-prefix-caching: every prompt is "
          "computed in full)");
ABSL_FLAG(std::string, scheduling_policy, "fcfs",
          "the order requests start in: fcfs (arrival) | priority (the requests' `priority`, lower first, then "
          "arrival; a waiting request preempts running ones of a higher value; vLLM's flag, and under fcfs a "
          "non-zero priority is refused as vLLM does)");
ABSL_FLAG(int32_t, steps_in_flight, 0,
          "steps the workers hold at once, each with its share of the running sequences: pipeline stages "
          "work on different ones instead of waiting for each other (0 = one per pipeline stage; 1 = one "
          "step at a time)");
ABSL_FLAG(int32_t, stream_interval, 1,
          "streamed responses carry up to this many new tokens per message (gRPC and SSE; 1 = every token at "
          "once; the first token always goes at once): fewer wake-ups and messages with many concurrent streams");
ABSL_FLAG(int32_t, http_threads, 0,
          "threads serving HTTP requests; each open request (a stream) holds one while it runs, and /health and "
          "/metrics need a free one (0 = --max-running + 16)");
ABSL_FLAG(int32_t, stream_max_delay_ms, 50, "with --stream-interval > 1: the longest a token waits for its message");
ABSL_FLAG(int32_t, warmup_tokens, 512,
          "before reporting SERVING, run one server-side request of this many prompt tokens (+8 generated) through "
          "the cluster, so the first client request does not pay for first touches (0 = no warm-up)");
ABSL_FLAG(int64_t, responses_store_mib, glm::api::ResponseStore::kDefaultBytes >> 20,
          "memory for stored /v1/responses replies (previous_response_id, GET /v1/responses/ID), MiB; the least "
          "recently used go first (0 = keep none)");
ABSL_FLAG(int32_t, max_waiting, 1024, "queued requests before RESOURCE_EXHAUSTED");
ABSL_FLAG(std::string, served_model_name, "", "model name reported to clients (default: the directory name)");
ABSL_FLAG(std::string, model_alias, "", "comma-separated extra names clients may use");
ABSL_FLAG(bool, strict_model_name, false, "reject requests naming another model (default: accept any name)");
ABSL_FLAG(std::string, speculative, "", "default speculative decoding for requests: mtp:K (K 1..4) or ngram:K (K 1..8)");
ABSL_FLAG(int64_t, draft_vocab, 0,
          "with --speculative mtp:K (or a request's): MTP drafts propose only token ids below this count and the "
          "request's own tokens, reading only those rows of the MTP head; the outputs are the same, only acceptance "
          "may change (0 = the whole vocabulary)");
ABSL_FLAG(int32_t, speculative_max_batch, 0,
          "with speculative decoding: requests draft only in steps of at most this many sequences (vLLM's "
          "disable_by_batch_size; 0 = any number); requests with a seed of their own keep drafting");
ABSL_FLAG(std::string, api_key, "",
          "comma-separated API keys clients must send (\"Authorization: Bearer KEY\" or \"x-api-key: KEY\"; "
          "default: $GLM_API_KEY, which keeps the key out of the process list; none = open)");
ABSL_FLAG(int32_t, step_timeout_s, 120, "a step taking longer means a worker is stuck: fail requests and exit");
ABSL_FLAG(int32_t, drain_timeout_s, 30,
          "on SIGINT/SIGTERM: seconds to let running requests finish (new ones get UNAVAILABLE) before the rest are "
          "aborted; a second signal stops at once (0 = no draining)");

namespace {

void Log(const std::string& m) { std::fprintf(stderr, "[coordinator] %s\n", m.c_str()); }

[[noreturn]] void Fatal(const std::string& m) {
  Log(m);
  glm::comm::MpiSession::Abort(1);
}

// KV bytes per block on the rank of the plan that caches the most (every rank of a stage caches
// all of the stage's layers; the last stage also the MTP layer's, kv_cache::StageKvShape).
int64_t LargestBlockBytes(const glm::model::ModelConfig& c, const glm::placement::PlacementPlan& plan, int block_size,
                          glm::kv_cache::KvDType dtype, glm::kv_cache::KvDType index_key_dtype) {
  int64_t worst = 0;
  for (int s = 0; s < plan.stages_size(); ++s) {
    const auto& st = plan.stages(s);
    worst = std::max(worst, glm::kv_cache::KvBlockBytes(
                                glm::kv_cache::StageKvShape(c, st.layer_begin(), st.layer_end(),
                                                            s == plan.stages_size() - 1, dtype, index_key_dtype),
                                block_size));
  }
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's abseil is built with mutex deadlock detection on (a debug default): every lock
  // and every mutex's destruction updates a global lock graph. Measured ~3.5x the cost of a
  // lock/unlock; the tests (their own main) keep it on to catch lock-order bugs.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "MPI rank 0 of a GLM-5 cluster: plans the placement, starts the shard workers and serves gRPC and "
      "OpenAI-compatible HTTP until SIGINT/SIGTERM:\n"
      "  mpirun -np 1 coordinator --model DIR [--grpc-listen HOST:PORT] [--http-listen HOST:PORT] [flags] : -np N shard_worker\n"
      "(deploy/launch.sh writes this command line)");
  glm::runtime::NormalizeDashedFlags(argc, argv);
  const bool max_running_given = glm::runtime::FlagOnCommandLine(argc, argv, "max_running");
  const bool http_listen_given = glm::runtime::FlagOnCommandLine(argc, argv, "http_listen");
  // Before MPI_Init, which may rewrite argv: a pinned plan is checked against these.
  const bool weight_dtype_given = glm::runtime::FlagOnCommandLine(argc, argv, "weight_dtype");
  const bool quantize_scope_given = glm::runtime::FlagOnCommandLine(argc, argv, "quantize_scope");
  const bool expert_memory_given = glm::runtime::FlagOnCommandLine(argc, argv, "expert_memory_gib");
  const bool activation_dtype_given = glm::runtime::FlagOnCommandLine(argc, argv, "activation_dtype");
  // Flags only the planner reads: with --placement nothing would read them.
  std::string planning_flag_given;
  for (const char* flag : {"stages", "expert_layout", "memory_budget_gib", "expert_load", "hot_expert_replicas"})
    if (planning_flag_given.empty() && glm::runtime::FlagOnCommandLine(argc, argv, flag)) planning_flag_given = flag;
  // SIGINT/SIGTERM are taken by a watcher thread (below), so block them before any thread starts.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGUSR2);  // our own wake-up for the watcher at a normal exit
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto session = glm::comm::MpiSession::Init(&argc, &argv);
  if (!session.ok()) {
    Log(std::string(session.status().message()));
    return 1;
  }
  absl::ParseCommandLine(argc, argv);
  auto world = (*session)->World();
  if (world->rank() != 0) Fatal("the coordinator must be rank 0 (mpirun -np 1 coordinator ... : -np N shard_worker)");
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty()) Fatal("--model DIR is required");
  // The HTTP address: --http-listen, or vLLM's --host / --port.
  std::string http_listen = absl::GetFlag(FLAGS_http_listen);
  if (const std::string host = absl::GetFlag(FLAGS_host); !host.empty() || absl::GetFlag(FLAGS_port) != 0) {
    const int32_t port = absl::GetFlag(FLAGS_port);
    if (http_listen_given) Fatal("--host / --port and --http-listen both set the HTTP address: give one of them");
    if (port < 0 || port > 65535) Fatal(absl::StrCat("--port must be 1..65535, got ", port));
    const std::string h = host.empty() ? "127.0.0.1" : host;
    // An IPv6 host goes in brackets: "[::1]:8000".
    http_listen = absl::StrCat(h.find(':') != std::string::npos && h.front() != '[' ? absl::StrCat("[", h, "]") : h,
                               ":", port == 0 ? 8000 : port);
  }
  // The directory's name, trailing slash or not (`--model models/glm5-tiny-code/` served '').
  const std::string model_name = glm::placement::ModelNameFromPath(model_dir);
  auto config = glm::model::ModelConfig::FromFile(model_dir + "/config.json");
  if (!config.ok()) Fatal(std::string(config.status().message()));
  // The load options travel to the workers in the plan; refuse bad ones before any worker loads.
  glm::placement::LoadFlags load_flags;
  load_flags.weight_dtype = absl::GetFlag(FLAGS_weight_dtype);
  load_flags.quantize_scope = absl::GetFlag(FLAGS_quantize_scope);
  load_flags.weight_dtype_given = weight_dtype_given;
  load_flags.quantize_scope_given = quantize_scope_given;
  load_flags.expert_memory_given = expert_memory_given;
  load_flags.activation_dtype = absl::GetFlag(FLAGS_activation_dtype);
  load_flags.activation_dtype_given = activation_dtype_given;
  if (bool bf16 = false; !glm::kernels::ParseActivationDType(load_flags.activation_dtype, &bf16))
    Fatal(absl::StrCat("--activation-dtype '", load_flags.activation_dtype, "' is not one of f32, bf16"));
  if (auto f = glm::placement::ParseWeightFormat(load_flags.weight_dtype, load_flags.quantize_scope, *config); !f.ok())
    Fatal(absl::StrCat("--weight-dtype / --quantize-scope: ", f.status().message()));
  // Sizes: finite and in range (inf, nan, 1e30 cast to bytes were undefined: INT64_MIN budgets).
  const double expert_gib = absl::GetFlag(FLAGS_expert_memory_gib);
  auto expert_bytes = glm::placement::GibFlagBytes("--expert-memory-gib", expert_gib, "all routed experts resident");
  if (!expert_bytes.ok()) Fatal(std::string(expert_bytes.status().message()));
  load_flags.expert_memory_bytes = *expert_bytes;
  const double kv_gib = absl::GetFlag(FLAGS_kv_cache_gib);
  glm::kv_cache::KvDType kv_dtype = glm::kv_cache::KvDType::kF32;
  if (!glm::kv_cache::ParseKvDType(absl::GetFlag(FLAGS_kv_cache_dtype), &kv_dtype))
    Fatal(glm::kv_cache::KvDTypeNameError("--kv-cache-dtype", absl::GetFlag(FLAGS_kv_cache_dtype)));
  glm::kv_cache::KvDType index_key_dtype = glm::kv_cache::KvDType::kF32;
  if (!glm::kv_cache::ParseKvDType(absl::GetFlag(FLAGS_index_key_dtype), &index_key_dtype))
    Fatal(glm::kv_cache::KvDTypeNameError("--index-key-dtype", absl::GetFlag(FLAGS_index_key_dtype)));
  auto kv_bytes = glm::placement::GibFlagBytes("--kv-cache-gib", kv_gib);
  if (!kv_bytes.ok()) Fatal(std::string(kv_bytes.status().message()));
  if (auto s = glm::placement::CheckGibFlag("--memory-budget-gib", absl::GetFlag(FLAGS_memory_budget_gib),
                                            "90% of the NUMA node's share");
      !s.ok())
    Fatal(std::string(s.message()));
  // Routing statistics for the planner's replicas: read and checked against the model now.
  std::optional<glm::placement::ExpertLoad> expert_load;
  if (const std::string path = absl::GetFlag(FLAGS_expert_load); !path.empty()) {
    auto load = glm::placement::ReadExpertLoadFile(path, *config);
    if (!load.ok()) Fatal(absl::StrCat("--expert-load ", load.status().message()));
    expert_load = *std::move(load);
  }
  int64_t hot_expert_replicas = 0;
  if (!glm::placement::ParseHotExpertReplicas(absl::GetFlag(FLAGS_hot_expert_replicas), &hot_expert_replicas))
    Fatal(absl::StrCat("--hot-expert-replicas '", absl::GetFlag(FLAGS_hot_expert_replicas),
                       "' is not a count of 0 or more, or auto"));
  if (hot_expert_replicas > 0 && !expert_load && absl::GetFlag(FLAGS_placement).empty())
    Fatal("--hot-expert-replicas needs --expert-load FILE (routing statistics recorded with `glmctl expert-load`)");
  // A pinned plan is read, parsed and checked now, before any worker is started: a path that
  // cannot be read, a file that is not a plan (glmctl's table) or a plan for another world size
  // is reported as such (they surfaced only after the workers had started, as JSON errors).
  std::optional<glm::placement::PlacementPlan> pinned;
  if (const std::string path = absl::GetFlag(FLAGS_placement); !path.empty()) {
    // --stages 2 --expert-layout ... --memory-budget-gib ... with --placement ran the plan as it
    // was, silently.
    if (!planning_flag_given.empty()) {
      std::string dashed = planning_flag_given;
      std::replace(dashed.begin(), dashed.end(), '_', '-');
      Fatal(absl::StrCat("--", dashed, " is a planning flag, and --placement ", path,
                         " pins a plan: edit the plan (or make a new one with `glmctl plan --", dashed,
                         " ... --json`), or drop --placement to let the coordinator plan"));
    }
    auto json = glm::placement::ReadPlanFile(path);
    if (!json.ok()) Fatal(absl::StrCat("--placement ", json.status().message()));
    auto plan = glm::placement::PlanFromJson(*json, *config, world->size());
    if (!plan.ok()) Fatal(absl::StrCat("--placement ", path, ": ", plan.status().message()));
    if (auto s = glm::placement::ApplyLoadFlags(load_flags, &*plan); !s.ok())
      Fatal(absl::StrCat("--placement ", path, ": ", s.message()));
    // Beyond the structure: the model served, and the bytes (the file's own numbers are not
    // trusted: they are recounted, and the budgets checked against the recount).
    if (auto s = glm::placement::CheckPlanModel(*plan, model_name); !s.ok())
      Fatal(absl::StrCat("--placement ", path, ": ", s.message()));
    // Each worker's KV cache is --kv-cache-gib whatever the file says (kv_blocks_for_plan below):
    // the budgets are checked, and the summary shows, what will be allocated.
    for (glm::placement::RankAssignment& r : *plan->mutable_ranks()) r.set_kv_reserve_bytes(*kv_bytes);
    plan->set_kv_cache_dtype(glm::kv_cache::KvDTypeName(kv_dtype));
    plan->set_index_key_dtype(glm::kv_cache::KvDTypeName(index_key_dtype));
    if (auto s = glm::placement::RecountPlan(*config, &*plan); !s.ok())
      Fatal(absl::StrCat("--placement ", path, ": ", s.message(), " (the KV reserve is this coordinator's --kv-cache-gib, ",
                         kv_gib, " GiB per worker)"));
    pinned = std::move(*plan);
  }

  // Tokenizer and chat template are optional: without them the model serves token ids.
  std::unique_ptr<glm::tokenizer::Tokenizer> tokenizer;
  std::unique_ptr<glm::tokenizer::ChatTemplate> chat_template;
  if (std::filesystem::exists(model_dir + "/tokenizer.json")) {
    auto t = glm::tokenizer::Tokenizer::FromFile(model_dir);
    if (!t.ok()) Fatal(absl::StrCat("tokenizer.json: ", t.status().message()));
    tokenizer = std::move(*t);
    if (std::filesystem::exists(model_dir + "/tokenizer_config.json")) {
      auto c = glm::tokenizer::ChatTemplate::FromTokenizerConfig(model_dir);
      if (c.ok()) chat_template = std::move(*c);
      else Log(absl::StrCat("no chat template (chat requests will be refused): ", c.status().message()));
    }
  } else {
    Log("no tokenizer.json: serving token ids only");
  }

  const int block_size = absl::GetFlag(FLAGS_kv_block_size);
  if (block_size <= 0) Fatal("--kv-block-size must be positive");
  const int32_t stream_interval = absl::GetFlag(FLAGS_stream_interval);
  const int32_t stream_max_delay_ms = absl::GetFlag(FLAGS_stream_max_delay_ms);
  if (stream_interval < 1 || stream_interval > 4096)
    Fatal(absl::StrCat("--stream-interval must be 1..4096 tokens, got ", stream_interval));
  const int32_t http_threads = absl::GetFlag(FLAGS_http_threads);
  if (http_threads < 0 || http_threads > 4096) Fatal(absl::StrCat("--http-threads must be 0..4096, got ", http_threads));
  const int64_t responses_store_mib = absl::GetFlag(FLAGS_responses_store_mib);
  if (responses_store_mib < 0 || responses_store_mib > (int64_t{1} << 20))
    Fatal(absl::StrCat("--responses-store-mib must be 0..1048576, got ", responses_store_mib));
  const int32_t steps_in_flight = absl::GetFlag(FLAGS_steps_in_flight);
  if (steps_in_flight < 0 || steps_in_flight > 64)
    Fatal(absl::StrCat("--steps-in-flight must be 0..64 (0 = one per pipeline stage), got ", steps_in_flight));
  if (stream_max_delay_ms < 0 || stream_max_delay_ms > 60000)
    Fatal(absl::StrCat("--stream-max-delay-ms must be 0..60000, got ", stream_max_delay_ms));
  const int32_t warmup_tokens = absl::GetFlag(FLAGS_warmup_tokens);
  glm::scheduler::SchedulingPolicy scheduling_policy = glm::scheduler::SchedulingPolicy::kFcfs;
  if (!glm::scheduler::ParseSchedulingPolicy(absl::GetFlag(FLAGS_scheduling_policy), &scheduling_policy))
    Fatal(absl::StrCat("--scheduling-policy must be fcfs or priority, got '", absl::GetFlag(FLAGS_scheduling_policy), "'"));
  // The context served: the model's, or --max-model-len below it.
  const int64_t max_model_len = absl::GetFlag(FLAGS_max_model_len);
  if (max_model_len < 0 || max_model_len > config->max_position_embeddings)
    Fatal(absl::StrCat("--max-model-len must be 1..", config->max_position_embeddings,
                       " (the model's max_position_embeddings; 0 = that), got ", max_model_len));
  const int64_t context = max_model_len > 0 ? max_model_len : config->max_position_embeddings;
  if (!absl::GetFlag(FLAGS_enable_auto_tool_choice))
    Fatal("--no-enable-auto-tool-choice: this server always parses tool calls (GLM's format); send tool_choice "
          "\"none\" to keep a request from calling tools");
  if (const std::string p = absl::GetFlag(FLAGS_tool_call_parser); !p.empty() && p != "glm45" && p != "glm47")
    Fatal(absl::StrCat("--tool-call-parser '", p, "': this server parses GLM's tool calls only (glm45, glm47)"));
  if (const std::string p = absl::GetFlag(FLAGS_reasoning_parser); !p.empty() && p != "glm45")
    Fatal(absl::StrCat("--reasoning-parser '", p, "': this server splits GLM's <think> reasoning only (glm45)"));
  int32_t max_running = absl::GetFlag(FLAGS_max_running);
  if (const int32_t seqs = absl::GetFlag(FLAGS_max_num_seqs); seqs != 0) {
    if (seqs < 0) Fatal(absl::StrCat("--max-num-seqs must be positive, got ", seqs));
    if (max_running_given && max_running != seqs)
      Fatal(absl::StrCat("--max-num-seqs ", seqs, " and --max-running ", max_running, " disagree (the same setting)"));
    max_running = seqs;
  }
  if (max_running <= 0) Fatal(absl::StrCat("--max-running must be positive, got ", max_running));
  const int32_t max_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  if (max_batched_tokens < 0)
    Fatal(absl::StrCat("--max-num-batched-tokens must be >= 0 (0 = --prefill-chunk + --max-running), got ",
                       max_batched_tokens));
  if (warmup_tokens < 0) Fatal(absl::StrCat("--warmup-tokens must be >= 0 (0 = no warm-up), got ", warmup_tokens));
  const int drain_timeout_s = absl::GetFlag(FLAGS_drain_timeout_s);
  if (drain_timeout_s < 0 || drain_timeout_s > 86400)
    Fatal(absl::StrCat("--drain-timeout-s must be 0..86400 seconds, got ", drain_timeout_s));
  // The scheduler's flags, checked before the workers load (minutes for a large model) rather
  // than after; the KV blocks and steps in flight come from the cluster.
  glm::scheduler::EngineOptions eo;
  eo.max_context = context;
  eo.vocab_size = static_cast<int32_t>(config->vocab_size);
  eo.eos_token_ids = config->eos_token_ids;
  eo.kv_blocks = 1;
  eo.kv_block_size = block_size;
  eo.prefill_chunk = absl::GetFlag(FLAGS_prefill_chunk);
  eo.max_running = max_running;
  eo.max_batch_tokens = max_batched_tokens;
  eo.enable_prefix_cache = absl::GetFlag(FLAGS_enable_prefix_caching);
  eo.scheduling_policy = scheduling_policy;
  eo.max_steps_in_flight = std::max(1, steps_in_flight);
  eo.log_event = glm::api::LogRequestEvent;  // preemptions and failures, one JSON line each
  eo.max_waiting = absl::GetFlag(FLAGS_max_waiting);
  eo.speculative = absl::GetFlag(FLAGS_speculative);
  eo.has_mtp = config->has_mtp();
  eo.draft_vocab = absl::GetFlag(FLAGS_draft_vocab);
  eo.speculative_max_batch = absl::GetFlag(FLAGS_speculative_max_batch);
  eo.verify_cost = glm::runtime::VerifyCostModel::FromConfig(*config);
  if (auto s = glm::scheduler::Engine::ValidateOptions(eo); !s.ok()) Fatal(std::string(s.message()));
  const int32_t step_timeout_s = absl::GetFlag(FLAGS_step_timeout_s);
  if (step_timeout_s < 1 || step_timeout_s > 86400)
    Fatal(absl::StrCat("--step-timeout-s must be 1..86400 seconds, got ", step_timeout_s));
  if (absl::GetFlag(FLAGS_grpc_listen).empty() && http_listen.empty())
    Fatal("--grpc-listen and --http-listen are both off: nothing would serve");
  if (auto s = glm::api::CheckListenAddress(absl::GetFlag(FLAGS_grpc_listen)); !s.ok())
    Fatal(absl::StrCat("--grpc-listen: ", s.message()));
  // --http-listen: LoadingHealthServer::Start parses it (also before the workers load).
  // API keys: each without surrounding blanks; a list that names no key at all is an error, not
  // an open server.
  std::vector<std::string> api_keys;
  {
    std::string keys = absl::GetFlag(FLAGS_api_key);
    if (const char* env = std::getenv("GLM_API_KEY"); keys.empty() && env != nullptr) keys = env;
    for (absl::string_view key : absl::StrSplit(keys, ','))
      if (key = absl::StripAsciiWhitespace(key); !key.empty()) api_keys.emplace_back(key);
    if (api_keys.empty() && !keys.empty()) Fatal("--api-key / GLM_API_KEY holds no key (only commas and blanks)");
  }
  glm::cluster::ClusterOptions cluster_options;
  cluster_options.model_dir = model_dir;
  cluster_options.kv_block_size = block_size;
  cluster_options.kv_cache_dtype = glm::kv_cache::KvDTypeName(kv_dtype);
  cluster_options.index_key_dtype = glm::kv_cache::KvDTypeName(index_key_dtype);
  cluster_options.step_timeout = absl::Seconds(step_timeout_s);
  cluster_options.kv_blocks_for_plan = [&](const glm::placement::PlacementPlan& plan) {
    const int64_t per_block = LargestBlockBytes(*config, plan, block_size, kv_dtype, index_key_dtype);
    const int64_t blocks = std::min<int64_t>(1 << 30, *kv_bytes / std::max<int64_t>(1, per_block));
    if (blocks == 0)
      Log(absl::StrCat("--kv-cache-gib ", kv_gib, " (", *kv_bytes, " bytes a worker) holds no KV block: one block of ",
                       block_size, " positions (--kv-block-size) takes ", per_block,
                       " bytes on the worker with the most layers"));
    return static_cast<int32_t>(blocks);
  };
  auto plan_function = [&](const std::vector<glm::shard::WorkerHello>& hellos) -> absl::StatusOr<glm::placement::PlacementPlan> {
    for (const auto& h : hellos) Log(absl::StrCat("worker ", h.rank(), " on ", h.hostname(), ": ", h.binding()));
    absl::StatusOr<glm::placement::PlacementPlan> plan;
    std::vector<glm::placement::WorkerSlot> slots;
    for (const auto& h : hellos) {
      glm::placement::WorkerSlot slot;
      slot.host = h.topology();
      if (slot.host.hostname().empty()) slot.host.set_hostname(h.hostname());
      slot.numa_node = std::max(0, h.bound_numa_node());
      slots.push_back(slot);
    }
    if (pinned) {
      // The hosts, NUMA nodes, cores and memory the workers reported.
      if (auto s = glm::placement::CheckPlanAgainstWorkers(*pinned, slots); !s.ok())
        plan = absl::Status(s.code(), absl::StrCat("--placement ", absl::GetFlag(FLAGS_placement), ": ", s.message()));
      else
        plan = *pinned;
    } else {
      glm::placement::PlannerOptions po;
      po.stages = absl::GetFlag(FLAGS_stages);
      po.expert_layout = absl::GetFlag(FLAGS_expert_layout);
      po.memory_budget_gib = absl::GetFlag(FLAGS_memory_budget_gib);
      po.kv_cache_gib = kv_gib;
      po.weight_dtype = load_flags.weight_dtype;
      po.quantize_scope = load_flags.quantize_scope;
      po.activation_dtype = load_flags.activation_dtype;
      po.kv_cache_dtype = glm::kv_cache::KvDTypeName(kv_dtype);
      po.index_key_dtype = glm::kv_cache::KvDTypeName(index_key_dtype);
      po.expert_memory_gib = expert_gib;
      po.model_name = model_name;
      po.hot_expert_replicas = hot_expert_replicas;
      po.expert_load = expert_load ? &*expert_load : nullptr;
      plan = glm::placement::Plan(*config, slots, po);
    }
    if (plan.ok()) Log(absl::StrCat("placement:\n", glm::placement::PlanToTable(*plan)));
    return plan;
  };
  // Health answers "not ready" from now on (not a refused connection) while the workers load.
  auto loading = glm::api::LoadingHealthServer::Start(absl::GetFlag(FLAGS_grpc_listen), http_listen);
  if (!loading.ok()) Fatal(absl::StrCat("API server: ", loading.status().message()));
  Log(absl::StrCat("starting ", world->size() - 1, " workers on ", model_dir));
  bool workers_released = false;
  // SIGINT/SIGTERM while the workers load stop the start (the cluster's waits run
  // start_check): no request runs yet, and a GLM-5 load takes minutes that a stop (Ctrl-C after
  // a wrong flag, systemd's stop with its 60 s limit) must not wait for.
  std::atomic<bool> stop_while_loading{false}, started{false};
  std::thread loading_signals([&stop_signals, &stop_while_loading, &started] {
    while (!started.load()) {
      const timespec wait = absl::ToTimespec(absl::Milliseconds(100));
      const int sig = sigtimedwait(&stop_signals, nullptr, &wait);
      if (sig == SIGINT || sig == SIGTERM) {
        Log(absl::StrCat("signal ", sig, " while the workers load: stopping"));
        stop_while_loading.store(true);
        return;
      }
    }
  });
  cluster_options.start_check = [&stop_while_loading] {
    return stop_while_loading.load() ? absl::CancelledError("stopped by a signal while the workers loaded")
                                     : absl::OkStatus();
  };
  auto client = glm::cluster::ClusterClient::Start(world.get(), cluster_options, plan_function, &workers_released);
  started.store(true);
  loading_signals.join();
  if (client.ok() && stop_while_loading.load()) {
    // The signal came as the last worker reported ready: stop as a drain would, with no request.
    (*client)->Shutdown().IgnoreError();
    Log("stopped");
    return 0;
  }
  if (!client.ok() && workers_released) {
    // The workers were told to stop and exit cleanly: finalize with them and end non-zero.
    Log(absl::StrCat("cluster start failed: ", client.status().message()));
    return 1;
  }
  if (!client.ok()) Fatal(absl::StrCat("cluster start failed: ", client.status().message()));
  int64_t total_bytes = 0;
  double slowest_load = 0;
  for (const auto& r : (*client)->ready()) {
    total_bytes += r.weight_bytes();
    slowest_load = std::max(slowest_load, r.load_seconds());
  }
  Log(absl::StrCat("cluster ready: ", (*client)->ready().size(), " workers, ", total_bytes / 1048576, " MiB of weights, loaded in ",
                   slowest_load, " s; ", (*client)->kv_blocks(), " KV blocks of ", block_size, " positions per worker (",
                   glm::kv_cache::KvDTypeName(kv_dtype), " rows",
                   index_key_dtype == glm::kv_cache::KvDType::kF32
                       ? ""
                       : absl::StrCat(", ", glm::kv_cache::KvDTypeName(index_key_dtype), " indexer keys"),
                   ")"));

  glm::scheduler::ClusterStepRunner runner(client->get());
  eo.kv_blocks = (*client)->kv_blocks();
  eo.max_steps_in_flight = steps_in_flight > 0 ? steps_in_flight : std::max(1, (*client)->plan().stages_size());
  auto engine = glm::scheduler::Engine::Create(&runner, eo);
  if (!engine.ok()) Fatal(std::string(engine.status().message()));
  const int64_t kv_positions = int64_t{eo.kv_blocks} * eo.kv_block_size;
  Log(absl::StrCat("scheduler: context ", context, " tokens", max_model_len > 0 ? " (--max-model-len)" : "",
                   kv_positions < context ? absl::StrCat(", of which the KV cache holds ", kv_positions, " per sequence") : "",
                   "; up to ", max_running, " sequences and ",
                   max_batched_tokens > 0 ? max_batched_tokens : eo.prefill_chunk + max_running,
                   " tokens a step (prefill chunks up to ", eo.prefill_chunk, "); prefix cache ",
                   eo.enable_prefix_cache ? "on" : "off", "; scheduling policy ",
                   scheduling_policy == glm::scheduler::SchedulingPolicy::kPriority ? "priority" : "fcfs"));
  if (eo.max_steps_in_flight > 1)
    Log(absl::StrCat(eo.max_steps_in_flight, " steps in flight (", steps_in_flight > 0 ? "--steps-in-flight" : "one per pipeline stage",
                     "): the running sequences split between them"));

  glm::api::ServedModel served;
  served.name = absl::GetFlag(FLAGS_served_model_name).empty() ? model_name : absl::GetFlag(FLAGS_served_model_name);
  for (absl::string_view a : absl::StrSplit(absl::GetFlag(FLAGS_model_alias), ',', absl::SkipEmpty()))
    served.aliases.emplace_back(a);
  served.accept_any_name = !absl::GetFlag(FLAGS_strict_model_name);
  served.max_context = context;
  served.vocab_size = static_cast<int32_t>(config->vocab_size);
  served.eos_token_ids = config->eos_token_ids;
  served.has_mtp = config->has_mtp();
  served.experts_per_token = static_cast<int32_t>(config->num_experts_per_tok);
  served.tokenizer = tokenizer.get();
  served.chat_template = chat_template.get();
  served.model_dir_name = model_name;
  served.placement_summary = glm::placement::PlanToTable((*client)->plan());
  if (auto j = glm::placement::PlanToJson((*client)->plan()); j.ok()) served.placement_json = *j;
  served.world_size = world->size();
  served.default_speculative = absl::GetFlag(FLAGS_speculative);
  served.draft_vocab = absl::GetFlag(FLAGS_draft_vocab);
  served.kv_cache_dtype = glm::kv_cache::KvDTypeName(kv_dtype);
  served.index_key_dtype = glm::kv_cache::KvDTypeName(index_key_dtype);
  served.kv_cache_tokens = int64_t{(*client)->kv_blocks()} * block_size;
  served.kv_block_size = block_size;
  served.prefix_caching = eo.enable_prefix_cache;
  // Forced tool calls are generated as the template writes calls (GLM-4.7 and GLM-5 put no
  // newlines in them, GLM-4.5 does); without a template that prints one, as --tool-call-parser
  // names, else GLM-4.5's.
  if (auto layout = glm::api::TextFrontend(&served, 0).TemplateToolCallLayout(); layout.has_value()) {
    served.tool_call_layout = *layout;
    Log(absl::StrCat("forced tool calls as the chat template writes them: ", layout->Describe()));
  } else if (absl::GetFlag(FLAGS_tool_call_parser) == "glm47") {
    served.tool_call_layout = glm::structured::ToolCallLayout::Compact();
  }
  glm::api::ApiOptions ao;
  // The loading server's addresses (its bound ports when 0 was asked), handed over.
  ao.grpc_listen = (*loading)->GrpcAddress(absl::GetFlag(FLAGS_grpc_listen));
  ao.http_listen = (*loading)->HttpAddress(http_listen);
  (*loading)->Stop();
  // Enough for every running sequence's request to hold one while health checks still get through.
  ao.http_threads = http_threads > 0 ? http_threads : std::min(4096, max_running + 16);
  // Beyond them the pool grows (ElasticTaskQueue) to hold every request the engine may keep,
  // running or waiting, so /health, /metrics and the 429 for a full queue still get a thread.
  ao.http_max_threads = std::min(16384, ao.http_threads + std::max(0, static_cast<int>(eo.max_waiting)));
  ao.stream_interval.tokens = stream_interval;
  ao.responses_store_bytes = responses_store_mib << 20;
  ao.stream_interval.max_delay = absl::Milliseconds(stream_max_delay_ms);
  ao.api_keys = api_keys;
  if (!ao.api_keys.empty())
    Log(absl::StrCat(ao.api_keys.size(), " API key(s): requests other than health and metrics must carry one"));
  auto api = glm::api::ApiServer::Start(ao, engine->get(), &served);
  if (!api.ok()) {
    (*client)->Shutdown().IgnoreError();
    Fatal(absl::StrCat("API server: ", api.status().message()));
  }
  if (!ao.grpc_listen.empty()) Log(absl::StrCat("gRPC on ", ao.grpc_listen, " (port ", (*api)->grpc_port(), ")"));
  if (!ao.http_listen.empty()) Log(absl::StrCat("HTTP on http://", ao.http_listen, " (port ", (*api)->http_port(), ")"));

  // SIGINT/SIGTERM: stop taking requests, end the loop, shut every rank down cleanly.
  glm::scheduler::Engine* engine_ptr = engine->get();
  glm::api::ApiServer* api_ptr = api->get();
  // Health turns SERVING after the warm-up (glm::scheduler::WarmUp), which needs the engine loop
  // below running; a failed warm-up is logged and serving starts anyway.
  const int64_t warmup_prompt =
      std::min<int64_t>(warmup_tokens, std::max<int64_t>(0, context - 16));
  std::atomic<bool> loop_ended{false};
  std::thread warm_up([engine_ptr, api_ptr, warmup_prompt, vocab = static_cast<int32_t>(config->vocab_size),
                       name = served.name, &loop_ended] {
    if (warmup_prompt > 0) {
      glm::scheduler::WarmUpOptions wo;
      wo.prompt_tokens = static_cast<int32_t>(warmup_prompt);
      wo.cancel = &loop_ended;
      auto w = glm::scheduler::WarmUp(engine_ptr, vocab, wo);
      if (w.ok())
        Log(absl::StrCat("warm-up: ", w->prompt_tokens, " prompt tokens + ", w->new_tokens, " generated in ",
                         absl::FormatDuration(w->took)));
      else
        Log(absl::StrCat("warm-up failed (serving anyway): ", w.status().message()));
    }
    if (loop_ended.load() || engine_ptr->draining()) return;  // stopping: stay NOT_SERVING
    api_ptr->SetServing(true);
    Log(absl::StrCat("serving '", name, "'"));
  });
  // The first SIGINT/SIGTERM drains: health turns NOT_SERVING (load balancers and Kubernetes stop
  // sending), new requests get UNAVAILABLE, running ones finish — for up to --drain-timeout-s,
  // then the rest are aborted. A second signal stops at once. The listeners stay up until the
  // engine loop ends, so draining requests keep streaming to their clients.
  std::thread watcher([stop_signals, engine_ptr, api_ptr, drain_timeout_s]() mutable {
    int sig = 0;
    if (sigwait(&stop_signals, &sig) != 0 || sig == SIGUSR2) return;
    // The engine refuses new requests before health says NOT_SERVING: a client that saw the
    // NOT_SERVING must not get a request accepted (the other order left a window for one).
    if (drain_timeout_s == 0) {
      engine_ptr->Shutdown(/*drain=*/false);
      api_ptr->SetServing(false);
      Log(absl::StrCat("signal ", sig, ": shutting down"));
      return;
    }
    engine_ptr->Shutdown(/*drain=*/true);
    api_ptr->SetServing(false);
    Log(absl::StrCat("signal ", sig, ": draining (running requests may finish for up to ", drain_timeout_s,
                     " s; signal again to stop at once)"));
    const absl::Time deadline = absl::Now() + absl::Seconds(drain_timeout_s);
    int again = -1;
    do {
      const timespec wait = absl::ToTimespec(std::max(absl::ZeroDuration(), deadline - absl::Now()));
      again = sigtimedwait(&stop_signals, nullptr, &wait);
    } while (again < 0 && errno == EINTR);
    if (again == SIGUSR2) return;  // drained: the loop ended and main woke us
    Log(again < 0 ? absl::StrCat("drain timeout (", drain_timeout_s, " s): aborting the requests still running")
                  : absl::StrCat("signal ", again, ": stopping now"));
    engine_ptr->Shutdown(/*drain=*/false);
  });
  absl::Status loop = (*engine)->RunLoop();
  loop_ended.store(true);
  warm_up.join();
  (*api)->SetServing(false);
  (*api)->Shutdown();
  if (!loop.ok()) {
    // A worker died or hung: requests were failed with UNAVAILABLE; end the whole job non-zero.
    Log(absl::StrCat("cluster failure: ", loop.message(), "; exiting"));
    glm::comm::MpiSession::Abort(1);
  }
  (*client)->Shutdown().IgnoreError();
  Log("stopped");
  // Wake the watcher if it is still waiting (normal shutdown through the engine).
  pthread_kill(watcher.native_handle(), SIGUSR2);
  watcher.join();
  return 0;
}
