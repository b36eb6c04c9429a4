#include "coordinator/tokenizer/jinja_lexer.h"

#include <cctype>

#include "absl/strings/str_cat.h"
#include "coordinator/tokenizer/utf8.h"

namespace glm::tokenizer::jinja {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Python's str.rstrip() for the ASCII whitespace templates contain.
std::string RStrip(const std::string& s) {
  size_t end = s.size();
  while (end > 0 && IsSpace(s[end - 1])) --end;
  return s.substr(0, end);
}

class LexerImpl {
 public:
  LexerImpl(std::string source, const Lexer::Options& options)
      : src_(std::move(source)), opt_(options) {}

  absl::StatusOr<std::vector<Token>> Run() {
    bool line_starting = true;
    while (pos_ < src_.size()) {
      size_t tag = FindTag(pos_);
      std::string text = src_.substr(pos_, (tag == std::string::npos ? src_.size() : tag) - pos_);
      if (tag == std::string::npos) {
        Emit(Token::Type::kText, text);
        break;
      }
      const char kind = src_[tag + 1];  // '{', '%' or '#'.
      size_t p = tag + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      if (sign == '-') {
        text = RStrip(text);
      } else if (sign != '+' && opt_.lstrip_blocks && kind != '{') {
        // Strip the indentation before a block tag that starts its line.
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if (l_pos > 0 || line_starting) {
          bool all_ws = l_pos < text.size();
          for (size_t i = l_pos; i < text.size(); ++i) all_ws = all_ws && IsSpace(text[i]);
          if (all_ws) text.resize(l_pos);
        }
      }
      Emit(Token::Type::kText, text);
      AdvanceLines(pos_, tag);
      pos_ = p;
      if (kind == '#') {
        const size_t end = src_.find("#}", pos_);
        if (end == std::string::npos) return Error("unterminated comment");
        const char end_sign = (end > pos_ && (src_[end - 1] == '-' || src_[end - 1] == '+')) ? src_[end - 1] : 0;
        AdvanceLines(pos_, end + 2);
        pos_ = end + 2;
        line_starting = AfterTagEnd(end_sign, true);
        continue;
      }
      if (kind == '%' && IsRawBlock()) {
        auto s = LexRaw(&line_starting);
        if (!s.ok()) return s;
        continue;
      }
      Emit(kind == '%' ? Token::Type::kBlockBegin : Token::Type::kVarBegin, "");
      char end_sign = 0;
      auto s = LexExpression(kind == '%', &end_sign);
      if (!s.ok()) return s;
      Emit(kind == '%' ? Token::Type::kBlockEnd : Token::Type::kVarEnd, "");
      line_starting = AfterTagEnd(end_sign, kind == '%');
    }
    Emit(Token::Type::kEof, "");
    return std::move(tokens_);
  }

 private:
  size_t FindTag(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return std::string::npos;
  }

  // Applies `-%}` / trim_blocks after a tag; returns whether the next text starts a line.
  bool AfterTagEnd(char end_sign, bool is_block) {
    if (end_sign == '-') {
      const size_t start = pos_;
      while (pos_ < src_.size() && IsSpace(src_[pos_])) ++pos_;
      AdvanceLines(start, pos_);
      return pos_ > start && src_[pos_ - 1] == '\n';
    }
    if (is_block && end_sign != '+' && opt_.trim_blocks && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
      ++line_;
      return true;
    }
    return false;
  }

  bool IsRawBlock() const {
    size_t p = pos_;
    while (p < src_.size() && IsSpace(src_[p])) ++p;
    if (src_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    while (p < src_.size() && IsSpace(src_[p])) ++p;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    return src_.compare(p, 2, "%}") == 0;
  }

  absl::Status LexRaw(bool* line_starting) {
    size_t close = src_.find("%}", pos_);
    const char open_end_sign = (src_[close - 1] == '-' || src_[close - 1] == '+') ? src_[close - 1] : 0;
    AdvanceLines(pos_, close + 2);
    pos_ = close + 2;
    AfterTagEnd(open_end_sign, true);
    // Find {% endraw %}.
    for (size_t i = FindTag(pos_); i != std::string::npos; i = FindTag(i + 1)) {
      if (src_[i + 1] != '%') continue;
      size_t p = i + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      while (p < src_.size() && IsSpace(src_[p])) ++p;
      if (src_.compare(p, 6, "endraw") != 0) continue;
      p += 6;
      while (p < src_.size() && IsSpace(src_[p])) ++p;
      char end_sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) end_sign = src_[p++];
      if (src_.compare(p, 2, "%}") != 0) continue;
      std::string text = src_.substr(pos_, i - pos_);
      if (sign == '-') text = RStrip(text);
      Emit(Token::Type::kText, text);
      AdvanceLines(pos_, p + 2);
      pos_ = p + 2;
      *line_starting = AfterTagEnd(end_sign, true);
      return absl::OkStatus();
    }
    return Error("missing endraw");
  }

  absl::Status LexExpression(bool block, char* end_sign) {
    int depth = 0;  // Brackets: a '}' inside a dict literal is not the tag end.
    while (true) {
      while (pos_ < src_.size() && IsSpace(src_[pos_])) {
        if (src_[pos_] == '\n') ++line_;
        ++pos_;
      }
      if (pos_ >= src_.size()) return Error(block ? "unterminated block tag" : "unterminated {{");
      const char c = src_[pos_];
      // Tag end, with optional whitespace-control sign.
      if (depth == 0) {
        size_t q = pos_;
        char sign = 0;
        if (src_[q] == '-' || src_[q] == '+') sign = src_[q++];
        if (block && src_.compare(q, 2, "%}") == 0) {
          *end_sign = sign;
          pos_ = q + 2;
          return absl::OkStatus();
        }
        if (!block && src_.compare(q, 2, "}}") == 0 && sign != '+') {
          *end_sign = sign;
          pos_ = q + 2;
          return absl::OkStatus();
        }
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = pos_;
        while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        Emit(Token::Type::kName, src_.substr(pos_, e - pos_));
        pos_ = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        LexNumber();
      } else if (c == '\'' || c == '"') {
        auto s = LexString(c);
        if (!s.ok()) return s;
      } else {
        static const char* kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%",
                                     "~",  "<",  ">",  "(",  ")",  "[",  "]", "{", "}", ",", ".",
                                     ":",  "|",  "="};
        bool matched = false;
        for (const char* op : kOps) {
          const size_t n = std::char_traits<char>::length(op);
          if (src_.compare(pos_, n, op) == 0) {
            if (op[0] == '(' || op[0] == '[' || op[0] == '{') ++depth;
            if ((op[0] == ')' || op[0] == ']' || op[0] == '}') && depth > 0) --depth;
            Emit(Token::Type::kOp, op);
            pos_ += n;
            matched = true;
            break;
          }
        }
        if (!matched) return Error(absl::StrCat("unexpected character '", std::string(1, c), "'"));
      }
    }
  }

  void LexNumber() {
    size_t e = pos_;
    bool is_float = false;
    auto digits = [&] {
      while (e < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
    };
    digits();
    if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
      is_float = true;
      ++e;
      digits();
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t q = e + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) {
        is_float = true;
        e = q;
        digits();
      }
    }
    std::string num;
    for (size_t i = pos_; i < e; ++i) {
      if (src_[i] != '_') num.push_back(src_[i]);
    }
    Emit(is_float ? Token::Type::kFloat : Token::Type::kInt, num);
    pos_ = e;
  }

  absl::Status LexString(char quote) {
    std::string out;
    size_t p = pos_ + 1;
    while (p < src_.size() && src_[p] != quote) {
      char c = src_[p];
      if (c == '\n') ++line_;
      if (c == '\\' && p + 1 < src_.size()) {
        const char n = src_[++p];
        switch (n) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          case '0': out += '\0'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'v': out += '\v'; break;
          case 'a': out += '\a'; break;
          case 'x':
          case 'u':
          case 'U': {
            const size_t len = n == 'x' ? 2 : n == 'u' ? 4 : 8;
            if (p + len < src_.size()) {
              const std::string hex = src_.substr(p + 1, len);
              char* endp = nullptr;
              const unsigned long v = std::strtoul(hex.c_str(), &endp, 16);
              if (endp == hex.c_str() + len) {
                AppendCodepoint(static_cast<char32_t>(v), &out);
                p += len;
                break;
              }
            }
            out += '\\';
            out += n;
            break;
          }
          case '\\':
          case '\'':
          case '"': out += n; break;
          case '\n': break;  // Line continuation.
          default:
            out += '\\';
            out += n;
        }
        ++p;
        continue;
      }
      out += c;
      ++p;
    }
    if (p >= src_.size()) return Error("unterminated string literal");
    Emit(Token::Type::kString, out);
    pos_ = p + 1;
    return absl::OkStatus();
  }

  void Emit(Token::Type type, std::string value) {
    if (type == Token::Type::kText && value.empty()) return;
    tokens_.push_back(Token{type, std::move(value), line_});
  }

  void AdvanceLines(size_t from, size_t to) {
    for (size_t i = from; i < to && i < src_.size(); ++i) line_ += src_[i] == '\n';
  }

  absl::Status Error(const std::string& msg) const {
    return absl::InvalidArgumentError(absl::StrCat("template syntax error (line ", line_, "): ", msg));
  }

  std::string src_;
  Lexer::Options opt_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

// Jinja2 normalizes every newline sequence to "\n" and, without keep_trailing_newline, drops
// one trailing newline of the template.
std::string NormalizeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace

absl::StatusOr<std::vector<Token>> Lexer::Tokenize(std::string_view source, const Options& options) {
  LexerImpl impl(NormalizeNewlines(source), options);
  return impl.Run();
}

}  // namespace glm::tokenizer::jinja
