#include "coordinator/tokenizer/utf8.h"

#include "absl/strings/str_cat.h"

namespace glm::tokenizer {
namespace {

// Expected length of a sequence from its lead byte (0: never a lead byte).
inline size_t LeadLength(unsigned char b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

// The allowed range of the second byte depends on the lead (Unicode table 3-7): this is what
// excludes overlongs, surrogates and code points above U+10FFFF.
inline bool SecondByteOk(unsigned char lead, unsigned char b) {
  switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return b >= 0x80 && b <= 0xBF;
  }
}

inline bool IsCont(unsigned char b) { return b >= 0x80 && b <= 0xBF; }

// Number of bytes starting at `pos` that form a valid prefix of some sequence (the "maximal
// subpart"), and whether that prefix is a complete sequence.
inline size_t MaximalSubpart(std::string_view s, size_t pos, bool* complete) {
  const auto lead = static_cast<unsigned char>(s[pos]);
  const size_t need = LeadLength(lead);
  *complete = false;
  if (need == 0) return 1;
  if (need == 1) {
    *complete = true;
    return 1;
  }
  size_t i = 1;
  while (i < need && pos + i < s.size()) {
    const auto b = static_cast<unsigned char>(s[pos + i]);
    if (i == 1 ? !SecondByteOk(lead, b) : !IsCont(b)) break;
    ++i;
  }
  *complete = (i == need);
  return i;
}

}  // namespace

size_t ValidSequenceLength(std::string_view text, size_t pos) {
  if (pos >= text.size()) return 0;
  bool complete;
  const size_t n = MaximalSubpart(text, pos, &complete);
  return complete ? n : 0;
}

absl::Status ValidateUtf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const size_t n = ValidSequenceLength(text, pos);
    if (n == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid UTF-8 at byte offset ", pos, " (byte 0x",
                       absl::Hex(static_cast<unsigned char>(text[pos]), absl::kZeroPad2), ")"));
    }
    pos += n;
  }
  return absl::OkStatus();
}

size_t DecodeCodepoint(std::string_view s, size_t pos, char32_t* cp) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  const size_t n = LeadLength(b0);
  if (n == 0 || pos + n > s.size()) {
    *cp = 0xFFFD;
    return 1;
  }
  char32_t v = (n == 2) ? (b0 & 0x1F) : (n == 3) ? (b0 & 0x0F) : (b0 & 0x07);
  for (size_t i = 1; i < n; ++i) v = (v << 6) | (static_cast<unsigned char>(s[pos + i]) & 0x3F);
  *cp = v;
  return n;
}

void AppendCodepoint(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string LossyUtf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    bool complete;
    const size_t n = MaximalSubpart(bytes, pos, &complete);
    if (complete) {
      out.append(bytes.substr(pos, n));
    } else {
      out.append("\xEF\xBF\xBD");
    }
    pos += n;
  }
  return out;
}

size_t CompletePrefixLength(std::string_view bytes) {
  // Only the last (at most 3) bytes can belong to an unfinished sequence.
  const size_t start = bytes.size() > 3 ? bytes.size() - 3 : 0;
  for (size_t pos = start; pos < bytes.size(); ++pos) {
    const auto b = static_cast<unsigned char>(bytes[pos]);
    if (LeadLength(b) < 2) continue;
    bool complete;
    const size_t n = MaximalSubpart(bytes, pos, &complete);
    // A valid-so-far prefix that runs to the end of the buffer may still be completed.
    if (!complete && pos + n == bytes.size()) return pos;
  }
  return bytes.size();
}

}  // namespace glm::tokenizer
