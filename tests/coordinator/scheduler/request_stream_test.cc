// RequestStream's event grouping (--stream-interval): the first and the finished event go at
// once, later ones wait for the interval's tokens or its max_delay, and what is released
// together is handed out without waiting.
#include <gtest/gtest.h>

#include <thread>

#include "coordinator/scheduler/request.h"

namespace glm::scheduler {
namespace {

GenerationEvent Tokens(std::vector<int32_t> tokens, bool finished = false) {
  GenerationEvent e;
  e.tokens = std::move(tokens);
  e.finished = finished;
  if (finished) e.finish_reason = "length";
  return e;
}

// Takes every event ready now (zero timeout), flattening their tokens.
std::vector<int32_t> TakeReady(RequestStream& s, int* events = nullptr) {
  std::vector<int32_t> out;
  GenerationEvent e;
  int n = 0;
  while (s.Next(&e, absl::ZeroDuration())) {
    out.insert(out.end(), e.tokens.begin(), e.tokens.end());
    ++n;
  }
  if (events) *events = n;
  return out;
}

TEST(RequestStreamTest, DefaultHandsOutEveryEventAtOnce) {
  RequestStream s("r");
  EXPECT_EQ(s.interval_tokens(), 1);
  GenerationEvent e;
  EXPECT_FALSE(s.Next(&e, absl::ZeroDuration()));
  s.Push(Tokens({1}));
  ASSERT_TRUE(s.Next(&e, absl::ZeroDuration()));
  EXPECT_EQ(e.tokens, std::vector<int32_t>{1});
  s.Push(Tokens({2}));
  ASSERT_TRUE(s.Next(&e, absl::ZeroDuration()));
  EXPECT_EQ(e.tokens, std::vector<int32_t>{2});
  s.Push(Tokens({}, /*finished=*/true));
  ASSERT_TRUE(s.Next(&e, absl::ZeroDuration()));
  EXPECT_TRUE(e.finished);
  EXPECT_FALSE(s.Next(&e, absl::ZeroDuration()));  // after the finished event: nothing, at once
}

TEST(RequestStreamTest, IntervalGroupsTokensAfterTheFirstEvent) {
  RequestStream s("r");
  s.SetInterval({.tokens = 4, .max_delay = absl::Hours(1)});
  s.Push(Tokens({1}));
  EXPECT_EQ(TakeReady(s), std::vector<int32_t>{1});  // the first token never waits (TTFT)
  s.Push(Tokens({2}));
  s.Push(Tokens({3}));
  s.Push(Tokens({4}));
  EXPECT_TRUE(TakeReady(s).empty());  // 3 of 4 tokens waiting
  s.Push(Tokens({5, 6}));             // a verify step may bring several
  int events = 0;
  EXPECT_EQ(TakeReady(s, &events), (std::vector<int32_t>{2, 3, 4, 5, 6}));
  EXPECT_EQ(events, 4);  // released together, handed out one by one without waiting
  s.Push(Tokens({7}));
  EXPECT_TRUE(TakeReady(s).empty());
  s.Push(Tokens({8}, /*finished=*/true));  // the end releases what waits
  EXPECT_EQ(TakeReady(s), (std::vector<int32_t>{7, 8}));
  GenerationEvent e;
  EXPECT_FALSE(s.Next(&e, absl::ZeroDuration()));
}

// A consumer that wakes late (a loaded host) still gets the first token alone, then the rest by
// the interval: the first streamed message is the TTFT one.
TEST(RequestStreamTest, TheFirstEventGoesAloneEvenWhenOthersWait) {
  RequestStream s("r");
  s.SetInterval({.tokens = 4, .max_delay = absl::Hours(1)});
  s.Push(Tokens({1}));
  s.Push(Tokens({2}));
  s.Push(Tokens({3}));
  int events = 0;
  EXPECT_EQ(TakeReady(s, &events), std::vector<int32_t>{1});
  EXPECT_EQ(events, 1);
  s.Push(Tokens({4, 5}));
  EXPECT_EQ(TakeReady(s), (std::vector<int32_t>{2, 3, 4, 5}));
}

TEST(RequestStreamTest, MaxDelayReleasesAPartialGroup) {
  RequestStream s("r");
  s.SetInterval({.tokens = 1000, .max_delay = absl::Milliseconds(5)});
  s.Push(Tokens({1}));
  EXPECT_EQ(TakeReady(s), std::vector<int32_t>{1});
  s.Push(Tokens({2}));
  s.Push(Tokens({3}));
  // Far fewer tokens than the interval: a long wait still returns them once they are 5 ms old.
  GenerationEvent e;
  ASSERT_TRUE(s.Next(&e, absl::Seconds(60)));
  EXPECT_EQ(e.tokens, std::vector<int32_t>{2});
  ASSERT_TRUE(s.Next(&e, absl::ZeroDuration()));
  EXPECT_EQ(e.tokens, std::vector<int32_t>{3});
}

TEST(RequestStreamTest, AWaitingConsumerWakesWhenTheGroupFills) {
  RequestStream s("r");
  s.SetInterval({.tokens = 3, .max_delay = absl::Hours(1)});
  s.Push(Tokens({1}));
  EXPECT_EQ(TakeReady(s), std::vector<int32_t>{1});
  std::thread producer([&] {
    for (int32_t t = 2; t <= 4; ++t) s.Push(Tokens({t}));
  });
  GenerationEvent e;
  ASSERT_TRUE(s.Next(&e, absl::Seconds(60)));  // woken by the third push (max_delay is an hour)
  producer.join();
  std::vector<int32_t> got = e.tokens;
  std::vector<int32_t> rest = TakeReady(s);
  got.insert(got.end(), rest.begin(), rest.end());
  EXPECT_EQ(got, (std::vector<int32_t>{2, 3, 4}));
}

TEST(RequestStreamTest, TimeoutWithNothingReadyReturnsFalse) {
  RequestStream s("r");
  s.SetInterval({.tokens = 8, .max_delay = absl::Hours(1)});
  s.Push(Tokens({1}));
  EXPECT_EQ(TakeReady(s), std::vector<int32_t>{1});
  s.Push(Tokens({2}));
  GenerationEvent e;
  EXPECT_FALSE(s.Next(&e, absl::Milliseconds(1)));  // the consumer's poll (cancellation checks) goes on
  EXPECT_FALSE(s.finished());
}

}  // namespace
}  // namespace glm::scheduler
