// End to end, jobs that end on their own: the coordinator refuses bad load options, pinned plans
// and planning flags before any worker loads (a precise message, a non-zero exit), and glmctl
// bounds its flags. Each case starts its own short mpiexec job or glmctl run.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace glm {
namespace {
// Jobs that must not start: the coordinator refuses its load options before any worker loads,
// with a precise message, and the job exits non-zero.
struct JobEnd {
  int status = 0;
  std::string log;
};
// Runs a shell command line with its stdout and stderr captured in `log` (read, then removed).
JobEnd RunCaptured(const std::string& command, const std::string& log) {
  JobEnd end;
  end.status = std::system((command + " >" + log + " 2>&1").c_str());
  std::ifstream in(log);
  end.log.assign(std::istreambuf_iterator<char>(in), {});
  std::remove(log.c_str());
  return end;
}
JobEnd RunJobToTheEnd(const std::string& coordinator_flags) {
  const std::string log = "/tmp/glm_e2e_refused_" + std::to_string(getpid()) + ".log";
  // `timeout`: a job that hangs instead of ending is a failure here (exit 124), not a stalled suite.
  const std::string cmd = std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout -k 10 120 ") +
                          GLM_MPIEXEC +
                          " --oversubscribe --allow-run-as-root --bind-to none --mca btl self,vader "
                          "--mca btl_vader_single_copy_mechanism none -np 1 " +
                          GLM_COORDINATOR_BIN + " --model " + GLM_MODEL_DIR +
                          " --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 " + coordinator_flags + " : -np 1 " +
                          GLM_SHARD_WORKER_BIN + " --threads 1";
  return RunCaptured(cmd, log);
}

bool EndedNonZeroOnItsOwn(const JobEnd& end) {
  return WIFEXITED(end.status) && WEXITSTATUS(end.status) != 0 && WEXITSTATUS(end.status) != 124 &&
         WEXITSTATUS(end.status) != 137;
}

// The job ended by itself with an error that names `message`, before any model was loaded.
void ExpectRefusedBeforeLoading(const JobEnd& end, const std::string& message) {
  EXPECT_TRUE(EndedNonZeroOnItsOwn(end)) << "status " << end.status << "\n" << end.log;
  EXPECT_NE(end.log.find(message), std::string::npos) << end.log;
  EXPECT_EQ(end.log.find("loaded in"), std::string::npos) << end.log;
}

TEST(RefusedLoadOptionsE2eTest, BadWeightDtypeFlag) {
  const JobEnd end = RunJobToTheEnd("--weight-dtype int7");
  ExpectRefusedBeforeLoading(end, "weight dtype 'int7' is not one of stored, bf16, f32, int8");
}

TEST(RefusedLoadOptionsE2eTest, BadStreamIntervalFlag) {
  const JobEnd end = RunJobToTheEnd("--stream-interval 0");
  ExpectRefusedBeforeLoading(end, "--stream-interval must be 1..4096 tokens, got 0");
}

TEST(RefusedLoadOptionsE2eTest, BadHttpThreadsFlag) {
  const JobEnd end = RunJobToTheEnd("--http-threads -3");
  ExpectRefusedBeforeLoading(end, "--http-threads must be 0..4096, got -3");
}

// Scheduler and serving flags are refused before the workers load (they were checked only once
// the model had loaded), and values that broke the server are refused at all: --max-running near
// INT32_MAX overflowed the step's token budget (every request hung), --step-timeout-s 0 failed
// the first step and took the cluster down, --max-waiting 0 refused every request, a gRPC port
// of 99999 was bound as 34463, and an --api-key of commas left the server open.
TEST(RefusedLoadOptionsE2eTest, SchedulerAndServingFlagsAreRefusedBeforeLoading) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--max-running 2147483647", "--max-running must be 1..65536, got 2147483647"},
      {"--prefill-chunk 0", "--prefill-chunk must be 1..16777216, got 0"},
      {"--max-num-batched-tokens 2000000000", "--max-num-batched-tokens must be 0..16777216"},
      {"--step-timeout-s 0", "--step-timeout-s must be 1..86400 seconds, got 0"},
      {"--max-waiting 0", "--max-waiting must be positive, got 0"},
      {"--speculative ngram:x", "--speculative"},
      {"--draft-vocab -1", "--draft-vocab must be 0 (off) or positive"},
      {"--grpc-listen 127.0.0.1:99999", "--grpc-listen: '127.0.0.1:99999' is not HOST:PORT"},
      {"--grpc-listen '' --http-listen ''", "nothing would serve"},
      {"--api-key ' , '", "--api-key / GLM_API_KEY holds no key"},
  };
  for (const auto& [flags, message] : cases) {
    SCOPED_TRACE(flags);
    ExpectRefusedBeforeLoading(RunJobToTheEnd(flags), message);
  }
}

// A budget smaller than one KV block: the flags and the bytes a block takes are named (it was
// "the KV cache budget gives no blocks").
TEST(RefusedLoadOptionsE2eTest, AKvBudgetOfNoBlockNamesItsFlags) {
  const JobEnd end = RunJobToTheEnd("--kv-cache-gib 0.000001");
  ExpectRefusedBeforeLoading(end, "--kv-cache-gib 1e-06 (1073 bytes a worker) holds no KV block: one block of ");
  EXPECT_NE(end.log.find("raise --kv-cache-gib or lower --kv-block-size"), std::string::npos) << end.log;
}

TEST(RefusedLoadOptionsE2eTest, BadKvCacheDtypeFlag) {
  ExpectRefusedBeforeLoading(RunJobToTheEnd("--kv-cache-dtype fp8_e5m2"),
                             "--kv-cache-dtype 'fp8_e5m2' is not one of f32, bf16, int8, fp8 (= fp8_e4m3), auto (fp8 "
                             "here is e4m3 with a scale per row; vLLM's other FP8 layouts (e5m2, inc, ds_mla) are not offered, "
                             "and int8 keeps more precision in the same bytes)");
  ExpectRefusedBeforeLoading(RunJobToTheEnd("--index-key-dtype f16"),
                             "--index-key-dtype 'f16' is not one of f32, bf16, int8, fp8 (= fp8_e4m3), auto");
}

TEST(RefusedLoadOptionsE2eTest, BadHotExpertReplicaFlags) {
  ExpectRefusedBeforeLoading(RunJobToTheEnd("--hot-expert-replicas 2"),
                             "--hot-expert-replicas needs --expert-load FILE (routing statistics recorded with "
                             "`glmctl expert-load`)");
  ExpectRefusedBeforeLoading(RunJobToTheEnd("--hot-expert-replicas -1"),
                             "--hot-expert-replicas '-1' is not a count of 0 or more, or auto");
  ExpectRefusedBeforeLoading(RunJobToTheEnd("--hot-expert-replicas all"),
                             "--hot-expert-replicas 'all' is not a count of 0 or more, or auto");
  ExpectRefusedBeforeLoading(RunJobToTheEnd("--expert-load /nonexistent/load.json --hot-expert-replicas 2"),
                             "--expert-load /nonexistent/load.json: cannot open");
  const std::string bad = "/tmp/glm_e2e_load_" + std::to_string(getpid()) + ".json";
  std::ofstream(bad) << R"({"layers": [{"layer": 0, "tokens_per_expert": [1]}]})";
  ExpectRefusedBeforeLoading(RunJobToTheEnd("--expert-load " + bad + " --hot-expert-replicas 2"),
                             "layer 0 is not a MoE layer of the model");
  std::remove(bad.c_str());
}

TEST(RefusedLoadOptionsE2eTest, BadStepsInFlightFlag) {
  const JobEnd end = RunJobToTheEnd("--steps-in-flight -1");
  ExpectRefusedBeforeLoading(end, "--steps-in-flight must be 0..64 (0 = one per pipeline stage), got -1");
}

// vLLM's flag names: values out of range, or two spellings of one setting that disagree.
TEST(RefusedLoadOptionsE2eTest, BadSchedulerFlags) {
  ExpectRefusedBeforeLoading(RunJobToTheEnd("--max-model-len 5000"),
                             "--max-model-len must be 1..4096 (the model's max_position_embeddings; 0 = that), got 5000");
  ExpectRefusedBeforeLoading(RunJobToTheEnd("--max-num-seqs 3 --max-running 5"),
                             "--max-num-seqs 3 and --max-running 5 disagree");
  ExpectRefusedBeforeLoading(RunJobToTheEnd("--max-num-batched-tokens -1"), "--max-num-batched-tokens must be >= 0");
  ExpectRefusedBeforeLoading(RunJobToTheEnd("--scheduling-policy lifo"),
                             "--scheduling-policy must be fcfs or priority, got 'lifo'");
  ExpectRefusedBeforeLoading(RunJobToTheEnd("--tool-call-parser hermes"),
                             "--tool-call-parser 'hermes': this server parses GLM's tool calls only (glm45, glm47)");
  ExpectRefusedBeforeLoading(RunJobToTheEnd("--reasoning-parser deepseek_r1"),
                             "--reasoning-parser 'deepseek_r1': this server splits GLM's <think> reasoning only (glm45)");
  ExpectRefusedBeforeLoading(RunJobToTheEnd("--no-enable-auto-tool-choice"),
                             "--no-enable-auto-tool-choice: this server always parses tool calls");
  // (RunJobToTheEnd gives --http-listen.)
  ExpectRefusedBeforeLoading(RunJobToTheEnd("--port 8001"),
                             "--host / --port and --http-listen both set the HTTP address: give one of them");
}

TEST(RefusedLoadOptionsE2eTest, PinnedPlanWithABadWeightDtype) {
  // A plan from `glmctl plan --json` for one worker, hand-edited to a dtype that does not exist.
  const std::string plan = "/tmp/glm_e2e_plan_" + std::to_string(getpid()) + ".json";
  const std::string make = std::string(GLM_GLMCTL_BIN) + " plan --model " + GLM_MODEL_DIR +
                           " --synthetic 'pack:1 numa:1 core:1' --weight-dtype int8 --json | sed "
                           "'s/\"weight_dtype\": \"int8\"/\"weight_dtype\": \"int3\"/' >" + plan;
  ASSERT_EQ(std::system(make.c_str()), 0);
  const JobEnd end = RunJobToTheEnd("--placement " + plan);
  std::remove(plan.c_str());
  ExpectRefusedBeforeLoading(end, "placement plan: weight_dtype / quantize_scope: weight dtype 'int3' is not one of");
}

// A --placement path that cannot be read is reported as such before any worker loads (it was
// parsed as an empty plan: "placement plan JSON: Unexpected end of string").
TEST(RefusedLoadOptionsE2eTest, UnreadablePlacementPath) {
  const JobEnd end = RunJobToTheEnd("--placement /nonexistent/plan.json");
  EXPECT_TRUE(EndedNonZeroOnItsOwn(end)) << "status " << end.status << "\n" << end.log;
  EXPECT_NE(end.log.find("--placement /nonexistent/plan.json: cannot open: No such file or directory"),
            std::string::npos)
      << end.log;
  EXPECT_EQ(end.log.find("Unexpected end of string"), std::string::npos) << end.log;
  EXPECT_EQ(end.log.find("starting 1 workers"), std::string::npos) << end.log;
}

// A pinned plan is parsed and checked when the coordinator reads it, before any worker starts:
// glmctl's table saved instead of its JSON ("placement plan JSON: Unexpected token." after the
// workers had started) and a plan for another world size are named as such.
TEST(RefusedLoadOptionsE2eTest, PinnedPlanTableOrWrongWorldSize) {
  const std::string plan = "/tmp/glm_e2e_plan_" + std::to_string(getpid()) + ".txt";
  const std::string make = std::string(GLM_GLMCTL_BIN) + " plan --model " + GLM_MODEL_DIR +
                           " --synthetic 'pack:1 numa:2 core:1' >" + plan;  // 2 workers, table + JSON
  ASSERT_EQ(std::system(make.c_str()), 0);
  JobEnd end = RunJobToTheEnd("--placement " + plan);
  EXPECT_TRUE(EndedNonZeroOnItsOwn(end)) << "status " << end.status << "\n" << end.log;
  EXPECT_NE(end.log.find("--placement " + plan + ": placement plan JSON: the file looks like glmctl's table output "
                         "(the plan saved without --json); save it with `glmctl plan --json ... > plan.json`"),
            std::string::npos)
      << end.log;
  EXPECT_EQ(end.log.find("starting 1 workers"), std::string::npos) << end.log;
  const std::string json = std::string(GLM_GLMCTL_BIN) + " plan --model " + GLM_MODEL_DIR +
                           " --synthetic 'pack:1 numa:2 core:1' --json >" + plan;
  ASSERT_EQ(std::system(json.c_str()), 0);
  end = RunJobToTheEnd("--placement " + plan);  // one worker
  std::remove(plan.c_str());
  EXPECT_TRUE(EndedNonZeroOnItsOwn(end)) << "status " << end.status << "\n" << end.log;
  EXPECT_NE(end.log.find("the plan is for a world of 3 ranks (2 shard workers + the coordinator); this one has 2 "
                         "(1 shard workers): start `-np 2 shard_worker` or plan for 1 workers"),
            std::string::npos)
      << end.log;
  EXPECT_EQ(end.log.find("starting 1 workers"), std::string::npos) << end.log;
}

// Planning flags with --placement ran the pinned plan as it was, with no message.
TEST(RefusedLoadOptionsE2eTest, PlanningFlagsWithAPinnedPlan) {
  const std::string plan = "/tmp/glm_e2e_plan_" + std::to_string(getpid()) + ".json";
  const std::string make = std::string(GLM_GLMCTL_BIN) + " plan --model " + GLM_MODEL_DIR +
                           " --synthetic 'pack:1 numa:1 core:1' --json >" + plan;
  ASSERT_EQ(std::system(make.c_str()), 0);
  for (const char* flag :
       {"--stages 2", "--expert-layout expert-tensor-parallel", "--memory-budget-gib 0.001", "--hot-expert-replicas 2"}) {
    const JobEnd end = RunJobToTheEnd(std::string(flag) + " --placement " + plan);
    const std::string name(flag, std::string(flag).find(' '));
    EXPECT_TRUE(EndedNonZeroOnItsOwn(end)) << flag << ": status " << end.status << "\n" << end.log;
    EXPECT_NE(end.log.find(name + " is a planning flag, and --placement " + plan + " pins a plan"), std::string::npos)
        << flag << "\n" << end.log;
    EXPECT_EQ(end.log.find("starting 1 workers"), std::string::npos) << end.log;
  }
  std::remove(plan.c_str());
}

// A pinned plan's budgets are checked against the KV cache the workers will allocate
// (--kv-cache-gib), not the reserve written in the file: a plan made for a 1 MiB KV cache with a
// 100 MiB budget ran with the default 1 GiB cache per worker.
TEST(RefusedLoadOptionsE2eTest, PinnedPlanBudgetsCountTheCoordinatorsKvCache) {
  const std::string plan = "/tmp/glm_e2e_plan_" + std::to_string(getpid()) + ".json";
  const std::string make = std::string(GLM_GLMCTL_BIN) + " plan --model " + GLM_MODEL_DIR +
                           " --synthetic 'pack:1 numa:1 core:1' --kv-cache-gib 0.001 --memory-budget-gib 0.1 --json >" +
                           plan;
  ASSERT_EQ(std::system(make.c_str()), 0);
  const JobEnd end = RunJobToTheEnd("--placement " + plan + " --kv-cache-gib 1");
  EXPECT_TRUE(EndedNonZeroOnItsOwn(end)) << "status " << end.status << "\n" << end.log;
  EXPECT_NE(end.log.find("KV reserve 1.0 GiB), budget 102.4 MiB"), std::string::npos) << end.log;
  EXPECT_NE(end.log.find("the KV reserve is this coordinator's --kv-cache-gib, 1 GiB per worker"), std::string::npos)
      << end.log;
  EXPECT_EQ(end.log.find("loaded in"), std::string::npos) << end.log;
  std::remove(plan.c_str());
}

// A pinned plan is checked against the model served (before any worker starts), its recounted
// bytes against its budgets (likewise), and its hosts against the workers' hellos; each of these
// ran before (a plan for GLM-5-FP8 on the tiny model, a 1 MiB budget, a NUMA node the worker lacks).
TEST(RefusedLoadOptionsE2eTest, PinnedPlanAgainstTheModelAndTheWorkers) {
  const std::string plan = "/tmp/glm_e2e_plan_" + std::to_string(getpid()) + ".json";
  const std::pair<std::string, std::string> cases[] = {
      {"s/\"model\": \"glm5-tiny-code\"/\"model\": \"GLM-5-FP8\"/",
       "the plan is for model 'GLM-5-FP8' but this coordinator serves 'glm5-tiny-code' (--model)"},
      {"s/\"memory_budget_bytes\": \"[0-9]*\"/\"memory_budget_bytes\": \"1048576\"/",
       "the model does not fit the plan's memory budgets (bytes recounted from the ranks' slices): rank 1 (host "
       "host0 NUMA node 0, stage 0, layers [0, 6)) needs 1.0 GiB"},
      {"s/\"numa_node\": 0/\"numa_node\": 5/", "rank 1 has numa_node 5 but host '"},
  };
  for (const auto& [edit, message] : cases) {
    const std::string make = std::string(GLM_GLMCTL_BIN) + " plan --model " + GLM_MODEL_DIR +
                             " --synthetic 'pack:1 numa:1 core:1' --json | sed '" + edit + "' >" + plan;
    ASSERT_EQ(std::system(make.c_str()), 0);
    const JobEnd end = RunJobToTheEnd("--placement " + plan);
    EXPECT_TRUE(EndedNonZeroOnItsOwn(end)) << edit << ": status " << end.status << "\n" << end.log;
    EXPECT_NE(end.log.find("--placement " + plan + ": " + message), std::string::npos) << edit << "\n" << end.log;
    EXPECT_EQ(end.log.find("loaded in"), std::string::npos) << end.log;
  }
  std::remove(plan.c_str());
}

// GiB flags that are not finite or are absurd: they were cast to bytes (undefined; INT64_MIN).
TEST(RefusedLoadOptionsE2eTest, NonFiniteOrHugeGibFlags) {
  const std::pair<const char*, const char*> cases[] = {
      {"--kv-cache-gib inf", "--kv-cache-gib must be a finite number of GiB from 0 to 1048576, got inf"},
      {"--expert-memory-gib 1e30",
       "--expert-memory-gib must be a finite number of GiB from 0 to 1048576 (0 = all routed experts resident), "
       "got 1e+30"},
      {"--memory-budget-gib nan",
       "--memory-budget-gib must be a finite number of GiB from 0 to 1048576 (0 = 90% of the NUMA node's share), "
       "got nan"},
  };
  for (const auto& [flags, message] : cases) {
    const JobEnd end = RunJobToTheEnd(flags);
    EXPECT_TRUE(EndedNonZeroOnItsOwn(end)) << flags << ": status " << end.status << "\n" << end.log;
    EXPECT_NE(end.log.find(message), std::string::npos) << flags << "\n" << end.log;
    // Refused at the flags, before the workers are started (also with --placement, where no
    // planner would look at them).
    EXPECT_EQ(end.log.find("starting 1 workers"), std::string::npos) << end.log;
  }
}

// glmctl: exit status and stderr of one command line.
JobEnd RunGlmctl(const std::string& args) {
  const std::string log = "/tmp/glm_e2e_glmctl_" + std::to_string(getpid()) + ".log";
  return RunCaptured(std::string("timeout -k 10 120 ") + GLM_GLMCTL_BIN + " " + args, log);
}

int ExitCode(const JobEnd& end) { return WIFEXITED(end.status) ? WEXITSTATUS(end.status) : -1; }

TEST(GlmctlFlagsE2eTest, SynthRefusesANonEmptyDirectoryWithoutForce) {
  const std::string dir = "/tmp/glm_e2e_synth_" + std::to_string(getpid());
  std::system(("rm -rf " + dir).c_str());
  JobEnd end = RunGlmctl("synth --preset tiny --out " + dir);
  ASSERT_EQ(ExitCode(end), 0) << end.log;
  end = RunGlmctl("synth --preset glm5 --out " + dir);
  EXPECT_EQ(ExitCode(end), 1) << end.log;
  EXPECT_NE(end.log.find("ALREADY_EXISTS: " + dir + " is not empty"), std::string::npos) << end.log;
  EXPECT_NE(end.log.find("or --force to replace the model files"), std::string::npos) << end.log;
  end = RunGlmctl("synth --preset glm5 --force --out " + dir);
  EXPECT_EQ(ExitCode(end), 0) << end.log;
  EXPECT_FALSE(std::ifstream(dir + "/model-00001-of-00004.safetensors").good()) << "old shards left";
  std::system(("rm -rf " + dir).c_str());
}

// --stream in one process: generate --prompt and chat print, as it is generated, exactly what
// they print at the end without it; other uses are refused.
TEST(GlmctlFlagsE2eTest, LocalStreamPrintsWhatThePlainRunPrints) {
  const std::string model = GLM_MODEL_DIR;
  for (const std::string& args :
       {"generate --model " + model + " --prompt 'def main():' --max-new-tokens 24 --threads 1",
        "chat --model " + model + " --message 'sort a list' --max-new-tokens 20 --threads 1"}) {
    const JobEnd plain = RunGlmctl(args);
    const JobEnd streamed = RunGlmctl(args + " --stream");
    ASSERT_EQ(ExitCode(plain), 0) << plain.log;
    ASSERT_EQ(ExitCode(streamed), 0) << streamed.log;
    EXPECT_EQ(streamed.log, plain.log) << args;
  }
  const JobEnd refused = RunGlmctl("generate --model " + model + " --tokens 1,2 --stream");
  EXPECT_EQ(ExitCode(refused), 2) << refused.log;
  EXPECT_NE(refused.log.find("--stream prints text: it needs generate --prompt or chat, and no --json"),
            std::string::npos) << refused.log;
}

TEST(GlmctlFlagsE2eTest, SizeAndThreadFlagsAreBounded) {
  const std::string model = GLM_MODEL_DIR;
  const std::pair<std::string, std::string> cases[] = {
      {"plan --model " + model + " --synthetic 'pack:1 numa:1 core:1' --kv-cache-gib inf",
       "--kv-cache-gib must be a finite number of GiB from 0 to 1048576, got inf"},
      {"plan --model " + model + " --synthetic 'pack:1 numa:1 core:1' --bandwidth-gbps nan",
       "--bandwidth-gbps must be a finite number of GB/s from 0 to 1048576 (0 = estimate), got nan"},
      {"generate --model " + model + " --tokens 1,2 --expert-memory-gib inf",
       "--expert-memory-gib must be a finite number of GiB from 0 to 1048576 (0 = all routed experts resident), "
       "got inf"},
      {"generate --model " + model + " --tokens 1,2 --threads 2000000000",
       "--threads must be 0..4096 (0 = all cores), got 2000000000"},
      {"generate --model " + model + " --tokens 1,2 --kv-cache-dtype f16",
       "--kv-cache-dtype 'f16' is not one of f32, bf16, int8, fp8 (= fp8_e4m3), auto"},
      {"generate --model " + model + " --tokens 1,2 --index-key-dtype fp16",
       "--index-key-dtype 'fp16' is not one of f32, bf16, int8, fp8 (= fp8_e4m3), auto"},
  };
  for (const auto& [args, message] : cases) {
    const JobEnd end = RunGlmctl(args);
    EXPECT_EQ(ExitCode(end), 2) << args << "\n" << end.log;
    EXPECT_NE(end.log.find(message), std::string::npos) << args << "\n" << end.log;
  }
}

// Values that gave garbage or never ended (a CLI review): NaN / infinite sampling flags sampled
// token 0 with exit status 0, huge --hosts and synthetic topologies ran for minutes or forever, a
// directory as --text-file tokenized as empty text, --timeout-s nan waited "within inf".
TEST(GlmctlFlagsE2eTest, NonFiniteHugeAndNonFileValuesAreRefused) {
  const std::string model = GLM_MODEL_DIR;
  const std::pair<std::string, std::string> cases[] = {
      {"generate --model " + model + " --tokens 1,2 --temperature nan", "--temperature must be a finite number >= 0"},
      {"generate --model " + model + " --tokens 1,2 --temperature inf", "--temperature must be a finite number >= 0"},
      {"generate --model " + model + " --tokens 1,2 --top-p nan", "--top_p must be in (0, 1]"},
      {"generate --model " + model + " --tokens 1,2 --repetition-penalty inf",
       "--repetition-penalty must be a finite number > 0"},
      {"plan --model " + model + " --synthetic 'pack:1 numa:1 core:1' --hosts 2000000000",
       "--hosts must be 1..4096, got 2000000000"},
      {"plan --model " + model + " --synthetic 'numa:20000 core:100'", "more than 65536 objects of one level"},
      {"tokenize --tokenizer " + model + " --text-file /tmp", "/tmp: not a regular file"},
      {"--server 127.0.0.1:1 info --timeout-s nan", "--timeout-s must be in (0, 86400] seconds, got nan"},
  };
  for (const auto& [args, message] : cases) {
    const JobEnd end = RunGlmctl(args);
    EXPECT_NE(ExitCode(end), 0) << args << "\n" << end.log;
    EXPECT_NE(end.log.find(message), std::string::npos) << args << "\n" << end.log;
  }
}

// glmctl plan's --kv-cache-gib defaults to the coordinator's 1 GiB (it was 0: a budget that
// fitted in glmctl failed in the coordinator).
TEST(GlmctlFlagsE2eTest, PlanReservesTheCoordinatorsKvCacheByDefault) {
  const JobEnd end = RunGlmctl(std::string("plan --model ") + GLM_MODEL_DIR +
                               " --synthetic 'numa:1 core:2' --memory-budget-gib 0.5");
  EXPECT_EQ(ExitCode(end), 1) << end.log;
  EXPECT_NE(end.log.find("KV reserve 1.0 GiB"), std::string::npos) << end.log;
}

}  // namespace
}  // namespace glm
