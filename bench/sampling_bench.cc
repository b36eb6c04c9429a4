// Cost of drawing one sampled token (temperature / top-k / top-p / min-p) from a vocabulary's
// logits: SelectCandidates + the draw (what every sampled request pays per token on the last
// stage), next to its sort-based reference twin (the previous implementation's algorithm) and
// to a greedy pick (ArgMax: one SIMD pass over the logits, the floor every draw has to pay),
// both measured in the same run. Also a token's logprob and its top-5 alternatives (LogSumExp +
// TopTokens) next to double exponentials and a partial sort.
//
//   build/bin/sampling_bench [--vocab 4096,154880] [--temperature 0.7] [--top-p 1,0.95]
//                            [--top-k 0] [--min-p 0] [--seconds 0.3]
//
// The logits are synthetic but shaped like a language model's: a Zipf-like decay over a
// random permutation of the vocabulary plus Gaussian noise.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/micros_per_call.h"
#include "shard_worker/kernels/activations.h"
#include "shard_worker/runtime/dashed_flags.h"
#include "shard_worker/runtime/sampler.h"

ABSL_FLAG(std::vector<std::string>, vocab, (std::vector<std::string>{"4096", "154880"}),
          "vocabulary sizes (the bundled model: 4096; GLM-5: 154880)");
ABSL_FLAG(double, temperature, 0.7, "sampling temperature");
ABSL_FLAG(std::vector<std::string>, top_p, (std::vector<std::string>{"1", "0.95"}), "top-p values");
ABSL_FLAG(int32_t, top_k, 0, "top-k (0 = off)");
ABSL_FLAG(double, min_p, 0.0, "min-p (0 = off)");
ABSL_FLAG(double, seconds, 0.3, "time spent on each measurement");

namespace {

using glm::bench::MicrosPerCall;


}  // namespace

int main(int argc, char** argv) {
  glm::runtime::NormalizeDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const double temperature = absl::GetFlag(FLAGS_temperature);
  if (!(temperature > 0) || !(seconds > 0)) {
    std::fprintf(stderr, "sampling_bench: --temperature and --seconds must be > 0\n");
    return 2;
  }
  std::printf("%8s %6s %6s %6s  %12s %14s %9s %10s\n", "vocab", "top_k", "top_p", "min_p", "draw us", "reference us",
              "speedup", "x greedy");
  for (const std::string& v : absl::GetFlag(FLAGS_vocab)) {
    const int64_t vocab = std::atoll(v.c_str());
    if (vocab < 1 || vocab > (int64_t{1} << 24)) {
      std::fprintf(stderr, "sampling_bench: --vocab %s out of range\n", v.c_str());
      return 2;
    }
    std::mt19937 rng(7);
    std::normal_distribution<float> noise(0.0f, 1.0f);
    std::vector<int64_t> rank(vocab);
    for (int64_t i = 0; i < vocab; ++i) rank[i] = i;
    std::shuffle(rank.begin(), rank.end(), rng);
    std::vector<float> logits(vocab);
    for (int64_t i = 0; i < vocab; ++i)
      logits[i] = 12.0f - 1.6f * std::log(1.0f + static_cast<float>(rank[i])) + noise(rng);
    // The floor: a greedy pick, one SIMD pass over the logits.
    volatile float sink = 0;
    const double pass_us =
        MicrosPerCall([&] { sink = static_cast<float>(glm::runtime::ArgMax(logits.data(), vocab)); }, seconds);
    // A token's logprob and its top 5 alternatives (requests with logprobs / top_logprobs).
    std::vector<int32_t> top;
    const double logprob_us = MicrosPerCall(
        [&] {
          sink = glm::kernels::LogSumExp(logits.data(), vocab);
          glm::runtime::TopTokens(logits.data(), vocab, 5, &top);
        },
        seconds);
    const double logprob_ref_us = MicrosPerCall(
        [&] {
          sink = glm::kernels::LogSumExpReference(logits.data(), vocab);
          std::vector<int32_t> ids(vocab);
          for (int64_t i = 0; i < vocab; ++i) ids[i] = static_cast<int32_t>(i);
          std::partial_sort(ids.begin(), ids.begin() + std::min<int64_t>(5, vocab), ids.end(), [&](int32_t a, int32_t b) {
            return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
          });
        },
        seconds);
    std::printf("%8ld logprob + top 5: %.1f us (double exponentials and a partial sort: %.1f us, %.1fx)\n",
                static_cast<long>(vocab), logprob_us, logprob_ref_us, logprob_ref_us / logprob_us);
    for (const std::string& tp : absl::GetFlag(FLAGS_top_p)) {
      glm::runtime::SamplingParams p;
      p.temperature = static_cast<float>(temperature);
      p.top_k = absl::GetFlag(FLAGS_top_k);
      p.top_p = std::stof(tp);
      p.min_p = static_cast<float>(absl::GetFlag(FLAGS_min_p));
      std::vector<float> scratch(vocab);
      uint64_t seed = 1;
      const double draw_us = MicrosPerCall(
          [&] {
            scratch = logits;
            p.seed = seed++;
            sink = static_cast<float>(glm::runtime::Sampler(p).Sample(scratch.data(), vocab, {}, 0));
          },
          seconds);
      glm::runtime::SamplingCandidates c;
      const double ref_us = MicrosPerCall(
          [&] { glm::runtime::SelectCandidatesReference(logits.data(), vocab, p, &c); }, seconds);
      std::printf("%8ld %6d %6.2f %6.2f  %12.1f %14.1f %8.1fx %10.1f\n", static_cast<long>(vocab), p.top_k, p.top_p,
                  p.min_p, draw_us, ref_us, ref_us / draw_us, draw_us / pass_us);
    }
  }
  return 0;
}
