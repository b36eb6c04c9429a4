// Streaming detokenization and fuzz-style robustness: random bytes and random ids never crash,
// encode/decode round-trips, and incremental output always equals the full decode.
#include <random>
#include <string>
#include <vector>

#include "coordinator/tokenizer/incremental_detokenizer.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "coordinator/tokenizer/utf8.h"
#include "gtest/gtest.h"

namespace glm::tokenizer {
namespace {

const Tokenizer& Glm() {
  static const Tokenizer* tok = [] {
    auto t = Tokenizer::FromFile(std::string(GLM_MODELS_DIR) + "/glm5-tiny-code");
    EXPECT_TRUE(t.ok()) << t.status();
    return t->release();
  }();
  return *tok;
}

std::string Stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special,
                   std::vector<std::string>* deltas = nullptr) {
  IncrementalDetokenizer detok(&tok, skip_special);
  std::string out;
  for (int32_t id : ids) {
    auto d = detok.Push(id);
    EXPECT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE(ValidateUtf8(*d).ok());
    if (deltas != nullptr) deltas->push_back(*d);
    out += *d;
  }
  out += detok.Flush();
  return out;
}

TEST(IncrementalDetokenizerTest, MultiByteCharactersSplitAcrossTokens) {
  const std::string text = "한국의 수도는 서울 中国的首都是北京 emoji 🤖🚀 👩\u200d👩\u200d👧 done";
  auto ids = Glm().Encode(text);
  ASSERT_TRUE(ids.ok());
  ASSERT_GT(ids->size(), 20u);
  std::vector<std::string> deltas;
  EXPECT_EQ(Stream(Glm(), *ids, false, &deltas), text);
  int empty = 0;
  for (const auto& d : deltas) empty += d.empty();
  EXPECT_GT(empty, 0) << "some tokens end mid-character and must emit nothing";
}

TEST(IncrementalDetokenizerTest, SkipsSpecialTokensWhenAsked) {
  auto ids = Glm().Encode("<|user|>\nhi<|assistant|>\n<think></think>\nhello");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(Stream(Glm(), *ids, true), *Glm().Decode(*ids, true));
  EXPECT_EQ(Stream(Glm(), *ids, false), "<|user|>\nhi<|assistant|>\n<think></think>\nhello");
}

TEST(IncrementalDetokenizerTest, UnknownIdIsAnErrorAndStateSurvives) {
  IncrementalDetokenizer detok(&Glm());
  EXPECT_FALSE(detok.Push(-1).ok());
  EXPECT_FALSE(detok.Push(Glm().vocab_size()).ok());
  auto ids = Glm().Encode("ok");
  std::string out;
  for (int32_t id : *ids) out += *detok.Push(id);
  EXPECT_EQ(out + detok.Flush(), "ok");
}

TEST(IncrementalDetokenizerTest, FlushEmitsIncompleteBytesAsReplacement) {
  // Find the byte-level token for 0xE2 alone: a lone lead byte.
  const auto id = Glm().TokenToId("\xC3\xA2");  // U+00E2 is the GPT-2 character for byte 0xE2.
  ASSERT_TRUE(id.has_value());
  IncrementalDetokenizer detok(&Glm());
  EXPECT_EQ(*detok.Push(*id), "");
  EXPECT_EQ(detok.Flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(*Glm().Decode({*id}), "\xEF\xBF\xBD");
}

TEST(TokenizerFuzzTest, RandomIdsStreamEqualsFullDecode) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> id(0, Glm().vocab_size() - 1);
  for (int round = 0; round < 200; ++round) {
    std::vector<int32_t> ids(1 + rng() % 40);
    for (auto& x : ids) x = id(rng);
    auto full = Glm().Decode(ids);
    ASSERT_TRUE(full.ok());
    ASSERT_TRUE(ValidateUtf8(*full).ok());
    EXPECT_EQ(Stream(Glm(), ids, false), *full);
    EXPECT_EQ(Stream(Glm(), ids, true), *Glm().Decode(ids, true));
  }
}

TEST(TokenizerFuzzTest, RandomBytesNeverCrashAndValidTextRoundTrips) {
  std::mt19937 rng(99);
  for (int round = 0; round < 400; ++round) {
    std::string bytes(rng() % 64, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng() % 256);
    if (round % 2 == 0) {
      // Bias towards multi-byte UTF-8 and tag-like text.
      bytes = LossyUtf8(bytes) + "<think>" + bytes.substr(0, bytes.size() / 2);
    }
    auto ids = Glm().Encode(bytes);
    if (!ValidateUtf8(bytes).ok()) {
      EXPECT_FALSE(ids.ok());
      EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
      // The lossy version is valid text and must round-trip.
      bytes = LossyUtf8(bytes);
      ids = Glm().Encode(bytes);
    }
    ASSERT_TRUE(ids.ok()) << ids.status();
    auto back = Glm().Decode(*ids);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, bytes);
    EXPECT_EQ(Stream(Glm(), *ids, false), bytes);
  }
}

}  // namespace
}  // namespace glm::tokenizer
