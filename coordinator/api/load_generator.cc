#include "coordinator/api/load_generator.h"

#include <chrono>
#include <cmath>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace glm::api {
namespace {

using Clock = std::chrono::steady_clock;

// Common short English words: about one token each (with the leading space) for BPE tokenizers.
constexpr const char* kWords[] = {
    "the",   "of",    "and",   "to",    "in",    "is",    "that",  "for",   "it",    "as",    "was",
    "with",  "be",    "by",    "on",    "not",   "he",    "this",  "are",   "or",    "his",   "from",
    "at",    "which", "but",   "have",  "an",    "had",   "they",  "you",   "were",  "their", "one",
    "all",   "we",    "can",   "her",   "has",   "there", "been",  "if",    "more",  "when",  "will",
    "would", "who",   "so",    "no",    "time",  "new",   "like",  "year",  "work",  "city",  "water",
    "house", "light", "world", "river", "music", "point", "paper", "stone", "field"};
constexpr int kNumWords = sizeof(kWords) / sizeof(kWords[0]);

int32_t Uniform(std::mt19937_64& rng, int32_t lo, int32_t hi) {  // inclusive
  return std::uniform_int_distribution<int32_t>(lo, hi)(rng);
}

LoadPrompt RandomPrompt(std::mt19937_64& rng, const LoadDatasetOptions& o, int32_t input_len, int32_t output_len) {
  LoadPrompt p;
  p.prompt_len = input_len;
  p.output_len = output_len;
  if (o.as_text) {
    for (int32_t i = 0; i < input_len; ++i) {
      if (i > 0) p.text += ' ';
      p.text += kWords[Uniform(rng, 0, kNumWords - 1)];
    }
  } else {
    p.token_ids.resize(input_len);
    for (int32_t& id : p.token_ids) id = Uniform(rng, o.token_id_min, o.token_id_max - 1);
  }
  return p;
}

int32_t CountWords(const std::string& text) {
  int32_t words = 0;
  bool in_word = false;
  for (char c : text) {
    const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words;
}

// The custom dataset's lines (LoadDatasetOptions::dataset): every error names its line.
absl::StatusOr<std::vector<LoadPrompt>> CustomPrompts(const std::string& jsonl, int32_t output_len) {
  std::vector<LoadPrompt> lines;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(jsonl, '\n')) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == absl::string_view::npos) continue;
    const auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat("--prompt-file line ", line_no, ": ", why));
    };
    const nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
    const auto prompt = j.find("prompt");
    if (prompt == j.end() || !prompt->is_string() || prompt->get_ref<const std::string&>().empty())
      return bad("needs \"prompt\": a non-empty string");
    LoadPrompt p;
    p.text = prompt->get<std::string>();
    p.prompt_len = CountWords(p.text);  // an estimate; the server's usage replaces it
    p.output_len = output_len;
    if (const auto out = j.find("output_tokens"); out != j.end()) {
      if (!out->is_number_integer() || out->get<int64_t>() < 1 || out->get<int64_t>() > (int64_t{1} << 24))
        return bad("\"output_tokens\" must be an integer in [1, 16777216]");
      p.output_len = static_cast<int32_t>(out->get<int64_t>());
    }
    lines.push_back(std::move(p));
  }
  if (lines.empty()) return absl::InvalidArgumentError("--prompt-file holds no prompt (JSON Lines: {\"prompt\": ...})");
  return lines;
}

}  // namespace

absl::StatusOr<std::vector<LoadPrompt>> MakeLoadPrompts(const LoadDatasetOptions& o) {
  if (o.num_prompts < 1) return absl::InvalidArgumentError("--num-prompts must be >= 1");
  if (o.output_len < 1) return absl::InvalidArgumentError("--output-len must be >= 1");
  if (o.range_ratio < 0 || o.range_ratio >= 1) return absl::InvalidArgumentError("--random-range-ratio must be in [0, 1)");
  if (o.token_id_min < 0 || o.token_id_max <= o.token_id_min)
    return absl::InvalidArgumentError("the random token id range is empty");
  const bool have_text = !o.prompt_text.empty();
  std::vector<LoadPrompt> prompts;
  prompts.reserve(o.num_prompts);
  if (o.dataset == "custom") {
    if (!have_text) return absl::InvalidArgumentError("--dataset custom needs --prompt-file (JSON Lines: {\"prompt\": ...})");
    auto lines = CustomPrompts(o.prompt_text, o.output_len);
    if (!lines.ok()) return lines.status();
    for (int32_t i = 0; i < o.num_prompts; ++i) prompts.push_back((*lines)[static_cast<size_t>(i) % lines->size()]);
    return prompts;
  }
  if (!have_text && o.input_len < 1) return absl::InvalidArgumentError("--input-len must be >= 1");
  std::mt19937_64 rng(o.seed);
  if (o.dataset == "fixed") {
    LoadPrompt p;
    if (have_text) {
      p.text = o.prompt_text;
      p.prompt_len = CountWords(o.prompt_text);  // an estimate; the server's usage replaces it
      p.output_len = o.output_len;
    } else {
      p = RandomPrompt(rng, o, o.input_len, o.output_len);
    }
    prompts.assign(o.num_prompts, p);
    return prompts;
  }
  if (o.dataset != "random") return absl::InvalidArgumentError(absl::StrCat("unknown dataset '", o.dataset, "' (random | fixed | custom)"));
  if (have_text) return absl::InvalidArgumentError("--prompt-file goes with --dataset fixed or custom");
  // vLLM's random dataset: lengths uniform in [len * (1 - ratio), len * (1 + ratio)].
  const auto lo = [&](int32_t n) { return std::max<int32_t>(1, static_cast<int32_t>(n * (1 - o.range_ratio))); };
  const auto hi = [&](int32_t n) { return std::max<int32_t>(1, static_cast<int32_t>(n * (1 + o.range_ratio))); };
  for (int32_t i = 0; i < o.num_prompts; ++i) {
    const int32_t in = Uniform(rng, lo(o.input_len), hi(o.input_len));
    const int32_t out = Uniform(rng, lo(o.output_len), hi(o.output_len));
    prompts.push_back(RandomPrompt(rng, o, in, out));
  }
  return prompts;
}

LoadRunResult RunLoad(LoadClient* client, const std::vector<LoadPrompt>& prompts, const LoadRunOptions& options) {
  LoadRunResult run;
  run.max_concurrency = options.max_concurrency;
  run.request_rate = options.request_rate;
  run.requests.resize(prompts.size());
  const absl::Time deadline = absl::Now() + options.timeout;

  for (int32_t i = 0; i < options.warmup_requests && !prompts.empty() && absl::Now() < deadline; ++i)
    client->Send(prompts[0], deadline);

  // Arrival offsets: the first request at once, then exponential gaps (a Poisson process).
  std::vector<double> arrival(prompts.size(), 0.0);
  if (std::isfinite(options.request_rate) && options.request_rate > 0) {
    std::mt19937_64 rng(options.seed ^ 0x9e3779b97f4a7c15ull);
    std::exponential_distribution<double> gap(options.request_rate);
    for (size_t i = 1; i < prompts.size(); ++i) arrival[i] = arrival[i - 1] + gap(rng);
  }

  absl::Mutex mu;
  int32_t in_flight = 0;
  std::vector<std::thread> threads;
  threads.reserve(prompts.size());
  const Clock::time_point start = Clock::now();
  const auto since_start = [&start] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  size_t next = 0;
  for (; next < prompts.size(); ++next) {
    const absl::Time send_at = std::min(deadline, absl::Now() + absl::Seconds(arrival[next] - since_start()));
    absl::SleepFor(send_at - absl::Now());
    const bool slot = [&] {
      absl::MutexLock lock(&mu);
      const auto free = [&] { return options.max_concurrency <= 0 || in_flight < options.max_concurrency; };
      mu.AwaitWithDeadline(absl::Condition(&free), deadline);
      if (!free() || absl::Now() >= deadline) return false;
      ++in_flight;
      run.peak_concurrency = std::max(run.peak_concurrency, in_flight);
      return true;
    }();
    if (!slot) break;
    LoadRequestResult* out = &run.requests[next];
    out->start_s = since_start();
    threads.emplace_back([&, out, i = next] {
      const double start_s = out->start_s;
      *out = client->Send(prompts[i], deadline);
      out->start_s = start_s;
      absl::MutexLock lock(&mu);
      --in_flight;
    });
  }
  for (auto& t : threads) t.join();
  run.duration_s = since_start();
  for (; next < prompts.size(); ++next) {
    run.requests[next].prompt_len = prompts[next].prompt_len;
    run.requests[next].error = "not sent: the run's timeout passed";
  }
  return run;
}

}  // namespace glm::api
