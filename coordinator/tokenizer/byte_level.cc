#include "coordinator/tokenizer/byte_level.h"

#include "coordinator/tokenizer/utf8.h"

namespace glm::tokenizer {

const ByteLevelTable& ByteLevelTable::Get() {
  static const ByteLevelTable* table = new ByteLevelTable();
  return *table;
}

ByteLevelTable::ByteLevelTable() {
  reverse_.fill(-1);
  // Printable Latin-1 bytes map to themselves; the rest (controls, space, ...) to 256 + n in
  // byte order, exactly as GPT-2's bytes_to_unicode.
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    const char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
    std::string s;
    AppendCodepoint(cp, &s);
    lengths_[b] = static_cast<uint8_t>(s.size());
    for (size_t i = 0; i < s.size(); ++i) chars_[b][i] = s[i];
    reverse_[cp] = static_cast<int16_t>(b);
  }
}

void ByteLevelTable::Encode(std::string_view bytes, std::string* out) const {
  out->reserve(out->size() + bytes.size() * 2);
  for (unsigned char b : bytes) out->append(chars_[b].data(), lengths_[b]);
}

bool ByteLevelTable::Decode(std::string_view token, std::string* out) const {
  const size_t mark = out->size();
  size_t pos = 0;
  while (pos < token.size()) {
    char32_t cp;
    pos += DecodeCodepoint(token, pos, &cp);
    const int b = ByteFor(cp);
    if (b < 0) {
      out->resize(mark);
      return false;
    }
    out->push_back(static_cast<char>(b));
  }
  return true;
}

}  // namespace glm::tokenizer
