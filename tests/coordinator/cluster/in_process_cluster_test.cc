// The distributed execution path (planner -> step protocol -> TP/EP/PP workers) on threads with
// the in-process transport, against the single-process engine.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <thread>

#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "cluster_test_util.h"
#include "coordinator/placement/expert_replica_planner.h"
#include "shard_worker/comm/in_process_communicator.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/quantized_checkpoint.h"
#include "shard_worker/runtime/worker_service.h"

namespace glm::testing {
namespace {

struct Case {
  std::string model;
  Layout layout;
  std::string activation_dtype = "f32";
  // Hot-expert replicas per MoE layer (the planner's, from a skewed recorded load): ranks then
  // share experts and pick in each step which of them computes one.
  int hot_replicas = 0;
  // Every rank streams its experts (copies included) through a 1 MiB cache (a pinned plan may ask
  // for that; the planner places copies on resident ranks only): the next layer's prefetch then
  // reads only the copies the predicted routing would have the rank compute.
  bool stream_experts = false;
};


// "MODEL" as bundled, or "MODEL@int4": its experts stored pre-quantised (glmctl quantize), written
// once per process into a temporary directory.
std::string CaseModelDir(const std::string& model) {
  const size_t at = model.find('@');
  if (at == std::string::npos) return FixtureModelDir(model);
  static absl::Mutex mu;
  static auto* written = new std::map<std::string, std::string>();
  absl::MutexLock lock(&mu);
  auto it = written->find(model);
  if (it != written->end()) return it->second;
  const std::string out = (std::filesystem::temp_directory_path() /
                           ("glm_cluster_" + std::to_string(::getpid()) + "_" + model.substr(0, at) + "_int4"))
                              .string();
  std::filesystem::remove_all(out);
  auto summary = model::WriteQuantizedCheckpoint(FixtureModelDir(model.substr(0, at)), out, {});
  EXPECT_TRUE(summary.ok()) << summary.status();
  return (*written)[model] = out;
}

class InProcessClusterTest : public ::testing::TestWithParam<Case> {};

TEST_P(InProcessClusterTest, MatchesSingleProcess) {
  const Case& c = GetParam();
  const std::string dir = CaseModelDir(c.model);
  auto config = model::ModelConfig::FromFile(dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  const auto prompt = FixturePrompt(c.model.substr(0, c.model.find('@')));
  const int decode_steps = 6;
  // BF16 activations are a process-wide kernel setting the workers take from the plan; the
  // single-process baseline runs with it too, and it is reset for the next test.
  struct Reset {
    ~Reset() { kernels::SetBf16Activations(false); }
  } reset;
  kernels::SetBf16Activations(c.activation_dtype == "bf16");
  auto baseline = RunSingleProcess(dir, prompt, decode_steps);
  ASSERT_TRUE(baseline.ok()) << baseline.status();

  auto comms = comm::InProcessCommunicator::CreateGroup(c.layout.workers + 1);
  std::vector<std::thread> workers;
  std::vector<absl::Status> worker_status(c.layout.workers + 1);
  for (int r = 1; r <= c.layout.workers; ++r) {
    workers.emplace_back([&, r] {
      runtime::WorkerOptions o;
      o.threads = 1;
      worker_status[r] = runtime::RunWorker(comms[r].get(), o);
    });
  }
  cluster::ClusterOptions options;
  options.model_dir = dir;
  options.kv_blocks = 64;
  options.kv_block_size = 16;
  int64_t replicas = 0;
  auto client = cluster::ClusterClient::Start(comms[0].get(), options, [&](const auto&) {
    auto plan = MakePlan(*config, c.layout.workers, c.layout.stages, c.layout.expert_layout, c.activation_dtype);
    if (plan.ok() && c.hot_replicas > 0) {
      auto added = placement::AddHotExpertReplicas(*config, SkewedExpertLoad(*config), c.hot_replicas, &*plan);
      if (!added.ok()) return absl::StatusOr<placement::PlacementPlan>(added.status());
      replicas = added->added;
    }
    if (plan.ok() && c.stream_experts)
      for (auto& r : *plan->mutable_ranks()) r.set_expert_memory_bytes(int64_t{1} << 20);
    return plan;
  });
  ASSERT_TRUE(client.ok()) << client.status();
  auto run = RunThroughCluster(client->get(), prompt, decode_steps, static_cast<int>(config->vocab_size));
  ASSERT_TRUE((*client)->Shutdown().ok());
  for (auto& t : workers) t.join();
  for (int r = 1; r <= c.layout.workers; ++r) EXPECT_TRUE(worker_status[r].ok()) << worker_status[r];
  ASSERT_TRUE(run.ok()) << run.status();

  const int64_t vocab = config->vocab_size;
  const bool pure_pipeline = c.layout.workers == c.layout.stages;
  for (size_t row = 0; row < prompt.size(); ++row) {
    const float* got = run->prompt_logits.data() + row * vocab;
    const float* want = baseline->prompt_logits.data() + row * vocab;
    double max_ref = 0, max_diff = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      max_ref = std::max(max_ref, std::fabs(static_cast<double>(want[i])));
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(got[i]) - want[i]));
    }
    if (pure_pipeline) {
      ASSERT_EQ(max_diff, 0.0) << "pipeline-only layouts are bit-identical; row " << row;
    } else {
      // Tensor-parallel partial sums round differently (f32 ulps); with BF16 activations such a
      // difference occasionally moves an activation across a BF16 rounding boundary (2^-9), and
      // int4 experts round their inputs to int8 codes (1/254 of a 32-column block's largest).
      const bool rounded_activations = c.activation_dtype == "bf16" || c.model.find("@int4") != std::string::npos;
      const double tolerance = rounded_activations ? 5e-3 : 1e-4;
      ASSERT_LE(max_diff, tolerance * max_ref) << "row " << row;
    }
  }
  EXPECT_EQ(run->greedy, baseline->greedy);
  if (c.hot_replicas > 0) EXPECT_GT(replicas, 0) << "the plan placed no replicas";
}

// A plan whose cores the worker could not run (the coordinator's plan check refuses it first; a
// worker must not trust that): loading fails with a message naming the rank, instead of the
// worker spawning threads until std::thread throws and the process aborts.
// A one-worker cluster of the bundled model started with `options` and a plan `edit_plan` spoils:
// the worker must refuse it. Returns the client's start-up status (the worker has ended).
absl::Status StartRefusedCluster(const std::function<void(cluster::ClusterOptions*)>& edit_options,
                                 const std::function<void(placement::PlacementPlan*)>& edit_plan) {
  const std::string dir = FixtureModelDir("glm5-tiny-code");
  auto config = model::ModelConfig::FromFile(dir + "/config.json");
  if (!config.ok()) return config.status();
  auto comms = comm::InProcessCommunicator::CreateGroup(2);
  absl::Status worker_status;
  std::thread worker([&] { worker_status = runtime::RunWorker(comms[1].get(), runtime::WorkerOptions()); });
  cluster::ClusterOptions options;
  options.model_dir = dir;
  options.kv_blocks = 16;
  options.kv_block_size = 16;
  edit_options(&options);
  auto client = cluster::ClusterClient::Start(comms[0].get(), options, [&](const auto&) {
    auto plan = MakePlan(*config, 1, 1, "expert-parallel", "f32");
    if (plan.ok()) edit_plan(&*plan);
    return plan;
  });
  worker.join();
  EXPECT_FALSE(worker_status.ok());
  return client.ok() ? absl::OkStatus() : client.status();
}

TEST(InProcessClusterLoadTest, AWorkerRefusesAPlanWithTooManyCores) {
  const absl::Status s = StartRefusedCluster([](cluster::ClusterOptions*) {},
                                             [](placement::PlacementPlan* plan) { plan->mutable_ranks(0)->set_cores(2000000000); });
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rank 1: 2000000000 compute threads"), std::string::npos) << s;
}

// A KV dtype the worker does not know (a coordinator of another version) fails the load with the
// name, never a pool of the wrong element size.
TEST(InProcessClusterLoadTest, AWorkerRefusesAnUnknownKvCacheDtype) {
  const absl::Status s = StartRefusedCluster([](cluster::ClusterOptions* o) { o->kv_cache_dtype = "fp8_e5m2"; },
                                             [](placement::PlacementPlan*) {});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("kv_cache_dtype 'fp8_e5m2' is not one of f32, bf16, fp8_e4m3, int8"), std::string::npos) << s;
  const absl::Status index = StartRefusedCluster([](cluster::ClusterOptions* o) { o->index_key_dtype = "f16"; },
                                                 [](placement::PlacementPlan*) {});
  ASSERT_FALSE(index.ok());
  EXPECT_NE(index.message().find("index_key_dtype 'f16' is not one of f32, bf16, fp8_e4m3, int8"), std::string::npos)
      << index;
}

// The worker's start-up log states what the plan's table says (the hidden layers, with the MTP
// layer named apart: "layers 0-5 + MTP", not "layers 0-6") and its compute threads with their
// pinning (it used to say neither).
TEST(InProcessClusterLoadTest, TheStartUpLogStatesLayersThreadsAndPinning) {
  const std::string dir = FixtureModelDir("glm5-tiny-code");
  auto config = model::ModelConfig::FromFile(dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_TRUE(config->has_mtp());
  ASSERT_EQ(config->num_hidden_layers, 6);
  for (const bool pin_ok : {true, false}) {
    auto comms = comm::InProcessCommunicator::CreateGroup(2);
    std::vector<std::string> lines;
    std::vector<int> pinned;
    absl::Mutex mu;
    absl::Status worker_status;
    std::thread worker([&] {
      runtime::WorkerOptions o;
      o.threads = 2;
      o.log = [&](const std::string& m) {
        absl::MutexLock lock(&mu);
        lines.push_back(m);
      };
      o.pin_thread = [&, pin_ok](int index) {
        absl::MutexLock lock(&mu);
        pinned.push_back(index);
        return pin_ok ? absl::OkStatus() : absl::UnimplementedError("no pinning here");
      };
      worker_status = runtime::RunWorker(comms[1].get(), o);
    });
    cluster::ClusterOptions options;
    options.model_dir = dir;
    options.kv_blocks = 16;
    options.kv_block_size = 16;
    auto client = cluster::ClusterClient::Start(comms[0].get(), options, [&](const auto&) {
      return MakePlan(*config, 1, 1, "expert-parallel", "f32");
    });
    ASSERT_TRUE(client.ok()) << client.status();
    ASSERT_TRUE((*client)->Shutdown().ok());
    worker.join();
    EXPECT_TRUE(worker_status.ok()) << worker_status;
    const std::string log = absl::StrJoin(lines, "\n");
    EXPECT_NE(log.find("MiB (layers 0-5 + MTP)"), std::string::npos) << log;
    EXPECT_NE(log.find(" MiB of the checkpoint read at "), std::string::npos) << log;
    // Every shard file announced once, counted 1..3, whichever loader (head or layers) reads it first.
    for (const char* shard : {"(shard 1 of 3,", "(shard 2 of 3,", "(shard 3 of 3,"}) {
      const size_t at = log.find(shard);
      EXPECT_NE(at, std::string::npos) << shard << "\n" << log;
      EXPECT_EQ(log.find(shard, at + 1), std::string::npos) << shard << "\n" << log;
    }
    EXPECT_EQ(pinned.size(), 2u);
    const std::string want = pin_ok ? "rank 1: 2 compute threads (--threads), pinned one per core of NUMA node 0"
                                    : "rank 1: 2 compute threads (--threads), pinning failed for 2 of 2: no pinning here";
    EXPECT_NE(log.find(want), std::string::npos) << log;
  }
}

// A step that fails on the last stage for any reason but a rejected plan ends that worker (here
// an expert read from a checkpoint truncated under a streaming rank). The client says UNAVAILABLE
// at once and turns unhealthy; it used to report a rejected batch (INVALID_ARGUMENT) and keep
// serving, so the next step waited out the step timeout before anyone learnt the cluster was gone.
TEST(InProcessClusterLoadTest, AFailedStepEndsTheClusterAtOnce) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("glm_failed_step_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::copy(FixtureModelDir("glm5-tiny-code"), dir);
  auto config = model::ModelConfig::FromFile((dir / "config.json").string());
  ASSERT_TRUE(config.ok()) << config.status();
  auto comms = comm::InProcessCommunicator::CreateGroup(2);
  absl::Status worker_status;
  std::thread worker([&] {
    runtime::WorkerOptions o;
    o.threads = 1;
    worker_status = runtime::RunWorker(comms[1].get(), o);
  });
  cluster::ClusterOptions options;
  options.model_dir = dir.string();
  options.kv_blocks = 16;
  options.kv_block_size = 16;
  auto client = cluster::ClusterClient::Start(comms[0].get(), options, [&](const auto&) {
    auto plan = MakePlan(*config, 1, 1, "expert-parallel", "f32");
    if (plan.ok()) plan->mutable_ranks(0)->set_expert_memory_bytes(1);  // every routed expert streamed
    return plan;
  });
  ASSERT_TRUE(client.ok()) << client.status();
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") fs::resize_file(e.path(), 4096);
  auto run = RunThroughCluster(client->get(), FixturePrompt("glm5-tiny-code"), 2, static_cast<int>(config->vocab_size));
  ASSERT_FALSE(run.ok());
  EXPECT_EQ(run.status().code(), absl::StatusCode::kUnavailable) << run.status();
  EXPECT_NE(run.status().message().find("a worker failed"), std::string::npos) << run.status();
  EXPECT_FALSE((*client)->healthy());
  worker.join();
  EXPECT_FALSE(worker_status.ok());
  fs::remove_all(dir);
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (std::string m : {"glm5-tiny-code", "glm5-random-sparse", "glm5-random-fp8"})
    for (const Layout& l : AcceptanceLayouts()) cases.push_back({m, l});
  // BF16 activations through the plan: every rank computes as the single process does.
  for (const Layout& l : AcceptanceLayouts()) cases.push_back({"glm5-tiny-code", l, "bf16"});
  // Hot-expert replicas in expert-parallel stages of 2 and 3 ranks, one of them across two stages
  // (the MTP layer's experts on the last), and every expert replicated.
  for (std::string m : {"glm5-tiny-code", "glm5-random-sparse", "glm5-random-fp8"}) {
    cases.push_back({m, {"two_workers_hot_replicas", 2, 1}, "f32", 3});
    cases.push_back({m, {"two_stages_by_two_hot_replicas", 4, 2}, "f32", 2});
  }
  cases.push_back({"glm5-tiny-code", {"three_workers_all_replicated", 3, 1}, "f32", 1000});
  cases.push_back({"glm5-tiny-code", {"two_workers_hot_replicas_streamed", 2, 1}, "f32", 4, true});
  // Experts stored pre-quantised: sliced on their scale groups, replicated, streamed as codes.
  for (std::string m : {"glm5-tiny-code@int4", "glm5-random-fp8@int4"})
    for (const Layout& l : AcceptanceLayouts()) cases.push_back({m, l});
  cases.push_back({"glm5-tiny-code@int4", {"two_workers_hot_replicas_streamed", 2, 1}, "f32", 4, true});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Layouts, InProcessClusterTest, ::testing::ValuesIn(AllCases()), [](const auto& info) {
  std::string s = info.param.model + "_" + info.param.layout.name +
                  (info.param.activation_dtype == "bf16" ? "_bf16_activations" : "");
  std::replace(s.begin(), s.end(), '-', '_');
  std::replace(s.begin(), s.end(), '@', '_');
  return s;
});

}  // namespace
}  // namespace glm::testing
