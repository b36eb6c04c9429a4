// The load of bench/serve_bench: a dataset of prompts (random or fixed) and a run that sends
// them through a LoadClient with Poisson arrivals and a concurrency cap, bounded by a request
// count and a global deadline. No transport code here (that is load_client.h).
#ifndef GLM_COORDINATOR_API_LOAD_GENERATOR_H_
#define GLM_COORDINATOR_API_LOAD_GENERATOR_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/api/load_client.h"

namespace glm::api {

struct LoadDatasetOptions {
  // "random": every prompt different, input_len (± ratio) random token ids, or random words for
  //   text prompts; output lengths vary by the same ratio (vLLM's random dataset).
  // "fixed": the same prompt every time (prompt_text when given, else input_len tokens drawn from
  //   `seed`) with output_len each: a repeated prompt, for prefix-cache TTFT.
  // "custom": the prompts of prompt_text as JSON Lines (vLLM's custom dataset): one object a
  //   line with "prompt" (non-empty text) and optionally "output_tokens" (>= 1; else output_len);
  //   blank lines skipped, any other key ignored. Request i takes line i mod the lines, in file
  //   order (the user's own prompts: agent transcripts, code, real chats).
  std::string dataset = "random";
  int32_t num_prompts = 100;
  int32_t input_len = 1024;
  int32_t output_len = 128;
  double range_ratio = 0.0;     // [0, 1)
  uint64_t seed = 0;
  bool as_text = false;         // text prompts (chat needs them) instead of token ids
  std::string prompt_text;      // fixed: this text; custom: the JSON Lines (--prompt-file's content)
  // Random token ids are drawn from [token_id_min, token_id_max): ordinary tokens of any model
  // with a vocabulary that large (special tokens sit at the top of GLM's vocabulary).
  int32_t token_id_min = 100;
  int32_t token_id_max = 4000;
};

absl::StatusOr<std::vector<LoadPrompt>> MakeLoadPrompts(const LoadDatasetOptions& options);

struct LoadRunOptions {
  double request_rate = std::numeric_limits<double>::infinity();  // requests/s, Poisson; inf: all at once
  int32_t max_concurrency = 0;         // in-flight cap; 0 = none
  absl::Duration timeout = absl::Seconds(600);  // the whole run (warm-up included)
  uint64_t seed = 0;                   // arrival times
  int32_t warmup_requests = 0;         // sent one by one before the run (prompt 0), not measured
};

struct LoadRunResult {
  std::vector<LoadRequestResult> requests;  // one per prompt, in prompt order
  double duration_s = 0;                    // first send to last completion
  int32_t max_concurrency = 0;              // as asked (0 = none)
  double request_rate = 0;                  // as asked
  int32_t peak_concurrency = 0;             // the most requests in flight at once
};

// Sends every prompt once. Requests that could not be sent before the deadline are failed
// results ("not sent"); a request still streaming at the deadline is cut off and failed.
LoadRunResult RunLoad(LoadClient* client, const std::vector<LoadPrompt>& prompts, const LoadRunOptions& options);

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_LOAD_GENERATOR_H_
