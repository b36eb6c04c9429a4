#include "coordinator/tokenizer/pre_tokenizer.h"

#include <unicode/uchar.h>

#include <functional>

#include "absl/strings/str_cat.h"
#include "coordinator/tokenizer/byte_level.h"
#include "coordinator/tokenizer/regex.h"
#include "coordinator/tokenizer/utf8.h"

namespace glm::tokenizer {
namespace {

using nlohmann::json;
using Ranges = std::vector<std::pair<size_t, size_t>>;

// GPT-2's pattern, used by ByteLevel when use_regex is true.
constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Applies a per-piece splitting function to every unsplit piece; stops at its first error.
absl::Status SplitEach(std::vector<Piece>* pieces,
                       const std::function<absl::Status(const std::string&, Ranges*)>& ranges_of) {
  std::vector<Piece> out;
  out.reserve(pieces->size() * 2);
  Ranges ranges;
  for (Piece& p : *pieces) {
    if (p.id >= 0) {
      out.push_back(std::move(p));
      continue;
    }
    ranges.clear();
    if (absl::Status s = ranges_of(p.text, &ranges); !s.ok()) return s;
    if (ranges.size() == 1 && ranges[0].first == 0 && ranges[0].second == p.text.size()) {
      out.push_back(std::move(p));
      continue;
    }
    for (const auto& [s, e] : ranges) out.push_back(Piece{p.text.substr(s, e - s), -1});
  }
  *pieces = std::move(out);
  return absl::OkStatus();
}

// Matches of a predicate on code points, as maximal runs (contiguous) or single characters.
void CharMatches(const std::string& text, const std::function<bool(char32_t)>& pred,
                 bool runs, Ranges* out) {
  size_t pos = 0;
  while (pos < text.size()) {
    char32_t cp;
    const size_t n = DecodeCodepoint(text, pos, &cp);
    if (pred(cp)) {
      if (runs && !out->empty() && out->back().second == pos) {
        out->back().second = pos + n;
      } else {
        out->emplace_back(pos, pos + n);
      }
    }
    pos += n;
  }
}

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status Apply(std::vector<Piece>* pieces) const override {
    for (const auto& p : parts_)
      if (absl::Status s = p->Apply(pieces); !s.ok()) return s;
    return absl::OkStatus();
  }
  bool IsByteLevel() const override {
    for (const auto& p : parts_) {
      if (p->IsByteLevel()) return true;
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> regex, std::string literal, SplitBehavior behavior,
                    bool invert)
      : regex_(std::move(regex)), literal_(std::move(literal)), behavior_(behavior),
        invert_(invert) {}

  absl::Status Apply(std::vector<Piece>* pieces) const override {
    std::unique_ptr<Regex::Matcher> matcher = regex_ ? regex_->NewMatcher() : nullptr;
    Ranges matches;
    return SplitEach(pieces, [&](const std::string& text, Ranges* out) -> absl::Status {
      matches.clear();
      if (matcher) {
        if (absl::Status s = matcher->FindAll(text, &matches); !s.ok()) return s;
      } else if (!literal_.empty()) {
        for (size_t pos = text.find(literal_); pos != std::string::npos;
             pos = text.find(literal_, pos + literal_.size())) {
          matches.emplace_back(pos, pos + literal_.size());
        }
      }
      *out = SplitRanges(text.size(), matches, behavior_, invert_);
      return absl::OkStatus();
    });
  }

 private:
  std::unique_ptr<Regex> regex_;
  std::string literal_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}

  absl::Status Apply(std::vector<Piece>* pieces) const override {
    if (add_prefix_space_) {
      for (Piece& p : *pieces) {
        if (p.id < 0 && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, " ");
      }
    }
    if (regex_ != nullptr) {
      auto matcher = regex_->NewMatcher();
      Ranges matches;
      absl::Status split = SplitEach(pieces, [&](const std::string& text, Ranges* out) -> absl::Status {
        if (absl::Status s = matcher->FindAll(text, &matches); !s.ok()) return s;
        *out = SplitRanges(text.size(), matches, SplitBehavior::kIsolated, false);
        return absl::OkStatus();
      });
      if (!split.ok()) return split;
    }
    const ByteLevelTable& table = ByteLevelTable::Get();
    std::string mapped;
    for (Piece& p : *pieces) {
      if (p.id >= 0) continue;
      mapped.clear();
      table.Encode(p.text, &mapped);
      p.text.swap(mapped);
    }
    return absl::OkStatus();
  }
  bool IsByteLevel() const override { return true; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class DigitsPreTokenizer : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}
  absl::Status Apply(std::vector<Piece>* pieces) const override {
    return SplitEach(pieces, [&](const std::string& text, Ranges* out) {
      Ranges matches;
      CharMatches(text, [](char32_t c) { return u_isdigit(static_cast<UChar32>(c)) != 0; },
                  false, &matches);
      *out = SplitRanges(text.size(), matches,
                         individual_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous,
                         false);
      return absl::OkStatus();
    });
  }

 private:
  bool individual_;
};

// Splits on a character class with a fixed behavior (WhitespaceSplit, Punctuation).
class CharClassPreTokenizer : public PreTokenizer {
 public:
  CharClassPreTokenizer(std::function<bool(char32_t)> pred, SplitBehavior behavior)
      : pred_(std::move(pred)), behavior_(behavior) {}
  absl::Status Apply(std::vector<Piece>* pieces) const override {
    return SplitEach(pieces, [&](const std::string& text, Ranges* out) {
      Ranges matches;
      CharMatches(text, pred_, behavior_ == SplitBehavior::kRemoved, &matches);
      *out = SplitRanges(text.size(), matches, behavior_, false);
      return absl::OkStatus();
    });
  }

 private:
  std::function<bool(char32_t)> pred_;
  SplitBehavior behavior_;
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, std::string scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(std::move(scheme)), split_(split) {}
  absl::Status Apply(std::vector<Piece>* pieces) const override {
    bool first = true;
    for (Piece& p : *pieces) {
      if (p.id >= 0) {
        first = false;
        continue;
      }
      std::string out;
      for (char c : p.text) {
        if (c == ' ') {
          out += replacement_;
        } else {
          out.push_back(c);
        }
      }
      const bool prepend = scheme_ == "always" || (scheme_ == "first" && first);
      if (prepend && out.compare(0, replacement_.size(), replacement_) != 0) {
        out.insert(0, replacement_);
      }
      p.text = std::move(out);
      first = false;
    }
    if (!split_) return absl::OkStatus();
    return SplitEach(pieces, [&](const std::string& text, Ranges* out) {
      Ranges matches;
      for (size_t pos = text.find(replacement_); pos != std::string::npos;
           pos = text.find(replacement_, pos + replacement_.size())) {
        matches.emplace_back(pos, pos + replacement_.size());
      }
      *out = SplitRanges(text.size(), matches, SplitBehavior::kMergedWithNext, false);
      return absl::OkStatus();
    });
  }

 private:
  std::string replacement_, scheme_;
  bool split_;
};

absl::StatusOr<SplitBehavior> ParseBehavior(const std::string& s) {
  if (s == "Removed") return SplitBehavior::kRemoved;
  if (s == "Isolated") return SplitBehavior::kIsolated;
  if (s == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (s == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat("unknown Split behavior '", s, "'"));
}

bool IsPunctuation(char32_t c) {
  const int8_t t = u_charType(static_cast<UChar32>(c));
  return t == U_CONNECTOR_PUNCTUATION || t == U_DASH_PUNCTUATION || t == U_START_PUNCTUATION ||
         t == U_END_PUNCTUATION || t == U_INITIAL_PUNCTUATION || t == U_FINAL_PUNCTUATION ||
         t == U_OTHER_PUNCTUATION || (c < 128 && std::ispunct(static_cast<int>(c)));
}

}  // namespace

std::vector<std::pair<size_t, size_t>> SplitRanges(size_t size, const Ranges& matches,
                                                   SplitBehavior behavior, bool invert) {
  // Hugging Face first turns matches into a covering list of (range, is_match) and then folds
  // it according to the behavior; this mirrors normalizer.rs's NormalizedString::split.
  std::vector<std::pair<std::pair<size_t, size_t>, bool>> marked;
  size_t prev = 0;
  for (const auto& m : matches) {
    if (prev != m.first) marked.push_back({{prev, m.first}, false});
    marked.push_back({m, true});
    prev = m.second;
  }
  if (prev != size) marked.push_back({{prev, size}, false});
  if (invert) {
    for (auto& m : marked) m.second = !m.second;
  }
  Ranges out;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const auto& m : marked) out.push_back(m.first);
      break;
    case SplitBehavior::kRemoved:
      for (const auto& m : marked) {
        if (!m.second) out.push_back(m.first);
      }
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (const auto& m : marked) {
        if (m.second && !prev_match && !out.empty()) {
          out.back().second = m.first.second;
        } else {
          out.push_back(m.first);
        }
        prev_match = m.second;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool prev_match = false;
      for (auto it = marked.rbegin(); it != marked.rend(); ++it) {
        if (it->second && !prev_match && !out.empty()) {
          out.back().first = it->first.first;
        } else {
          out.push_back(it->first);
        }
        prev_match = it->second;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool prev_match = false;
      for (const auto& m : marked) {
        if (m.second == prev_match && !out.empty()) {
          out.back().second = m.first.second;
        } else {
          out.push_back(m.first);
        }
        prev_match = m.second;
      }
      break;
    }
  }
  std::erase_if(out, [](const auto& r) { return r.first == r.second; });
  return out;
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::FromJson(const json& config) {
  if (config.is_null()) return std::unique_ptr<PreTokenizer>();
  if (!config.is_object() || !config.contains("type") || !config["type"].is_string()) {
    return absl::InvalidArgumentError("pre_tokenizer: expected an object with a string 'type'");
  }
  const std::string type = config["type"].get<std::string>();
  try {
    if (type == "Sequence") {
      std::vector<std::unique_ptr<PreTokenizer>> parts;
      for (const auto& sub : config.at("pretokenizers")) {
        auto part = FromJson(sub);
        if (!part.ok()) return part.status();
        if (*part != nullptr) parts.push_back(*std::move(part));
      }
      return std::make_unique<SequencePreTokenizer>(std::move(parts));
    }
    if (type == "Split") {
      auto behavior = ParseBehavior(config.at("behavior").get<std::string>());
      if (!behavior.ok()) return behavior.status();
      const bool invert = config.value("invert", false);
      const json& pattern = config.at("pattern");
      if (pattern.contains("Regex")) {
        auto regex = Regex::Compile(pattern["Regex"].get<std::string>());
        if (!regex.ok()) return regex.status();
        return std::make_unique<SplitPreTokenizer>(*std::move(regex), "", *behavior, invert);
      }
      return std::make_unique<SplitPreTokenizer>(nullptr, pattern.at("String").get<std::string>(),
                                                 *behavior, invert);
    }
    if (type == "ByteLevel") {
      std::unique_ptr<Regex> regex;
      if (config.value("use_regex", true)) {
        auto compiled = Regex::Compile(kGpt2Pattern);
        if (!compiled.ok()) return compiled.status();
        regex = *std::move(compiled);
      }
      return std::make_unique<ByteLevelPreTokenizer>(config.value("add_prefix_space", true),
                                                     std::move(regex));
    }
    if (type == "Digits") {
      return std::make_unique<DigitsPreTokenizer>(config.value("individual_digits", false));
    }
    if (type == "Whitespace") {
      auto regex = Regex::Compile(R"(\w+|[^\w\s]+)");
      if (!regex.ok()) return regex.status();
      return std::make_unique<SplitPreTokenizer>(*std::move(regex), "", SplitBehavior::kRemoved,
                                                 true);
    }
    if (type == "WhitespaceSplit") {
      return std::make_unique<CharClassPreTokenizer>(
          [](char32_t c) { return u_isUWhiteSpace(static_cast<UChar32>(c)) != 0; },
          SplitBehavior::kRemoved);
    }
    if (type == "Punctuation") {
      auto behavior = ParseBehavior(config.value("behavior", std::string("Isolated")));
      if (!behavior.ok()) return behavior.status();
      return std::make_unique<CharClassPreTokenizer>(IsPunctuation, *behavior);
    }
    if (type == "Metaspace") {
      std::string scheme = config.value("prepend_scheme", std::string());
      if (scheme.empty()) scheme = config.value("add_prefix_space", true) ? "always" : "never";
      return std::make_unique<MetaspacePreTokenizer>(
          config.value("replacement", std::string("\xE2\x96\x81")), scheme,
          config.value("split", true));
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("pre_tokenizer ", type, ": ", e.what()));
  }
  return absl::UnimplementedError(absl::StrCat("unsupported pre_tokenizer type '", type, "'"));
}

}  // namespace glm::tokenizer
