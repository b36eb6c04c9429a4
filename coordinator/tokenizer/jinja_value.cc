#include "coordinator/tokenizer/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

#include "absl/strings/str_cat.h"
#include "coordinator/tokenizer/status_macros.h"
#include "coordinator/tokenizer/utf8.h"

namespace glm::tokenizer::jinja {

namespace {
int ItemsDepth(const ValueList& items) {
  int d = 0;
  for (const Value& v : items) d = std::max(d, v.depth());
  return d + 1;
}
int EntriesDepth(const Value::Dict& entries) {
  int d = 0;
  for (const auto& [k, v] : entries) d = std::max(d, v.depth());
  return d + 1;
}
}  // namespace

namespace {

// Containers whose last owner is being destroyed, waiting to be freed by the outermost
// ~Value on this thread.
struct PendingFrees {
  std::vector<std::shared_ptr<ValueList>> lists;
  std::vector<std::shared_ptr<Value::Dict>> dicts;
  std::vector<std::shared_ptr<NativeFunction>> fns;
};
thread_local PendingFrees* t_pending = nullptr;

}  // namespace

Value::~Value() {
  if (list_ == nullptr && dict_ == nullptr && fn_ == nullptr) return;
  PendingFrees local;
  const bool outermost = t_pending == nullptr;
  if (outermost) t_pending = &local;
  PendingFrees* pending = t_pending;
  // Only containers this value alone holds are handed over; shared ones just lose a reference.
  if (list_ != nullptr && list_.use_count() == 1) pending->lists.push_back(std::move(list_));
  if (dict_ != nullptr && dict_.use_count() == 1) pending->dicts.push_back(std::move(dict_));
  if (fn_ != nullptr && fn_.use_count() == 1) pending->fns.push_back(std::move(fn_));
  if (!outermost) return;
  // Freeing one container runs its items' destructors, which queue their own containers here
  // instead of recursing.
  while (true) {
    if (!pending->lists.empty()) {
      std::shared_ptr<ValueList> p = std::move(pending->lists.back());
      pending->lists.pop_back();
      p.reset();
    } else if (!pending->dicts.empty()) {
      std::shared_ptr<Dict> p = std::move(pending->dicts.back());
      pending->dicts.pop_back();
      p.reset();
    } else if (!pending->fns.empty()) {
      std::shared_ptr<NativeFunction> p = std::move(pending->fns.back());
      pending->fns.pop_back();
      p.reset();
    } else {
      break;
    }
  }
  t_pending = nullptr;
}

Value Value::List(ValueList items) {
  Value v(Kind::kList);
  v.depth_ = ItemsDepth(items);
  v.list_ = std::make_shared<ValueList>(std::move(items));
  return v;
}

Value Value::Tuple(ValueList items) {
  Value v = List(std::move(items));
  v.tuple_ = true;
  return v;
}

Value Value::MakeDict(Dict entries) {
  Value v(Kind::kDict);
  v.depth_ = EntriesDepth(entries);
  v.dict_ = std::make_shared<Dict>(std::move(entries));
  return v;
}

Value Value::StringWithObject(std::string text, const Value& object) {
  Value v(Kind::kString);
  v.str_ = std::move(text);
  v.dict_ = object.dict_;
  v.depth_ = object.depth_;
  return v;
}

Value Value::object() const {
  Value v(Kind::kDict);
  v.dict_ = dict_;
  v.depth_ = depth_;
  return v;
}

Value Value::Namespace(Dict entries) {
  Value v(Kind::kNamespace);
  v.depth_ = EntriesDepth(entries);
  v.dict_ = std::make_shared<Dict>(std::move(entries));
  return v;
}

Value Value::Unsigned(uint64_t u) {
  if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return Int(static_cast<int64_t>(u));
  Value v = Int(std::numeric_limits<int64_t>::max());
  v.str_ = std::to_string(u);
  return v;
}

Value Value::Function(std::string name, NativeFunction fn) {
  Value v(Kind::kFunction);
  v.str_ = std::move(name);
  v.fn_ = std::make_shared<NativeFunction>(std::move(fn));
  return v;
}

Value Value::FromJson(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return None();
    case nlohmann::ordered_json::value_t::boolean: return Bool(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Int(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: return Unsigned(j.get<uint64_t>());
    case nlohmann::ordered_json::value_t::number_float: return Float(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return String(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      ValueList items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(FromJson(e));
      return List(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict entries;
      entries.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) entries.emplace_back(it.key(), FromJson(it.value()));
      return MakeDict(std::move(entries));
    }
    default: return None();
  }
}

const Value* Value::Find(const std::string& key) const {
  if (!dict_) return nullptr;
  for (const auto& [k, v] : *dict_) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Value::Set(const std::string& key, Value v) {
  depth_ = std::max(depth_, v.depth_ + 1);
  for (auto& [k, old] : *dict_) {
    if (k == key) {
      old = std::move(v);
      return;
    }
  }
  dict_->emplace_back(key, std::move(v));
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool:
    case Kind::kInt: return int_ != 0;
    case Kind::kFloat: return float_ != 0.0;
    case Kind::kString: return !str_.empty();
    case Kind::kList: return !list_->empty();
    case Kind::kDict: return !dict_->empty();
    default: return true;
  }
}

bool IsPythonSpace(char32_t c) {
  return (c >= 9 && c <= 13) || (c >= 28 && c <= 32) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

std::string PythonFloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  // Shortest round-trip digits, then Python's layout: fixed for 1e-4 <= |d| < 1e16,
  // scientific otherwise, always showing a fractional part or exponent.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  const size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  const int exp = std::stoi(sci.substr(e + 1));
  const bool neg = !mant.empty() && mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant) {
    if (c != '.') digits.push_back(c);
  }
  std::string out;
  if (exp >= -5 && exp < 16) {
    if (exp >= 0) {
      if (static_cast<int>(digits.size()) <= exp + 1) {
        out = digits + std::string(exp + 1 - digits.size(), '0') + ".0";
      } else {
        out = digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
      }
    } else {
      out = "0." + std::string(-exp - 1, '0') + digits;
    }
    // Python switches to exponent form below 1e-4.
    if (exp < -4) out.clear();
  }
  if (out.empty()) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[32];
    std::snprintf(eb, sizeof(eb), "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    out += eb;
  }
  return neg ? "-" + out : out;
}

namespace {

std::string ReprString(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t cp;
    const size_t n = DecodeCodepoint(s, pos, &cp);
    if (cp == '\\') {
      out += "\\\\";
    } else if (cp == static_cast<char32_t>(quote)) {
      out += '\\';
      out += quote;
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) {
      char b[8];
      std::snprintf(b, sizeof(b), "\\x%02x", static_cast<unsigned>(cp));
      out += b;
    } else {
      out.append(s, pos, n);
    }
    pos += n;
  }
  out += quote;
  return out;
}

void JsonEscape(const std::string& s, bool ensure_ascii, std::string* out) {
  out->push_back('"');
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t cp;
    const size_t n = DecodeCodepoint(s, pos, &cp);
    switch (cp) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      case '\b': *out += "\\b"; break;
      case '\f': *out += "\\f"; break;
      default:
        if (cp < 0x20 || (ensure_ascii && cp >= 0x7F)) {
          auto hex = [out](unsigned v) {
            char b[16];
            std::snprintf(b, sizeof(b), "\\u%04x", v);
            *out += b;
          };
          if (cp >= 0x10000) {
            const char32_t v = cp - 0x10000;
            hex(0xD800 + (v >> 10));
            hex(0xDC00 + (v & 0x3FF));
          } else {
            hex(static_cast<unsigned>(cp));
          }
        } else {
          out->append(s, pos, n);
        }
    }
    pos += n;
  }
  out->push_back('"');
}

}  // namespace

std::string Value::Str() const {
  switch (kind_) {
    case Kind::kUndefined: return "";
    case Kind::kString: return str_;
    default: return Repr();
  }
}

std::string Value::Repr() const {
  switch (kind_) {
    case Kind::kUndefined: return "";
    case Kind::kNone: return "None";
    case Kind::kBool: return int_ ? "True" : "False";
    case Kind::kInt: return str_.empty() ? std::to_string(int_) : str_;
    case Kind::kFloat: return PythonFloatRepr(float_);
    case Kind::kString: return ReprString(str_);
    case Kind::kList: {
      std::string out = tuple_ ? "(" : "[";
      for (size_t i = 0; i < list_->size(); ++i) {
        if (i) out += ", ";
        out += (*list_)[i].Repr();
      }
      if (tuple_ && list_->size() == 1) out += ",";
      return out + (tuple_ ? ")" : "]");
    }
    case Kind::kDict: {
      std::string out = "{";
      for (size_t i = 0; i < dict_->size(); ++i) {
        if (i) out += ", ";
        out += ReprString((*dict_)[i].first) + ": " + (*dict_)[i].second.Repr();
      }
      return out + "}";
    }
    case Kind::kNamespace: return "<Namespace>";
    case Kind::kFunction: return "<function " + str_ + ">";
  }
  return "";
}

std::string Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined: return "undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "Namespace";
    case Kind::kFunction: return "function";
  }
  return "object";
}

namespace {
// tojson recurses per nesting level and a namespace can contain itself (ns.self = ns), so the
// depth is bounded; the output is bounded like every other template string (see
// internal::kMaxStringBytes in jinja_builtins.h).
constexpr int kMaxJsonDepth = 512;
constexpr size_t kMaxJsonBytes = size_t{16} << 20;
}  // namespace

absl::Status Value::WriteJson(std::string* out, bool ensure_ascii, int indent, int depth,
                              const std::string& item_sep, const std::string& key_sep,
                              bool sort_keys) const {
  if (depth > kMaxJsonDepth) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tojson: value nested more than ", kMaxJsonDepth, " levels deep (or containing itself)"));
  }
  if (out->size() > kMaxJsonBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tojson output is over the ", kMaxJsonBytes, "-byte limit"));
  }
  auto newline = [&](int d) {
    if (indent < 0) return;
    out->push_back('\n');
    out->append(static_cast<size_t>(indent) * d, ' ');
  };
  switch (kind_) {
    case Kind::kNone: *out += "null"; return absl::OkStatus();
    case Kind::kBool: *out += int_ ? "true" : "false"; return absl::OkStatus();
    case Kind::kInt: *out += str_.empty() ? std::to_string(int_) : str_; return absl::OkStatus();
    case Kind::kFloat:
      if (std::isnan(float_)) {
        *out += "NaN";
      } else if (std::isinf(float_)) {
        *out += float_ > 0 ? "Infinity" : "-Infinity";
      } else {
        *out += PythonFloatRepr(float_);
      }
      return absl::OkStatus();
    case Kind::kString: JsonEscape(str_, ensure_ascii, out); return absl::OkStatus();
    case Kind::kList: {
      if (list_->empty()) {
        *out += "[]";
        return absl::OkStatus();
      }
      out->push_back('[');
      for (size_t i = 0; i < list_->size(); ++i) {
        if (i) *out += item_sep;
        newline(depth + 1);
        GLM_RETURN_IF_ERROR((*list_)[i].WriteJson(out, ensure_ascii, indent, depth + 1, item_sep,
                                                  key_sep, sort_keys));
      }
      newline(depth);
      out->push_back(']');
      return absl::OkStatus();
    }
    case Kind::kDict:
    case Kind::kNamespace: {
      if (dict_->empty()) {
        *out += "{}";
        return absl::OkStatus();
      }
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& e : *dict_) entries.push_back(&e);
      if (sort_keys) {
        std::stable_sort(entries.begin(), entries.end(),
                         [](const auto* a, const auto* b) { return a->first < b->first; });
      }
      out->push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) *out += item_sep;
        newline(depth + 1);
        JsonEscape(entries[i]->first, ensure_ascii, out);
        *out += key_sep;
        GLM_RETURN_IF_ERROR(entries[i]->second.WriteJson(out, ensure_ascii, indent, depth + 1,
                                                         item_sep, key_sep, sort_keys));
      }
      newline(depth);
      out->push_back('}');
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("Object of type ", TypeName(), " is not JSON serializable"));
  }
}

absl::StatusOr<std::string> Value::ToJson(bool ensure_ascii, int indent,
                                          const std::string& item_sep, const std::string& key_sep,
                                          bool sort_keys) const {
  std::string out;
  GLM_RETURN_IF_ERROR(WriteJson(&out, ensure_ascii, indent, 0, item_sep, key_sep, sort_keys));
  return out;
}

absl::StatusOr<nlohmann::ordered_json> Value::ToJsonValue() const {
  GLM_ASSIGN_OR_RETURN(std::string text, ToJson(false, -1, ",", ":", false));
  return nlohmann::ordered_json::parse(text, nullptr, false);
}

bool Value::Equals(const Value& o) const {
  if (is_number() && o.is_number()) {
    if (kind_ == Kind::kFloat || o.kind_ == Kind::kFloat) return as_float() == o.as_float();
    return int_ == o.int_ && str_ == o.str_;  // str_: the exact text of an Unsigned past INT64_MAX
  }
  if (kind_ != o.kind_) return false;
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone: return true;
    case Kind::kString: return str_ == o.str_;
    case Kind::kList:
      if (tuple_ != o.tuple_ || list_->size() != o.list_->size()) return false;
      for (size_t i = 0; i < list_->size(); ++i) {
        if (!(*list_)[i].Equals((*o.list_)[i])) return false;
      }
      return true;
    case Kind::kDict:
      if (dict_->size() != o.dict_->size()) return false;
      for (const auto& [k, v] : *dict_) {
        const Value* ov = o.Find(k);
        if (ov == nullptr || !v.Equals(*ov)) return false;
      }
      return true;
    case Kind::kNamespace: return dict_ == o.dict_;
    case Kind::kFunction: return fn_ == o.fn_;
    default: return false;
  }
}

absl::StatusOr<bool> Value::Less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_float() < b.as_float();
    return a.int_ < b.int_;
  }
  if (a.is_string() && b.is_string()) return a.str_ < b.str_;  // UTF-8 order = code point order.
  if (a.is_list() && b.is_list()) {
    const auto& x = *a.list_;
    const auto& y = *b.list_;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (x[i].Equals(y[i])) continue;
      return Less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  return absl::InvalidArgumentError(absl::StrCat("'<' not supported between instances of '",
                                                 a.TypeName(), "' and '", b.TypeName(), "'"));
}

}  // namespace glm::tokenizer::jinja
