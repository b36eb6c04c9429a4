// End to end: a real cluster (mpiexec: coordinator + 2 shard_worker processes) serving the bundled
// model, driven through its gRPC and OpenAI HTTP APIs. Covers streaming, exact tokens vs the
// single-process engine, 16 concurrent clients, cancellation and deadlines freeing every KV
// block, prefix-cache exactness, lenient model names, error codes — and, last, a worker killed
// mid-request: the in-flight request fails with a clear error and the job exits non-zero.
// Further clusters start with load options (--weight-dtype, --quantize-scope,
// --expert-memory-gib) and must match `glmctl generate` with the same flags, or the fully
// resident engine (bad options: refused_options_e2e_test.cc).
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <cmath>
#include <algorithm>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <atomic>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"
#include "protos/inference.grpc.pb.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/runtime/generator.h"
#include "tests/e2e/cluster_e2e_fixture.h"
#include "tests/e2e/logged_ports.h"

namespace glm {
namespace {

namespace pb = glm::inference::v1;

using e2e::ClusterE2eTest;

TEST_F(ClusterE2eTest, StreamingTokensEqualTheSingleProcessEngine) {
  auto prompt = Prompt(1, 30);
  auto s = Generate(Ids(prompt, 20));
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  EXPECT_EQ(s.tokens, LocalGreedy(prompt, 20));
  EXPECT_GE(s.messages, 2);  // streamed, not one blob
  EXPECT_EQ(s.last.finish_reason(), "length");
  EXPECT_EQ(s.last.usage().completion_tokens(), 20);
  // Text in, text out, and speculative decoding gives the same greedy tokens.
  pb::GenerateRequest text;
  text.set_text("def fibonacci(n):\n");
  text.mutable_sampling()->set_max_tokens(16);
  auto plain = Generate(text);
  text.set_speculative("mtp:2");
  auto spec = Generate(text);
  ASSERT_TRUE(plain.status.ok() && spec.status.ok());
  EXPECT_EQ(plain.tokens, spec.tokens);
}

TEST_F(ClusterE2eTest, SixteenConcurrentClientsEachGetTheirSoloOutput) {
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 16; ++i) prompts.push_back(Prompt(100 + i, 8 + 3 * i));
  std::vector<Streamed> outs(16);
  std::vector<std::thread> clients;
  for (int i = 0; i < 16; ++i) clients.emplace_back([&, i] { outs[i] = Generate(Ids(prompts[i], 12)); });
  for (auto& t : clients) t.join();
  for (int i = 0; i < 16; ++i) {
    ASSERT_TRUE(outs[i].status.ok()) << outs[i].status.error_message();
    EXPECT_EQ(outs[i].tokens, LocalGreedy(prompts[i], 12)) << "client " << i;
  }
  EXPECT_TRUE(WaitForAllBlocksFree());
}

TEST_F(ClusterE2eTest, CancelAndDeadlineStopGenerationAndFreeBlocks) {
  grpc::ClientContext ctx;
  auto s = Generate(Ids(Prompt(2, 40), 1500), &ctx, /*cancel_after_messages=*/3);
  EXPECT_EQ(s.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_LT(s.tokens.size(), 1500u);
  EXPECT_TRUE(WaitForAllBlocksFree()) << "a cancelled request leaked KV blocks";
  grpc::ClientContext dl;
  dl.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  auto d = Generate(Ids(Prompt(3, 40), 1500), &dl);
  EXPECT_EQ(d.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(WaitForAllBlocksFree()) << "an expired request leaked KV blocks";
}

TEST_F(ClusterE2eTest, PrefixCacheHitGivesExactlyTheColdTokens) {
  auto prompt = Prompt(4, 300);
  pb::GenerateRequest req = Ids(prompt, 16);
  req.mutable_sampling()->set_temperature(0.8f);
  req.mutable_sampling()->set_seed(7);
  auto cold = Generate(req);
  auto warm = Generate(req);
  ASSERT_TRUE(cold.status.ok() && warm.status.ok());
  EXPECT_EQ(cold.tokens, warm.tokens);
  EXPECT_EQ(cold.last.usage().cached_tokens(), 0);
  EXPECT_GE(warm.last.usage().cached_tokens(), 288);
}

// One seed, one text: `glmctl generate` in one process and the cluster (gRPC) sample the same
// tokens with temperature, top-k, min-p and all three penalties.
TEST_F(ClusterE2eTest, SeededSamplingEqualsGlmctlGenerate) {
  const auto prompt = Prompt(51, 20);
  const auto local = GlmctlGreedy(prompt, 16,
                                  "--temperature 0.8 --top-k 40 --min-p 0.02 --seed 7 --repetition-penalty 1.2 "
                                  "--presence-penalty 0.5 --frequency-penalty 0.3");
  auto req = Ids(prompt, 16);
  auto* s = req.mutable_sampling();
  s->set_temperature(0.8f);
  s->set_top_k(40);
  s->set_min_p(0.02f);
  s->set_seed(7);
  s->set_repetition_penalty(1.2f);
  s->set_presence_penalty(0.5f);
  s->set_frequency_penalty(0.3f);
  auto got = Generate(req);
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  EXPECT_EQ(got.tokens, local);
  EXPECT_NE(local, LocalGreedy(prompt, 16)) << "sampling that equals greedy would prove little";
}

// /metrics once the workers' per-rank counters have been collected (the engine asks them when
// it goes idle): polls until `name` appears.
std::string CollectedMetrics(int http_port, const std::string& name) {
  httplib::Client http("127.0.0.1", http_port);
  std::string body;
  for (int i = 0; i < 100 && body.find(name) == std::string::npos; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (auto m = http.Get("/metrics")) body = m->body;
  }
  return body;
}

// A per-rank series' value in a /metrics body; -1 when it is not there.
double RankMetric(const std::string& body, const std::string& name, const std::string& rank) {
  const std::string prefix = name + "{model_name=\"glm5-tiny-code\",rank=\"" + rank + "\",";
  const size_t at = body.find(prefix);
  if (at == std::string::npos) return -1;
  return std::stod(body.substr(body.find("} ", at) + 2));
}

TEST_F(ClusterE2eTest, HttpApiAcceptsAnyModelNameAndStreams) {
  httplib::Client http("127.0.0.1", http_port_);
  http.set_read_timeout(60, 0);
  auto models = http.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200);
  nlohmann::json body = {{"model", "my-favourite-model"},
                         {"messages", {{{"role", "user"}, {"content", "Sort a list in Python"}}}},
                         {"max_tokens", 16},
                         {"temperature", 0},
                         {"some_unknown_field", true}};
  auto chat = http.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(chat);
  ASSERT_EQ(chat->status, 200) << chat->body;
  auto j = nlohmann::json::parse(chat->body);
  EXPECT_EQ(j["model"], "my-favourite-model");
  EXPECT_EQ(j["usage"]["completion_tokens"], 16);
  // Anthropic's Messages API on the same port: the same greedy conversation, the same text.
  nlohmann::json anthropic = {{"model", "claude-sonnet-4-5"}, {"max_tokens", 16}, {"temperature", 0},
                              {"messages", body["messages"]}};
  auto message = http.Post("/v1/messages", anthropic.dump(), "application/json");
  ASSERT_TRUE(message);
  ASSERT_EQ(message->status, 200) << message->body;
  auto m = nlohmann::json::parse(message->body);
  EXPECT_EQ(m["content"][0]["text"], j["choices"][0]["message"]["content"]) << message->body;
  EXPECT_EQ(m["usage"]["output_tokens"], 16);
  EXPECT_EQ(m["stop_reason"], "max_tokens");
  // And OpenAI's Responses API.
  nlohmann::json responses = {{"model", "gpt-5-codex"}, {"max_output_tokens", 16}, {"temperature", 0},
                              {"input", body["messages"]}};
  auto response = http.Post("/v1/responses", responses.dump(), "application/json");
  ASSERT_TRUE(response);
  ASSERT_EQ(response->status, 200) << response->body;
  auto r = nlohmann::json::parse(response->body);
  EXPECT_EQ(r["output"][0]["content"][0]["text"], j["choices"][0]["message"]["content"]) << response->body;
  EXPECT_EQ(r["status"], "incomplete");
  // Structured outputs on the 2-worker cluster: the reply is JSON of the schema, in its order.
  body["max_tokens"] = 120;
  std::string text = body.dump();  // the schema spliced in as text: nlohmann::json would sort its keys
  text.insert(text.size() - 1, R"(,"response_format":{"type":"json_schema","json_schema":{"name":"f","schema":{
      "type":"object","properties":{"name":{"type":"string"},"args":{"type":"array","items":{"type":"string"}}},
      "required":["name","args"]}}})");
  auto structured = http.Post("/v1/chat/completions", text, "application/json");
  ASSERT_TRUE(structured && structured->status == 200) << (structured ? structured->body : "no response");
  const auto content = nlohmann::json::parse(structured->body)["choices"][0]["message"]["content"].get<std::string>();
  const auto value = nlohmann::ordered_json::parse(content, nullptr, false);
  ASSERT_TRUE(value.is_object() && value.size() == 2 && value.begin().key() == "name") << content;
  EXPECT_TRUE(value["name"].is_string() && value["args"].is_array()) << content;
  // A forced call (bounded arguments, as this code model never closes a free one): one call (this
  // model would go on calling where parallel calls are allowed).
  text.insert(text.find(",\"response_format\""), R"(,"tool_choice":{"type":"function","function":{"name":"f"}},
      "parallel_tool_calls":false,
      "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{
      "n":{"type":"integer"},"s":{"type":"string","maxLength":8}},"required":["n","s"]}}}])");
  text.erase(text.find(",\"response_format\""));
  auto forced = nlohmann::json::parse(http.Post("/v1/chat/completions", text + "}", "application/json")->body);
  ASSERT_EQ(forced["choices"][0]["finish_reason"], "tool_calls") << forced;
  const auto args = nlohmann::json::parse(forced["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"].get<std::string>());
  EXPECT_TRUE(args["n"].is_number_integer() && args["s"].is_string()) << args;
  // A whole-reply regex (vLLM's guided_regex) and the same language as a GBNF grammar (llama.cpp's
  // grammar): the reply matches it and ends with it.
  const std::string pattern = "[a-z_]{1,12}\\(self(, [a-z]{1,8})?\\):";
  for (const auto& [field, format] : std::vector<std::pair<std::string, std::string>>{{"guided_regex", pattern},
           {"grammar", R"g(root ::= [a-z_]{1,12} "(self" (", " [a-z]{1,8})? "):")g"}}) {
    const auto g = nlohmann::json::parse(http.Post("/v1/completions", nlohmann::json{{"prompt", "def "},
        {"max_tokens", 40}, {field, format}}.dump(), "application/json")->body);
    EXPECT_TRUE(std::regex_match(g["choices"][0]["text"].get<std::string>(), std::regex(pattern))) << field << g;
    EXPECT_EQ(g["choices"][0]["finish_reason"], "stop") << field << g;
  }
  nlohmann::json stream = {{"model", "x"}, {"prompt", "import os\n"}, {"max_tokens", 8}, {"stream", true},
                           {"stream_options", {{"include_usage", true}}}};
  auto sse = http.Post("/v1/completions", stream.dump(), "application/json");
  ASSERT_TRUE(sse);
  EXPECT_EQ(sse->status, 200);
  EXPECT_NE(sse->body.find("data: [DONE]"), std::string::npos);
  EXPECT_NE(sse->body.find("\"completion_tokens\":8"), std::string::npos);
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("vllm:generation_tokens_total"), std::string::npos);
  EXPECT_NE(metrics->body.find("vllm:prefix_cache_hits_total"), std::string::npos);
  // Both workers' own counters, collected over MPI once the server is idle: each read routed
  // experts and spent time in steps.
  const std::string ranks = CollectedMetrics(http_port_, "glm:rank_expert_bytes_read_total");
  for (const char* rank : {"1", "2"})
    for (const char* name : {"glm:rank_expert_bytes_read_total", "glm:rank_step_seconds_total", "glm:rank_steps_total"})
      EXPECT_GT(RankMetric(ranks, name, rank), 0.0) << name << " rank " << rank << "\n" << ranks;
}

// n choices over HTTP on the real cluster: greedy choices all equal a lone request's text (they
// share the prompt's cached blocks); seeded sampled choices differ from each other and repeat.
TEST_F(ClusterE2eTest, HttpSeveralChoices) {
  httplib::Client http("127.0.0.1", http_port_);
  http.set_read_timeout(60, 0);
  const auto prompt = Prompt(31, 30);
  nlohmann::json body = {{"prompt", prompt}, {"max_tokens", 12}, {"ignore_eos", true}, {"temperature", 0}, {"n", 3}};
  auto res = http.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  auto j = nlohmann::json::parse(res->body);
  ASSERT_EQ(j["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(j["choices"][i]["text"], j["choices"][0]["text"]) << i;
  EXPECT_EQ(j["usage"]["completion_tokens"], 36);
  EXPECT_EQ(j["usage"]["prompt_tokens"], 30);
  // The same text a lone request gets (whose tokens other tests hold to the local engine's).
  nlohmann::json one = body;
  one["n"] = 1;
  auto single = http.Post("/v1/completions", one.dump(), "application/json");
  ASSERT_TRUE(single);
  EXPECT_EQ(j["choices"][0]["text"], nlohmann::json::parse(single->body)["choices"][0]["text"]);

  body["temperature"] = 1.0;
  body["seed"] = 5;
  auto a = http.Post("/v1/completions", body.dump(), "application/json");
  auto b = http.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(a && b);
  ASSERT_EQ(a->status, 200) << a->body;
  auto ja = nlohmann::json::parse(a->body), jb = nlohmann::json::parse(b->body);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ja["choices"][i]["text"], jb["choices"][i]["text"]) << "seeded choice " << i;
  EXPECT_FALSE(ja["choices"][0]["text"] == ja["choices"][1]["text"] && ja["choices"][1]["text"] == ja["choices"][2]["text"])
      << "seeds 5, 6, 7 gave one text three times";

  // n choices of a fresh prompt cost one prefill: choices 1..3 start from its cached blocks
  // (64 tokens = 4 blocks of 16 each, the last block's tokens recomputed for its logits).
  auto hits = [&] {
    auto m = http.Get("/metrics");
    const std::string key = "vllm:prefix_cache_hits_total{";
    const size_t at = m->body.find(key);
    return std::stod(m->body.substr(m->body.find("} ", at) + 2));
  };
  const double before = hits();
  nlohmann::json fresh = {{"prompt", Prompt(77, 64)}, {"max_tokens", 4}, {"n", 4}, {"temperature", 0.5}, {"seed", 1}};
  auto r = http.Post("/v1/completions", fresh.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_GE(hits() - before, 3 * 48) << "the later choices did not reuse the first one's prompt blocks";
}

// lm-evaluation-harness's loglikelihood request (echo + logprobs + max_tokens 1) on the real
// cluster: the prompt tokens' logprobs are the single-process forward's, even for a prompt
// whose blocks are already cached.
TEST_F(ClusterE2eTest, HttpEchoScoresThePrompt) {
  httplib::Client http("127.0.0.1", http_port_);
  http.set_read_timeout(60, 0);
  const auto prompt = Prompt(41, 40);
  const auto want = LocalPromptLogprobs(prompt);
  nlohmann::json body = {{"prompt", prompt}, {"max_tokens", 1}, {"logprobs", 1}, {"echo", true}, {"temperature", 0}};
  for (int round = 0; round < 2; ++round) {
    body["n"] = round + 1;  // the second round: two choices, the prompt scored by the first
    auto res = http.Post("/v1/completions", body.dump(), "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    const auto j = nlohmann::json::parse(res->body);
    for (int c = 0; c <= round; ++c) {
      const auto lp = j["choices"][c]["logprobs"];
      ASSERT_EQ(lp["token_logprobs"].size(), prompt.size() + 1);
      EXPECT_TRUE(lp["token_logprobs"][0].is_null());
      for (size_t p = 1; p < prompt.size(); ++p)
        EXPECT_NEAR(lp["token_logprobs"][p].get<double>(), want[p - 1], 1e-4) << "round " << round << " choice " << c << " position " << p;
    }
  }
}

TEST_F(ClusterE2eTest, ErrorCodes) {
  pb::GenerateRequest bad = Ids(Prompt(5, 10), 8);
  bad.mutable_sampling()->set_temperature(-1);
  auto s = Generate(bad);
  EXPECT_EQ(s.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.status.error_message().find("temperature"), std::string::npos) << s.status.error_message();
  auto unknown = Generate(Ids({999999}, 4));
  EXPECT_EQ(unknown.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // More than the whole KV cache: never admissible.
  auto huge = Generate(Ids(Prompt(6, 3000), 4));
  EXPECT_EQ(huge.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << huge.status.error_message();
  httplib::Client http("127.0.0.1", http_port_);
  auto r = http.Post("/v1/completions", R"({"prompt":"x","max_tokens":-2})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("\"param\""), std::string::npos);
  std::vector<int> many(3000, 30);
  nlohmann::json too_big = {{"prompt", many}, {"max_tokens", 4}};
  auto rr = http.Post("/v1/completions", too_big.dump(), "application/json");
  ASSERT_TRUE(rr);
  // Over HTTP a request that can never fit is OpenAI's 400 context_length_exceeded: clients
  // retry a 429 (queue full) for ever.
  EXPECT_EQ(rr->status, 400) << rr->body;
  EXPECT_FALSE(rr->has_header("Retry-After"));
  const auto err = nlohmann::json::parse(rr->body)["error"];
  EXPECT_EQ(err["code"], "context_length_exceeded");
  EXPECT_EQ(err["param"], "prompt");
  EXPECT_TRUE(WaitForAllBlocksFree());
}

// Runs last (gtest keeps declaration order within a suite): kills a worker mid-request. mpirun
// answers a rank's death by terminating every rank within a second; the coordinator watches its
// host's workers (LocalWorkerWatch), so the requests in flight get the server's own UNAVAILABLE /
// HTTP 503 naming the worker first. They used to see only dropped connections (gRPC's transport
// "Socket closed", an HTTP reply that never came), which this test took for a failure too.
TEST_F(ClusterE2eTest, ZzWorkerDeathFailsRequestsAndEndsTheJob) {
  const pid_t worker = OurWorker();
  ASSERT_GT(worker, 0);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  int http_status = -1;
  std::string http_body;
  std::thread http_client([&] {
    httplib::Client http("127.0.0.1", http_port_);
    http.set_read_timeout(60, 0);
    const nlohmann::json body = {{"prompt", "def f(x):"}, {"max_tokens", 900}, {"ignore_eos", true}, {"temperature", 0}};
    if (auto r = http.Post("/v1/completions", body.dump(), "application/json")) {
      http_status = r->status;
      http_body = r->body;
    }
  });
  // The kill comes once both requests run (on a loaded machine the HTTP one may connect late).
  std::thread killer([this, worker] {
    httplib::Client http("127.0.0.1", http_port_);
    for (int i = 0; i < 3000; ++i) {
      auto m = http.Get("/metrics");
      if (m && m->body.find("vllm:num_requests_running{model_name=\"glm5-tiny-code\"} 2") != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(worker, SIGKILL);
  });
  // Both requests fit the fixture's KV budget (~2000 positions) together.
  auto s = Generate(Ids(Prompt(9, 30), 900), &ctx);
  killer.join();
  http_client.join();
  EXPECT_EQ(s.status.error_code(), grpc::StatusCode::UNAVAILABLE) << s.status.error_message();
  EXPECT_NE(s.status.error_message().find("exited"), std::string::npos)
      << "the server's own status naming the worker, not a dropped connection: " << s.status.error_message();
  EXPECT_EQ(http_status, 503) << "no HTTP reply at all, or: " << http_body;
  EXPECT_NE(http_body.find("exited"), std::string::npos) << http_body;
  int status = 0;
  for (int i = 0; i < 300 && waitpid(pid_, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(WIFEXITED(status) || WIFSIGNALED(status));
  if (WIFEXITED(status)) {
    EXPECT_NE(WEXITSTATUS(status), 0) << "the job must exit non-zero for its supervisor";
  }
  pid_ = -1;
}

// --weight-dtype int8 travels to the workers in the plan: both re-quantise their experts at
// load, and the cluster gives exactly the greedy tokens of `glmctl generate --weight-dtype int8`.
// This cluster also groups streamed tokens (--stream-interval 8): the same tokens, fewer messages.
class Int8ClusterE2eTest : public ClusterE2eTest {
 protected:
  static void SetUpTestSuite() {
    Launch("120", {"--weight-dtype", "int8", "--stream-interval", "8", "--stream-max-delay-ms", "60000"});
  }
};

TEST_F(Int8ClusterE2eTest, GreedyTokensEqualGlmctlGenerateInt8) {
  const std::string log = ClusterLog();
  EXPECT_NE(log.find("weights int8 (experts)"), std::string::npos) << log;  // the plan table
  EXPECT_EQ(Occurrences(log, "weights converted to int8 (quantize scope experts)"), 2) << log;
  for (int seed : {1, 21}) {
    auto prompt = Prompt(seed, 30);
    auto s = Generate(Ids(prompt, 24));
    ASSERT_TRUE(s.status.ok()) << s.status.error_message();
    EXPECT_EQ(s.tokens, GlmctlGreedy(prompt, 24, "--weight-dtype int8")) << "prompt seed " << seed;
    // The first token alone, then groups of at least 8 (the last may be shorter, with the end).
    EXPECT_LE(s.messages, 1 + 23 / 8 + 1) << "prompt seed " << seed;
  }
}

// int8 experts keep the bundled model's greedy tokens (that is why they are the default scope);
// int4 over every matrix changes them, so this shows the format reaching both workers' every
// slice exactly as one process re-quantises the whole matrices.
class Int4AllClusterE2eTest : public ClusterE2eTest {
 protected:
  static void SetUpTestSuite() { Launch("120", {"--weight-dtype", "int4", "--quantize-scope", "all"}); }
};

TEST_F(Int4AllClusterE2eTest, GreedyTokensEqualGlmctlGenerateInt4All) {
  auto prompt = Prompt(1, 30);
  auto s = Generate(Ids(prompt, 24));
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  const auto int4_all = GlmctlGreedy(prompt, 24, "--weight-dtype int4 --quantize-scope all");
  EXPECT_EQ(s.tokens, int4_all);
  EXPECT_NE(int4_all, LocalGreedy(prompt, 24)) << "int4 everywhere should change this prompt's continuation";
}

// Routed experts beyond --expert-memory-gib stay on disk: with about half of each worker's
// experts' bytes (8 experts x 6 MoE layers x 3 x 256 x 128 BF16 ≈ 9 MiB a worker), both
// workers stream them through an LRU cache, and the greedy tokens are exactly the fully
// resident single-process engine's.
class ExpertStreamingClusterE2eTest : public ClusterE2eTest {
 protected:
  static std::string HalfOfAWorkersExpertsGib() {
    auto ckpt = model::Checkpoint::Open(GLM_MODEL_DIR);
    const model::ModelConfig& c = (*ckpt)->config();
    int64_t moe_layers = 0;
    for (int64_t l = 0; l < c.num_weight_layers(); ++l) moe_layers += c.mlp_kind(l) == model::MlpKind::kSparse;
    const int64_t expert_bytes = 3 * c.hidden_size * c.moe_intermediate_size * 2;  // BF16 gate, up, down
    const int64_t per_worker = moe_layers * (c.n_routed_experts / 2) * expert_bytes;
    return std::to_string(static_cast<double>(per_worker / 2) / (1 << 30));
  }
  static void SetUpTestSuite() { Launch("120", {"--expert-memory-gib", HalfOfAWorkersExpertsGib()}); }
};

TEST_F(ExpertStreamingClusterE2eTest, GreedyTokensEqualTheFullyResidentEngine) {
  const std::string log = ClusterLog();
  EXPECT_EQ(Occurrences(log, "streaming them from disk through an LRU cache"), 2) << log;
  EXPECT_NE(log.find("routed experts beyond"), std::string::npos) << log;  // the plan table
  for (int seed : {1, 21}) {
    auto prompt = Prompt(seed, 30);
    auto s = Generate(Ids(prompt, 24));
    ASSERT_TRUE(s.status.ok()) << s.status.error_message();
    EXPECT_EQ(s.tokens, LocalGreedy(prompt, 24)) << "prompt seed " << seed;
  }
  // Each worker reports its cache's hits and misses and the disk reads it made (/metrics).
  const std::string body = CollectedMetrics(http_port_, "glm:rank_expert_cache_misses_total");
  for (const char* rank : {"1", "2"}) {
    EXPECT_GT(RankMetric(body, "glm:rank_expert_cache_misses_total", rank), 0.0) << rank << "\n" << body;
    EXPECT_GE(RankMetric(body, "glm:rank_expert_cache_hits_total", rank), 0.0) << rank;
    EXPECT_GT(RankMetric(body, "glm:rank_expert_disk_bytes_total", rank), 0.0) << rank;
    EXPECT_GT(RankMetric(body, "glm:rank_expert_disk_seconds_total", rank), 0.0) << rank;
  }
}

// Load-time int4 with expert-tensor-parallel slices on a model whose expert width (80) two ranks
// would split mid-group (at 40): the slices start on the whole matrix's groups, so the two
// workers hold the int4 weights one process does and give its greedy tokens (they diverged by
// the 8th token when each quantised its half from column 40).
class Int4SlicedClusterE2eTest : public ClusterE2eTest {
 protected:
  static void SetUpTestSuite() {
    Launch("120", {"--model", GLM_TEST_FIXTURES_DIR "/glm5-random-sparse", "--weight-dtype", "int4", "--expert-layout",
                   "expert-tensor-parallel"});
  }
};

TEST_F(Int4SlicedClusterE2eTest, GreedyTokensEqualOneProcess) {
  const std::vector<int32_t> prompt = {824, 795, 711, 731, 419};
  auto s = Generate(Ids(prompt, 24));
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  EXPECT_EQ(s.tokens, GlmctlGreedy(prompt, 24, "--weight-dtype int4", GLM_TEST_FIXTURES_DIR "/glm5-random-sparse"));
}

// A checkpoint with its experts stored pre-quantised (`glmctl quantize --weight-dtype int4`), half
// of each worker's experts streamed from disk as codes: both workers take the codes as stored
// (nothing is re-quantised), and the cluster gives exactly the greedy tokens of
// `glmctl generate --weight-dtype int4` on the original checkpoint.
class PreQuantisedClusterE2eTest : public ClusterE2eTest {
 protected:
  static std::string Dir() { return "/tmp/glm_e2e_int4_" + std::to_string(getpid()); }
  static void SetUpTestSuite() {
    std::filesystem::remove_all(Dir());
    const std::string cmd = std::string(GLM_GLMCTL_BIN) + " quantize --model " + GLM_MODEL_DIR + " --out " + Dir() +
                            " --weight-dtype int4 > /dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) return;  // the test then finds no cluster and fails
    // A worker's int4 experts: 8 experts x 6 MoE layers x 3 x 256 x 128 x 0.5625 B ≈ 2.6 MiB.
    Launch("120", {"--model", Dir(), "--expert-memory-gib", "0.0012"});
  }
  static void TearDownTestSuite() {
    ClusterE2eTest::TearDownTestSuite();
    std::filesystem::remove_all(Dir());
  }
};

TEST_F(PreQuantisedClusterE2eTest, GreedyTokensEqualGlmctlGenerateInt4OfTheOriginal) {
  const std::string log = ClusterLog();
  EXPECT_NE(log.find("experts pre-quantised int4-g32"), std::string::npos) << log;  // the plan table
  EXPECT_EQ(Occurrences(log, "streaming them from disk through an LRU cache"), 2) << log;
  EXPECT_EQ(Occurrences(log, "weights converted"), 0) << log;
  for (int seed : {1, 21}) {
    auto prompt = Prompt(seed, 30);
    auto s = Generate(Ids(prompt, 24));
    ASSERT_TRUE(s.status.ok()) << s.status.error_message();
    EXPECT_EQ(s.tokens, GlmctlGreedy(prompt, 24, "--weight-dtype int4")) << "prompt seed " << seed;
  }
}

// Two pipeline stages under mpiexec: by default one step in flight per stage, so the stages work
// on different micro-batches. Concurrent clients each get their solo tokens, a cancelled request
// in flight frees its blocks, and the job still drains and exits cleanly (TearDown).
class PipelinedClusterE2eTest : public ClusterE2eTest {
 protected:
  static void SetUpTestSuite() { Launch("120", {"--stages", "2"}); }
};

TEST_F(PipelinedClusterE2eTest, ConcurrentClientsGetTheirSoloTokensWithTwoStepsInFlight) {
  const std::string log = ClusterLog();
  EXPECT_NE(log.find("2 pipeline stages"), std::string::npos) << log;
  EXPECT_NE(log.find("2 steps in flight (one per pipeline stage)"), std::string::npos) << log;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back(Prompt(300 + i, 6 + 5 * i));
  std::vector<Streamed> outs(8);
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i) clients.emplace_back([&, i] { outs[i] = Generate(Ids(prompts[i], 16)); });
  grpc::ClientContext cancelled;
  auto c = Generate(Ids(Prompt(310, 40), 1500), &cancelled, /*cancel_after_messages=*/3);
  for (auto& t : clients) t.join();
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::CANCELLED);
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(outs[i].status.ok()) << outs[i].status.error_message();
    EXPECT_EQ(outs[i].tokens, LocalGreedy(prompts[i], 16)) << "client " << i;
  }
  EXPECT_TRUE(WaitForAllBlocksFree());
  // /metrics shows the limit and that steps did overlap.
  const std::string body = CollectedMetrics(http_port_, "glm:steps_overlapped_total");
  EXPECT_NE(body.find("glm:max_steps_in_flight{model_name=\"glm5-tiny-code\"} 2"), std::string::npos) << body;
  const std::string overlapped = "glm:steps_overlapped_total{model_name=\"glm5-tiny-code\"} ";
  const size_t at = body.find(overlapped);
  ASSERT_NE(at, std::string::npos) << body;
  EXPECT_GT(std::stod(body.substr(at + overlapped.size())), 0) << body;
}

// `--model DIR/`: the served name is still the directory's (it was '': the /v1/models id "",
// and requests naming glm5-tiny-code failed under --strict-model-name).
class TrailingSlashModelE2eTest : public ClusterE2eTest {
 protected:
  static void SetUpTestSuite() {
    Launch("120", {"--model", std::string(GLM_MODEL_DIR) + "/", "--warmup-tokens", "0", "--strict-model-name"});
  }
};

TEST_F(TrailingSlashModelE2eTest, ServesTheDirectorysName) {
  grpc::ClientContext ctx;
  pb::ModelInfo info;
  ASSERT_TRUE(stub_->GetModelInfo(&ctx, pb::ModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.name(), "glm5-tiny-code");
  pb::GenerateRequest req = Ids(Prompt(3, 8), 2);
  req.set_model("glm5-tiny-code");
  auto s = Generate(req);
  EXPECT_TRUE(s.status.ok()) << s.status.error_message();
  EXPECT_NE(ClusterLog().find("Placement of glm5-tiny-code:"), std::string::npos) << ClusterLog();
}

// SIGINT/SIGTERM drains: health turns NOT_SERVING and new requests get UNAVAILABLE while a running
// one streams to its end; then the job exits 0. Before, the first signal cut every stream with
// UNAVAILABLE and closed the listeners at once (Kubernetes-style rolling restarts lost requests).
class DrainE2eTest : public ClusterE2eTest {
 protected:
  // A drain deadline far past the running request's 1,500 tokens even on a loaded machine (ctest -j3
  // and two busy loops on 2 cores took over 60 s, and the drain then cut the stream as designed).
  static void SetUpTestSuite() { Launch("120", {"--warmup-tokens", "0", "--drain-timeout-s", "600"}); }
};

TEST_F(DrainE2eTest, ZzSignalDrainsRunningRequestsThenExits) {
  pid_t coordinator = -1;
  if (FILE* p = popen(("pgrep -n -P " + std::to_string(pid_) + " coordinator").c_str(), "r")) {
    char buf[64] = {0};
    if (fgets(buf, sizeof buf, p)) coordinator = atoi(buf);
    pclose(p);
  }
  ASSERT_GT(coordinator, 0);
  Streamed running;
  std::atomic<int> received{0};
  std::atomic<bool> ended{false};  // the running request's last message arrived (read across threads)
  std::thread client([&] {
    grpc::ClientContext ctx;
    auto reader = stub_->Generate(&ctx, Ids(Prompt(21, 16), 1500));  // the KV cache holds ~2000 positions
    pb::GenerateResponse r;
    while (reader->Read(&r)) {
      running.tokens.insert(running.tokens.end(), r.token_ids().begin(), r.token_ids().end());
      running.last = r;
      ++received;
      if (!r.finish_reason().empty()) ended = true;
    }
    running.status = reader->Finish();
    ended = true;
  });
  for (int i = 0; i < 500 && received.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (received.load() == 0) {
    client.join();
    FAIL() << "the request did not start: " << running.status.error_message();
  }
  kill(coordinator, SIGINT);
  httplib::Client http("127.0.0.1", http_port_);
  int health = 0;
  for (int i = 0; i < 300 && health != 503; ++i) {
    if (auto h = http.Get("/health")) health = h->status;
    if (health != 503) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(health, 503);
  const bool still_running = !ended.load();
  auto refused = Generate(Ids(Prompt(22, 8), 4));
  if (still_running) {
    EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.status.error_message();
  }
  client.join();
  ASSERT_TRUE(running.status.ok()) << running.status.error_message() << "\n" << ClusterLog();
  EXPECT_EQ(running.tokens.size(), 1500u);
  EXPECT_EQ(running.last.finish_reason(), "length");
  int status = 0;
  for (int i = 0; i < 300 && waitpid(pid_, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << "\n" << ClusterLog();
  EXPECT_NE(ClusterLog().find("draining"), std::string::npos) << ClusterLog();
  pid_ = -1;
}

// A worker that stops answering (SIGSTOP: alive but hung) is noticed at the step timeout: the
// in-flight request fails with UNAVAILABLE and the job exits non-zero.
class HungWorkerE2eTest : public ClusterE2eTest {
 protected:
  static void SetUpTestSuite() { Launch("3"); }
};

TEST_F(HungWorkerE2eTest, StuckWorkerFailsRequestsWithinTheStepTimeout) {
  const pid_t worker = OurWorker();
  ASSERT_GT(worker, 0);
  auto first = Generate(Ids(Prompt(11, 20), 4));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  kill(worker, SIGSTOP);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto s = Generate(Ids(Prompt(12, 20), 64), &ctx);
  // UNAVAILABLE, not DEADLINE_EXCEEDED at the client's 60 s: the 3 s step timeout noticed it.
  EXPECT_EQ(s.status.error_code(), grpc::StatusCode::UNAVAILABLE) << s.status.error_message();
  int status = 0;
  for (int i = 0; i < 300 && waitpid(pid_, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  kill(worker, SIGKILL);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << "the job must exit non-zero";
  pid_ = -1;
}

}  // namespace
}  // namespace glm
