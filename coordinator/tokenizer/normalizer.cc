#include "coordinator/tokenizer/normalizer.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "coordinator/tokenizer/regex.h"
#include "coordinator/tokenizer/utf8.h"

namespace glm::tokenizer {
namespace {

using nlohmann::json;

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status Normalize(std::string* text) const override {
    for (const auto& p : parts_)
      if (absl::Status s = p->Normalize(text); !s.ok()) return s;
    return absl::OkStatus();
  }
  bool IsIdentity() const override {
    for (const auto& p : parts_) {
      if (!p->IsIdentity()) return false;
    }
    return true;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

enum class Form { kNfc, kNfd, kNfkc, kNfkd };

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(const icu::Normalizer2* impl) : impl_(impl) {}
  absl::Status Normalize(std::string* text) const override {
    UErrorCode status = U_ZERO_ERROR;
    // Fast path: most text is already normalized.
    const icu::UnicodeString in = icu::UnicodeString::fromUTF8(*text);
    if (impl_->isNormalized(in, status) && U_SUCCESS(status)) return absl::OkStatus();
    status = U_ZERO_ERROR;
    const icu::UnicodeString out = impl_->normalize(in, status);
    if (U_FAILURE(status)) return absl::OkStatus();
    text->clear();
    out.toUTF8String(*text);
    return absl::OkStatus();
  }

 private:
  const icu::Normalizer2* impl_;  // Owned by ICU.
};

class LowercaseNormalizer : public Normalizer {
 public:
  absl::Status Normalize(std::string* text) const override {
    icu::UnicodeString s = icu::UnicodeString::fromUTF8(*text);
    s.toLower(icu::Locale::getRoot());
    text->clear();
    s.toUTF8String(*text);
    return absl::OkStatus();
  }
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  absl::Status Normalize(std::string* text) const override {
    size_t begin = 0, end = text->size();
    if (left_) {
      while (begin < end) {
        char32_t cp;
        const size_t n = DecodeCodepoint(*text, begin, &cp);
        if (!u_isUWhiteSpace(static_cast<UChar32>(cp))) break;
        begin += n;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>((*text)[start]) & 0xC0) == 0x80) --start;
        char32_t cp;
        DecodeCodepoint(*text, start, &cp);
        if (!u_isUWhiteSpace(static_cast<UChar32>(cp))) break;
        end = start;
      }
    }
    *text = text->substr(begin, end - begin);
    return absl::OkStatus();
  }

 private:
  bool left_, right_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  // Hugging Face prepends only to non-empty text.
  absl::Status Normalize(std::string* text) const override {
    if (!text->empty()) text->insert(0, prefix_);
    return absl::OkStatus();
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string literal, std::unique_ptr<Regex> regex, std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}
  absl::Status Normalize(std::string* text) const override {
    if (regex_ == nullptr) {
      if (!literal_.empty()) *text = absl::StrReplaceAll(*text, {{literal_, content_}});
      return absl::OkStatus();
    }
    std::vector<std::pair<size_t, size_t>> matches;
    if (absl::Status s = regex_->NewMatcher()->FindAll(*text, &matches); !s.ok()) return s;
    if (matches.empty()) return absl::OkStatus();
    std::string out;
    size_t prev = 0;
    for (const auto& [s, e] : matches) {
      out.append(*text, prev, s - prev);
      out += content_;
      prev = e;
    }
    out.append(*text, prev, std::string::npos);
    *text = std::move(out);
    return absl::OkStatus();
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

absl::StatusOr<const icu::Normalizer2*> GetForm(Form form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case Form::kNfc: n = icu::Normalizer2::getNFCInstance(status); break;
    case Form::kNfd: n = icu::Normalizer2::getNFDInstance(status); break;
    case Form::kNfkc: n = icu::Normalizer2::getNFKCInstance(status); break;
    case Form::kNfkd: n = icu::Normalizer2::getNFKDInstance(status); break;
  }
  if (U_FAILURE(status) || n == nullptr) {
    return absl::InternalError(absl::StrCat("ICU normalizer unavailable: ", u_errorName(status)));
  }
  return n;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> Normalizer::FromJson(const json& config) {
  if (config.is_null()) return std::unique_ptr<Normalizer>();
  if (!config.is_object() || !config.contains("type") || !config["type"].is_string()) {
    return absl::InvalidArgumentError("normalizer: expected an object with a string 'type'");
  }
  const std::string type = config["type"].get<std::string>();
  try {
    if (type == "Sequence") {
      std::vector<std::unique_ptr<Normalizer>> parts;
      for (const auto& sub : config.at("normalizers")) {
        auto part = FromJson(sub);
        if (!part.ok()) return part.status();
        if (*part != nullptr) parts.push_back(*std::move(part));
      }
      return std::make_unique<SequenceNormalizer>(std::move(parts));
    }
    if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
      const Form form = type == "NFC" ? Form::kNfc : type == "NFD" ? Form::kNfd
                        : type == "NFKC" ? Form::kNfkc : Form::kNfkd;
      auto impl = GetForm(form);
      if (!impl.ok()) return impl.status();
      return std::make_unique<UnicodeNormalizer>(*impl);
    }
    if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
    if (type == "Strip") {
      return std::make_unique<StripNormalizer>(config.value("strip_left", true),
                                               config.value("strip_right", true));
    }
    if (type == "Prepend") {
      return std::make_unique<PrependNormalizer>(config.at("prepend").get<std::string>());
    }
    if (type == "Replace") {
      const json& pattern = config.at("pattern");
      std::string content = config.at("content").get<std::string>();
      if (pattern.contains("Regex")) {
        auto regex = Regex::Compile(pattern["Regex"].get<std::string>());
        if (!regex.ok()) return regex.status();
        return std::make_unique<ReplaceNormalizer>("", *std::move(regex), std::move(content));
      }
      return std::make_unique<ReplaceNormalizer>(pattern.at("String").get<std::string>(), nullptr,
                                                 std::move(content));
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("normalizer ", type, ": ", e.what()));
  }
  return absl::UnimplementedError(absl::StrCat("unsupported normalizer type '", type, "'"));
}

}  // namespace glm::tokenizer
