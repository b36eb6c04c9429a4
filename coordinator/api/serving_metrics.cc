#include "coordinator/api/serving_metrics.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "coordinator/scheduler/engine_errors.h"
#include "nlohmann/json.hpp"

namespace glm::api {
namespace {

using Type = MetricsRegistry::Type;

// vLLM's bucket choices (vllm/engine/metrics.py), so existing dashboards' quantiles line up.
const std::vector<double> kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5, 0.75,
                                          1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
const std::vector<double> kItlBuckets = {0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2,  0.3,  0.4, 0.5,
                                         0.75, 1.0,   2.5,  5.0,   7.5,  10.0, 20.0, 40.0, 80.0};
const std::vector<double> kE2eBuckets = {0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,  15.0,  20.0,
                                         30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

// vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... up to `max` (token-count histograms).
std::vector<double> OneTwoFiveBuckets(int64_t max) {
  std::vector<double> out;
  for (int64_t scale = 1;; scale *= 10)
    for (int64_t m : {1, 2, 5}) {
      if (m * scale > max) return out;
      out.push_back(static_cast<double>(m * scale));
    }
}

}  // namespace

ServingMetrics::ServingMetrics(std::string model_name, int64_t max_model_len) : model_name_(std::move(model_name)) {
  auto& r = registry_;
  r.Declare("vllm:num_requests_running", Type::kGauge, "Number of requests in model execution batches.");
  r.Declare("vllm:num_requests_waiting", Type::kGauge, "Number of requests waiting to be processed.");
  r.Declare("vllm:kv_cache_usage_perc", Type::kGauge, "KV-cache usage. 1 means 100 percent usage.");
  r.Declare("vllm:gpu_cache_usage_perc", Type::kGauge, "KV-cache usage (older vLLM name). 1 means 100 percent.");
  r.Declare("vllm:prompt_tokens_total", Type::kCounter, "Number of prefill tokens processed.");
  r.Declare("vllm:generation_tokens_total", Type::kCounter, "Number of generation tokens processed.");
  r.Declare("vllm:prefix_cache_queries_total", Type::kCounter, "Prefix cache queries, in tokens.");
  r.Declare("vllm:prefix_cache_hits_total", Type::kCounter, "Prefix cache hits, in tokens.");
  r.Declare("vllm:num_preemptions_total", Type::kCounter, "Cumulative number of preemptions.");
  r.Declare("vllm:request_success_total", Type::kCounter, "Count of finished requests by finish reason.");
  r.Declare("glm:request_failures_total", Type::kCounter,
            "Requests refused (rejected: invalid, queue full, draining) or failed mid-generation (error).");
  r.Declare("vllm:time_to_first_token_seconds", Type::kHistogram, "Histogram of time to first token in seconds.",
            kTtftBuckets);
  r.Declare("vllm:inter_token_latency_seconds", Type::kHistogram, "Histogram of inter-token latency in seconds.",
            kItlBuckets);
  r.Declare("vllm:time_per_output_token_seconds", Type::kHistogram,
            "Histogram of time per output token in seconds (older name of inter_token_latency).", kItlBuckets);
  r.Declare("vllm:e2e_request_latency_seconds", Type::kHistogram, "Histogram of end-to-end request latency in seconds.",
            kE2eBuckets);
  // A finished request's phases, from the engine's timestamps (vLLM's names and buckets).
  r.Declare("vllm:request_queue_time_seconds", Type::kHistogram,
            "Histogram of time spent in WAITING phase for request.", kE2eBuckets);
  r.Declare("vllm:request_prefill_time_seconds", Type::kHistogram,
            "Histogram of time spent in PREFILL phase for request.", kE2eBuckets);
  r.Declare("vllm:request_decode_time_seconds", Type::kHistogram,
            "Histogram of time spent in DECODE phase for request.", kE2eBuckets);
  r.Declare("vllm:request_inference_time_seconds", Type::kHistogram,
            "Histogram of time spent in RUNNING phase for request.", kE2eBuckets);
  const std::vector<double> token_buckets = OneTwoFiveBuckets(max_model_len > 0 ? max_model_len : 1000000);
  r.Declare("vllm:request_prompt_tokens", Type::kHistogram, "Number of prefill tokens processed.", token_buckets);
  r.Declare("vllm:request_generation_tokens", Type::kHistogram, "Number of generation tokens processed.",
            token_buckets);
  r.Declare("glm:steps_total", Type::kCounter, "Scheduler iterations run on the cluster.");
  r.Declare("glm:steps_overlapped_total", Type::kCounter,
            "Steps sent while an earlier one was still on the workers (pipeline stages working at once).");
  r.Declare("glm:max_steps_in_flight", Type::kGauge, "Steps the workers may hold at once (--steps-in-flight).");
  r.Declare("glm:step_seconds_total", Type::kCounter, "Wall time spent in cluster steps.");
  r.Declare("glm:comm_seconds_total", Type::kCounter, "Time spent in inter-rank communication.");
  r.Declare("glm:expert_bytes_read_total", Type::kCounter, "Routed-expert weight bytes read by the workers.");
  // Per worker rank (labels rank, stage), refreshed from the workers at most once a second while
  // steps run and once when the server goes idle.
  r.Declare("glm:rank_steps_total", Type::kCounter, "Steps a worker rank executed.");
  r.Declare("glm:rank_step_seconds_total", Type::kCounter, "Wall time a worker rank spent executing steps.");
  r.Declare("glm:rank_comm_seconds_total", Type::kCounter,
            "Time a worker rank spent communicating (collectives, stage hand-offs) within steps.");
  r.Declare("glm:rank_expert_bytes_read_total", Type::kCounter, "Routed-expert weight bytes a worker rank read.");
  // Ranks streaming experts from disk (--expert-memory-gib): the cache's hit rate is hits / (hits +
  // misses), the disk bandwidth used disk bytes / disk seconds.
  r.Declare("glm:rank_expert_cache_hits_total", Type::kCounter, "Expert lookups found in a rank's expert cache.");
  r.Declare("glm:rank_expert_cache_misses_total", Type::kCounter, "Expert lookups a rank had to read from disk.");
  r.Declare("glm:rank_expert_disk_bytes_total", Type::kCounter, "Expert bytes a rank read from disk.");
  r.Declare("glm:rank_expert_disk_seconds_total", Type::kCounter, "Time a rank had expert reads in flight.");
  r.Declare("vllm:cache_config_info", Type::kGauge, "Information of the LLMEngine CacheConfig");
  r.Declare("glm:stage_busiest_rank_ratio", Type::kGauge,
            "Per stage of 2+ ranks: the busiest rank's compute time (step time minus communication, since "
            "start) over the stage's mean; 1 is perfectly balanced (expert- or tensor-parallel ranks).");
  // The BPE word cache of the coordinator's tokenizer (bounded; words in use stay, one-off words
  // age out): hits / (hits + misses) is how much of the text skipped the merge loop.
  r.Declare("glm:tokenizer_cache_words", Type::kGauge, "Words held in the tokenizer's BPE word cache.");
  r.Declare("glm:tokenizer_cache_hits_total", Type::kCounter, "Pre-token lookups answered by the BPE word cache.");
  r.Declare("glm:tokenizer_cache_misses_total", Type::kCounter, "Pre-token lookups that ran the BPE merge loop.");
  // Structured outputs (response_format, forced tool calls): each sampled token of such a request
  // takes a token mask, from the cache (hits) or computed on the engine's thread (misses; the time
  // they took is the engine time structured outputs cost).
  r.Declare("glm:structured_output_requests_total", Type::kCounter,
            "Requests whose reply follows a format (JSON schema, JSON object, a forced tool call).");
  r.Declare("glm:structured_output_mask_cache_hits_total", Type::kCounter, "Token masks served from the cache.");
  r.Declare("glm:structured_output_mask_cache_misses_total", Type::kCounter, "Token masks computed.");
  r.Declare("glm:structured_output_mask_seconds_total", Type::kCounter, "Time spent computing token masks.");
  r.Declare("glm:responses_stored", Type::kGauge, "Stored /v1/responses replies (previous_response_id).");
  r.Declare("glm:responses_stored_bytes", Type::kGauge, "JSON bytes of the stored replies and their conversations.");
  r.Declare("glm:responses_evicted_total", Type::kCounter, "Stored replies evicted to keep to --responses-store-mib.");
  r.Declare("glm:kv_blocks_total", Type::kGauge, "Logical KV blocks.");
  r.Declare("glm:kv_blocks_used", Type::kGauge, "KV blocks held by live sequences.");
  r.Declare("glm:kv_blocks_cached", Type::kGauge, "Free KV blocks still holding a reusable prefix.");
  r.Declare("vllm:spec_decode_num_drafts_total", Type::kCounter, "Verify steps that carried speculative drafts.");
  r.Declare("vllm:spec_decode_num_draft_tokens_total", Type::kCounter, "Draft tokens proposed.");
  r.Declare("vllm:spec_decode_num_accepted_tokens_total", Type::kCounter, "Draft tokens accepted.");
  // Counters are named with _total (vLLM's names too): prometheus_client-based parsers skip a
  // counter sample without it.
  r.Declare("vllm:spec_decode_num_accepted_tokens_per_pos_total", Type::kCounter,
            "Accepted draft tokens by draft position.");
  r.Declare("glm:spec_decode_num_draft_tokens_per_pos_total", Type::kCounter,
            "Draft tokens verified by draft position (the adaptive draft length drafts later positions less often).");
}

std::string FailureFinishReason(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kCancelled: return "abort";
    // A cluster failure is UNAVAILABLE too ("the cluster failed: ..."): only the shutdown's own
    // message marks a request the server ended on purpose.
    case absl::StatusCode::kUnavailable: return scheduler::IsShuttingDown(status) ? "abort" : "error";
    default: return "error";
  }
}

void ServingMetrics::ObserveTimeToFirstToken(double seconds) {
  registry_.Observe("vllm:time_to_first_token_seconds", labels(), seconds);
}

void ServingMetrics::ObserveInterTokenLatency(double seconds, int tokens) {
  if (tokens <= 0) return;
  const double each = seconds / tokens;
  for (int i = 0; i < tokens; ++i) {
    registry_.Observe("vllm:inter_token_latency_seconds", labels(), each);
    registry_.Observe("vllm:time_per_output_token_seconds", labels(), each);
  }
}

void ServingMetrics::ObserveFinished(const std::string& finish_reason, double e2e_seconds) {
  // vLLM counts completed requests (stop, length, abort, tool_calls) as successes; a request the
  // server refused or failed is not one of them.
  if (finish_reason == "rejected" || finish_reason == "error") {
    MetricLabels l = labels();
    l.emplace_back("reason", finish_reason);
    registry_.Add("glm:request_failures_total", l, 1);
    return;
  }
  MetricLabels l = labels();
  l.emplace_back("finished_reason", finish_reason);
  registry_.Add("vllm:request_success_total", l, 1);
  registry_.Observe("vllm:e2e_request_latency_seconds", labels(), e2e_seconds);
}

void ServingMetrics::ObservePhases(double queue_seconds, double prefill_seconds, double decode_seconds,
                                   double inference_seconds) {
  const MetricLabels l = labels();
  registry_.Observe("vllm:request_queue_time_seconds", l, queue_seconds);
  registry_.Observe("vllm:request_prefill_time_seconds", l, prefill_seconds);
  registry_.Observe("vllm:request_decode_time_seconds", l, decode_seconds);
  registry_.Observe("vllm:request_inference_time_seconds", l, inference_seconds);
}

void ServingMetrics::ObserveTokenCounts(int64_t prompt_tokens, int64_t generation_tokens) {
  const MetricLabels l = labels();
  if (prompt_tokens > 0) registry_.Observe("vllm:request_prompt_tokens", l, static_cast<double>(prompt_tokens));
  registry_.Observe("vllm:request_generation_tokens", l, static_cast<double>(generation_tokens));
}

void ServingMetrics::SetCacheConfig(int64_t block_size, const std::string& cache_dtype, int64_t num_blocks,
                                    bool prefix_caching, const std::string& index_key_dtype) {
  MetricLabels l = labels();
  l.emplace_back("block_size", std::to_string(block_size));
  l.emplace_back("cache_dtype", cache_dtype);
  l.emplace_back("enable_prefix_caching", prefix_caching ? "True" : "False");
  l.emplace_back("num_gpu_blocks", std::to_string(num_blocks));
  l.emplace_back("index_key_dtype", index_key_dtype);  // ours: the DSA indexer keys' (--index-key-dtype)
  registry_.Set("vllm:cache_config_info", l, 1.0);
}

void ServingMetrics::SetTokenizerWordCache(int64_t words, int64_t hits, int64_t misses) {
  const MetricLabels l = labels();
  registry_.Set("glm:tokenizer_cache_words", l, static_cast<double>(words));
  registry_.Set("glm:tokenizer_cache_hits_total", l, static_cast<double>(hits));
  registry_.Set("glm:tokenizer_cache_misses_total", l, static_cast<double>(misses));
}

void ServingMetrics::SetStructuredOutputs(int64_t requests, int64_t mask_hits, int64_t mask_misses,
                                          double mask_seconds) {
  const MetricLabels l = labels();
  registry_.Set("glm:structured_output_requests_total", l, static_cast<double>(requests));
  registry_.Set("glm:structured_output_mask_cache_hits_total", l, static_cast<double>(mask_hits));
  registry_.Set("glm:structured_output_mask_cache_misses_total", l, static_cast<double>(mask_misses));
  registry_.Set("glm:structured_output_mask_seconds_total", l, mask_seconds);
}

void ServingMetrics::SetStoredResponses(int64_t entries, int64_t bytes, int64_t evicted) {
  const MetricLabels l = labels();
  registry_.Set("glm:responses_stored", l, static_cast<double>(entries));
  registry_.Set("glm:responses_stored_bytes", l, static_cast<double>(bytes));
  registry_.Set("glm:responses_evicted_total", l, static_cast<double>(evicted));
}

std::string ServingMetrics::Render(const scheduler::EngineLoad& load) {
  auto& r = registry_;
  const MetricLabels l = labels();
  const double usage =
      load.kv_blocks_total > 0 ? static_cast<double>(load.kv_blocks_used) / static_cast<double>(load.kv_blocks_total) : 0;
  r.Set("vllm:num_requests_running", l, load.running);
  r.Set("vllm:num_requests_waiting", l, load.waiting);
  r.Set("vllm:kv_cache_usage_perc", l, usage);
  r.Set("vllm:gpu_cache_usage_perc", l, usage);
  r.Set("vllm:prompt_tokens_total", l, static_cast<double>(load.prompt_tokens_total));
  r.Set("vllm:generation_tokens_total", l, static_cast<double>(load.generation_tokens_total));
  r.Set("vllm:prefix_cache_queries_total", l, static_cast<double>(load.prefix_cache_queries));
  r.Set("vllm:prefix_cache_hits_total", l, static_cast<double>(load.prefix_cache_hits));
  r.Set("vllm:num_preemptions_total", l, static_cast<double>(load.preemptions));
  r.Set("glm:steps_total", l, static_cast<double>(load.steps));
  r.Set("glm:steps_overlapped_total", l, static_cast<double>(load.overlapped_steps));
  r.Set("glm:max_steps_in_flight", l, load.max_steps_in_flight);
  r.Set("glm:step_seconds_total", l, load.step_seconds_total);
  r.Set("glm:comm_seconds_total", l, load.comm_seconds_total);
  r.Set("glm:expert_bytes_read_total", l, static_cast<double>(load.expert_bytes_total));
  r.Set("glm:kv_blocks_total", l, static_cast<double>(load.kv_blocks_total));
  r.Set("glm:kv_blocks_used", l, static_cast<double>(load.kv_blocks_used));
  r.Set("glm:kv_blocks_cached", l, static_cast<double>(load.kv_blocks_cached));
  r.Set("vllm:spec_decode_num_drafts_total", l, static_cast<double>(load.spec_num_drafts));
  r.Set("vllm:spec_decode_num_draft_tokens_total", l, static_cast<double>(load.spec_draft_tokens));
  r.Set("vllm:spec_decode_num_accepted_tokens_total", l, static_cast<double>(load.spec_accepted_tokens));
  for (const shard::RankStats& rank : load.ranks) {
    MetricLabels rl = l;
    rl.emplace_back("rank", std::to_string(rank.rank()));
    rl.emplace_back("stage", std::to_string(rank.stage()));
    r.Set("glm:rank_steps_total", rl, static_cast<double>(rank.steps()));
    r.Set("glm:rank_step_seconds_total", rl, rank.step_seconds());
    r.Set("glm:rank_comm_seconds_total", rl, rank.comm_seconds());
    r.Set("glm:rank_expert_bytes_read_total", rl, static_cast<double>(rank.expert_bytes_read()));
    if (rank.expert_cache_hits() + rank.expert_cache_misses() > 0) {
      r.Set("glm:rank_expert_cache_hits_total", rl, static_cast<double>(rank.expert_cache_hits()));
      r.Set("glm:rank_expert_cache_misses_total", rl, static_cast<double>(rank.expert_cache_misses()));
      r.Set("glm:rank_expert_disk_bytes_total", rl, static_cast<double>(rank.expert_disk_bytes()));
      r.Set("glm:rank_expert_disk_seconds_total", rl, rank.expert_disk_seconds());
    }
  }
  // Load imbalance within each stage: the others wait in the stage's collectives for its busiest rank.
  std::map<int32_t, std::vector<double>> busy_by_stage;
  for (const shard::RankStats& rank : load.ranks)
    busy_by_stage[rank.stage()].push_back(std::max(0.0, rank.step_seconds() - rank.comm_seconds()));
  for (const auto& [stage, busy] : busy_by_stage) {
    if (busy.size() < 2) continue;
    double sum = 0, most = 0;
    for (double b : busy) {
      sum += b;
      most = std::max(most, b);
    }
    if (sum <= 0) continue;
    MetricLabels sl = l;
    sl.emplace_back("stage", std::to_string(stage));
    r.Set("glm:stage_busiest_rank_ratio", sl, most / (sum / static_cast<double>(busy.size())));
  }
  for (size_t i = 0; i < load.spec_accepted_per_pos.size(); ++i) {
    MetricLabels pos = l;
    pos.emplace_back("position", std::to_string(i));
    r.Set("vllm:spec_decode_num_accepted_tokens_per_pos_total", pos, static_cast<double>(load.spec_accepted_per_pos[i]));
  }
  for (size_t i = 0; i < load.spec_drafted_per_pos.size(); ++i) {
    MetricLabels pos = l;
    pos.emplace_back("position", std::to_string(i));
    r.Set("glm:spec_decode_num_draft_tokens_per_pos_total", pos, static_cast<double>(load.spec_drafted_per_pos[i]));
  }
  return r.Render();
}

namespace {
// Structured log: one JSON object per line on stderr (collected with the job's log), stamped with
// `now`, the event and its request id, then `fields`.
void WriteLogLine(absl::Time now, const std::string& event, const std::string& request_id, const nlohmann::json& fields) {
  nlohmann::json line = {{"ts", absl::FormatTime(absl::RFC3339_full, now, absl::UTCTimeZone())},
                         {"event", event},
                         {"request_id", request_id}};
  line.update(fields);
  std::fprintf(stderr, "%s\n", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}
}  // namespace

void LogRequestEvent(const std::string& event, const std::string& request_id, const std::string& detail) {
  WriteLogLine(absl::Now(), event, request_id, {{"detail", detail}});
}

void RequestTracker::OnTokens(int tokens, const scheduler::RequestTimes& times) {
  if (tokens <= 0 || metrics_ == nullptr) return;
  const absl::Time now = absl::Now();
  completion_tokens_ += tokens;
  if (last_token_ == absl::InfinitePast()) {
    first_token_ = times.first_token > arrival_ && times.first_token <= now ? times.first_token : now;
    // The engine's times, when they are in order (a fake engine may leave them unset).
    if (times.queued != absl::InfinitePast() && times.queued <= times.scheduled && times.scheduled <= first_token_) {
      queued_ = times.queued;
      scheduled_ = times.scheduled;
    }
    metrics_->ObserveTimeToFirstToken(absl::ToDoubleSeconds(first_token_ - arrival_));
  } else {
    metrics_->ObserveInterTokenLatency(absl::ToDoubleSeconds(now - last_token_), tokens);
  }
  last_token_ = now;
}

void RequestTracker::Finish(const std::string& finish_reason) {
  if (finished_ || metrics_ == nullptr) return;
  finished_ = true;
  const absl::Time now = absl::Now();
  metrics_->ObserveFinished(finish_reason, absl::ToDoubleSeconds(now - arrival_));
  // vLLM observes these for the requests that finished (not for refusals or failures).
  const bool finished = finish_reason != "rejected" && finish_reason != "error";
  if (finished && scheduled_ != absl::InfinitePast())
    metrics_->ObservePhases(absl::ToDoubleSeconds(scheduled_ - queued_), absl::ToDoubleSeconds(first_token_ - scheduled_),
                            absl::ToDoubleSeconds(last_token_ - first_token_), absl::ToDoubleSeconds(last_token_ - scheduled_));
  if (finished) metrics_->ObserveTokenCounts(prompt_tokens_, completion_tokens_);
  if (request_id_.empty()) return;
  WriteLogLine(now, "request_finished", request_id_,
               {{"api", api_},
                {"finish_reason", finish_reason},
                {"prompt_tokens", prompt_tokens_},
                {"completion_tokens", completion_tokens_},
                {"ttft_ms", first_token_ == absl::InfinitePast() ? -1.0 : absl::ToDoubleMilliseconds(first_token_ - arrival_)},
                {"queue_ms", scheduled_ == absl::InfinitePast() ? -1.0 : absl::ToDoubleMilliseconds(scheduled_ - queued_)},
                {"e2e_ms", absl::ToDoubleMilliseconds(now - arrival_)}});
}

}  // namespace glm::api
