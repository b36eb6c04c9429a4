// The serving metrics under the names vLLM's dashboards query (vllm:*), plus the cluster's own
// (glm:*). Engine counters and gauges are copied from Engine::GetLoad() at scrape time, so they
// cost nothing between scrapes; latency histograms are observed by the front ends per request.
#ifndef GLM_COORDINATOR_API_SERVING_METRICS_H_
#define GLM_COORDINATOR_API_SERVING_METRICS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coordinator/api/metrics.h"
#include "coordinator/scheduler/engine.h"

namespace glm::api {

class ServingMetrics {
 public:
  // max_model_len: the largest bucket of the token-count histograms (vLLM's 1-2-5 series up to it;
  // 0: up to a million).
  explicit ServingMetrics(std::string model_name, int64_t max_model_len = 0);

  void ObserveTimeToFirstToken(double seconds);
  // `tokens` tokens arrived together `seconds` after the previous ones: each gets seconds/tokens.
  void ObserveInterTokenLatency(double seconds, int tokens);
  // A request that ended (any reason, errors included as "error").
  void ObserveFinished(const std::string& finish_reason, double e2e_seconds);
  // A finished request's phases as the engine saw them (vLLM's names): queue = first scheduled -
  // queued, prefill = first token - first scheduled, decode = last token - first token, inference
  // = last token - first scheduled; and its prompt (not observed when <= 0: the second and later
  // choices of an n > 1 request share the first's) and generated token counts.
  void ObservePhases(double queue_seconds, double prefill_seconds, double decode_seconds, double inference_seconds);
  void ObserveTokenCounts(int64_t prompt_tokens, int64_t generation_tokens);

  // vLLM's vllm:cache_config_info (value 1, the KV cache's settings as labels: block_size,
  // cache_dtype, num_gpu_blocks (the blocks a worker holds; CPU memory here), enable_prefix_caching,
  // and ours, index_key_dtype), so a dashboard or a person can tell what a server's KV cache is.
  void SetCacheConfig(int64_t block_size, const std::string& cache_dtype, int64_t num_blocks, bool prefix_caching,
                      const std::string& index_key_dtype = "f32");
  // The tokenizer's word cache (tokenizer::BpeModel::CacheStats), copied at scrape time.
  void SetTokenizerWordCache(int64_t words, int64_t hits, int64_t misses);
  // Structured outputs: constrained requests, and their token masks from the cache or computed.
  void SetStructuredOutputs(int64_t requests, int64_t mask_hits, int64_t mask_misses, double mask_seconds);
  // The stored /v1/responses replies (response_store.h).
  void SetStoredResponses(int64_t entries, int64_t bytes, int64_t evicted);
  // Copies `load` into the gauges/counters and renders everything.
  std::string Render(const scheduler::EngineLoad& load);

  const MetricsRegistry& registry() const { return registry_; }

 private:
  MetricLabels labels() const { return {{"model_name", model_name_}}; }

  std::string model_name_;
  MetricsRegistry registry_;
};


// The finish reason to record for a request that ended with `status` mid-generation: "abort"
// when it was ended from outside (its deadline passed, the client cancelled, the server shut
// down), as vLLM counts them; "error" for a real failure (cluster gone, bad output). Which of the
// front end or the engine notices a deadline first must not change how it is counted.
std::string FailureFinishReason(const absl::Status& status);

// One structured log line (JSON on stderr, like a finished request's): {"ts", "event",
// "request_id", "detail"}. The engine's scheduling events (EngineOptions::log_event).
void LogRequestEvent(const std::string& event, const std::string& request_id, const std::string& detail);

// One request's latency bookkeeping for ServingMetrics; the destructor records an unfinished
// request as "abort" so no exit path of a handler is missed.
class RequestTracker {
 public:
  explicit RequestTracker(ServingMetrics* metrics) : metrics_(metrics), arrival_(absl::Now()) {}
  // With an id, the finish is also logged as one JSON line (request id, api, tokens, timings).
  RequestTracker(ServingMetrics* metrics, std::string request_id, std::string api, int prompt_tokens,
                 absl::Time arrival = absl::Now())
      : metrics_(metrics), arrival_(arrival), request_id_(std::move(request_id)), api_(std::move(api)),
        prompt_tokens_(prompt_tokens) {}
  ~RequestTracker() { Finish("abort"); }
  RequestTracker(const RequestTracker&) = delete;
  RequestTracker& operator=(const RequestTracker&) = delete;

  // `tokens` new tokens reached the client; `times` (when they include the first one): the
  // engine's, so TTFT does not include this thread's wake-up, and the phase histograms.
  void OnTokens(int tokens, const scheduler::RequestTimes& times = {});
  // The first call wins.
  void Finish(const std::string& finish_reason);

 private:
  ServingMetrics* metrics_;
  absl::Time arrival_;
  absl::Time last_token_ = absl::InfinitePast();
  absl::Time first_token_ = absl::InfinitePast();
  absl::Time queued_ = absl::InfinitePast(), scheduled_ = absl::InfinitePast();  // the engine's (OnTokens)
  bool finished_ = false;
  std::string request_id_, api_;
  int prompt_tokens_ = 0;
  int completion_tokens_ = 0;
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_SERVING_METRICS_H_
