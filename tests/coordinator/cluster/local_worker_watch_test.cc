// LocalWorkerWatch against real processes: a child that runs, exits (reaped or a zombie), and
// processes that must never be watched (another host, another program).
#include "coordinator/cluster/local_worker_watch.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace glm::cluster {
namespace {

std::string ThisHost() {
  char name[256] = {0};
  gethostname(name, sizeof name - 1);
  return name;
}

// A child running `sleep 60` (its /proc comm is "sleep").
pid_t StartSleeper() {
  const pid_t pid = fork();
  if (pid == 0) {
    execlp("sleep", "sleep", "60", static_cast<char*>(nullptr));
    _exit(127);
  }
  // Until exec has happened the child's name is still this test's.
  for (int i = 0; i < 200; ++i) {
    FILE* f = fopen(("/proc/" + std::to_string(pid) + "/comm").c_str(), "r");
    char name[64] = {0};
    if (f != nullptr) {
      fgets(name, sizeof name, f);
      fclose(f);
    }
    if (std::string(name) == "sleep\n") break;
    usleep(10000);
  }
  return pid;
}

shard::WorkerHello Hello(int rank, const std::string& host, pid_t pid) {
  shard::WorkerHello h;
  h.set_rank(rank);
  h.set_hostname(host);
  h.set_pid(pid);
  return h;
}

TEST(LocalWorkerWatchTest, AKilledWorkerIsNamedReapedOrNot) {
  for (bool reap : {true, false}) {
    const pid_t child = StartSleeper();
    ASSERT_GT(child, 0);
    LocalWorkerWatch watch(ThisHost(), "sleep");
    ASSERT_TRUE(watch.Add(Hello(3, ThisHost(), child)));
    EXPECT_EQ(watch.watched(), 1);
    EXPECT_TRUE(watch.Check().ok());
    kill(child, SIGKILL);
    if (reap) {
      waitpid(child, nullptr, 0);
    } else {
      // Dead but not reaped (a zombie until its parent waits): exited all the same.
      for (int i = 0; i < 200 && LocalWorkerWatch::StartTimeOfLiveProcess(child) >= 0; ++i) usleep(10000);
    }
    const absl::Status s = watch.Check();
    EXPECT_TRUE(absl::IsUnavailable(s)) << s;
    EXPECT_NE(s.message().find("worker rank 3 (pid " + std::to_string(child)), std::string::npos) << s;
    EXPECT_NE(s.message().find("exited"), std::string::npos) << s;
    if (!reap) waitpid(child, nullptr, 0);
  }
}

TEST(LocalWorkerWatchTest, OnlyLiveProcessesOfThisHostAndTheWorkersNameAreWatched) {
  const pid_t child = StartSleeper();
  ASSERT_GT(child, 0);
  LocalWorkerWatch watch(ThisHost());  // expects "shard_worker": a `sleep` is not a worker
  EXPECT_FALSE(watch.Add(Hello(1, ThisHost(), child)));
  LocalWorkerWatch sleeper_watch(ThisHost(), "sleep");
  EXPECT_FALSE(sleeper_watch.Add(Hello(1, ThisHost() + "-elsewhere", child)));  // another host
  EXPECT_FALSE(sleeper_watch.Add(Hello(1, ThisHost(), 0)));                      // no pid (an old worker)
  EXPECT_FALSE(sleeper_watch.Add(Hello(1, ThisHost(), -5)));
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_FALSE(sleeper_watch.Add(Hello(1, ThisHost(), child)));  // already gone
  EXPECT_EQ(sleeper_watch.watched(), 0);
  EXPECT_TRUE(sleeper_watch.Check().ok());
  EXPECT_EQ(LocalWorkerWatch::StartTimeOfLiveProcess(getpid()) > 0, true);
  EXPECT_EQ(LocalWorkerWatch::StartTimeOfLiveProcess(0), -1);
}

}  // namespace
}  // namespace glm::cluster
