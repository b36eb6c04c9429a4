#include "coordinator/tokenizer/jinja_builtins.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <cmath>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "coordinator/tokenizer/jinja_interpreter.h"
#include "coordinator/tokenizer/status_macros.h"
#include "coordinator/tokenizer/utf8.h"

namespace glm::tokenizer::jinja {
namespace {
using Status = absl::Status;
}  // namespace

namespace internal {

constexpr int64_t kMaxRange = 100000;  // Jinja's sandbox limit.

absl::Status TypeError(const std::string& msg) { return absl::InvalidArgumentError(msg); }

absl::Status CheckStringSize(size_t bytes, const std::string& what) {
  if (bytes <= kMaxStringBytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(what, " would produce ", bytes,
                                                   " bytes, over the ", kMaxStringBytes,
                                                   "-byte limit for one template value"));
}


std::u32string ToU32(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t cp;
    pos += DecodeCodepoint(s, pos, &cp);
    out.push_back(cp);
  }
  return out;
}

std::string FromU32(const std::u32string& s) {
  std::string out;
  for (char32_t cp : s) AppendCodepoint(cp, &out);
  return out;
}

// Positional-or-keyword argument lookup.
Value Arg(const ValueList& args, const KwArgs& kwargs, size_t index, const std::string& name,
          Value fallback) {
  if (index < args.size()) return args[index];
  for (const auto& [k, v] : kwargs) {
    if (k == name) return v;
  }
  return fallback;
}

std::string StripChars(const std::string& s, const Value& chars, bool left, bool right) {
  const std::u32string u = ToU32(s);
  const std::u32string set = chars.is_string() ? ToU32(chars.as_string()) : std::u32string();
  auto strip = [&](char32_t c) {
    return chars.is_string() ? set.find(c) != std::u32string::npos : IsPythonSpace(c);
  };
  size_t b = 0, e = u.size();
  if (left) {
    while (b < e && strip(u[b])) ++b;
  }
  if (right) {
    while (e > b && strip(u[e - 1])) --e;
  }
  return FromU32(u.substr(b, e - b));
}

std::string MapCase(const std::string& s, int mode) {  // 0 lower, 1 upper, 2 title, 3 capitalize
  std::u32string u = ToU32(s);
  bool prev_cased = false;
  for (size_t i = 0; i < u.size(); ++i) {
    const auto c = static_cast<UChar32>(u[i]);
    bool upper = mode == 1;
    if (mode == 2) upper = !prev_cased;
    if (mode == 3) upper = i == 0;
    u[i] = static_cast<char32_t>(upper ? u_toupper(c) : u_tolower(c));
    prev_cased = u_hasBinaryProperty(c, UCHAR_CASED) != 0;
  }
  return FromU32(u);
}

ValueList SplitString(const std::string& s, const Value& sep, int64_t maxsplit, bool from_right) {
  ValueList out;
  if (!sep.is_string()) {
    // Whitespace split: runs of whitespace, no empty strings.
    const std::u32string u = ToU32(s);
    std::vector<std::pair<size_t, size_t>> words;
    size_t i = 0;
    while (i < u.size()) {
      while (i < u.size() && IsPythonSpace(u[i])) ++i;
      if (i == u.size()) break;
      size_t j = i;
      while (j < u.size() && !IsPythonSpace(u[j])) ++j;
      words.emplace_back(i, j);
      i = j;
    }
    if (maxsplit >= 0 && static_cast<int64_t>(words.size()) > maxsplit + 1) {
      if (from_right) {
        const size_t k = words.size() - maxsplit - 1;
        std::u32string head = u.substr(0, words[k].second);
        size_t b = 0;
        while (b < head.size() && IsPythonSpace(head[b])) ++b;
        out.push_back(Value::String(FromU32(head.substr(b))));
        for (size_t w = k + 1; w < words.size(); ++w) {
          out.push_back(Value::String(FromU32(u.substr(words[w].first, words[w].second - words[w].first))));
        }
        return out;
      }
      for (int64_t w = 0; w < maxsplit; ++w) {
        out.push_back(Value::String(FromU32(u.substr(words[w].first, words[w].second - words[w].first))));
      }
      std::u32string tail = u.substr(words[maxsplit].first);
      size_t e = tail.size();
      while (e > 0 && IsPythonSpace(tail[e - 1])) --e;
      out.push_back(Value::String(FromU32(tail.substr(0, e))));
      return out;
    }
    for (const auto& [b, e] : words) out.push_back(Value::String(FromU32(u.substr(b, e - b))));
    return out;
  }
  const std::string& d = sep.as_string();
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t p = s.find(d, start);
    if (p == std::string::npos) break;
    parts.push_back(s.substr(start, p - start));
    start = p + d.size();
  }
  parts.push_back(s.substr(start));
  if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) > maxsplit + 1) {
    std::vector<std::string> merged;
    if (from_right) {
      const size_t k = parts.size() - maxsplit;
      std::string head = parts[0];
      for (size_t i = 1; i < k; ++i) head += d + parts[i];
      merged.push_back(head);
      merged.insert(merged.end(), parts.begin() + k, parts.end());
    } else {
      merged.assign(parts.begin(), parts.begin() + maxsplit);
      std::string tail = parts[maxsplit];
      for (size_t i = maxsplit + 1; i < parts.size(); ++i) tail += d + parts[i];
      merged.push_back(tail);
    }
    parts = std::move(merged);
  }
  for (auto& p : parts) out.push_back(Value::String(std::move(p)));
  return out;
}

absl::StatusOr<std::string> Replace(const std::string& s, const std::string& from,
                                    const std::string& to, int64_t count) {
  if (from.empty()) return s;
  std::string out;
  size_t start = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    const size_t p = s.find(from, start);
    if (p == std::string::npos) break;
    // Each match can grow the output by to.size(): a long replacement of a frequent pattern
    // amplifies.
    GLM_RETURN_IF_ERROR(CheckStringSize(out.size() + (p - start) + to.size(), "replace"));
    out.append(s, start, p - start);
    out += to;
    start = p + from.size();
    ++n;
  }
  out.append(s, start, std::string::npos);
  return out;
}

bool MatchesAffix(const std::string& s, const Value& affix, bool prefix) {
  auto one = [&](const std::string& a) {
    if (a.size() > s.size()) return false;
    return prefix ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0;
  };
  if (affix.is_list()) {
    for (const Value& v : affix.list()) {
      if (v.is_string() && one(v.as_string())) return true;
    }
    return false;
  }
  return affix.is_string() && one(affix.as_string());
}

// Python str.format with {} / {0} / {name} fields (no format specs).
absl::StatusOr<std::string> Format(const std::string& fmt, const ValueList& args, const KwArgs& kwargs) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] == '{' && i + 1 < fmt.size() && fmt[i + 1] == '{') { out += '{'; ++i; continue; }
    if (fmt[i] == '}' && i + 1 < fmt.size() && fmt[i + 1] == '}') { out += '}'; ++i; continue; }
    if (fmt[i] != '{') { out += fmt[i]; continue; }
    const size_t close = fmt.find('}', i);
    if (close == std::string::npos) return TypeError("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    if (const size_t colon = field.find(':'); colon != std::string::npos) field.resize(colon);
    Value v;
    if (field.empty()) {
      if (auto_index >= args.size()) return TypeError("Replacement index out of range");
      v = args[auto_index++];
    } else if (std::isdigit(static_cast<unsigned char>(field[0]))) {
      // Digits only up to the first non-digit, overflow-free (std::stoul would throw).
      size_t idx = 0;
      for (size_t j = 0; j < field.size() && std::isdigit(static_cast<unsigned char>(field[j])); ++j) {
        idx = std::min<size_t>(idx * 10 + (field[j] - '0'), args.size());
      }
      if (idx >= args.size()) return TypeError("Replacement index out of range");
      v = args[idx];
    } else {
      v = Arg({}, kwargs, 0, field);
      if (v.is_undefined()) return TypeError(absl::StrCat("KeyError: '", field, "'"));
    }
    out += v.Str();
    i = close;
  }
  return out;
}

}  // namespace internal

namespace {

using namespace internal;  // NOLINT: helpers shared with the filters file.

Value Method(const Value& self, const std::string& name, NativeFunction fn) {
  (void)self;
  return Value::Function(name, std::move(fn));
}

Value Unsafe(const std::string& type, const std::string& name) {
  return Value::Function(name, [type, name](const ValueList&, const KwArgs&) -> absl::StatusOr<Value> {
    return absl::PermissionDeniedError(absl::StrCat("access to attribute '", name, "' of '", type,
                                                    "' object is unsafe"));
  });
}

std::optional<Value> StringMethod(const Value& self, const std::string& name) {
  const std::string s = self.as_string();
  auto str = [&](auto fn) { return Method(self, name, fn); };
  if (name == "startswith" || name == "endswith") {
    const bool prefix = name == "startswith";
    return str([s, prefix](const ValueList& a, const KwArgs&) -> absl::StatusOr<Value> {
      if (a.empty()) return TypeError("startswith/endswith takes at least 1 argument");
      return Value::Bool(MatchesAffix(s, a[0], prefix));
    });
  }
  if (name == "split" || name == "rsplit") {
    const bool right = name == "rsplit";
    return str([s, right](const ValueList& a, const KwArgs& k) -> absl::StatusOr<Value> {
      const Value sep = Arg(a, k, 0, "sep", Value::None());
      if (sep.is_string() && sep.as_string().empty()) return TypeError("empty separator");
      const Value maxsplit = Arg(a, k, 1, "maxsplit", Value::Int(-1));
      return Value::List(SplitString(s, sep, maxsplit.as_int(), right));
    });
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const bool l = name != "rstrip", r = name != "lstrip";
    return str([s, l, r](const ValueList& a, const KwArgs& k) -> absl::StatusOr<Value> {
      return Value::String(StripChars(s, Arg(a, k, 0, "chars", Value::None()), l, r));
    });
  }
  static const std::pair<const char*, int> kCases[] = {{"lower", 0}, {"upper", 1}, {"title", 2}, {"capitalize", 3}};
  for (const auto& [case_name, mode] : kCases) {
    if (name == case_name) {
      const int m = mode;
      return str([s, m](const ValueList&, const KwArgs&) -> absl::StatusOr<Value> {
        return Value::String(MapCase(m == 3 ? MapCase(s, 0) : s, m));
      });
    }
  }
  if (name == "replace") {
    return str([s](const ValueList& a, const KwArgs& k) -> absl::StatusOr<Value> {
      if (a.size() < 2 || !a[0].is_string() || !a[1].is_string()) return TypeError("replace() takes 2 strings");
      GLM_ASSIGN_OR_RETURN(std::string out, Replace(s, a[0].as_string(), a[1].as_string(),
                                                    Arg(a, k, 2, "count", Value::Int(-1)).as_int()));
      return Value::String(std::move(out));
    });
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "count") {
    const std::string n = name;
    return str([s, n](const ValueList& a, const KwArgs&) -> absl::StatusOr<Value> {
      if (a.empty() || !a[0].is_string()) return TypeError(n + "() needs a string argument");
      const std::string& sub = a[0].as_string();
      if (n == "count") {
        if (sub.empty()) return Value::Int(Builtins::Length(s) + 1);
        int64_t c = 0;
        for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++c;
        return Value::Int(c);
      }
      const size_t p = n == "rfind" ? s.rfind(sub) : s.find(sub);
      if (p == std::string::npos) {
        if (n == "index") return TypeError("substring not found");
        return Value::Int(-1);
      }
      return Value::Int(Builtins::Length(s.substr(0, p)));
    });
  }
  if (name == "join") {
    return str([s](const ValueList& a, const KwArgs&) -> absl::StatusOr<Value> {
      if (a.empty()) return TypeError("join() takes 1 argument");
      GLM_ASSIGN_OR_RETURN(ValueList items, Builtins::Iterate(a[0]));
      std::string out;
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += s;
        out += items[i].Str();
        GLM_RETURN_IF_ERROR(CheckStringSize(out.size(), "join"));
      }
      return Value::String(std::move(out));
    });
  }
  if (name == "splitlines") {
    return str([s](const ValueList& a, const KwArgs& k) -> absl::StatusOr<Value> {
      const bool keep = Arg(a, k, 0, "keepends", Value::Bool(false)).Truthy();
      ValueList out;
      size_t start = 0;
      for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\n' && s[i] != '\r') continue;
        size_t end = i;
        if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
        out.push_back(Value::String(s.substr(start, (keep ? i + 1 : end) - start)));
        start = i + 1;
      }
      if (start < s.size()) out.push_back(Value::String(s.substr(start)));
      return Value::List(std::move(out));
    });
  }
  if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" ||
      name == "islower" || name == "isupper") {
    const std::string n = name;
    return str([s, n](const ValueList&, const KwArgs&) -> absl::StatusOr<Value> {
      const std::u32string u = ToU32(s);
      if (u.empty()) return Value::Bool(false);
      bool ok = true, cased = false;
      for (char32_t c : u) {
        const auto uc = static_cast<UChar32>(c);
        if (n == "isdigit") ok = ok && u_isdigit(uc);
        if (n == "isalpha") ok = ok && u_isalpha(uc);
        if (n == "isalnum") ok = ok && (u_isalpha(uc) || u_isdigit(uc));
        if (n == "isspace") ok = ok && IsPythonSpace(c);
        if (n == "islower") { ok = ok && !u_isupper(uc); cased = cased || u_islower(uc); }
        if (n == "isupper") { ok = ok && !u_islower(uc); cased = cased || u_isupper(uc); }
      }
      if (n == "islower" || n == "isupper") ok = ok && cased;
      return Value::Bool(ok);
    });
  }
  if (name == "format") {
    return str([s](const ValueList& a, const KwArgs& k) -> absl::StatusOr<Value> {
      GLM_ASSIGN_OR_RETURN(std::string out, Format(s, a, k));
      return Value::String(std::move(out));
    });
  }
  return std::nullopt;
}

std::optional<Value> DictMethod(const Value& self, const std::string& name) {
  if (name == "items" || name == "keys" || name == "values") {
    const std::string n = name;
    return Method(self, name, [self, n](const ValueList&, const KwArgs&) -> absl::StatusOr<Value> {
      ValueList out;
      for (const auto& [k, v] : self.dict()) {
        if (n == "items") out.push_back(Value::Tuple({Value::String(k), v}));
        if (n == "keys") out.push_back(Value::String(k));
        if (n == "values") out.push_back(v);
      }
      return Value::List(std::move(out));
    });
  }
  if (name == "get") {
    return Method(self, name, [self](const ValueList& a, const KwArgs& k) -> absl::StatusOr<Value> {
      if (a.empty()) return TypeError("get expected at least 1 argument");
      const Value* v = a[0].is_string() ? self.Find(a[0].as_string()) : nullptr;
      return v != nullptr ? *v : Arg(a, k, 1, "default", Value::None());
    });
  }
  if (name == "copy") {
    return Method(self, name, [self](const ValueList&, const KwArgs&) -> absl::StatusOr<Value> {
      return Value::MakeDict(self.dict());
    });
  }
  if (name == "update" || name == "pop" || name == "setdefault" || name == "clear" || name == "popitem") {
    return Unsafe("dict", name);
  }
  return std::nullopt;
}

std::optional<Value> ListMethod(const Value& self, const std::string& name) {
  if (name == "index" || name == "count") {
    const bool index = name == "index";
    return Method(self, name, [self, index](const ValueList& a, const KwArgs&) -> absl::StatusOr<Value> {
      if (a.empty()) return TypeError("expected 1 argument");
      int64_t count = 0;
      for (size_t i = 0; i < self.list().size(); ++i) {
        if (!self.list()[i].Equals(a[0])) continue;
        if (index) return Value::Int(static_cast<int64_t>(i));
        ++count;
      }
      if (index) return TypeError("value is not in list");
      return Value::Int(count);
    });
  }
  if (name == "append" || name == "extend" || name == "pop" || name == "insert" ||
      name == "remove" || name == "clear" || name == "sort" || name == "reverse") {
    return Unsafe("list", name);
  }
  return std::nullopt;
}

}  // namespace

namespace internal {

// Attribute chain for selectattr/map/sort attribute= ("a.b" and "0").
Value AttributePath(const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    if (dot == std::string::npos) dot = path.size();
    const std::string part = path.substr(start, dot - start);
    Value key = Value::String(part);
    if (!part.empty() && part.size() <= 18 && std::all_of(part.begin(), part.end(), ::isdigit)) {
      key = Value::Int(std::stoll(part));  // <= 18 digits: cannot overflow (stoll would throw).
    } else if (!part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) {
      return Value::Undefined();  // An index past any list.
    }
    auto next = Builtins::GetItem(cur, key);
    if (!next.ok()) return Value::Undefined();
    cur = *next;
    start = dot + 1;
  }
  return cur;
}

absl::StatusOr<ValueList> SortValues(ValueList items, bool reverse, bool case_sensitive,
                                     const Value& attribute) {
  auto key = [&](const Value& v) {
    Value k = attribute.is_string() ? AttributePath(v, attribute.as_string()) : v;
    if (!case_sensitive && k.is_string()) k = Value::String(MapCase(k.as_string(), 0));
    return k;
  };
  absl::Status err;
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    auto r = reverse ? Value::Less(key(b), key(a)) : Value::Less(key(a), key(b));
    if (!r.ok()) {
      err = r.status();
      return false;
    }
    return *r;
  });
  if (!err.ok()) return err;
  return items;
}

}  // namespace internal

int64_t Builtins::Length(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

absl::StatusOr<Value> Builtins::GetAttr(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      return TypeError(obj.undefined_hint().empty()
                           ? absl::StrCat("undefined value has no attribute '", name, "'")
                           : obj.undefined_hint());
    case Value::Kind::kString:
      if (auto m = StringMethod(obj, name)) return *m;
      if (obj.has_object()) return GetAttr(obj.object(), name);  // tool-call arguments (StringWithObject)
      break;
    case Value::Kind::kList:
      if (auto m = ListMethod(obj, name)) return *m;
      break;
    case Value::Kind::kDict:
      if (auto m = DictMethod(obj, name)) return *m;
      if (const Value* v = obj.Find(name)) return *v;
      break;
    case Value::Kind::kNamespace:
      if (const Value* v = obj.Find(name)) return *v;
      break;
    default:
      break;
  }
  return Value::Undefined(absl::StrCat("'", obj.TypeName(), " object' has no attribute '", name, "'"));
}

absl::StatusOr<Value> Builtins::GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) return GetAttr(obj, key.Str());
  if ((obj.is_dict() || obj.is_namespace()) && key.is_string()) {
    if (const Value* v = obj.Find(key.as_string())) return *v;
    if (obj.is_dict()) {
      if (auto m = DictMethod(obj, key.as_string())) return *m;
    }
    return Value::Undefined(absl::StrCat("'", obj.TypeName(), " object' has no attribute '",
                                         key.as_string(), "'"));
  }
  if (obj.has_object() && key.is_string()) return GetItem(obj.object(), key);
  if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t i = key.as_int();
    if (obj.is_list()) {
      const int64_t n = static_cast<int64_t>(obj.list().size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::Undefined(absl::StrCat("list object has no element ", key.as_int()));
      return obj.list()[i];
    }
    const std::u32string u = ToU32(obj.as_string());
    const int64_t n = static_cast<int64_t>(u.size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::Undefined("string index out of range");
    return Value::String(FromU32(u.substr(i, 1)));
  }
  if (key.is_string()) return GetAttr(obj, key.as_string());
  return Value::Undefined(absl::StrCat("'", obj.TypeName(), " object' has no element ", key.Repr()));
}

absl::StatusOr<Value> Builtins::Slice(const Value& obj, const Value& start, const Value& stop,
                                      const Value& step) {
  if (!obj.is_list() && !obj.is_string()) {
    return TypeError(absl::StrCat("'", obj.TypeName(), "' object is not subscriptable"));
  }
  const int64_t raw_step = step.is_none() ? 1 : step.as_int();
  if (raw_step == 0) return TypeError("slice step cannot be zero");
  const std::u32string u = obj.is_string() ? ToU32(obj.as_string()) : std::u32string();
  const int64_t n = obj.is_string() ? static_cast<int64_t>(u.size()) : static_cast<int64_t>(obj.list().size());
  // A step longer than the sequence selects the same single element; clamping it keeps
  // `i += st` below from overflowing into a wild index (e.g. s[2::9223372036854775807]).
  const int64_t st = std::clamp<int64_t>(raw_step, -(n + 1), n + 1);
  auto clamp = [&](const Value& v, int64_t def) {
    if (v.is_none()) return def;
    int64_t i = v.as_int();
    if (i < 0) i += n;
    if (st > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t b = clamp(start, st > 0 ? 0 : n - 1);
  const int64_t e = clamp(stop, st > 0 ? n : -1);
  std::vector<int64_t> idx;
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) idx.push_back(i);
  if (obj.is_string()) {
    std::u32string out;
    for (int64_t i : idx) out.push_back(u[i]);
    return Value::String(FromU32(out));
  }
  ValueList out;
  for (int64_t i : idx) out.push_back(obj.list()[i]);
  return Value::List(std::move(out));
}

absl::StatusOr<ValueList> Builtins::Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return ValueList{};
    case Value::Kind::kList: return v.list();
    case Value::Kind::kDict: {
      ValueList keys;
      for (const auto& [k, _] : v.dict()) keys.push_back(Value::String(k));
      return keys;
    }
    case Value::Kind::kString: {
      ValueList chars;
      for (char32_t c : ToU32(v.as_string())) chars.push_back(Value::String(FromU32(std::u32string(1, c))));
      return chars;
    }
    default:
      return TypeError(absl::StrCat("'", v.TypeName(), "' object is not iterable"));
  }
}

Value::Dict Builtins::Globals() {
  Value::Dict g;
  g.emplace_back("range", Value::Function("range", [](const ValueList& a, const KwArgs&) -> absl::StatusOr<Value> {
    if (a.empty() || a.size() > 3) return TypeError("range expected 1 to 3 arguments");
    for (const Value& v : a) {
      if (!v.is_int() && !v.is_bool()) return TypeError("range() arguments must be integers");
    }
    const int64_t start = a.size() == 1 ? 0 : a[0].as_int();
    const int64_t stop = a.size() == 1 ? a[0].as_int() : a[1].as_int();
    const int64_t step = a.size() == 3 ? a[2].as_int() : 1;
    if (step == 0) return TypeError("range() arg 3 must not be zero");
    ValueList out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (static_cast<int64_t>(out.size()) >= kMaxRange) return TypeError("range too big");
      out.push_back(Value::Int(i));
    }
    return Value::List(std::move(out));
  }));
  g.emplace_back("namespace", Value::Function("namespace", [](const ValueList& a, const KwArgs& k) -> absl::StatusOr<Value> {
    Value ns = Value::Namespace();
    for (const Value& v : a) {
      if (v.is_dict()) {
        for (const auto& [key, val] : v.dict()) ns.Set(key, val);
      }
    }
    for (const auto& [key, val] : k) ns.Set(key, val);
    return ns;
  }));
  g.emplace_back("dict", Value::Function("dict", [](const ValueList& a, const KwArgs& k) -> absl::StatusOr<Value> {
    Value d = Value::MakeDict();
    if (!a.empty() && a[0].is_dict()) {
      for (const auto& [key, val] : a[0].dict()) d.Set(key, val);
    }
    for (const auto& [key, val] : k) d.Set(key, val);
    return d;
  }));
  g.emplace_back("raise_exception", Value::Function("raise_exception", [](const ValueList& a, const KwArgs&) -> absl::StatusOr<Value> {
    return absl::InvalidArgumentError(a.empty() ? "raise_exception called" : a[0].Str());
  }));
  g.emplace_back("strftime_now", Value::Function("strftime_now", [](const ValueList& a, const KwArgs&) -> absl::StatusOr<Value> {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[256];
    const size_t n = std::strftime(buf, sizeof(buf), a.empty() ? "%Y-%m-%d" : a[0].Str().c_str(), &tm);
    return Value::String(std::string(buf, n));
  }));
  return g;
}

}  // namespace glm::tokenizer::jinja
