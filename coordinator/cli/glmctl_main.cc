// glmctl: the command-line tool. Subcommands (flags are shared; each uses the ones it needs):
//   forward     --model DIR --tokens 1,2,3 --out FILE.safetensors [--mtp]
//   generate    --model DIR (--tokens 1,2,3 | --prompt TEXT) --max-new-tokens N [--temperature 0]
//               [--ignore-eos] [--json]   (JSON: {"tokens":[...],"finish_reason":...,"text":...})
//               forward/generate/chat/plan: [--weight-dtype int8|int4|...] [--quantize-scope experts|all|mtp]
//               [--expert-memory-gib G] (load the model as a cluster started with them would)
//   --server HOST:PORT generate|chat|info   (the same through a running coordinator's gRPC API)
//   chat        --model DIR --message TEXT [generate's sampling flags] [--json]
//   synth       --out DIR --preset bench|bench-fp8|glm5|tiny [--seed N] [--force]
//   quantize    --model DIR --out DIR2 --weight-dtype int8|int4|int{8,4}-g<N>|int8-row [--force]
//               (the checkpoint with its experts stored pre-quantised)
//   plan        --model DIR (--topology XML | --synthetic "pack:2 numa:2 core:16") [--hosts N] [--stages S]
//   tokenize    --tokenizer PATH --text-file F
//   detokenize  --tokenizer PATH --ids 1,2,3
//   render-chat --tokenizer-config PATH --request-file R.json
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "shard_worker/runtime/dashed_flags.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/api/grpc_client.h"
#include "coordinator/cli/model_commands.h"
#include "coordinator/cli/plan_command.h"
#include "coordinator/placement/expert_replica_planner.h"
#include "coordinator/placement/size_flags.h"
#if GLM_HAVE_TEXT_COMMANDS
#include "coordinator/cli/text_commands.h"
#endif

ABSL_FLAG(std::string, server, "", "HOST:PORT of a running coordinator: generate/chat/info go through its gRPC API");
ABSL_FLAG(std::string, api_key, "", "with --server: the server's API key (default: $GLM_API_KEY)");
ABSL_FLAG(double, timeout_s, 5, "info: seconds to wait for the server");
ABSL_FLAG(std::string, model, "", "model directory (Hugging Face glm_moe_dsa checkpoint)");
ABSL_FLAG(std::string, tokens, "", "comma-separated prompt token ids");
ABSL_FLAG(std::string, prompt, "", "prompt text (needs the model's tokenizer.json)");
ABSL_FLAG(std::string, out, "", "output file (forward) or directory (synth, quantize)");
ABSL_FLAG(bool, mtp, false, "forward: also write mtp_logits");
ABSL_FLAG(int64_t, max_new_tokens, 16, "generate: tokens to generate");
ABSL_FLAG(double, temperature, 0.0, "generate: sampling temperature (0 = greedy)");
ABSL_FLAG(double, top_p, 1.0, "generate: nucleus sampling mass");
ABSL_FLAG(int32_t, top_k, 0, "generate: sample among the k most likely tokens (0 = off)");
ABSL_FLAG(double, min_p, 0.0, "generate/chat: drop tokens below min_p x the top probability");
ABSL_FLAG(double, repetition_penalty, 1.0, "generate/chat: > 1 discourages tokens of the prompt and output");
ABSL_FLAG(double, presence_penalty, 0.0, "generate/chat: subtracted once from tokens the output has (-2..2)");
ABSL_FLAG(double, frequency_penalty, 0.0, "generate/chat: subtracted per occurrence in the output (-2..2)");
ABSL_FLAG(uint64_t, seed, 0, "generate: sampling seed; synth: weight seed");
ABSL_FLAG(bool, ignore_eos, false, "generate: keep going after an end-of-sequence token");
ABSL_FLAG(bool, json, false, "generate/chat/plan: print JSON");
ABSL_FLAG(int32_t, threads, 0, "compute threads (0 = all cores)");
ABSL_FLAG(std::string, message, "", "chat: the user message");
ABSL_FLAG(std::string, system, "", "chat: a system message before the user message");
ABSL_FLAG(std::string, tools_file, "", "chat --server: a JSON file holding an OpenAI tools array the model may call");
ABSL_FLAG(std::string, prediction, "",
          "generate/chat --server: OpenAI's predicted outputs, text the reply is expected to resemble (the file an "
          "edit rewrites), or @FILE holding it; its tokens are prompt-lookup drafts (the reply does not change)");
ABSL_FLAG(std::string, response_format, "",
          "generate/chat --server: structured output, an OpenAI response_format object as JSON text or @FILE, "
          "e.g. '{\"type\":\"json_object\"}'");
ABSL_FLAG(std::string, structured_outputs, "",
          "generate/chat --server: vLLM's structured_outputs object as JSON text or @FILE: '{\"regex\":\"...\"}', "
          "'{\"choice\":[\"a\",\"b\"]}', '{\"json\":SCHEMA}', '{\"grammar\":\"root ::= ...\"}' (GBNF)");
ABSL_FLAG(bool, stream, false,
          "generate --prompt / chat (local or --server): print the reply as it is generated (chat: its reasoning "
          "between <think> and </think>); not with --json");
ABSL_FLAG(int32_t, priority, 0,
          "generate/chat --server: the request's priority under the server's --scheduling-policy priority (lower "
          "values first; a server on fcfs refuses a non-zero one)");
ABSL_FLAG(std::string, tool_choice, "",
          "chat --server: auto | none | required | a tool's name (one call of it, arguments per its schema)");
ABSL_FLAG(std::string, speculative, "", "generate: mtp:K (the model's MTP head, K 1..4) or ngram:K (prompt lookup)");
ABSL_FLAG(int64_t, draft_vocab, 0,
          "generate with --speculative mtp:K: drafts propose only token ids below this count and the prompt's and "
          "output's own tokens (the same outputs; 0 = the whole vocabulary)");
ABSL_FLAG(std::string, preset, "", "synth: bench | bench-fp8 | glm5 | tiny");
ABSL_FLAG(bool, force, false,
          "synth, quantize: write into a non-empty --out DIR, deleting the model files (*.safetensors, *.json) there first "
          "(without it a non-empty DIR is refused)");
ABSL_FLAG(std::string, tokenizer, "", "tokenize/detokenize: tokenizer.json or model directory (default: --model)");
ABSL_FLAG(std::string, text_file, "", "tokenize, expert-load: file with the text");
ABSL_FLAG(int64_t, window, 2048, "expert-load: tokens per sequence the text is cut into");
ABSL_FLAG(std::string, expert_load, "",
          "plan: routing statistics from `glmctl expert-load` (JSON), for --hot-expert-replicas");
ABSL_FLAG(std::string, hot_expert_replicas, "0",
          "plan: copies of each MoE layer's N most-chosen experts (--expert-load) on other ranks of their "
          "expert-parallel stage, where memory allows (0 = none; auto = every expert tokens chose that fits)");
ABSL_FLAG(std::string, ids, "", "detokenize: comma-separated token ids");
ABSL_FLAG(std::string, tokenizer_config, "", "render-chat: tokenizer_config.json or model directory (default: --model)");
ABSL_FLAG(std::string, topology, "", "plan: hwloc XML topology of each host");
ABSL_FLAG(std::string, synthetic, "", "plan: synthetic topology of each host, e.g. \"pack:2 numa:2 core:16\"");
ABSL_FLAG(int32_t, hosts, 1, "plan: identical hosts");
ABSL_FLAG(int32_t, stages, 0, "plan: pipeline stages (0 = one per host)");
ABSL_FLAG(std::string, expert_layout, "expert-parallel", "plan: expert-parallel | expert-tensor-parallel");
ABSL_FLAG(double, memory_budget_gib, 0, "plan: memory per rank (0 = 90% of its NUMA node's share)");
ABSL_FLAG(double, numa_memory_gib, 0, "plan: memory per NUMA node of a synthetic topology (0 = 64)");
ABSL_FLAG(double, kv_cache_gib, glm::placement::kDefaultKvCacheGib,
          "plan: KV cache reserved per rank on top of its weights, GiB (the coordinator's default)");
ABSL_FLAG(double, bandwidth_gbps, 0, "plan: measured read bandwidth per NUMA node (0 = estimate)");
ABSL_FLAG(std::string, weight_dtype, "stored",
          "forward/generate/chat/plan: stored | bf16 | f32 | int8 | int8-row | int4 | int8-g<N> | int4-g<N> "
          "(int8/int4 re-quantised at load)");
ABSL_FLAG(std::string, activation_dtype, "f32",
          "forward/generate/chat/plan: activations of matmuls with BF16 weights: f32 | bf16 (rounded to BF16; "
          "BF16 dot products on CPUs with AVX512-BF16)");
ABSL_FLAG(bool, amx_tiles, true,
          "forward/generate/chat: with --activation-dtype bf16 on CPUs with AMX, matmuls on AMX tiles (false: "
          "vdpbf16ps; shard_worker's --amx_tiles for a cluster)");
ABSL_FLAG(std::string, kv_cache_dtype, "f32",
          "forward/generate/chat/plan: what the KV cache stores attention's rows in: f32 | bf16 | int8 | fp8 (= fp8_e4m3) "
          "(int8 and fp8 with a scale a row) (latent and rope key rounded once when written, the indexer keys kept f32; "
          "the coordinator's --kv-cache-dtype for a cluster)");
ABSL_FLAG(std::string, index_key_dtype, "f32",
          "forward/generate/chat/plan: what the KV cache stores the DSA indexer's keys in: f32 | bf16 | int8 | fp8 "
          "(the top-k selection is then made from the rounded keys; the coordinator's --index-key-dtype)");
ABSL_FLAG(std::string, quantize_scope, "experts",
          "forward/generate/chat/plan: with int8/int4, experts (routed + shared experts) | all | mtp (the MTP "
          "draft layer only)");
ABSL_FLAG(double, expert_memory_gib, 0,
          "forward/generate/chat/plan: memory for routed experts (plan: per rank); beyond it they stream from "
          "disk through an LRU cache (0 = all resident)");
ABSL_FLAG(std::string, request_file, "", "render-chat: JSON with messages, tools, add_generation_prompt");

namespace {

int Finish(const absl::StatusOr<std::string>& result) {
  if (!result.ok()) {
    std::fprintf(stderr, "glmctl: %s\n", std::string(result.status().ToString()).c_str());
    return result.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::fwrite(result->data(), 1, result->size(), stdout);
  if (!result->empty() && result->back() != '\n') std::fputc('\n', stdout);
  return 0;
}

}  // namespace

// The sampling flags a remote generate/chat sends (RemoteGenerateOptions, RemoteChatOptions).
template <typename Remote>
void CopySampling(const glm::cli::ModelCommandOptions& m, Remote* r) {
  r->max_new_tokens = m.max_new_tokens;
  r->temperature = m.temperature;
  r->top_p = m.top_p;
  r->top_k = m.top_k;
  r->min_p = m.min_p;
  r->repetition_penalty = m.repetition_penalty;
  r->presence_penalty = m.presence_penalty;
  r->frequency_penalty = m.frequency_penalty;
  r->seed = m.seed;
  r->ignore_eos = m.ignore_eos;
}

// A text flag's value (JSON text, a prediction): the text, or @FILE holding it (the server checks JSON).
absl::StatusOr<std::string> JsonTextFlag(const char* name, const std::string& value) {
  if (value.empty() || value[0] != '@') return value;
  std::ifstream in(value.substr(1));
  if (!in) return absl::NotFoundError(absl::StrCat("--", name, " ", value, ": cannot read ", value.substr(1)));
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int main(int argc, char** argv) {
  // Debian's abseil is built with mutex deadlock detection on (a debug default): every lock
  // and every mutex's destruction updates a global lock graph. Measured ~3.5x the cost of a
  // lock/unlock; the tests (their own main) keep it on to catch lock-order bugs.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "glmctl [--server HOST:PORT] <forward|generate|chat|info|synth|quantize|plan|expert-load|tokenize|detokenize|render-chat> [flags]; --helpfull lists flags");
  glm::runtime::NormalizeDashedFlags(argc, argv);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::fprintf(stderr, "usage: %s\n", absl::ProgramUsageMessage().data());
    return 2;
  }
  const std::string command = args[1];
  glm::cli::ModelCommandOptions m;
  m.model_dir = absl::GetFlag(FLAGS_model);
  m.tokens_csv = absl::GetFlag(FLAGS_tokens);
  m.prompt = absl::GetFlag(FLAGS_prompt);
  m.out = absl::GetFlag(FLAGS_out);
  m.mtp = absl::GetFlag(FLAGS_mtp);
  m.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  m.temperature = absl::GetFlag(FLAGS_temperature);
  m.top_p = absl::GetFlag(FLAGS_top_p);
  m.top_k = absl::GetFlag(FLAGS_top_k);
  m.min_p = absl::GetFlag(FLAGS_min_p);
  m.repetition_penalty = absl::GetFlag(FLAGS_repetition_penalty);
  m.presence_penalty = absl::GetFlag(FLAGS_presence_penalty);
  m.frequency_penalty = absl::GetFlag(FLAGS_frequency_penalty);
  m.seed = absl::GetFlag(FLAGS_seed);
  m.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  m.json = absl::GetFlag(FLAGS_json);
  m.threads = absl::GetFlag(FLAGS_threads);
  m.preset = absl::GetFlag(FLAGS_preset);
  m.force = absl::GetFlag(FLAGS_force);
  m.message = absl::GetFlag(FLAGS_message);
  m.system = absl::GetFlag(FLAGS_system);
  m.speculative = absl::GetFlag(FLAGS_speculative);
  m.draft_vocab = absl::GetFlag(FLAGS_draft_vocab);
  m.weight_dtype = absl::GetFlag(FLAGS_weight_dtype);
  m.quantize_scope = absl::GetFlag(FLAGS_quantize_scope);
  m.activation_dtype = absl::GetFlag(FLAGS_activation_dtype);
  m.amx_tiles = absl::GetFlag(FLAGS_amx_tiles);
  m.kv_cache_dtype = absl::GetFlag(FLAGS_kv_cache_dtype);
  m.index_key_dtype = absl::GetFlag(FLAGS_index_key_dtype);
  m.expert_memory_gib = absl::GetFlag(FLAGS_expert_memory_gib);
  if (absl::GetFlag(FLAGS_stream) &&
      (m.json || (command != "generate" && command != "chat") || (command == "generate" && m.prompt.empty()))) {
    std::fprintf(stderr, "glmctl: --stream prints text: it needs generate --prompt or chat, and no --json\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_stream))
    m.on_text = [](const std::string& text) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    };
  const std::string server = absl::GetFlag(FLAGS_server);
  if (!server.empty()) {
    std::string api_key = absl::GetFlag(FLAGS_api_key);
    if (const char* env = std::getenv("GLM_API_KEY"); api_key.empty() && env != nullptr) api_key = env;
    // The server's weights are loaded already: these would be silently ignored.
    for (const char* flag :
         {"weight_dtype", "quantize_scope", "expert_memory_gib", "activation_dtype", "amx_tiles", "draft_vocab",
          "kv_cache_dtype", "index_key_dtype"}) {
      if (glm::runtime::FlagOnCommandLine(argc, argv, flag)) {
        std::string name(flag);
        std::replace(name.begin(), name.end(), '_', '-');
        const char* who = name == "amx-tiles" ? "workers take it at startup (deploy/launch.sh --amx-tiles)"
                                              : "coordinator takes it at startup";
        std::fprintf(stderr, "glmctl: --%s applies to a local model; a server's %s\n", name.c_str(), who);
        return 2;
      }
    }
    auto response_format = JsonTextFlag("response-format", absl::GetFlag(FLAGS_response_format));
    if (!response_format.ok()) return Finish(response_format.status());
    auto prediction = JsonTextFlag("prediction", absl::GetFlag(FLAGS_prediction));
    if (!prediction.ok()) return Finish(prediction.status());
    auto structured_outputs = JsonTextFlag("structured-outputs", absl::GetFlag(FLAGS_structured_outputs));
    if (!structured_outputs.ok()) return Finish(structured_outputs.status());
    if (command != "chat" && glm::runtime::FlagOnCommandLine(argc, argv, "tool_choice")) {
      std::fprintf(stderr, "glmctl: --tool-choice applies to chat\n");
      return 2;
    }
    if (command == "generate") {
      glm::api::RemoteGenerateOptions r;
      r.response_format_json = *response_format;
      r.structured_outputs_json = *structured_outputs;
      r.priority = absl::GetFlag(FLAGS_priority);
      r.on_text = m.on_text;
      r.tokens_csv = m.tokens_csv;
      r.prompt = m.prompt;
      CopySampling(m, &r);
      r.json = m.json;
      r.speculative = m.speculative;
      r.prediction = *prediction;
      r.api_key = api_key;
      return Finish(glm::api::RemoteGenerate(server, r));
    }
    if (command == "chat") {
      glm::api::RemoteChatOptions r;
      r.message = m.message;
      r.system = absl::GetFlag(FLAGS_system);
      if (const std::string path = absl::GetFlag(FLAGS_tools_file); !path.empty()) {
        std::ifstream in(path);
        if (!in) return Finish(absl::StatusOr<std::string>(absl::NotFoundError(absl::StrCat("--tools-file ", path, ": cannot read it"))));
        r.tools_json.assign(std::istreambuf_iterator<char>(in), {});  // the server checks its JSON
      }
      r.tool_choice = absl::GetFlag(FLAGS_tool_choice);
      r.response_format_json = *response_format;
      r.structured_outputs_json = *structured_outputs;
      r.priority = absl::GetFlag(FLAGS_priority);
      r.on_text = m.on_text;
      CopySampling(m, &r);
      r.json = m.json;
      r.speculative = m.speculative;
      r.prediction = *prediction;
      r.api_key = api_key;
      return Finish(glm::api::RemoteChat(server, r));
    }
    if (const double t = absl::GetFlag(FLAGS_timeout_s); (command == "info" || command == "expert-load") &&
                                                          !(t > 0 && t <= 86400)) {
      std::fprintf(stderr, "glmctl: --timeout-s must be in (0, 86400] seconds, got %g\n", t);
      return 2;
    }
    if (command == "info") {
      glm::api::RemoteInfoOptions r;
      r.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout_s));
      r.api_key = api_key;
      return Finish(glm::api::RemoteInfo(server, r));
    }
    if (command == "expert-load") {
      // The cluster's routing so far, in the file form `--expert-load` reads.
      glm::api::RemoteInfoOptions r;
      r.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout_s));
      r.api_key = api_key;
      auto remote = glm::api::RemoteExpertLoad(server, r);
      if (!remote.ok()) return Finish(remote.status());
      glm::placement::ExpertLoad load;
      load.model = remote->model();
      int64_t experts = 0;
      for (const auto& l : remote->layers()) {
        load.tokens_per_expert[l.layer()].assign(l.tokens_per_expert().begin(), l.tokens_per_expert().end());
        experts = l.tokens_per_expert_size();
      }
      // Tokens: each routed token counts experts_per_token times in every layer.
      if (!remote->layers().empty() && remote->experts_per_token() > 0) {
        int64_t sum = 0;
        for (int64_t n : remote->layers(0).tokens_per_expert()) sum += n;
        load.tokens = sum / remote->experts_per_token();
      }
      return Finish(glm::cli::SaveExpertLoad(load, std::max<int64_t>(1, experts), absl::GetFlag(FLAGS_out)));
    }
    std::fprintf(stderr, "glmctl: '%s' does not take --server (generate, chat, info and expert-load do)\n",
                 command.c_str());
    return 2;
  }
  if (command == "info") {
    std::fprintf(stderr, "glmctl: info needs --server HOST:PORT\n");
    return 2;
  }
  // Constrained decoding, priorities, tool calls and predicted outputs live in the server, not in the local model loop.
  for (const char* flag : {"response_format", "structured_outputs", "tool_choice", "priority", "tools_file", "prediction"}) {
    if (glm::runtime::FlagOnCommandLine(argc, argv, flag)) {
      std::string name(flag);
      std::replace(name.begin(), name.end(), '_', '-');
      std::fprintf(stderr, "glmctl: --%s needs --server HOST:PORT (a running coordinator)\n", name.c_str());
      return 2;
    }
  }
  if (command == "forward") return Finish(glm::cli::RunForwardCommand(m));
  if (command == "generate") return Finish(glm::cli::RunGenerateCommand(m));
  if (command == "chat") return Finish(glm::cli::RunChatCommand(m));
  if (command == "synth") return Finish(glm::cli::RunSynthCommand(m));
  if (command == "quantize") return Finish(glm::cli::RunQuantizeCommand(m));
  if (command == "expert-load") {
    m.text_file = absl::GetFlag(FLAGS_text_file);
    m.window = absl::GetFlag(FLAGS_window);
    return Finish(glm::cli::RunExpertLoadCommand(m));
  }
  if (command == "plan") {
    glm::cli::PlanCommandOptions p;
    p.model_dir = m.model_dir;
    p.topology_xml = absl::GetFlag(FLAGS_topology);
    p.synthetic = absl::GetFlag(FLAGS_synthetic);
    p.hosts = absl::GetFlag(FLAGS_hosts);
    p.stages = absl::GetFlag(FLAGS_stages);
    p.expert_layout = absl::GetFlag(FLAGS_expert_layout);
    p.memory_budget_gib = absl::GetFlag(FLAGS_memory_budget_gib);
    p.numa_memory_gib = absl::GetFlag(FLAGS_numa_memory_gib);
    p.kv_cache_gib = absl::GetFlag(FLAGS_kv_cache_gib);
    p.bandwidth_gbps = absl::GetFlag(FLAGS_bandwidth_gbps);
    p.weight_dtype = m.weight_dtype;
    p.quantize_scope = m.quantize_scope;
    p.activation_dtype = m.activation_dtype;
    p.kv_cache_dtype = m.kv_cache_dtype;
    p.index_key_dtype = m.index_key_dtype;
    p.expert_memory_gib = m.expert_memory_gib;
    p.expert_load = absl::GetFlag(FLAGS_expert_load);
    if (!glm::placement::ParseHotExpertReplicas(absl::GetFlag(FLAGS_hot_expert_replicas), &p.hot_expert_replicas)) {
      std::fprintf(stderr, "glmctl: --hot-expert-replicas '%s' is not a count of 0 or more, or auto\n",
                   absl::GetFlag(FLAGS_hot_expert_replicas).c_str());
      return 2;
    }
    p.json = m.json;
    return Finish(glm::cli::RunPlanCommand(p));
  }
#if GLM_HAVE_TEXT_COMMANDS
  // The tokenizer and template are the model directory's unless named apart.
  const std::string tokenizer = absl::GetFlag(FLAGS_tokenizer).empty() ? m.model_dir : absl::GetFlag(FLAGS_tokenizer);
  if (command == "tokenize")
    return Finish(glm::cli::RunTokenizeCommand(tokenizer, absl::GetFlag(FLAGS_text_file), m.prompt));
  if (command == "detokenize") return Finish(glm::cli::RunDetokenizeCommand(tokenizer, absl::GetFlag(FLAGS_ids)));
  if (command == "render-chat")
    return Finish(glm::cli::RunRenderChatCommand(
        absl::GetFlag(FLAGS_tokenizer_config).empty() ? m.model_dir : absl::GetFlag(FLAGS_tokenizer_config),
        absl::GetFlag(FLAGS_request_file)));
#endif
  std::fprintf(stderr, "glmctl: unknown command '%s'\n", command.c_str());
  return 2;
}
