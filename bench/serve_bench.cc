// serve_bench: a serving load generator for our gRPC API and any OpenAI-compatible server (vLLM,
// SGLang, llama.cpp, ours) or Anthropic-compatible one, so they can be measured side by side with
// the same load. Reports
// what vLLM's `bench serve` reports (TTFT, TPOT, ITL, E2E latency; request/token throughput),
// as its table or, with --json, as JSON with its key names.
//
//   serve_bench --backend grpc|openai-completions|openai-chat|anthropic-messages|openai-responses
//               --server HOST:PORT [--model NAME]
//               [--num-prompts N] [--request-rate R|inf] [--max-concurrency C]
//               [--input-len L] [--output-len O] [--random-range-ratio X]
//               [--dataset random|fixed|custom] [--prompt-file F] [--seed S] [--[no]ignore-eos]
//               [--timeout-s T] [--warmup-requests K] [--json] [--result-file F] [--save-detailed]
//
// Prompts are token ids for grpc and openai-completions, random words for the chat-style backends
// (openai-chat, anthropic-messages, openai-responses). Every request asks for exactly O tokens
// (max_tokens + ignore_eos). Every run is bounded: N requests
// and --timeout-s for the whole run; traffic goes only to --server.
// Exit status: 0 when every request succeeded, 1 when some failed, 2 on bad arguments, 3 when
// the server cannot be reached.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/api/load_client.h"
#include "coordinator/api/load_generator.h"
#include "coordinator/api/load_report.h"
#include "shard_worker/runtime/dashed_flags.h"

ABSL_FLAG(std::string, backend, "grpc",
          "grpc | openai-completions | openai-chat | anthropic-messages | openai-responses");
ABSL_FLAG(std::string, server, "127.0.0.1:50051", "HOST:PORT of the server (OpenAI: also http://HOST:PORT)");
ABSL_FLAG(std::string, endpoint, "", "OpenAI path (default /v1/completions or /v1/chat/completions)");
ABSL_FLAG(std::string, model, "", "model name to send (OpenAI default: the first of GET /v1/models)");
ABSL_FLAG(std::string, api_key, "", "API key, sent as a bearer token (HTTP header or gRPC metadata)");
ABSL_FLAG(int32_t, num_prompts, 100, "requests in the run");
ABSL_FLAG(std::string, request_rate, "inf", "requests per second (Poisson arrivals); inf = all at once");
ABSL_FLAG(int32_t, max_concurrency, 0, "most requests in flight (0 = no cap)");
ABSL_FLAG(int32_t, input_len, 1024, "prompt tokens (random and fixed datasets)");
ABSL_FLAG(int32_t, output_len, 128, "output tokens per request");
ABSL_FLAG(double, random_range_ratio, 0.0, "random dataset: lengths vary by +-this fraction");
ABSL_FLAG(std::string, dataset, "random",
          "random | fixed (the same prompt every time) | custom (--prompt-file as JSON Lines: {\"prompt\": text, "
          "\"output_tokens\": n (optional)} a line, sent in file order, cycling)");
ABSL_FLAG(std::string, prompt_file, "", "fixed dataset: the prompt text; custom dataset: the JSON Lines");
ABSL_FLAG(uint64_t, seed, 0, "prompts and arrival times");
ABSL_FLAG(int32_t, token_id_min, 100, "random token ids are drawn from [min, max)");
ABSL_FLAG(int32_t, token_id_max, 4000, "random token ids are drawn from [min, max)");
ABSL_FLAG(bool, ignore_eos, true, "ask for exactly --output-len tokens (--noignore-eos to stop at EOS)");
ABSL_FLAG(double, temperature, 0.0, "sampling temperature");
ABSL_FLAG(int32_t, priority, 0,
          "every request's priority (vLLM's field; a server with --scheduling-policy priority serves lower values "
          "first; 0 = not sent)");
ABSL_FLAG(double, timeout_s, 600.0, "the whole run's limit in seconds");
ABSL_FLAG(double, connect_timeout_s, 10.0, "reaching the server");
ABSL_FLAG(int32_t, warmup_requests, 0, "requests sent one by one before the run, not measured");
ABSL_FLAG(bool, json, false, "print the result as JSON on stdout (the table goes to stderr)");
ABSL_FLAG(std::string, result_file, "", "also write the JSON result here");
ABSL_FLAG(bool, save_detailed, false, "the JSON also has per-request arrays");

namespace {

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "serve_bench: %s\n", message.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's abseil is built with mutex deadlock detection on (a debug default): every lock
  // and every mutex's destruction updates a global lock graph. Measured ~3.5x the cost of a
  // lock/unlock; the tests (their own main) keep it on to catch lock-order bugs.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  glm::runtime::NormalizeDashedFlags(argc, argv);
  absl::SetProgramUsageMessage("serving load generator (gRPC and OpenAI-compatible HTTP); see bench/serve_bench.cc");
  absl::ParseCommandLine(argc, argv);

  auto backend = glm::api::ParseLoadBackend(absl::GetFlag(FLAGS_backend));
  if (!backend.ok()) return Fail(2, std::string(backend.status().message()));
  double rate = std::numeric_limits<double>::infinity();
  const std::string rate_flag = absl::GetFlag(FLAGS_request_rate);
  if (rate_flag != "inf" && (!absl::SimpleAtod(rate_flag, &rate) || !(rate > 0)))
    return Fail(2, "--request-rate must be > 0 or inf");
  const double timeout_s = absl::GetFlag(FLAGS_timeout_s);
  if (!(timeout_s > 0)) return Fail(2, "--timeout-s must be > 0");
  if (absl::GetFlag(FLAGS_max_concurrency) < 0) return Fail(2, "--max-concurrency must be >= 0");

  glm::api::LoadDatasetOptions data;
  data.dataset = absl::GetFlag(FLAGS_dataset);
  data.num_prompts = absl::GetFlag(FLAGS_num_prompts);
  data.input_len = absl::GetFlag(FLAGS_input_len);
  data.output_len = absl::GetFlag(FLAGS_output_len);
  data.range_ratio = absl::GetFlag(FLAGS_random_range_ratio);
  data.seed = absl::GetFlag(FLAGS_seed);
  data.as_text = *backend == glm::api::LoadBackend::kOpenAiChat ||
                 *backend == glm::api::LoadBackend::kAnthropicMessages ||
                 *backend == glm::api::LoadBackend::kOpenAiResponses;
  data.token_id_min = absl::GetFlag(FLAGS_token_id_min);
  data.token_id_max = absl::GetFlag(FLAGS_token_id_max);
  if (const std::string path = absl::GetFlag(FLAGS_prompt_file); !path.empty()) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Fail(2, absl::StrCat("cannot read --prompt-file ", path));
    std::ostringstream text;
    text << in.rdbuf();
    data.prompt_text = text.str();
    if (data.prompt_text.empty()) return Fail(2, absl::StrCat("--prompt-file ", path, " is empty"));
  }
  auto prompts = glm::api::MakeLoadPrompts(data);
  if (!prompts.ok()) return Fail(2, std::string(prompts.status().message()));

  glm::api::LoadClientOptions client_options;
  client_options.backend = *backend;
  client_options.server = absl::GetFlag(FLAGS_server);
  client_options.endpoint = absl::GetFlag(FLAGS_endpoint);
  client_options.model = absl::GetFlag(FLAGS_model);
  client_options.api_key = absl::GetFlag(FLAGS_api_key);
  client_options.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  client_options.temperature = absl::GetFlag(FLAGS_temperature);
  client_options.priority = absl::GetFlag(FLAGS_priority);
  client_options.connect_timeout = absl::Seconds(absl::GetFlag(FLAGS_connect_timeout_s));
  auto client = glm::api::LoadClient::Create(client_options);
  if (!client.ok()) return Fail(3, std::string(client.status().message()));

  glm::api::LoadRunOptions run_options;
  run_options.request_rate = rate;
  run_options.max_concurrency = absl::GetFlag(FLAGS_max_concurrency);
  run_options.timeout = absl::Seconds(timeout_s);
  run_options.seed = data.seed;
  run_options.warmup_requests = absl::GetFlag(FLAGS_warmup_requests);
  const glm::api::LoadRunResult run = glm::api::RunLoad(client->get(), *prompts, run_options);

  const glm::api::LoadSummary summary =
      glm::api::SummarizeLoad(run, glm::api::LoadBackendName(*backend), (*client)->model());
  const bool detailed = absl::GetFlag(FLAGS_save_detailed);
  const std::string json = glm::api::LoadSummaryJson(summary, detailed ? &run : nullptr).dump(2);
  const std::string table = glm::api::FormatLoadSummary(summary);
  if (absl::GetFlag(FLAGS_json)) {
    std::fputs(table.c_str(), stderr);
    std::printf("%s\n", json.c_str());
  } else {
    std::fputs(table.c_str(), stdout);
  }
  if (const std::string path = absl::GetFlag(FLAGS_result_file); !path.empty()) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << json << "\n";
    if (!out) return Fail(2, absl::StrCat("cannot write --result-file ", path));
  }
  return summary.failed == 0 ? 0 : 1;
}
