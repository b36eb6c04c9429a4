// A reply streamed as plain text (glmctl --stream): its reasoning between "<think>" and
// "</think>", as GLM writes it, however the pieces of reasoning and content arrive. The two
// streaming paths (a server's GenerateResponse messages, a local parser's deltas) write through it.
#ifndef GLM_COORDINATOR_TOKENIZER_REASONING_MARKER_H_
#define GLM_COORDINATOR_TOKENIZER_REASONING_MARKER_H_

#include <functional>
#include <string>
#include <utility>

namespace glm::tokenizer {

class ReasoningMarker {
 public:
  explicit ReasoningMarker(std::function<void(const std::string&)> sink) : sink_(std::move(sink)) {}

  // The next piece of the reply: its reasoning text, then its content text (either may be empty).
  void Write(const std::string& reasoning, const std::string& content) {
    if (!reasoning.empty()) {
      sink_((in_reasoning_ ? "" : "<think>") + reasoning);
      in_reasoning_ = true;
    }
    if (!content.empty()) {
      sink_((in_reasoning_ ? "</think>" : "") + content);
      in_reasoning_ = false;
    }
  }
  // The reply ended: closes reasoning it ended inside.
  void Finish() {
    if (in_reasoning_) sink_("</think>");
    in_reasoning_ = false;
  }

 private:
  std::function<void(const std::string&)> sink_;
  bool in_reasoning_ = false;
};

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_REASONING_MARKER_H_
