#include "coordinator/cluster/local_worker_watch.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace glm::cluster {
namespace {

std::string ProcessName(int64_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/comm"));
  std::string name;
  std::getline(in, name);
  return name;
}

}  // namespace

int64_t LocalWorkerWatch::StartTimeOfLiveProcess(int64_t pid) {
  if (pid <= 0) return -1;
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat;
  if (!in || !std::getline(in, stat)) return -1;
  // "PID (comm) STATE PPID ...": comm may hold spaces and parentheses, so fields count from the
  // last ')'. After it: state is field 3, starttime field 22.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  const std::vector<std::string> fields = absl::StrSplit(stat.substr(close + 1), ' ', absl::SkipEmpty());
  if (fields.size() < 20) return -1;
  if (fields[0] == "Z" || fields[0] == "X" || fields[0] == "x") return -1;  // exited, not yet reaped
  int64_t start = -1;
  std::istringstream(fields[19]) >> start;
  return start;
}

bool LocalWorkerWatch::Add(const shard::WorkerHello& hello) {
  if (hello.pid() <= 0 || hello.hostname() != this_host_) return false;
  if (ProcessName(hello.pid()) != expected_name_) return false;
  const int64_t start = StartTimeOfLiveProcess(hello.pid());
  if (start < 0) return false;
  watched_.push_back({hello.rank(), hello.pid(), start});
  return true;
}

absl::Status LocalWorkerWatch::Check() const {
  for (const Watched& w : watched_)
    if (StartTimeOfLiveProcess(w.pid) != w.start_time)
      return absl::UnavailableError(
          absl::StrCat("worker rank ", w.rank, " (pid ", w.pid, " on ", this_host_, ") exited"));
  return absl::OkStatus();
}

}  // namespace glm::cluster
