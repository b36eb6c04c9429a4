// Tokenizer throughput: encodes a deterministic ~1 MiB mix of source code and multilingual text
// and prints tokens/s and MiB/s (cold: fresh tokenizer, empty word cache; warm: second pass).
//
//   tokenizer_bench [--tokenizer PATH] [--json] [--iters N]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "coordinator/tokenizer/tokenizer.h"
#include "coordinator/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace {

namespace fs = std::filesystem;
using glm::tokenizer::Tokenizer;

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Deterministic pseudo-random words in several scripts: they defeat the word cache, so the
// cold number reflects the BPE merge loop and not only cache hits.
std::string RandomWords(size_t bytes, uint64_t seed) {
  std::string out;
  uint64_t s = seed;
  auto next = [&s]() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  };
  while (out.size() < bytes) {
    const int script = static_cast<int>(next() % 4);
    const int len = 2 + static_cast<int>(next() % 8);
    for (int i = 0; i < len; ++i) {
      char32_t cp = 'a' + next() % 26;
      if (script == 1) cp = 0xAC00 + next() % 11172;  // Hangul syllables.
      if (script == 2) cp = 0x4E00 + next() % 2000;   // Common CJK.
      if (script == 3) cp = '0' + next() % 10;
      glm::tokenizer::AppendCodepoint(cp, &out);
    }
    out += (next() % 10 == 0) ? "\n" : " ";
  }
  return out;
}

std::string BuildCorpus(const fs::path& repo, size_t target) {
  std::vector<fs::path> files;
  for (const char* dir : {"coordinator/tokenizer", "bench"}) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(repo / dir, ec)) {
      const auto ext = e.path().extension();
      if (ext == ".cc" || ext == ".h") files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  std::string code;
  for (const auto& f : files) code += ReadAll(f);
  std::string prose;
  const std::string vectors = ReadAll(repo / "tests/fixtures/tokenizer_vectors.json");
  auto j = nlohmann::json::parse(vectors, nullptr, false);
  if (!j.is_discarded()) {
    for (const auto& c : j["glm5-tiny-code"]) prose += c["text"].get<std::string>() + "\n";
  }
  std::string corpus;
  size_t round = 0;
  while (corpus.size() < target) {
    corpus += code;
    corpus += prose;
    corpus += RandomWords(64 * 1024, 0x9E3779B97F4A7C15ull + round++);
  }
  // Cut at a character boundary.
  size_t cut = target;
  while (cut > 0 && (static_cast<unsigned char>(corpus[cut]) & 0xC0) == 0x80) --cut;
  corpus.resize(cut);
  return corpus;
}

}  // namespace

int main(int argc, char** argv) {
  std::string tokenizer_path = std::string(GLM_SOURCE_DIR) + "/models/glm5-tiny-code";
  bool json = false;
  int iters = 3;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) {
      json = true;
    } else if (!std::strcmp(argv[i], "--tokenizer") && i + 1 < argc) {
      tokenizer_path = argv[++i];
    } else if (!std::strcmp(argv[i], "--iters") && i + 1 < argc) {
      iters = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--tokenizer PATH] [--json] [--iters N]\n", argv[0]);
      return 2;
    }
  }
  using Clock = std::chrono::steady_clock;
  const auto t_load = Clock::now();
  auto tok = Tokenizer::FromFile(tokenizer_path);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", std::string(tok.status().message()).c_str());
    return 1;
  }
  const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();
  const std::string corpus = BuildCorpus(GLM_SOURCE_DIR, 1 << 20);
  const double mib = corpus.size() / (1024.0 * 1024.0);

  size_t tokens = 0;
  double cold_s = 0, warm_s = 1e30;
  for (int it = 0; it <= iters; ++it) {
    const auto t0 = Clock::now();
    auto ids = (*tok)->Encode(corpus);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!ids.ok()) {
      std::fprintf(stderr, "%s\n", std::string(ids.status().message()).c_str());
      return 1;
    }
    tokens = ids->size();
    if (it == 0) {
      cold_s = s;
    } else {
      warm_s = std::min(warm_s, s);
    }
  }
  // Decode throughput on the same ids.
  auto ids = (*tok)->Encode(corpus);
  const auto t_dec = Clock::now();
  auto text = (*tok)->Decode(*ids);
  const double dec_s = std::chrono::duration<double>(Clock::now() - t_dec).count();
  const bool round_trip = text.ok() && *text == corpus;

  const double per_200k_ms = warm_s / tokens * 200000.0 * 1000.0;
  if (json) {
    nlohmann::json out = {{"tokenizer", tokenizer_path},  {"bytes", corpus.size()},
                          {"tokens", tokens},             {"load_s", load_s},
                          {"cold_s", cold_s},             {"warm_s", warm_s},
                          {"cold_tokens_per_s", tokens / cold_s},
                          {"warm_tokens_per_s", tokens / warm_s},
                          {"cold_mib_per_s", mib / cold_s}, {"warm_mib_per_s", mib / warm_s},
                          {"ms_per_200k_tokens", per_200k_ms},
                          {"decode_tokens_per_s", tokens / dec_s}, {"round_trip", round_trip}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("tokenizer        %s (load %.3f s)\n", tokenizer_path.c_str(), load_s);
    std::printf("text             %zu bytes (%.2f MiB), %zu tokens\n", corpus.size(), mib, tokens);
    std::printf("encode cold      %.3f s  %.0f tokens/s  %.2f MiB/s\n", cold_s, tokens / cold_s,
                mib / cold_s);
    std::printf("encode warm      %.3f s  %.0f tokens/s  %.2f MiB/s\n", warm_s, tokens / warm_s,
                mib / warm_s);
    std::printf("200K tokens      %.1f ms (warm)\n", per_200k_ms);
    std::printf("decode           %.0f tokens/s, round trip %s\n", tokens / dec_s,
                round_trip ? "exact" : "MISMATCH");
  }
  return round_trip ? 0 : 1;
}
