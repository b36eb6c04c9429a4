#include "coordinator/tokenizer/decoder.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "coordinator/tokenizer/byte_level.h"

namespace glm::tokenizer {
namespace {

using nlohmann::json;

class ByteLevelDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    const ByteLevelTable& table = ByteLevelTable::Get();
    std::string bytes;
    for (const std::string& t : *tokens) {
      if (!table.Decode(t, &bytes)) bytes += t;
    }
    tokens->assign(1, std::move(bytes));
  }
  bool IsByteLevel() const override { return true; }
};

// ByteFallback: a "<0xHH>" token (exactly two hex digits) is that byte; anything else, "<0xZZ>"
// included, stays text (it used std::stoi, which threw on "<0xZZ>" and took the process down,
// and read "<0x1G>" as byte 0x01). The bytes are joined with the other tokens and invalid UTF-8 is
// repaired by the caller per maximal subpart. Hugging Face instead turns a whole invalid run of
// byte tokens into one U+FFFD per token; that is not prefix-stable (a later byte can turn
// already-valid earlier bytes of its run into U+FFFD), so streamed text could not equal the full
// decode. Valid text is the same either way.
class ByteFallbackDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens)
      if (const int byte = ByteOf(t); byte >= 0) t.assign(1, static_cast<char>(byte));
  }

 private:
  static int HexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  // The byte of a "<0xHH>" token, else -1.
  static int ByteOf(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
    const int hi = HexDigit(t[3]), lo = HexDigit(t[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      std::string& t = (*tokens)[i];
      t = absl::StrReplaceAll(t, {{replacement_, " "}});
      if (i == 0 && strip_first_ && !t.empty() && t[0] == ' ') t.erase(0, 1);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    if (from_.empty()) return;
    for (std::string& t : *tokens) t = absl::StrReplaceAll(t, {{from_, to_}});
  }

 private:
  std::string from_, to_;
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, int start, int stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) {
      for (int i = 0; i < start_ && t.compare(0, content_.size(), content_) == 0; ++i) {
        t.erase(0, content_.size());
      }
      for (int i = 0; i < stop_ && t.size() >= content_.size() &&
                      t.compare(t.size() - content_.size(), content_.size(), content_) == 0;
           ++i) {
        t.erase(t.size() - content_.size());
      }
    }
  }

 private:
  std::string content_;
  int start_, stop_;
};

class FuseDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    std::string all;
    for (const auto& t : *tokens) all += t;
    tokens->assign(1, std::move(all));
  }
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (const auto& p : parts_) p->DecodeChain(tokens);
  }
  bool IsByteLevel() const override { return parts_.size() == 1 && parts_[0]->IsByteLevel(); }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> Decoder::FromJson(const json& config) {
  if (config.is_null()) return std::unique_ptr<Decoder>();
  if (!config.is_object() || !config.contains("type") || !config["type"].is_string()) {
    return absl::InvalidArgumentError("decoder: expected an object with a string 'type'");
  }
  const std::string type = config["type"].get<std::string>();
  try {
    if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
    if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
    if (type == "Fuse") return std::make_unique<FuseDecoder>();
    if (type == "Metaspace") {
      const std::string scheme = config.value("prepend_scheme", std::string("always"));
      return std::make_unique<MetaspaceDecoder>(
          config.value("replacement", std::string("\xE2\x96\x81")),
          scheme != "never" && config.value("add_prefix_space", true));
    }
    if (type == "Replace") {
      return std::make_unique<ReplaceDecoder>(
          config.at("pattern").at("String").get<std::string>(),
          config.at("content").get<std::string>());
    }
    if (type == "Strip") {
      return std::make_unique<StripDecoder>(config.at("content").get<std::string>(),
                                            config.value("start", 0), config.value("stop", 0));
    }
    if (type == "Sequence") {
      std::vector<std::unique_ptr<Decoder>> parts;
      for (const auto& sub : config.at("decoders")) {
        auto part = FromJson(sub);
        if (!part.ok()) return part.status();
        if (*part != nullptr) parts.push_back(*std::move(part));
      }
      return std::make_unique<SequenceDecoder>(std::move(parts));
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("decoder ", type, ": ", e.what()));
  }
  return absl::UnimplementedError(absl::StrCat("unsupported decoder type '", type, "'"));
}

}  // namespace glm::tokenizer
