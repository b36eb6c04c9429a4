// --scheduling-policy priority: the order requests start in, which running request gives its place
// up, and that preempted requests still give exactly their tokens. Scheduling decisions over a
// scripted last stage (no model); exactness over a real in-process cluster.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "tests/coordinator/scheduler/engine_harness.h"

namespace glm::scheduler {
namespace {

// A last stage that samples token 7 for every sequence, records every sequence step, and can hold
// its `hold_at`-th step (1-based) until released, so that a test can submit while it runs.
struct ScriptedStage : StepRunner {
  explicit ScriptedStage(int hold_at = 0) : hold_at(hold_at) {}
  absl::StatusOr<shard::StepResult> Step(const shard::StepPlan& plan) override {
    int step = 0;
    {
      absl::MutexLock lock(&mu);
      step = ++steps;
      for (const auto& s : plan.sequences()) history.push_back({steps, s});
    }
    if (on_step) on_step(step);
    if (steps == hold_at) {
      holding.Notify();
      release.WaitForNotification();
    }
    return SampleEverySequence(plan);
  }
  struct Entry {
    int step;
    shard::SequenceStep seq;
  };
  // Sequence ids in the order of their first step.
  std::vector<uint64_t> FirstSeen() {
    absl::MutexLock lock(&mu);
    std::vector<uint64_t> out;
    for (const Entry& e : history)
      if (std::find(out.begin(), out.end(), e.seq.seq_id()) == out.end()) out.push_back(e.seq.seq_id());
    return out;
  }
  // Steps (1-based) in which sequence `id` took part, and those that started it from position 0.
  std::vector<int> StepsOf(uint64_t id, bool from_zero_only = false) {
    absl::MutexLock lock(&mu);
    std::vector<int> out;
    for (const Entry& e : history)
      if (e.seq.seq_id() == id && (!from_zero_only || e.seq.start_position() == 0)) out.push_back(e.step);
    return out;
  }

  const int hold_at;
  std::function<void(int step)> on_step;  // called as each step starts (1-based)
  absl::Notification holding, release;
  absl::Mutex mu;
  int steps = 0;
  std::vector<Entry> history;
};

GenerationRequest WithPriority(std::vector<int32_t> prompt, int max_tokens, int32_t priority, std::string id = "") {
  GenerationRequest r = Greedy(std::move(prompt), max_tokens, std::move(id));
  r.priority = priority;
  return r;
}

// Reads a stream to its end; the number of tokens it gave (-1 on an error). `first`: its first event.
int64_t Drain(const std::shared_ptr<RequestStream>& stream, GenerationEvent* first = nullptr) {
  GenerationEvent e;
  int64_t tokens = 0;
  while (stream->Next(&e, absl::Seconds(60))) {
    if (tokens == 0 && first != nullptr) *first = e;
    tokens += static_cast<int64_t>(e.tokens.size());
    if (e.finished) return e.error.ok() ? tokens : -1;
  }
  return -1;
}

EngineOptions PriorityOptions(int64_t max_context, int32_t kv_blocks, int32_t max_running) {
  EngineOptions o = ScriptedEngineOptions(max_context, kv_blocks);
  o.scheduling_policy = SchedulingPolicy::kPriority;
  o.max_running = max_running;
  return o;
}

TEST(EnginePriorityTest, ThePolicyIsParsedByName) {
  SchedulingPolicy p = SchedulingPolicy::kPriority;
  EXPECT_TRUE(ParseSchedulingPolicy("fcfs", &p));
  EXPECT_EQ(p, SchedulingPolicy::kFcfs);
  EXPECT_TRUE(ParseSchedulingPolicy("priority", &p));
  EXPECT_EQ(p, SchedulingPolicy::kPriority);
  EXPECT_FALSE(ParseSchedulingPolicy("lifo", &p));
  EXPECT_FALSE(ParseSchedulingPolicy("", &p));
}

// Waiting requests start by priority (lower first), equal priorities in arrival order; under fcfs
// in arrival order, and a non-zero priority is refused (vLLM's rule) rather than ignored.
TEST(EnginePriorityTest, WaitingRequestsStartByPriorityThenArrival) {
  for (const bool priority : {true, false}) {
    ScriptedStage stage;
    EngineOptions o = PriorityOptions(64, 16, /*max_running=*/1);
    if (!priority) o.scheduling_policy = SchedulingPolicy::kFcfs;
    auto engine = Engine::Create(&stage, o);
    ASSERT_TRUE(engine.ok()) << engine.status();
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (int32_t p : {0, 5, -1, 5, 0}) {  // seq ids 1..5
      auto s = (*engine)->Submit(WithPriority({1, 2, 3}, 2, priority ? p : 0));
      ASSERT_TRUE(s.ok()) << s.status();
      streams.push_back(*s);
    }
    if (!priority) {
      auto refused = (*engine)->Submit(WithPriority({1, 2, 3}, 2, 5));
      ASSERT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(refused.status().message(),
                "priority: got 5 but priority scheduling is not enabled (--scheduling-policy priority)");
    }
    std::thread loop([&] { (void)(*engine)->RunLoop(); });
    for (const auto& s : streams) EXPECT_EQ(Drain(s), 2);
    (*engine)->Shutdown(false);
    loop.join();
    EXPECT_EQ(stage.FirstSeen(), priority ? (std::vector<uint64_t>{3, 1, 5, 2, 4}) : (std::vector<uint64_t>{1, 2, 3, 4, 5}));
    EXPECT_EQ((*engine)->GetLoad().preemptions, 0) << "strictly ordered arrivals preempt nothing";
  }
}

// A request arriving while every running slot is taken preempts the running request of the
// highest priority value (not the newest, as fcfs would), which recomputes from position 0 later;
// the others keep decoding through it.
TEST(EnginePriorityTest, AWaitingRequestTakesTheSlotOfTheLowestPriorityRunningOne) {
  ScriptedStage stage(/*hold_at=*/3);
  EngineOptions o = PriorityOptions(64, 16, /*max_running=*/2);
  absl::Mutex log_mu;
  std::vector<std::string> logged;
  o.log_event = [&](const std::string& event, const std::string& id, const std::string& detail) {
    absl::MutexLock lock(&log_mu);
    logged.push_back(absl::StrCat(event, " ", id, ": ", detail));
  };
  auto engine = Engine::Create(&stage, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto low = (*engine)->Submit(WithPriority({1, 2, 3}, 20, 5, "low"));      // seq 1
  auto middle = (*engine)->Submit(WithPriority({4, 5, 6}, 20, 1, "mid"));   // seq 2, newer
  ASSERT_TRUE(low.ok() && middle.ok());
  std::thread loop([&] { (void)(*engine)->RunLoop(); });
  stage.holding.WaitForNotification();  // both decoding
  auto high = (*engine)->Submit(WithPriority({7, 8, 9}, 3, 0, "high"));     // seq 3
  ASSERT_TRUE(high.ok());
  stage.release.Notify();
  EXPECT_EQ(Drain(*high), 3);
  EXPECT_EQ(Drain(*middle), 20);
  EXPECT_EQ(Drain(*low), 20);
  (*engine)->Shutdown(false);
  loop.join();
  EXPECT_EQ((*engine)->GetLoad().preemptions, 1);
  const int high_start = stage.StepsOf(3).front();
  EXPECT_EQ(high_start, 4) << "the step after it arrived";
  // The low one stepped aside while the high one ran, and came back from position 0.
  const std::vector<int> low_steps = stage.StepsOf(1);
  const int high_end = stage.StepsOf(3).back();
  for (int s : low_steps) EXPECT_TRUE(s < high_start || s > high_end) << "step " << s;
  EXPECT_EQ(stage.StepsOf(1, /*from_zero_only=*/true).size(), 2u);
  // The middle one decoded in every step from its first to its last.
  const std::vector<int> mid = stage.StepsOf(2);
  EXPECT_EQ(mid.back() - mid.front() + 1, static_cast<int>(mid.size()));
  EXPECT_EQ(stage.StepsOf(2, /*from_zero_only=*/true).size(), 1u);
  absl::MutexLock lock(&log_mu);
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_EQ(logged[0].rfind("request_preempted low: ", 0), 0u) << logged[0];
  EXPECT_NE(logged[0].find("priority 5, for request high of priority 0"), std::string::npos) << logged[0];
}

// Equal priorities never preempt each other (no ping-pong): the newcomer waits for a free slot.
TEST(EnginePriorityTest, EqualPrioritiesWaitTheirTurn) {
  ScriptedStage stage(/*hold_at=*/2);
  auto engine = Engine::Create(&stage, PriorityOptions(64, 16, /*max_running=*/1));
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto first = (*engine)->Submit(WithPriority({1, 2, 3}, 10, 3));
  ASSERT_TRUE(first.ok());
  std::thread loop([&] { (void)(*engine)->RunLoop(); });
  stage.holding.WaitForNotification();
  auto same = (*engine)->Submit(WithPriority({4, 5, 6}, 2, 3));
  auto lower = (*engine)->Submit(WithPriority({4, 5, 6}, 2, 4));
  ASSERT_TRUE(same.ok() && lower.ok());
  absl::SleepFor(absl::Milliseconds(20));  // the newcomers wait at least this long
  stage.release.Notify();
  GenerationEvent first_of_first, first_of_same;
  EXPECT_EQ(Drain(*first, &first_of_first), 10);
  EXPECT_EQ(Drain(*same, &first_of_same), 2);
  EXPECT_EQ(Drain(*lower), 2);
  // The first event carries the engine's times for vLLM's phase histograms: queued (Submit), first
  // scheduled, first token; the newcomer was scheduled only after the first request ended.
  for (const GenerationEvent& e : {first_of_first, first_of_same}) {
    EXPECT_LE(e.times.queued, e.times.scheduled);
    EXPECT_LE(e.times.scheduled, e.times.first_token);
  }
  EXPECT_GE(first_of_same.times.scheduled - first_of_same.times.queued, absl::Milliseconds(20));
  (*engine)->Shutdown(false);
  loop.join();
  EXPECT_EQ((*engine)->GetLoad().preemptions, 0);
  EXPECT_EQ(stage.FirstSeen(), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_LT(stage.StepsOf(1).back(), stage.StepsOf(2).front());
}

// Short of KV blocks, a waiting request preempts lower-priority running ones only when that frees
// enough: here the only one it outranks holds 1 of the 3 blocks it lacks, so nobody is preempted;
// it starts once the higher-priority request ends (the other ended meanwhile).
TEST(EnginePriorityTest, NobodyIsPreemptedWhenThatWouldNotMakeRoom) {
  ScriptedStage stage(/*hold_at=*/2);
  // 4 blocks of 16 positions.
  auto engine = Engine::Create(&stage, PriorityOptions(64, 4, /*max_running=*/8));
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto top = (*engine)->Submit(WithPriority(std::vector<int32_t>(20, 3), 12, 0));  // 2 blocks throughout
  auto low = (*engine)->Submit(WithPriority(std::vector<int32_t>(5, 4), 4, 5));    // 1 block
  ASSERT_TRUE(top.ok() && low.ok());
  std::thread loop([&] { (void)(*engine)->RunLoop(); });
  stage.holding.WaitForNotification();
  auto big = (*engine)->Submit(WithPriority(std::vector<int32_t>(50, 5), 2, 1));  // 4 blocks
  ASSERT_TRUE(big.ok());
  stage.release.Notify();
  EXPECT_EQ(Drain(*top), 12);
  EXPECT_EQ(Drain(*low), 4);
  EXPECT_EQ(Drain(*big), 2);
  (*engine)->Shutdown(false);
  loop.join();
  EXPECT_EQ((*engine)->GetLoad().preemptions, 0);
  EXPECT_EQ(stage.StepsOf(2, /*from_zero_only=*/true).size(), 1u);
  EXPECT_GT(stage.StepsOf(3).front(), stage.StepsOf(1).back());
}

// Short of KV blocks, a waiting request of a lower value takes the blocks of running requests of
// higher values, the highest first and no more of them than it needs.
TEST(EnginePriorityTest, AWaitingRequestTakesTheBlocksItNeedsFromTheLowestPriorities) {
  ScriptedStage stage(/*hold_at=*/2);
  auto engine = Engine::Create(&stage, PriorityOptions(64, 4, /*max_running=*/8));
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto a = (*engine)->Submit(WithPriority(std::vector<int32_t>(5, 3), 10, 2));  // 1 block each
  auto b = (*engine)->Submit(WithPriority(std::vector<int32_t>(5, 4), 10, 7));
  auto c = (*engine)->Submit(WithPriority(std::vector<int32_t>(5, 5), 10, 4));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  std::thread loop([&] { (void)(*engine)->RunLoop(); });
  stage.holding.WaitForNotification();
  // 2 blocks: the 1 free one and b's (priority 7); c (4) and a (2) keep running.
  auto urgent = (*engine)->Submit(WithPriority(std::vector<int32_t>(20, 6), 4, 1));
  ASSERT_TRUE(urgent.ok());
  stage.release.Notify();
  EXPECT_EQ(Drain(*urgent), 4);
  EXPECT_EQ(Drain(*a), 10);
  EXPECT_EQ(Drain(*b), 10);
  EXPECT_EQ(Drain(*c), 10);
  (*engine)->Shutdown(false);
  loop.join();
  EXPECT_EQ((*engine)->GetLoad().preemptions, 1);
  EXPECT_EQ(stage.StepsOf(2, /*from_zero_only=*/true).size(), 2u) << "b recomputed";
  EXPECT_EQ(stage.StepsOf(1, /*from_zero_only=*/true).size(), 1u);
  EXPECT_EQ(stage.StepsOf(3, /*from_zero_only=*/true).size(), 1u);
}

// Two running requests share their prompt's first block through the prefix cache: preempting both
// frees it too, so a newcomer that needs it with their own blocks starts at once.
TEST(EnginePriorityTest, ABlockTwoVictimsShareCountsAsFreedWhenBothYield) {
  ScriptedStage stage(/*hold_at=*/3);
  // 5 blocks of 16 positions.
  auto engine = Engine::Create(&stage, PriorityOptions(80, 5, /*max_running=*/8));
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto prompt = [](int32_t tail) {
    std::vector<int32_t> p(16, 3);  // the shared full block
    p.insert(p.end(), 5, tail);
    return p;
  };
  auto first = (*engine)->Submit(WithPriority(prompt(4), 11, 5));  // seq 1: 2 blocks throughout
  ASSERT_TRUE(first.ok());
  absl::StatusOr<std::shared_ptr<RequestStream>> second;
  // seq 2 arrives once seq 1's prompt is cached: it holds the first block with seq 1, and one more.
  stage.on_step = [&](int step) {
    if (step == 1) second = (*engine)->Submit(WithPriority(prompt(5), 11, 6));
  };
  std::thread loop([&] { (void)(*engine)->RunLoop(); });
  stage.holding.WaitForNotification();
  ASSERT_TRUE(second.ok());
  // 70 prompt tokens and the first output: all 5 blocks. 2 are free; the victims free 3.
  auto urgent = (*engine)->Submit(WithPriority(std::vector<int32_t>(70, 9), 2, 0));  // seq 3
  ASSERT_TRUE(urgent.ok());
  stage.release.Notify();
  EXPECT_EQ(Drain(*urgent), 2);
  EXPECT_EQ(Drain(*first), 11);
  EXPECT_EQ(Drain(*second), 11);
  (*engine)->Shutdown(false);
  loop.join();
  ASSERT_FALSE(stage.StepsOf(2).empty());
  {
    absl::MutexLock lock(&stage.mu);
    for (const ScriptedStage::Entry& e : stage.history)
      if (e.seq.seq_id() == 2) {
        EXPECT_EQ(e.seq.start_position(), 16) << "seq 2 did not share seq 1's first block";
        break;
      }
  }
  EXPECT_EQ((*engine)->GetLoad().preemptions, 2);
  EXPECT_EQ(stage.StepsOf(3).front(), 4) << "the step after it arrived";
}

// While a request of a lower value waits, a running prompt of a higher value does not take the
// prefill budget: the waiting one starts at once instead of after the whole long prompt.
TEST(EnginePriorityTest, ALowPriorityPrefillLeavesTheBudgetToAWaitingHighPriorityRequest) {
  ScriptedStage stage(/*hold_at=*/1);
  EngineOptions o = PriorityOptions(1024, 64, /*max_running=*/8);
  o.prefill_chunk = 64;
  auto engine = Engine::Create(&stage, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto long_prompt = (*engine)->Submit(WithPriority(std::vector<int32_t>(640, 3), 2, 9));  // 10 chunks
  ASSERT_TRUE(long_prompt.ok());
  std::thread loop([&] { (void)(*engine)->RunLoop(); });
  stage.holding.WaitForNotification();  // its first chunk
  auto quick = (*engine)->Submit(WithPriority(std::vector<int32_t>(40, 4), 2, 0));
  ASSERT_TRUE(quick.ok());
  stage.release.Notify();
  EXPECT_EQ(Drain(*quick), 2);
  EXPECT_EQ(Drain(*long_prompt), 2);
  (*engine)->Shutdown(false);
  loop.join();
  EXPECT_EQ(stage.StepsOf(2).front(), 2) << "the quick request's prompt went in the next step";
  EXPECT_EQ((*engine)->GetLoad().preemptions, 0) << "the long prompt kept its blocks";
}

// A ClusterStepRunner that holds its `hold_at`-th step (before the workers get it) until released.
struct HoldingClusterRunner : ClusterStepRunner {
  HoldingClusterRunner(cluster::ClusterClient* client, int hold_at) : ClusterStepRunner(client), hold_at(hold_at) {}
  absl::Status Submit(const shard::StepPlan& plan) override {
    if (++steps == hold_at) {
      holding.Notify();
      release.WaitForNotification();
    }
    return ClusterStepRunner::Submit(plan);
  }
  const int hold_at;
  int steps = 0;
  absl::Notification holding, release;
};

// Over the real model: a request preempted for a higher-priority one, and the one that took its
// place, each give exactly the tokens they give alone — one stage, two stages with two steps in
// flight (a sequence in flight is never the one preempted: its step still writes its blocks), and
// with MTP drafts (a preempted sequence's drafts and chained draft rows go with its blocks).
TEST(EnginePriorityTest, PreemptedRequestsStayExact) {
  const std::vector<int32_t> prompts[3] = {Prompt(41, 37), Prompt(43, 21), Prompt(42, 29)};
  const int lengths[3] = {40, 30, 12};
  std::vector<int32_t> alone[3];
  for (int i = 0; i < 3; ++i) alone[i] = SingleProcessGreedy(prompts[i], lengths[i]);
  for (const auto& [stages, speculative] : std::vector<std::pair<int, std::string>>{{1, ""}, {2, ""}, {1, "mtp:2"}}) {
    SCOPED_TRACE(absl::StrCat(stages, " stages, speculative '", speculative, "'"));
    EngineOptions o;
    o.scheduling_policy = SchedulingPolicy::kPriority;
    o.max_running = 2;
    o.max_steps_in_flight = stages;
    o.speculative = speculative;
    EngineHarness h("glm5-tiny-code", stages, stages, 64, 16, o, 1, [](cluster::ClusterClient* client) {
      return std::make_unique<HoldingClusterRunner>(client, /*hold_at=*/6);
    });
    auto* runner = static_cast<HoldingClusterRunner*>(h.runner());
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (int i = 0; i < 2; ++i) {  // priorities 3 and 5
      auto s = h.engine()->Submit(WithPriority(prompts[i], lengths[i], 3 + 2 * i));
      ASSERT_TRUE(s.ok()) << s.status();
      streams.push_back(*s);
    }
    runner->holding.WaitForNotification();  // both decoding
    auto high = h.engine()->Submit(WithPriority(prompts[2], lengths[2], -2));
    ASSERT_TRUE(high.ok()) << high.status();
    streams.push_back(*high);
    runner->release.Notify();
    for (int i : {2, 0, 1}) {
      std::vector<int32_t> tokens;
      GenerationEvent e;
      while (streams[i]->Next(&e, absl::Seconds(60))) {
        tokens.insert(tokens.end(), e.tokens.begin(), e.tokens.end());
        if (e.finished) break;
      }
      ASSERT_TRUE(e.finished && e.error.ok()) << e.error;
      EXPECT_EQ(tokens, alone[i]) << "request " << i;
    }
    EXPECT_EQ(h.engine()->GetLoad().preemptions, 1);
    EXPECT_EQ(h.SettledBlocksUsed(), 0);
  }
}

}  // namespace
}  // namespace glm::scheduler
