#include "coordinator/tokenizer/added_vocabulary.h"

#include <unicode/uchar.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "coordinator/tokenizer/utf8.h"

namespace glm::tokenizer {
namespace {

bool IsWhitespace(char32_t c) { return u_isUWhiteSpace(static_cast<UChar32>(c)) != 0; }

// Rust's char::is_alphanumeric, which decides single_word boundaries.
bool IsAlphanumeric(char32_t c) {
  const auto uc = static_cast<UChar32>(c);
  if (u_hasBinaryProperty(uc, UCHAR_ALPHABETIC)) return true;
  const int8_t t = u_charType(uc);
  return t == U_DECIMAL_DIGIT_NUMBER || t == U_LETTER_NUMBER || t == U_OTHER_NUMBER;
}

// Start of the last code point before `end`.
size_t PrevCharStart(std::string_view s, size_t end) {
  size_t p = end - 1;
  while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
  return p;
}

}  // namespace

absl::StatusOr<AddedVocabulary> AddedVocabulary::FromJson(const nlohmann::json& added_tokens,
                                                          const Normalizer* normalizer) {
  AddedVocabulary vocab;
  if (added_tokens.is_null()) return vocab;
  if (!added_tokens.is_array()) return absl::InvalidArgumentError("added_tokens: expected a list");
  try {
    for (size_t i = 0; i < added_tokens.size(); ++i) {
      const nlohmann::json& t = added_tokens[i];
      if (!t.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat("added_tokens[", i, "]: expected an object"));
      }
      if (!t.contains("content") || !t["content"].is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat("added_tokens[", i, "]: 'content' must be a string"));
      }
      if (!t.contains("id") || !t["id"].is_number_integer()) {
        return absl::InvalidArgumentError(
            absl::StrCat("added_tokens[", i, "]: 'id' must be an integer"));
      }
      AddedToken tok;
      tok.content = t["content"].get<std::string>();
      const int64_t id = t["id"].get<int64_t>();
      // The upper bound against the vocabulary size is checked by Tokenizer, which knows it.
      if (id < 0 || id > (int64_t{1} << 30)) {
        return absl::InvalidArgumentError(absl::StrCat("added_tokens[", i, "]: bad id ", id));
      }
      tok.id = static_cast<int32_t>(id);
      tok.special = t.value("special", false);
      tok.lstrip = t.value("lstrip", false);
      tok.rstrip = t.value("rstrip", false);
      tok.single_word = t.value("single_word", false);
      tok.normalized = t.value("normalized", !tok.special);
      if (tok.content.empty()) continue;
      if (auto s = ValidateUtf8(tok.content); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("added token ", id, ": ", s.message()));
      }
      vocab.tokens_.push_back(std::move(tok));
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("added_tokens: ", e.what()));
  }
  vocab.tokens_.shrink_to_fit();
  for (size_t i = 0; i < vocab.tokens_.size(); ++i) {
    const AddedToken& tok = vocab.tokens_[i];
    vocab.by_id_[tok.id] = i;
    vocab.by_content_[tok.content] = i;
    if (tok.normalized) {
      std::string pattern = tok.content;
      if (normalizer != nullptr)
        if (absl::Status n = normalizer->Normalize(&pattern); !n.ok()) return n;
      vocab.normalized_.Add(pattern, static_cast<int32_t>(i));
    } else {
      vocab.raw_.Add(tok.content, static_cast<int32_t>(i));
    }
  }
  return vocab;
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::FindByContent(std::string_view content) const {
  auto it = by_content_.find(absl::string_view(content.data(), content.size()));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

void AddedVocabulary::Matcher::Add(const std::string& pattern, int32_t token_index) {
  if (pattern.empty()) return;
  int32_t node = 0;
  for (unsigned char b : pattern) {
    int32_t child = Child(node, b);
    if (child < 0) {
      child = static_cast<int32_t>(nodes_.size());
      nodes_.push_back(Node{});
      auto& ch = nodes_[node].children;
      ch.insert(std::lower_bound(ch.begin(), ch.end(), std::make_pair(b, int32_t{-1})),
                {b, child});
    }
    node = child;
  }
  // The first token with a given content wins, as in Hugging Face's pattern list.
  if (nodes_[node].token_index < 0) nodes_[node].token_index = token_index;
  first_byte_[static_cast<unsigned char>(pattern[0])] = true;
  empty_ = false;
}

int32_t AddedVocabulary::Matcher::Child(int32_t node, uint8_t b) const {
  const auto& ch = nodes_[node].children;
  auto it = std::lower_bound(ch.begin(), ch.end(), std::make_pair(b, int32_t{-1}));
  return (it != ch.end() && it->first == b) ? it->second : -1;
}

int32_t AddedVocabulary::Matcher::LongestAt(std::string_view text, size_t pos,
                                            size_t* end) const {
  int32_t best = -1;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    node = Child(node, static_cast<uint8_t>(text[i]));
    if (node < 0) break;
    if (nodes_[node].token_index >= 0) {
      best = nodes_[node].token_index;
      *end = i + 1;
    }
  }
  return best;
}

void AddedVocabulary::Matcher::FindMatches(const std::vector<AddedToken>& tokens,
                                           const std::string& text,
                                           std::vector<Piece>* out) const {
  size_t start_offset = 0;  // End of the previous emitted split.
  size_t pos = 0;
  while (pos < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    size_t stop = 0;
    const int32_t index = LongestAt(text, pos, &stop);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken* tok = &tokens[index];
    size_t start = pos;
    pos = stop;
    if (tok->single_word) {
      bool start_space = true, stop_space = true;
      if (start > 0) {
        char32_t c;
        DecodeCodepoint(text, PrevCharStart(text, start), &c);
        start_space = !IsAlphanumeric(c);
      }
      if (stop < text.size()) {
        char32_t c;
        DecodeCodepoint(text, stop, &c);
        stop_space = !IsAlphanumeric(c);
      }
      if (!start_space || !stop_space) continue;
    }
    if (tok->lstrip) {
      size_t s = start;
      while (s > 0) {
        const size_t p = PrevCharStart(text, s);
        char32_t c;
        DecodeCodepoint(text, p, &c);
        if (!IsWhitespace(c)) break;
        s = p;
      }
      // Whitespace already consumed by the previous match stays with it.
      start = std::max(s, start_offset);
    }
    if (tok->rstrip) {
      while (stop < text.size()) {
        char32_t c;
        const size_t n = DecodeCodepoint(text, stop, &c);
        if (!IsWhitespace(c)) break;
        stop += n;
      }
      pos = stop;
    }
    if (start_offset < start) out->push_back(Piece{text.substr(start_offset, start - start_offset), -1});
    out->push_back(Piece{text.substr(start, stop - start), tok->id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out->push_back(Piece{text.substr(start_offset), -1});
}

void AddedVocabulary::Matcher::Split(const std::vector<AddedToken>& tokens,
                                     std::vector<Piece>* pieces) const {
  if (empty_) return;
  std::vector<Piece> out;
  out.reserve(pieces->size());
  for (Piece& p : *pieces) {
    if (p.id >= 0) {
      out.push_back(std::move(p));
    } else {
      FindMatches(tokens, p.text, &out);
    }
  }
  *pieces = std::move(out);
}

}  // namespace glm::tokenizer
