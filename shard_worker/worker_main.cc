// bin/shard_worker: one MPI rank (>= 1) holding a slice of the model on one NUMA node.
//   mpirun -np 1 coordinator --model DIR ... : -np N shard_worker [--threads T] [--bind auto|none]
#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "numa/binding.h"
#include "shard_worker/kernels/int8_row_dots.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/matmul_amx.h"
#include "shard_worker/model/aligned_buffer.h"
#include "numa/topology.h"
#include "shard_worker/comm/mpi_communicator.h"
#include "shard_worker/runtime/dashed_flags.h"
#include "shard_worker/runtime/worker_service.h"

ABSL_FLAG(std::string, matmul_path, "auto",
          "matmul kernels: auto (the fastest this CPU has) or a path it supports (avx512, avx512_f16c_fp8, avx2, portable)");
ABSL_FLAG(bool, amx_tiles, true,
          "with --activation-dtype bf16 on CPUs with AMX: matmuls on AMX tiles (prefill ~1.6x the vdpbf16ps kernels, "
          "batch-1 decode ~13% slower); false: vdpbf16ps. Startup logs which one runs");
ABSL_FLAG(bool, kv_prefault, true,
          "write the whole KV cache once at start-up: its memory is committed and NUMA-local before serving, and "
          "decode steps take no page faults; false: pages are taken as blocks are first written");
ABSL_FLAG(int32_t, threads, 0, "compute threads (0 = the cores the plan gives this rank)");
ABSL_FLAG(std::string, bind, "auto",
          "auto: bind to a NUMA node with hwloc unless the launcher already bound to one; none: leave as started");
ABSL_FLAG(int32_t, signal_grace_s, 60,
          "after SIGINT/SIGTERM, wait this long for the coordinator to shut this worker down (it drains its requests "
          "first) before stopping here; a second signal stops at once; 0 = stop at the first signal");

namespace {

std::string Hostname() {
  char name[256] = {0};
  gethostname(name, sizeof name - 1);
  return name;
}

// Open MPI's local rank (launcher information, read once here in main).
int LocalRank() {
  const char* v = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  if (v == nullptr) v = std::getenv("SLURM_LOCALID");
  return v ? std::atoi(v) : 0;
}

// SIGINT and SIGTERM, blocked in every thread (set before MPI and the compute threads start, which
// inherit the mask) and taken by one thread with sigwait.
sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// Under srun (scancel, a time limit) or systemd every rank gets the stop signal at once. The
// coordinator answers it by draining its running requests and then shutting the workers down,
// which it can only do while they are there: a worker that died at the signal failed every
// running request instead. So a worker leaves its stop to the coordinator; a second signal, or
// no shutdown within `grace_s`, ends it here with the signal's default action.
void TakeStopSignals(int grace_s, const std::function<void(const std::string&)>& log) {
  std::thread([grace_s, log] {
    const sigset_t set = StopSignals();
    int sig = 0;
    if (sigwait(&set, &sig) != 0) return;
    if (grace_s > 0) {
      log(absl::StrCat("signal ", sig, ": the coordinator stops this worker once it has drained; a second signal, or ",
                       grace_s, " s without its shutdown, stops it here"));
      const timespec wait = {grace_s, 0};
      const int second = sigtimedwait(&set, nullptr, &wait);
      log(second > 0 ? absl::StrCat("signal ", second, " again: stopping now")
                     : absl::StrCat("no shutdown from the coordinator within ", grace_s, " s: stopping"));
    }
    std::signal(sig, SIG_DFL);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    raise(sig);
    _exit(128 + sig);
  }).detach();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "one MPI rank (>= 1) of a GLM-5 cluster, holding the slice of the model the coordinator plans for it:\n"
      "  mpirun -np 1 coordinator --model DIR ... : -np N shard_worker [--threads T] [--bind auto|none]\n"
      "(deploy/launch.sh writes this command line)");
  // --help lists this file's flags: abseil's default matches only files named after the binary
  // (shard_worker.cc, shard_worker_main.cc), so it found none here.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) { return absl::EndsWith(file, "shard_worker/worker_main.cc"); };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  glm::runtime::NormalizeDashedFlags(argc, argv);
  const sigset_t stop_signals = StopSignals();
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  auto session = glm::comm::MpiSession::Init(&argc, &argv);
  if (!session.ok()) {
    std::fprintf(stderr, "shard_worker: %s\n", std::string(session.status().message()).c_str());
    return 1;
  }
  absl::ParseCommandLine(argc, argv);
  auto world = (*session)->World();
  const int rank = world->rank();
  auto log = [rank](const std::string& m) { std::fprintf(stderr, "[worker %d] %s\n", rank, m.c_str()); };
  if (rank == 0) {
    log("rank 0 is the coordinator's: start shard_worker as ranks 1..N (mpirun -np 1 coordinator ... : -np N shard_worker)");
    glm::comm::MpiSession::Abort(2);
  }
  const int grace_s = absl::GetFlag(FLAGS_signal_grace_s);
  if (grace_s < 0 || grace_s > 86400) {
    log(absl::StrCat("--signal_grace_s must be 0..86400 seconds, got ", grace_s));
    glm::comm::MpiSession::Abort(2);
  }
  TakeStopSignals(grace_s, log);
  if (std::string err = glm::kernels::SelectMatMulPath(absl::GetFlag(FLAGS_matmul_path)); !err.empty()) {
    log(err);
    glm::comm::MpiSession::Abort(2);
  }

  glm::kernels::SetAmxTilesEnabled(absl::GetFlag(FLAGS_amx_tiles));

  glm::runtime::WorkerOptions options;
  options.threads = absl::GetFlag(FLAGS_threads);
  if (options.threads < 0 || options.threads > 4096) {  // as the plan's cores (placement::kMaxRankCores)
    log(absl::StrCat("--threads must be 0..4096 (0 = the cores the plan gives this rank), got ", options.threads));
    glm::comm::MpiSession::Abort(2);
  }
  options.log = log;
  options.prefault_kv = absl::GetFlag(FLAGS_kv_prefault);
  const std::string host = Hostname();
  const std::string bind_mode = absl::GetFlag(FLAGS_bind);
  if (bind_mode != "auto" && bind_mode != "none") {
    log(absl::StrCat("--bind must be auto or none, got '", bind_mode, "'"));
    glm::comm::MpiSession::Abort(2);
  }
  auto topology = glm::numa::Topology::Local();
  int node = -1;
  if (topology.ok()) {
    *options.hello.mutable_topology() = (*topology)->ToProto(host);
    const auto nodes = (*topology)->NumaNodeOsIndexes();
    // The node this rank should use: one per local rank, round robin (the launchers start one
    // worker per node and leave binding to us: mpirun --bind-to none, srun --cpu-bind=none).
    const int local_rank = LocalRank();
    const int assigned = nodes.empty() ? -1 : nodes[local_rank % nodes.size()];
    // "Already bound" means the cpus this process MAY run on lie in one node (taskset, numactl,
    // mpirun --bind-to numa), not the cpu it last ran on, which is always in some node.
    const int launcher_node = glm::numa::NumaNodeOfProcessBinding(**topology);
    bool pin = true;
    if (nodes.size() <= 1) {
      node = nodes.empty() ? -1 : nodes.front();
      log("one NUMA node on this host: no NUMA binding needed");
    } else if (launcher_node >= 0) {
      node = launcher_node;
      log(absl::StrCat("already bound within NUMA node ", node, " (by the launcher): keeping that binding"));
    } else if (bind_mode == "none") {
      node = assigned;
      pin = false;
      log(absl::StrCat("--bind none: not binding (cpus span NUMA nodes); NUMA node ", node,
                       " (local rank ", local_rank, ") reported to the planner, compute threads not pinned"));
    } else {
      node = assigned;
      if (auto s = glm::numa::BindProcessToNumaNode(**topology, node); !s.ok()) {
        log(absl::StrCat("could not bind to NUMA node ", node, " (local rank ", local_rank, "): ", s.message()));
      } else {
        log(absl::StrCat("bound cpus and memory to NUMA node ", node, " (local rank ", local_rank, " of ",
                         nodes.size(), " nodes)"));
      }
    }
    if (pin) {
      const glm::numa::Topology* topo = topology->get();
      const int bound = node;
      options.pin_thread = [topo, bound](int index) { return glm::numa::BindThisThreadToCore(*topo, bound, index); };
    }
  } else {
    log(absl::StrCat("hwloc topology unavailable: ", topology.status().message()));
    options.hello.mutable_topology()->set_hostname(host);
  }
  options.hello.set_hostname(host);
  options.hello.set_pid(static_cast<int64_t>(getpid()));
  options.hello.set_bound_numa_node(node);
  options.hello.set_binding(glm::numa::DescribeBinding());
  log(absl::StrCat("binding: ", options.hello.binding()));
  log(absl::StrCat("matmul path: ", glm::kernels::MatMulPathDetails(),
                   absl::GetFlag(FLAGS_matmul_path) == "auto" ? " (chosen for this CPU at run time)" : " (--matmul-path)",
                   "; int8 KV rows: ",
                   glm::kernels::Int8RowDotsPath()));
  log(glm::model::HugePageStatus());

  absl::Status status = glm::runtime::RunWorker(world.get(), options);
  if (!status.ok()) {
    log(absl::StrCat("stopping: ", status.message()));
    world.reset();
    session->reset();
    return 1;
  }
  return 0;
}
