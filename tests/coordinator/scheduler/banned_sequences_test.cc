// BannedSequencesConstraint (vLLM's bad_words) on its own and in the engine: a banned token is
// masked exactly where it would complete a sequence, the wrapped constraint still applies, each
// clone keeps its own output; served greedily, the output never holds a banned sequence and is
// the unconstrained output up to where that one first held it.
#include "coordinator/scheduler/banned_sequences_constraint.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "coordinator/scheduler/token_set_constraint.h"
#include "tests/coordinator/scheduler/engine_harness.h"

namespace glm::scheduler {
namespace {

bool Allowed(const std::string& bitmap, int32_t t) { return (bitmap[t >> 3] >> (t & 7)) & 1; }

std::vector<int32_t> AllowedIds(TokenConstraint& c, int64_t vocab) {
  std::string bitmap;
  c.AllowedTokens(vocab, &bitmap);
  EXPECT_EQ(bitmap.size(), static_cast<size_t>((vocab + 7) / 8));
  std::vector<int32_t> out;
  for (int32_t t = 0; t < vocab; ++t)
    if (Allowed(bitmap, t)) out.push_back(t);
  return out;
}

std::vector<int32_t> AllBut(int64_t vocab, std::vector<int32_t> banned) {
  std::vector<int32_t> out;
  for (int32_t t = 0; t < vocab; ++t)
    if (std::find(banned.begin(), banned.end(), t) == banned.end()) out.push_back(t);
  return out;
}

TEST(BannedSequencesTest, ALastTokenIsMaskedOnlyAfterTheRestOfItsSequence) {
  const int64_t vocab = 13;  // not a multiple of 8: no bit past the vocabulary is set
  BannedSequencesConstraint c({{4}, {1, 2, 3}, {7, 3}, {}, {99}}, nullptr);
  EXPECT_TRUE(c.CanEnd());
  EXPECT_FALSE(c.MustEnd());
  EXPECT_EQ(AllowedIds(c, vocab), AllBut(vocab, {4}));
  ASSERT_TRUE(c.Accept(1).ok());
  EXPECT_EQ(AllowedIds(c, vocab), AllBut(vocab, {4}));
  ASSERT_TRUE(c.Accept(2).ok());
  EXPECT_EQ(AllowedIds(c, vocab), AllBut(vocab, {4, 3}));  // 1 2 | 3
  std::shared_ptr<TokenConstraint> fork = c.Clone();
  ASSERT_TRUE(c.Accept(7).ok());
  EXPECT_EQ(AllowedIds(c, vocab), AllBut(vocab, {4, 3}));  // 7 | 3
  ASSERT_TRUE(c.Accept(5).ok());
  EXPECT_EQ(AllowedIds(c, vocab), AllBut(vocab, {4}));
  EXPECT_FALSE(c.Accept(4).ok());
  // The clone kept the output as it was when cloned.
  EXPECT_EQ(AllowedIds(*fork, vocab), AllBut(vocab, {4, 3}));
  EXPECT_FALSE(fork->Accept(3).ok());
  ASSERT_TRUE(fork->Accept(9).ok());
  EXPECT_EQ(AllowedIds(*fork, vocab), AllBut(vocab, {4}));
}

// Wrapped: the inner constraint's tokens less the banned ones; it decides the end.
TEST(BannedSequencesTest, TheWrappedConstraintStillApplies) {
  BannedSequencesConstraint c({{2}, {5, 6}}, std::make_shared<TokenSetConstraint>(std::vector<int32_t>{2, 5, 6, 9}));
  EXPECT_FALSE(c.CanEnd());
  EXPECT_EQ(AllowedIds(c, 20), (std::vector<int32_t>{5, 6, 9}));
  ASSERT_TRUE(c.Accept(5).ok());
  EXPECT_EQ(AllowedIds(c, 20), (std::vector<int32_t>{5, 9}));
  EXPECT_FALSE(c.Accept(11).ok());  // the inner set refuses it
}

// Served by the engine over the bundled model: ban a single token and a two-token sequence that
// the greedy output holds; the output then never holds them, and up to their first place it is
// the unconstrained output.
TEST(BannedSequencesTest, GreedyOutputsNeverHoldABannedSequence) {
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  GenerationRequest plain = Greedy({5, 17, 300, 42, 8, 99, 1000, 7}, 24);
  plain.sampling.ignore_eos = true;
  auto base = h.Run(plain);
  ASSERT_TRUE(base.error.ok()) << base.error;
  ASSERT_EQ(base.tokens.size(), 24u);
  auto holds = [](const std::vector<int32_t>& out, const std::vector<int32_t>& seq) {
    return std::search(out.begin(), out.end(), seq.begin(), seq.end()) != out.end();
  };
  for (const std::vector<int32_t>& seq : {std::vector<int32_t>{base.tokens[3]},
                                          std::vector<int32_t>{base.tokens[5], base.tokens[6]}}) {
    const size_t first = std::search(base.tokens.begin(), base.tokens.end(), seq.begin(), seq.end()) - base.tokens.begin();
    GenerationRequest r = plain;
    r.constraint = std::make_shared<BannedSequencesConstraint>(std::vector<std::vector<int32_t>>{seq}, nullptr);
    auto out = h.Run(r);
    ASSERT_TRUE(out.error.ok()) << out.error;
    EXPECT_EQ(out.tokens.size(), 24u);
    EXPECT_FALSE(holds(out.tokens, seq)) << seq.size();
    const size_t same = first + seq.size() - 1;  // the tokens before the banned one
    ASSERT_GT(out.tokens.size(), same);
    EXPECT_TRUE(std::equal(base.tokens.begin(), base.tokens.begin() + same, out.tokens.begin())) << seq.size();
    EXPECT_NE(out.tokens[same], base.tokens[same]);
  }
}

// allowed_token_ids with bad_words that leave nothing to follow: the output ends there ("stop",
// the accepted tokens delivered); it failed with INTERNAL "the output format cannot go on" and
// lost the token. Nothing to start with is a 400 naming bad_words (it said response_format).
TEST(BannedSequencesTest, ClientRulesThatLeaveNothingEndTheOutputOrRefuseTheRequest) {
  BannedSequencesConstraint pair({{5, 5}, {5, 9}}, std::make_shared<TokenSetConstraint>(std::vector<int32_t>{5, 9}));
  EXPECT_FALSE(AllowedIds(pair, 20).empty());
  ASSERT_TRUE(pair.Accept(5).ok());
  EXPECT_TRUE(AllowedIds(pair, 20).empty());
  EXPECT_TRUE(pair.NothingFitsEndsOutput());
  EXPECT_NE(pair.WhyNothingFits().find("bad_words"), std::string::npos);
  // Over a format (here a stand-in for a JSON schema), bans that leave nothing may not end the
  // output: it would break the format (a structured-output review found `{"v": 1234` as "stop").
  struct Format : TokenSetConstraint {
    using TokenSetConstraint::TokenSetConstraint;
    bool NothingFitsEndsOutput() const override { return false; }
    std::shared_ptr<TokenConstraint> Clone() const override { return std::make_shared<Format>(*this); }
  };
  BannedSequencesConstraint over_format({{5, 5}, {5, 9}}, std::make_shared<Format>(std::vector<int32_t>{5, 9}));
  ASSERT_TRUE(over_format.Accept(5).ok());
  EXPECT_TRUE(AllowedIds(over_format, 20).empty());
  EXPECT_FALSE(over_format.NothingFitsEndsOutput());

  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  GenerationRequest r = Greedy({5, 17, 300, 42}, 6);
  r.constraint = std::make_shared<BannedSequencesConstraint>(
      std::vector<std::vector<int32_t>>{{296, 296}, {296, 331}, {331, 296}, {331, 331}},
      std::make_shared<TokenSetConstraint>(std::vector<int32_t>{296, 331}));
  auto out = h.Run(r);
  ASSERT_TRUE(out.error.ok()) << out.error;
  ASSERT_EQ(out.tokens.size(), 1u);
  EXPECT_TRUE(out.tokens[0] == 296 || out.tokens[0] == 331) << out.tokens[0];
  EXPECT_EQ(out.finish_reason, "stop");

  GenerationRequest none = Greedy({5, 17, 300, 42}, 6);
  none.constraint = std::make_shared<BannedSequencesConstraint>(
      std::vector<std::vector<int32_t>>{{296}}, std::make_shared<TokenSetConstraint>(std::vector<int32_t>{296}));
  auto refused = h.engine()->Submit(none);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message().find("response_format"), std::string::npos) << refused.status();
  EXPECT_NE(refused.status().message().find("bad_words"), std::string::npos) << refused.status();
  EXPECT_EQ(h.SettledBlocksUsed(), 0);
}

}  // namespace
}  // namespace glm::scheduler
