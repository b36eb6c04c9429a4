#include "coordinator/api/load_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace glm::api {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxErrors = 10;

// numpy.percentile's default (linear interpolation between closest ranks); `sorted` non-empty.
double Percentile(const std::vector<double>& sorted, double q) {
  const double rank = q / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - static_cast<double>(lo));
}

json RateJson(double rate) { return std::isfinite(rate) ? json(rate) : json("inf"); }

void AddStat(json& j, const char* name, const LoadStat& s) {
  j[absl::StrCat("mean_", name, "_ms")] = s.mean;
  j[absl::StrCat("median_", name, "_ms")] = s.median;
  j[absl::StrCat("std_", name, "_ms")] = s.stddev;
  j[absl::StrCat("p90_", name, "_ms")] = s.p90;
  j[absl::StrCat("p99_", name, "_ms")] = s.p99;
}

void Line(std::string* out, const std::string& label, const std::string& value) {
  absl::StrAppend(out, absl::StrFormat("%-40s %-10s\n", label, value));
}
std::string F2(double v) { return absl::StrFormat("%.2f", v); }

// Python's "{s:{c}^{n}}".format(s=title, n=50, c=fill), as vLLM prints its headers.
std::string Banner(const std::string& t, char fill) {
  const size_t left = (50 - std::min<size_t>(50, t.size())) / 2;
  return absl::StrCat(std::string(left, fill), t, std::string(50 - left - std::min<size_t>(50, t.size()), fill), "\n");
}

void StatLines(std::string* out, const std::string& title, const std::string& short_name, const LoadStat& s) {
  absl::StrAppend(out, Banner(title, '-'));
  Line(out, absl::StrCat("Mean ", short_name, " (ms):"), F2(s.mean));
  Line(out, absl::StrCat("Median ", short_name, " (ms):"), F2(s.median));
  Line(out, absl::StrCat("P90 ", short_name, " (ms):"), F2(s.p90));
  Line(out, absl::StrCat("P99 ", short_name, " (ms):"), F2(s.p99));
}

}  // namespace

LoadStat ComputeLoadStat(std::vector<double> v) {
  LoadStat s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  double var = 0;
  for (double x : v) var += (x - s.mean) * (x - s.mean);
  s.stddev = std::sqrt(var / static_cast<double>(v.size()));
  s.median = Percentile(v, 50);
  s.p90 = Percentile(v, 90);
  s.p99 = Percentile(v, 99);
  return s;
}

LoadSummary SummarizeLoad(const LoadRunResult& run, const std::string& backend, const std::string& model) {
  LoadSummary s;
  s.backend = backend;
  s.model = model;
  s.num_prompts = static_cast<int32_t>(run.requests.size());
  s.duration_s = run.duration_s;
  s.max_concurrency = run.max_concurrency;
  s.request_rate = run.request_rate;
  s.peak_concurrency = run.peak_concurrency;
  std::vector<double> ttft, tpot, itl, e2el;
  for (const LoadRequestResult& r : run.requests) {
    if (!r.success) {
      ++s.failed;
      if (s.errors.size() < kMaxErrors) s.errors.push_back(r.error);
      continue;
    }
    ++s.completed;
    s.total_input_tokens += r.prompt_len;
    s.total_output_tokens += r.output_tokens;
    s.total_cached_tokens += r.cached_tokens;
    ttft.push_back(r.ttft_s * 1e3);
    e2el.push_back(r.latency_s * 1e3);
    if (r.output_tokens > 1) tpot.push_back((r.latency_s - r.ttft_s) / (r.output_tokens - 1) * 1e3);
    for (double gap : r.itl_s) itl.push_back(gap * 1e3);
  }
  if (s.duration_s > 0) {
    s.request_throughput = s.completed / s.duration_s;
    s.output_throughput = static_cast<double>(s.total_output_tokens) / s.duration_s;
    s.total_token_throughput = static_cast<double>(s.total_input_tokens + s.total_output_tokens) / s.duration_s;
  }
  s.ttft = ComputeLoadStat(std::move(ttft));
  s.tpot = ComputeLoadStat(std::move(tpot));
  s.itl = ComputeLoadStat(std::move(itl));
  s.e2el = ComputeLoadStat(std::move(e2el));
  return s;
}

json LoadSummaryJson(const LoadSummary& s, const LoadRunResult* detailed) {
  json j = {{"backend", s.backend},
            {"model_id", s.model},
            {"num_prompts", s.num_prompts},
            {"duration", s.duration_s},
            {"completed", s.completed},
            {"failed", s.failed},
            {"total_input_tokens", s.total_input_tokens},
            {"total_output_tokens", s.total_output_tokens},
            {"total_cached_tokens", s.total_cached_tokens},
            {"request_throughput", s.request_throughput},
            {"output_throughput", s.output_throughput},
            {"total_token_throughput", s.total_token_throughput}};
  AddStat(j, "ttft", s.ttft);
  AddStat(j, "tpot", s.tpot);
  AddStat(j, "itl", s.itl);
  AddStat(j, "e2el", s.e2el);
  j["max_concurrency"] = s.max_concurrency > 0 ? json(s.max_concurrency) : json(nullptr);
  j["request_rate"] = RateJson(s.request_rate);
  j["peak_concurrency"] = s.peak_concurrency;
  j["error_samples"] = s.errors;  // the first failures' messages (ours; vLLM has no summary of them)
  if (detailed != nullptr) {
    json input_lens = json::array(), output_lens = json::array(), ttfts = json::array(), itls = json::array(),
         e2els = json::array(), errors = json::array();
    for (const LoadRequestResult& r : detailed->requests) {
      input_lens.push_back(r.prompt_len);
      output_lens.push_back(r.success ? r.output_tokens : 0);
      ttfts.push_back(r.success ? r.ttft_s : 0.0);
      itls.push_back(r.success ? json(r.itl_s) : json::array());
      e2els.push_back(r.success ? r.latency_s : 0.0);
      errors.push_back(r.error);
    }
    j["input_lens"] = std::move(input_lens);
    j["output_lens"] = std::move(output_lens);
    j["ttfts"] = std::move(ttfts);
    j["itls"] = std::move(itls);
    j["e2els"] = std::move(e2els);
    j["errors"] = std::move(errors);  // vLLM's detailed key: one entry per request, "" for a success
  }
  return j;
}

std::string FormatLoadSummary(const LoadSummary& s) {
  std::string out = Banner(" Serving Benchmark Result ", '=');
  Line(&out, "Backend:", s.backend);
  if (!s.model.empty()) Line(&out, "Model:", s.model);
  Line(&out, "Successful requests:", absl::StrCat(s.completed));
  Line(&out, "Failed requests:", absl::StrCat(s.failed));
  Line(&out, "Maximum request concurrency:", s.max_concurrency > 0 ? absl::StrCat(s.max_concurrency) : "None");
  Line(&out, "Traffic request rate:", std::isfinite(s.request_rate) ? F2(s.request_rate) : "inf");
  Line(&out, "Benchmark duration (s):", F2(s.duration_s));
  Line(&out, "Total input tokens:", absl::StrCat(s.total_input_tokens));
  Line(&out, "Total generated tokens:", absl::StrCat(s.total_output_tokens));
  if (s.total_cached_tokens > 0) Line(&out, "Total cached prompt tokens:", absl::StrCat(s.total_cached_tokens));
  Line(&out, "Request throughput (req/s):", F2(s.request_throughput));
  Line(&out, "Output token throughput (tok/s):", F2(s.output_throughput));
  Line(&out, "Total Token throughput (tok/s):", F2(s.total_token_throughput));
  Line(&out, "Peak concurrent requests:", absl::StrCat(s.peak_concurrency));
  StatLines(&out, "Time to First Token", "TTFT", s.ttft);
  StatLines(&out, "Time per Output Token (excl. 1st token)", "TPOT", s.tpot);
  StatLines(&out, "Inter-token Latency", "ITL", s.itl);
  StatLines(&out, "End-to-end Latency", "E2EL", s.e2el);
  absl::StrAppend(&out, Banner("", '='));
  for (const std::string& e : s.errors) absl::StrAppend(&out, "error: ", e, "\n");
  return out;
}

}  // namespace glm::api
