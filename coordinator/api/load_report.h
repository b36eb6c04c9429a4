// The numbers of a serve_bench run, computed as vLLM's `bench serve` computes them, printed as
// its table or as JSON with its key names (so results of both tools can be compared directly).
#ifndef GLM_COORDINATOR_API_LOAD_REPORT_H_
#define GLM_COORDINATOR_API_LOAD_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "coordinator/api/load_generator.h"
#include "nlohmann/json.hpp"

namespace glm::api {

// mean / median / std (population) / p90 / p99 of one metric, in milliseconds; 0 when empty.
struct LoadStat {
  double mean = 0, median = 0, stddev = 0, p90 = 0, p99 = 0;
};
LoadStat ComputeLoadStat(std::vector<double> values_ms);

struct LoadSummary {
  std::string backend;
  std::string model;
  int32_t num_prompts = 0;
  int32_t completed = 0;
  int32_t failed = 0;
  double duration_s = 0;
  int64_t total_input_tokens = 0;     // completed requests only (as vLLM)
  int64_t total_output_tokens = 0;
  int64_t total_cached_tokens = 0;    // prompt tokens the server reported as prefix-cache hits
  double request_throughput = 0;      // completed / duration
  double output_throughput = 0;       // output tokens / duration
  double total_token_throughput = 0;  // (input + output) / duration
  LoadStat ttft, tpot, itl, e2el;     // TPOT over requests with > 1 output token
  int32_t max_concurrency = 0;        // 0 = none
  double request_rate = 0;            // inf = all at once
  int32_t peak_concurrency = 0;
  std::vector<std::string> errors;    // the first few failures' messages
};

LoadSummary SummarizeLoad(const LoadRunResult& run, const std::string& backend, const std::string& model);

// vLLM's result keys (duration, completed, ..., p99_e2el_ms, max_concurrency, request_rate) plus
// failed, errors, p90_*, total_cached_tokens. detailed: also per-request arrays (input_lens,
// output_lens, ttfts, itls, e2els in seconds, errors for all), as vLLM saves them.
nlohmann::json LoadSummaryJson(const LoadSummary& summary, const LoadRunResult* detailed = nullptr);

// The human table, laid out like vLLM's.
std::string FormatLoadSummary(const LoadSummary& summary);

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_LOAD_REPORT_H_
