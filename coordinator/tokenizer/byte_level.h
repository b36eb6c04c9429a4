// GPT-2's byte <-> printable-character table, used by the ByteLevel pre-tokenizer (bytes to
// characters before BPE) and the ByteLevel decoder (characters back to bytes).
#ifndef GLM_COORDINATOR_TOKENIZER_BYTE_LEVEL_H_
#define GLM_COORDINATOR_TOKENIZER_BYTE_LEVEL_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace glm::tokenizer {

class ByteLevelTable {
 public:
  static const ByteLevelTable& Get();

  // UTF-8 of the character that stands for byte `b`.
  std::string_view CharFor(uint8_t b) const { return {chars_[b].data(), lengths_[b]}; }
  // Maps every byte of `bytes` to its character, appending to `out`.
  void Encode(std::string_view bytes, std::string* out) const;
  // The byte a code point stands for, or -1 when it is not one of the 256 table characters.
  int ByteFor(char32_t cp) const { return cp < reverse_.size() ? reverse_[cp] : -1; }
  // Appends the bytes of `token` to `out` when every character is a table character and
  // returns true; otherwise leaves `out` unchanged and returns false (Hugging Face then uses
  // the token's own UTF-8, as for added tokens such as "<｜User｜>").
  bool Decode(std::string_view token, std::string* out) const;

 private:
  ByteLevelTable();
  std::array<std::array<char, 2>, 256> chars_{};
  std::array<uint8_t, 256> lengths_{};
  std::array<int16_t, 324> reverse_{};
};

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_BYTE_LEVEL_H_
