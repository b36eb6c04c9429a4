// Cost per decode step of prompt lookup's drafts, per sequence, on the scheduler's thread:
// NgramDraft / PredictionDraft (scans of the context and of the prediction) against the indexes
// that replaced them in the engines (runtime/ngram_index.h), measured in the same run. Each
// step appends one token and asks for a draft of --k tokens.
//
//   build/bin/draft_lookup_bench [--contexts 2000,20000,100000] [--alphabet 154880] [--k 4]
//                                [--seconds 0.3] [--baseline FILE] [--record]
//
// "vs best": the index's n-gram lookups a second against the best recorded in
// bench/baselines.json for that context and alphabet (--record stores a better one).
//
// Token ids are uniform over --alphabet: with GLM-5's vocabulary a suffix rarely occurred
// before, the scans' worst case and the common one for novel text (every n-gram length reads
// the whole context); a small alphabet (--alphabet 50) shows text that repeats itself. The
// index's measurements grow the context by about a token a call (~10^6 tokens over one): its
// cost does not depend on the length, which that shows too.
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/baseline_store.h"
#include "bench/micros_per_call.h"
#include "shard_worker/runtime/dashed_flags.h"
#include "shard_worker/runtime/ngram_index.h"
#include "shard_worker/runtime/speculative_sampling.h"

ABSL_FLAG(std::vector<std::string>, contexts, (std::vector<std::string>{"2000", "20000", "100000"}),
          "context lengths (tokens); the prediction is half as long");
ABSL_FLAG(int32_t, alphabet, 154880, "token ids are drawn from [0, alphabet)");
ABSL_FLAG(int32_t, k, 4, "draft length");
ABSL_FLAG(double, seconds, 0.3, "time spent on each measurement");
ABSL_FLAG(std::string, baseline, GLM_BENCH_BASELINE_FILE, "JSON file of previous best results");
ABSL_FLAG(bool, record, false, "store these results as the new best in --baseline where they are better");

int main(int argc, char** argv) {
  glm::runtime::NormalizeDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int alphabet = absl::GetFlag(FLAGS_alphabet), k = absl::GetFlag(FLAGS_k);
  if (!(seconds > 0) || alphabet < 1 || k < 1) {
    std::fprintf(stderr, "draft_lookup_bench: --seconds, --alphabet and --k must be positive\n");
    return 2;
  }
  glm::bench::BaselineStore baselines(absl::GetFlag(FLAGS_baseline));
  std::printf("%9s  %12s %12s %8s  %14s %13s %8s %8s\n", "context", "ngram scan", "ngram index", "speedup",
              "predict. scan", "predict. idx", "speedup", "vs best");
  for (const std::string& c : absl::GetFlag(FLAGS_contexts)) {
    const int64_t n = std::atoll(c.c_str());
    if (n < 2 || n > (int64_t{1} << 28)) {
      std::fprintf(stderr, "draft_lookup_bench: --contexts %s out of range\n", c.c_str());
      return 2;
    }
    std::mt19937 rng(3);
    auto token = [&] { return static_cast<int32_t>(rng() % static_cast<uint32_t>(alphabet)); };
    std::vector<int32_t> base(n);
    for (int32_t& t : base) t = token();
    // Each call is one step: a new token, then a draft. The context grows by one token a call
    // (negligible next to n over a measurement).
    volatile size_t sink = 0;
    std::vector<int32_t> tokens = base;
    const double scan_us = glm::bench::MicrosPerCall(
        [&] {
          tokens.push_back(token());
          sink = glm::runtime::NgramDraft(tokens, k).size();
        },
        seconds);
    tokens = base;
    glm::runtime::NgramIndex index;
    index.Update(tokens);  // built once as the prompt arrives (not part of a step)
    const double index_us = glm::bench::MicrosPerCall(
        [&] {
          tokens.push_back(token());
          sink = index.Draft(tokens, k).size();
        },
        seconds);
    // A prediction of half the context; the reply is the context's tail, anchored mid-way.
    const std::vector<int32_t> prediction(base.begin(), base.begin() + n / 2);
    tokens = base;
    int64_t from = 0;
    const double pscan_us = glm::bench::MicrosPerCall(
        [&] {
          tokens.push_back(token());
          sink = glm::runtime::PredictionDraft(prediction, tokens, n / 4, k, &from).size();
        },
        seconds);
    tokens = base;
    const glm::runtime::PredictionIndex pindex(prediction);
    const double pindex_us = glm::bench::MicrosPerCall(
        [&] {
          tokens.push_back(token());
          sink = pindex.Draft(prediction, tokens, n / 4, k, &from).size();
        },
        seconds);
    // Index lookups a second: the previous best of this context length and alphabet.
    const std::string key = "draft_lookup_bench/context" + std::to_string(n) + "/alphabet" + std::to_string(alphabet) +
                            "/ngram_index_steps_per_s";
    const double previous = baselines.Get(key), steps_per_s = 1e6 / index_us;
    if (absl::GetFlag(FLAGS_record)) baselines.RecordIfBetter(key, steps_per_s);
    std::printf("%9ld  %9.2f us %9.2f us %7.0fx  %11.2f us %10.2f us %7.0fx %7.2fx\n", static_cast<long>(n), scan_us,
                index_us, scan_us / index_us, pscan_us, pindex_us, pscan_us / pindex_us,
                previous > 0 ? steps_per_s / previous : 0.0);
  }
  return 0;
}
