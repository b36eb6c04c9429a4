// UTF-8 helpers shared by the tokenizer, the detokenizer and the template engine.
#ifndef GLM_COORDINATOR_TOKENIZER_UTF8_H_
#define GLM_COORDINATOR_TOKENIZER_UTF8_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace glm::tokenizer {

// OK when `text` is well-formed UTF-8; otherwise InvalidArgument naming the byte offset of the
// first bad sequence (prompts must be valid text: a bad byte would otherwise be tokenized as
// some arbitrary byte token and silently change the prompt).
absl::Status ValidateUtf8(std::string_view text);

// Length of the valid UTF-8 sequence starting at `pos`, or 0 when the bytes there are not a
// complete well-formed sequence (truncated or invalid).
size_t ValidSequenceLength(std::string_view text, size_t pos);

// Decodes one code point of valid UTF-8 at `pos`; returns its byte length.
size_t DecodeCodepoint(std::string_view text, size_t pos, char32_t* cp);

void AppendCodepoint(char32_t cp, std::string* out);

// Rust's String::from_utf8_lossy, which Hugging Face's ByteLevel decoder uses: every maximal
// invalid subpart becomes one U+FFFD, so decoded text matches theirs byte for byte.
std::string LossyUtf8(std::string_view bytes);

// Length of the longest prefix of `bytes` that does not end inside a UTF-8 sequence that could
// still be completed by more bytes. Invalid bytes count as complete (they can never become
// valid), so a streaming caller never waits forever on garbage.
size_t CompletePrefixLength(std::string_view bytes);

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_UTF8_H_
