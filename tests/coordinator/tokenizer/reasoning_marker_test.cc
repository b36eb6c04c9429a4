// ReasoningMarker: a streamed reply's reasoning between <think> and </think>, however its pieces
// of reasoning and content arrive (glmctl --stream, locally and from a server).
#include "coordinator/tokenizer/reasoning_marker.h"

#include <gtest/gtest.h>

#include <string>

namespace glm::tokenizer {
namespace {

TEST(ReasoningMarkerTest, ReasoningIsMarkedWhereverItStartsAndEnds) {
  std::string out;
  ReasoningMarker m([&](const std::string& s) { out += s; });
  m.Write("let me", "");
  m.Write(" see", "");
  m.Write("", "It is 4.");
  m.Write("", " Done.");
  m.Finish();
  EXPECT_EQ(out, "<think>let me see</think>It is 4. Done.");

  out.clear();
  ReasoningMarker both([&](const std::string& s) { out += s; });
  both.Write("a", "b");  // one piece of each: the reasoning first
  both.Write("c", "");   // more reasoning after content opens a new block
  both.Finish();         // the reply ended inside its reasoning
  both.Finish();
  EXPECT_EQ(out, "<think>a</think>b<think>c</think>");

  out.clear();
  ReasoningMarker plain([&](const std::string& s) { out += s; });
  plain.Write("", "just text");
  plain.Write("", "");
  plain.Finish();
  EXPECT_EQ(out, "just text");
}

}  // namespace
}  // namespace glm::tokenizer
