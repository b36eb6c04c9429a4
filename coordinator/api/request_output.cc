#include "coordinator/api/request_output.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"

namespace glm::api {

namespace {

// Folds `next` (the delta of a later event of the same request) into `into`.
void AppendDelta(OutputDelta next, OutputDelta* into) {
  auto append = [](auto& to, auto& from) {
    to.insert(to.end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
  };
  append(into->tokens, next.tokens);
  append(into->logprobs, next.logprobs);
  append(into->prompt_logprobs, next.prompt_logprobs);
  append(into->tool_calls, next.tool_calls);
  into->text += next.text;
  into->reasoning += next.reasoning;
  into->prompt_tokens = next.prompt_tokens;
  into->completion_tokens = next.completion_tokens;
  into->cached_tokens = next.cached_tokens;
  into->reasoning_tokens = next.reasoning_tokens;
  into->accepted_prediction_tokens = next.accepted_prediction_tokens;
  into->rejected_prediction_tokens = next.rejected_prediction_tokens;
  if (next.first_tokens && !into->first_tokens) into->times = next.times;
  into->first_tokens = into->first_tokens || next.first_tokens;
  into->stop_string_matched = into->stop_string_matched || next.stop_string_matched;
  if (next.stop_string_matched) into->matched_stop = std::move(next.matched_stop);
  if (next.finished) {
    into->finished = true;
    into->finish_reason = std::move(next.finish_reason);
  }
}

// "call_<16 hex digits>_" (or another head): 64 random bits, as OpenAI and vLLM ids are random.
std::string RandomToolCallIdPrefix(absl::string_view head) {
  thread_local std::random_device rd;
  const uint64_t bits = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return absl::StrCat(head, "_", absl::Hex(bits, absl::kZeroPad16), "_");
}

}  // namespace

RequestOutput::RequestOutput(const tokenizer::Tokenizer* tokenizer, OutputOptions options)
    : tokenizer_(tokenizer), options_(std::move(options)) {
  hidden_stop_ids_.insert(options_.hidden_stop_ids.begin(), options_.hidden_stop_ids.end());
  if (tokenizer_ == nullptr) return;
  if (options_.parse_chat) {
    // Special-token filtering is done here rather than by the detokenizer, because GLM's
    // reasoning and tool-call markup are special tokens the parser must see.
    detok_ = std::make_unique<tokenizer::IncrementalDetokenizer>(tokenizer_, /*skip_special_tokens=*/false);
    for (std::string_view t : tokenizer::ToolCallParser::kMarkupTokens)
      if (auto id = tokenizer_->TokenToId(t)) markup_ids_.insert(*id);
    think_open_id_ = tokenizer_->TokenToId("<think>").value_or(-1);
    think_close_id_ = tokenizer_->TokenToId("</think>").value_or(-1);
    in_reasoning_ = options_.starts_in_reasoning && think_close_id_ >= 0;
    tokenizer::ToolCallParser::Options po;
    po.starts_in_reasoning = options_.starts_in_reasoning;
    po.trim_reply_start = !options_.continues_message;
    po.tools = options_.tools;
    po.parse_tool_calls = options_.tools.is_array() && !options_.tools.empty();
    po.id_prefix = options_.tool_call_id_prefix.empty() ? RandomToolCallIdPrefix(options_.tool_call_id_head) : options_.tool_call_id_prefix;
    parser_ = std::make_unique<tokenizer::ToolCallParser>(std::move(po));
  } else {
    detok_ = std::make_unique<tokenizer::IncrementalDetokenizer>(tokenizer_, options_.skip_special_tokens);
  }
}

absl::StatusOr<OutputDelta> RequestOutput::ConsumeReleased(const scheduler::GenerationEvent& event,
                                                           scheduler::RequestStream& stream) {
  absl::StatusOr<OutputDelta> delta = Consume(event);
  if (stream.interval_tokens() <= 1 || (delta.ok() && delta->first_tokens)) return delta;
  scheduler::GenerationEvent more;
  while (delta.ok() && !delta->finished && !delta->stop_string_matched && stream.Next(&more, absl::ZeroDuration())) {
    absl::StatusOr<OutputDelta> next = Consume(more);
    if (!next.ok()) return next.status();
    AppendDelta(*std::move(next), &*delta);
  }
  return delta;
}

absl::StatusOr<OutputDelta> RequestOutput::Consume(const scheduler::GenerationEvent& event) {
  OutputDelta delta;
  if (finished_) return delta;
  if (!event.error.ok()) {
    finished_ = true;
    return event.error;
  }
  delta.tokens = event.tokens;
  delta.logprobs = event.logprobs;
  delta.prompt_logprobs = event.prompt_logprobs;
  delta.prompt_tokens = prompt_tokens_ = event.prompt_tokens;
  delta.completion_tokens = completion_tokens_ = event.completion_tokens;
  delta.cached_tokens = event.cached_tokens;
  delta.reasoning_tokens = reasoning_tokens_;
  delta.accepted_prediction_tokens = event.accepted_prediction_tokens;
  delta.rejected_prediction_tokens = event.rejected_prediction_tokens;
  if (!event.tokens.empty() && !any_tokens_) {
    any_tokens_ = true;
    delta.first_tokens = true;
    delta.times = event.times;
  }

  if (detok_ != nullptr) {
    // With stop strings the text is checked after every token, as if each came in its own event:
    // an event of several tokens (accepted speculative drafts, --stream-interval) must end where
    // one token at a time would — at the token that completes the first stop string — and carry
    // no token, logprob or count from after it.
    const bool per_token = !options_.stop.empty();
    std::string text;
    for (size_t i = 0; i < event.tokens.size(); ++i) {
      const int32_t id = event.tokens[i];
      const bool last = i + 1 == event.tokens.size();
      ++tokens_seen_;
      if (options_.parse_chat) {
        if (id == think_open_id_ && think_close_id_ >= 0) in_reasoning_ = true;
        if (in_reasoning_) ++reasoning_tokens_;
        if (id == think_close_id_) in_reasoning_ = false;
        delta.reasoning_tokens = reasoning_tokens_;
      }
      if (last && event.finished && event.finish_reason == "stop" && hidden_stop_ids_.contains(id)) continue;
      // Chat decodes special tokens for the parser's markup; the others are dropped unless the
      // client asked for them (skip_special_tokens: false).
      if (options_.parse_chat && options_.skip_special_tokens && tokenizer_->IsSpecial(id) && !markup_ids_.contains(id))
        continue;
      auto piece = detok_->Push(id);
      // An id beyond the tokenizer's vocabulary (the model's embedding table may be padded)
      // has no text; the token id itself still reaches the client.
      if (piece.ok()) text += *piece;
      if (!per_token || last) continue;
      if (auto s = EmitText(text, /*final=*/false, &delta); !s.ok()) {
        finished_ = true;
        return s;
      }
      text.clear();
      if (delta.stop_string_matched) {
        const size_t kept = i + 1, dropped = event.tokens.size() - kept;
        delta.tokens.resize(kept);
        if (delta.logprobs.size() > kept) delta.logprobs.resize(kept);
        delta.completion_tokens = completion_tokens_ = event.completion_tokens - static_cast<int32_t>(dropped);
        // Predicted-output tokens count as accepted only where they appear in the completion
        // (OpenAI): the cut ones may have been accepted drafts, so the count is capped at the
        // completion's tokens and the rest count as rejected (billed, not in the output).
        if (delta.accepted_prediction_tokens > delta.completion_tokens) {
          delta.rejected_prediction_tokens += delta.accepted_prediction_tokens - delta.completion_tokens;
          delta.accepted_prediction_tokens = delta.completion_tokens;
        }
        return delta;
      }
    }
    if (event.finished) text += detok_->Flush();
    if (auto s = EmitText(text, event.finished, &delta); !s.ok()) {
      finished_ = true;
      return s;
    }
    if (delta.stop_string_matched) return delta;
  }

  if (event.finished) {
    finished_ = true;
    delta.finished = true;
    delta.finish_reason = event.finish_reason;
    if (delta.finish_reason == "stop" && tool_calls_ > 0) delta.finish_reason = "tool_calls";
  }
  return delta;
}

size_t RequestOutput::PartialStopSuffix() const {
  size_t best = 0;
  for (const std::string& stop : options_.stop) {
    const size_t max_k = std::min(stop.size() - 1, pending_.size());
    for (size_t k = max_k; k > best; --k) {
      if (pending_.compare(pending_.size() - k, k, stop, 0, k) == 0) {
        best = k;
        break;
      }
    }
  }
  return best;
}

absl::Status RequestOutput::EmitText(const std::string& text, bool final, OutputDelta* delta) {
  if (options_.stop.empty()) return Route(text, final, delta);
  if (tokens_seen_ < options_.min_tokens) {
    // Before min_tokens, text passes unchecked (vLLM's rule: no stop string ends a shorter
    // output); its last bytes are kept, since a stop string that completes at the min_tokens-th
    // token may have started before it (vLLM looks back a stop string's length too).
    size_t longest = 0;
    for (const std::string& stop : options_.stop) longest = std::max(longest, stop.size());
    unchecked_tail_ += text;
    if (unchecked_tail_.size() + 1 > longest) unchecked_tail_.erase(0, unchecked_tail_.size() + 1 - longest);
    return Route(text, final, delta);
  }
  if (!unchecked_tail_.empty()) {
    pending_ = unchecked_tail_ + pending_;
    pending_sent_ = unchecked_tail_.size();
    unchecked_tail_.clear();
  }
  pending_ += text;
  // The earliest match of any stop string wins; emitted text never held a complete match, so
  // any match lies inside pending_, ending past its sent part.
  size_t match = std::string::npos, match_size = 0;
  const std::string* matched = nullptr;
  for (const std::string& stop : options_.stop) {
    size_t at = pending_.find(stop);
    while (at != std::string::npos && at + stop.size() <= pending_sent_) at = pending_.find(stop, at + 1);
    if (at < match) {
      match = at;
      match_size = stop.size();
      matched = &stop;
    }
  }
  if (match != std::string::npos) {
    const size_t head_end = match + (options_.include_stop_str ? match_size : 0);
    // A match that started in text already sent cannot take that text back: the reply ends there.
    std::string head = head_end > pending_sent_ ? pending_.substr(pending_sent_, head_end - pending_sent_) : "";
    pending_.clear();
    pending_sent_ = 0;
    if (auto s = Route(head, /*final=*/true, delta); !s.ok()) return s;
    finished_ = true;
    delta->finished = true;
    delta->stop_string_matched = true;
    delta->matched_stop = *matched;
    delta->finish_reason = tool_calls_ > 0 ? "tool_calls" : "stop";
    return absl::OkStatus();
  }
  const size_t ready_end = pending_.size() - (final ? 0 : PartialStopSuffix());
  std::string ready = ready_end > pending_sent_ ? pending_.substr(pending_sent_, ready_end - pending_sent_) : "";
  pending_.erase(0, ready_end);
  pending_sent_ = pending_sent_ > ready_end ? pending_sent_ - ready_end : 0;
  return Route(ready, final, delta);
}

absl::Status RequestOutput::Route(const std::string& text, bool final, OutputDelta* delta) {
  if (parser_ == nullptr) {
    delta->text += text;
    return absl::OkStatus();
  }
  auto add = [&](absl::StatusOr<tokenizer::ParsedDelta> parsed) -> absl::Status {
    if (!parsed.ok()) return parsed.status();
    delta->text += parsed->content;
    delta->reasoning += parsed->reasoning;
    tool_calls_ += static_cast<int>(parsed->tool_calls.size());
    for (auto& c : parsed->tool_calls) delta->tool_calls.push_back(std::move(c));
    return absl::OkStatus();
  };
  if (!text.empty()) {
    if (auto s = add(parser_->Push(text)); !s.ok()) return s;
  }
  if (final) return add(parser_->Finish());
  return absl::OkStatus();
}

}  // namespace glm::api
