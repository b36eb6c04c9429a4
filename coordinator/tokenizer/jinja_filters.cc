// Jinja2's built-in filters and tests (the part of Builtins that real chat templates use),
// with transformers' `tojson` (json.dumps, non-ASCII kept by default).
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "coordinator/tokenizer/jinja_builtins.h"
#include "coordinator/tokenizer/jinja_interpreter.h"
#include "coordinator/tokenizer/status_macros.h"

namespace glm::tokenizer::jinja {
namespace {

using namespace internal;  // NOLINT

absl::StatusOr<Value> ToJsonFilter(const Value& v, const ValueList& a, const KwArgs& k) {
  // transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
  const bool ensure_ascii = Arg(a, k, 0, "ensure_ascii", Value::Bool(false)).Truthy();
  const Value indent_v = Arg(a, k, 1, "indent", Value::None());
  const Value seps = Arg(a, k, 2, "separators", Value::None());
  const bool sort_keys = Arg(a, k, 3, "sort_keys", Value::Bool(false)).Truthy();
  // json.dumps indents by `indent` spaces per level; bound it so the per-line padding (and the
  // int conversion) stays sane. Negative behaves as 0 in Python (newlines, no spaces).
  const int64_t raw_indent = indent_v.is_none() || indent_v.is_undefined() ? -1 : indent_v.as_int();
  if (raw_indent > 1024) {
    return TypeError(absl::StrCat("tojson indent ", raw_indent, " is over the limit of 1024"));
  }
  const int indent = indent_v.is_none() || indent_v.is_undefined()
                         ? -1 : static_cast<int>(std::max<int64_t>(0, raw_indent));
  std::string item_sep = indent >= 0 ? "," : ", ", key_sep = ": ";
  if (seps.is_list() && seps.list().size() == 2) {
    item_sep = seps.list()[0].Str();
    key_sep = seps.list()[1].Str();
  }
  GLM_ASSIGN_OR_RETURN(std::string out, v.ToJson(ensure_ascii, indent, item_sep, key_sep, sort_keys));
  return Value::String(std::move(out));
}

absl::StatusOr<int64_t> LengthOf(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return 0;
    case Value::Kind::kString: return Builtins::Length(v.as_string());
    case Value::Kind::kList: return static_cast<int64_t>(v.list().size());
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: return static_cast<int64_t>(v.dict().size());
    default: return TypeError(absl::StrCat("object of type '", v.TypeName(), "' has no len()"));
  }
}

// select/reject/selectattr/rejectattr.
absl::StatusOr<Value> SelectFilter(Interpreter* interp, const Value& v, const ValueList& a,
                                   bool by_attr, bool keep) {
  GLM_ASSIGN_OR_RETURN(ValueList items, Builtins::Iterate(v));
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    if (a.empty()) return TypeError("selectattr/rejectattr need an attribute");
    attr = a[next++].Str();
  }
  std::string test;
  if (next < a.size()) test = a[next++].Str();
  const ValueList test_args(a.begin() + next, a.end());
  ValueList out;
  for (const Value& item : items) {
    const Value subject = by_attr ? AttributePath(item, attr) : item;
    bool pass = subject.Truthy();
    if (!test.empty()) {
      GLM_ASSIGN_OR_RETURN(pass, interp->ApplyTest(test, subject, test_args));
    }
    if (pass == keep) out.push_back(item);
  }
  return Value::List(std::move(out));
}

absl::StatusOr<Value> MapFilter(Interpreter* interp, const Value& v, const ValueList& a,
                                const KwArgs& k) {
  GLM_ASSIGN_OR_RETURN(ValueList items, Builtins::Iterate(v));
  ValueList out;
  const Value attribute = Arg({}, k, 0, "attribute");
  if (attribute.is_string()) {
    const Value def = Arg({}, k, 0, "default");
    for (const Value& item : items) {
      Value r = AttributePath(item, attribute.as_string());
      out.push_back(r.is_undefined() && !def.is_undefined() ? def : r);
    }
    return Value::List(std::move(out));
  }
  if (a.empty()) return TypeError("map needs a filter name or attribute=");
  const std::string filter = a[0].Str();
  const ValueList rest(a.begin() + 1, a.end());
  for (const Value& item : items) {
    GLM_ASSIGN_OR_RETURN(Value r, interp->ApplyFilter(filter, item, rest, {}));
    out.push_back(std::move(r));
  }
  return Value::List(std::move(out));
}

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<Value> Builtins::Filter(Interpreter* interp, const std::string& name,
                                       const Value& v, const ValueList& a, const KwArgs& k) {
  if (name == "tojson") return ToJsonFilter(v, a, k);
  if (name == "string") return Value::String(v.Str());
  if (name == "safe" || name == "forceescape") return v;
  if (name == "e" || name == "escape") return Value::String(HtmlEscape(v.Str()));
  if (name == "pprint") return Value::String(v.Repr());
  if (name == "length" || name == "count") {
    GLM_ASSIGN_OR_RETURN(int64_t n, LengthOf(v));
    return Value::Int(n);
  }
  if (name == "default" || name == "d") {
    const bool boolean = Arg(a, k, 1, "boolean", Value::Bool(false)).Truthy();
    if (v.is_undefined() || (boolean && !v.Truthy())) return Arg(a, k, 0, "default_value", Value::String(""));
    return v;
  }
  if (name == "trim") {
    if (!v.is_string()) return Value::String(StripChars(v.Str(), Arg(a, k, 0, "chars", Value::None()), true, true));
    return Value::String(StripChars(v.as_string(), Arg(a, k, 0, "chars", Value::None()), true, true));
  }
  if (name == "lower") return Value::String(MapCase(v.Str(), 0));
  if (name == "upper") return Value::String(MapCase(v.Str(), 1));
  if (name == "title") return Value::String(MapCase(v.Str(), 2));
  if (name == "capitalize") return Value::String(MapCase(MapCase(v.Str(), 0), 3));
  if (name == "replace") {
    if (a.size() < 2) return TypeError("replace needs old and new");
    GLM_ASSIGN_OR_RETURN(std::string out, Replace(v.Str(), a[0].Str(), a[1].Str(),
                                                  Arg(a, k, 2, "count", Value::Int(-1)).as_int()));
    return Value::String(std::move(out));
  }
  if (name == "items") {
    if (v.is_undefined()) return Value::List();
    if (!v.is_dict()) return TypeError(absl::StrCat("cannot call items() on '", v.TypeName(), "'"));
    ValueList out;
    for (const auto& [key, val] : v.dict()) out.push_back(Value::Tuple({Value::String(key), val}));
    return Value::List(std::move(out));
  }
  if (name == "list") {
    GLM_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
    return Value::List(std::move(items));
  }
  if (name == "first" || name == "last") {
    GLM_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
    if (items.empty()) return Value::Undefined(absl::StrCat("No ", name, " item, sequence was empty."));
    return name == "first" ? items.front() : items.back();
  }
  if (name == "join") {
    GLM_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
    const std::string sep = Arg(a, k, 0, "d", Value::String("")).Str();
    const Value attribute = Arg(a, k, 1, "attribute", Value::None());
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out += sep;
      out += (attribute.is_string() ? AttributePath(items[i], attribute.as_string()) : items[i]).Str();
      GLM_RETURN_IF_ERROR(CheckStringSize(out.size(), "join"));
    }
    return Value::String(std::move(out));
  }
  if (name == "reverse") {
    if (v.is_string()) {
      std::u32string u = ToU32(v.as_string());
      std::reverse(u.begin(), u.end());
      return Value::String(FromU32(u));
    }
    GLM_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
    std::reverse(items.begin(), items.end());
    return Value::List(std::move(items));
  }
  if (name == "sort") {
    GLM_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
    GLM_ASSIGN_OR_RETURN(items, SortValues(std::move(items), Arg(a, k, 0, "reverse", Value::Bool(false)).Truthy(),
                                           Arg(a, k, 1, "case_sensitive", Value::Bool(false)).Truthy(),
                                           Arg(a, k, 2, "attribute", Value::None())));
    return Value::List(std::move(items));
  }
  if (name == "dictsort") {
    if (!v.is_dict()) return TypeError("dictsort expects a dict");
    const bool case_sensitive = Arg(a, k, 0, "case_sensitive", Value::Bool(false)).Truthy();
    const bool by_value = Arg(a, k, 1, "by", Value::String("key")).Str() == "value";
    const bool reverse = Arg(a, k, 2, "reverse", Value::Bool(false)).Truthy();
    ValueList pairs;
    for (const auto& [key, val] : v.dict()) pairs.push_back(Value::Tuple({Value::String(key), val}));
    GLM_ASSIGN_OR_RETURN(pairs, SortValues(std::move(pairs), reverse, case_sensitive,
                                           Value::String(by_value ? "1" : "0")));
    return Value::List(std::move(pairs));
  }
  if (name == "unique") {
    GLM_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
    ValueList out;
    for (const Value& item : items) {
      bool seen = false;
      for (const Value& o : out) seen = seen || o.Equals(item);
      if (!seen) out.push_back(item);
    }
    return Value::List(std::move(out));
  }
  if (name == "min" || name == "max" || name == "sum") {
    GLM_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
    const Value attribute = Arg(name == "sum" ? ValueList{} : a, k, 2, "attribute", Value::None());
    const Value sum_attr = Arg(a, k, 0, "attribute", Value::None());
    if (name == "sum") {
      Value total = Arg(a, k, 1, "start", Value::Int(0));
      for (const Value& item : items) {
        const Value x = sum_attr.is_string() ? AttributePath(item, sum_attr.as_string()) : item;
        if (!x.is_number() || !total.is_number()) return TypeError("sum of non-numbers");
        total = (x.is_float() || total.is_float()) ? Value::Float(total.as_float() + x.as_float())
                                                   : Value::Int(total.as_int() + x.as_int());
      }
      return total;
    }
    if (items.empty()) return Value::Undefined("No aggregated item, sequence was empty.");
    GLM_ASSIGN_OR_RETURN(items, SortValues(std::move(items), false,
                                           Arg(a, k, 0, "case_sensitive", Value::Bool(false)).Truthy(), attribute));
    return name == "min" ? items.front() : items.back();
  }
  if (name == "abs") {
    if (!v.is_number()) return TypeError("bad operand type for abs()");
    if (!v.is_float() && v.as_int() == INT64_MIN) return TypeError("integer overflow in abs()");
    return v.is_float() ? Value::Float(std::fabs(v.as_float())) : Value::Int(std::llabs(v.as_int()));
  }
  if (name == "int") {
    if (v.is_number()) return Value::Int(v.as_int());
    if (v.is_string()) {
      char* end = nullptr;
      const std::string s = StripChars(v.as_string(), Value::None(), true, true);
      const double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && end == s.c_str() + s.size()) return Value::Int(Value::SaturatingInt(d));
    }
    return Arg(a, k, 0, "default", Value::Int(0));
  }
  if (name == "float") {
    if (v.is_number()) return Value::Float(v.as_float());
    if (v.is_string()) {
      char* end = nullptr;
      const std::string s = StripChars(v.as_string(), Value::None(), true, true);
      const double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && end == s.c_str() + s.size()) return Value::Float(d);
    }
    return Arg(a, k, 0, "default", Value::Float(0.0));
  }
  if (name == "round") {
    if (!v.is_number()) return TypeError("round expects a number");
    const int64_t precision = Arg(a, k, 0, "precision", Value::Int(0)).as_int();
    const std::string method = Arg(a, k, 1, "method", Value::String("common")).Str();
    const double scale = std::pow(10.0, static_cast<double>(precision));
    double x = v.as_float() * scale;
    x = method == "ceil" ? std::ceil(x) : method == "floor" ? std::floor(x) : std::round(x);
    return Value::Float(x / scale);
  }
  if (name == "indent") {
    const Value width_v = Arg(a, k, 0, "width", Value::Int(4));
    // Python's " " * width: a negative width is "", a huge one is refused before allocating.
    const int64_t width = std::max<int64_t>(0, width_v.as_int());
    GLM_RETURN_IF_ERROR(CheckStringSize(static_cast<uint64_t>(width), "indent width"));
    const std::string pad = width_v.is_string() ? width_v.as_string() : std::string(width, ' ');
    const bool first = Arg(a, k, 1, "first", Value::Bool(false)).Truthy();
    const bool blank = Arg(a, k, 2, "blank", Value::Bool(false)).Truthy();
    const std::string s = v.Str();
    std::string out;
    size_t start = 0;
    bool is_first = true;
    while (true) {
      const size_t nl = s.find('\n', start);
      const std::string line = s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      const bool indent = is_first ? first : (blank || !line.empty());
      if (!is_first) out += '\n';
      if (indent && !(is_first && line.empty() && !blank && !first)) out += pad;
      out += line;
      GLM_RETURN_IF_ERROR(CheckStringSize(out.size(), "indent"));
      if (nl == std::string::npos) break;
      start = nl + 1;
      is_first = false;
    }
    return Value::String(std::move(out));
  }
  if (name == "wordcount") {
    int64_t n = 0;
    bool in_word = false;
    for (char32_t c : ToU32(v.Str())) {
      const bool word = !IsPythonSpace(c);
      n += word && !in_word;
      in_word = word;
    }
    return Value::Int(n);
  }
  if (name == "attr") return GetAttr(v, Arg(a, k, 0, "name").Str());
  if (name == "map") return MapFilter(interp, v, a, k);
  if (name == "select") return SelectFilter(interp, v, a, false, true);
  if (name == "reject") return SelectFilter(interp, v, a, false, false);
  if (name == "selectattr") return SelectFilter(interp, v, a, true, true);
  if (name == "rejectattr") return SelectFilter(interp, v, a, true, false);
  if (name == "batch") {
    GLM_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
    const int64_t size = std::max<int64_t>(1, Arg(a, k, 0, "linecount", Value::Int(1)).as_int());
    ValueList out;
    for (size_t i = 0; i < items.size(); i += size) {
      out.push_back(Value::List(ValueList(items.begin() + i, items.begin() + std::min(items.size(), i + size))));
    }
    return Value::List(std::move(out));
  }
  if (name == "format") {
    // Python %-formatting with %s/%d/%r only.
    const std::string fmt = v.Str();
    std::string out;
    size_t next = 0;
    for (size_t i = 0; i < fmt.size(); ++i) {
      if (fmt[i] != '%' || i + 1 == fmt.size()) { out += fmt[i]; continue; }
      const char c = fmt[++i];
      if (c == '%') { out += '%'; continue; }
      if (next >= a.size()) return TypeError("not enough arguments for format string");
      const Value& arg = a[next++];
      out += c == 'r' ? arg.Repr() : c == 'd' ? std::to_string(arg.as_int()) : arg.Str();
      GLM_RETURN_IF_ERROR(CheckStringSize(out.size(), "format"));
    }
    return Value::String(std::move(out));
  }
  return TypeError(absl::StrCat("no filter named '", name, "'"));
}

absl::StatusOr<bool> Builtins::Test(Interpreter* interp, const std::string& name,
                                    const Value& v, const ValueList& a) {
  const Value arg = a.empty() ? Value() : a[0];
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "sequence") return v.is_list() || v.is_dict() || v.is_string();
  if (name == "callable") return v.is_function();
  if (name == "escaped") return false;
  if (name == "even" || name == "odd") {
    if (!v.is_number()) return TypeError("even/odd expect a number");
    return (v.as_int() % 2 == 0) == (name == "even");
  }
  if (name == "divisibleby") {
    if (!v.is_number() || !arg.is_number() || arg.as_int() == 0) return TypeError("divisibleby expects numbers");
    if (arg.as_int() == -1) return true;  // INT64_MIN % -1 traps (SIGFPE) on x86.
    return v.as_int() % arg.as_int() == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==") return v.Equals(arg);
  if (name == "ne" || name == "!=") return !v.Equals(arg);
  if (name == "sameas") {
    if (v.is_none() || v.is_bool() || v.is_undefined()) return v.kind() == arg.kind() && v.Equals(arg);
    return v.Equals(arg) && v.kind() == arg.kind();
  }
  if (name == "lt" || name == "lessthan" || name == "<") return Value::Less(v, arg);
  if (name == "gt" || name == "greaterthan" || name == ">") return Value::Less(arg, v);
  if (name == "le" || name == "<=") {
    GLM_ASSIGN_OR_RETURN(bool r, Value::Less(arg, v));
    return !r;
  }
  if (name == "ge" || name == ">=") {
    GLM_ASSIGN_OR_RETURN(bool r, Value::Less(v, arg));
    return !r;
  }
  if (name == "in") {
    if (arg.is_string()) return v.is_string() && arg.as_string().find(v.as_string()) != std::string::npos;
    if (arg.is_list()) {
      for (const Value& x : arg.list()) {
        if (x.Equals(v)) return true;
      }
      return false;
    }
    if (arg.is_dict()) return v.is_string() && arg.Find(v.as_string()) != nullptr;
    return TypeError("'in' test needs a container");
  }
  if (name == "lower") return v.is_string() && MapCase(v.as_string(), 0) == v.as_string();
  if (name == "upper") return v.is_string() && MapCase(v.as_string(), 1) == v.as_string();
  if (name == "filter" || name == "test") {
    static const char* kKnown[] = {"defined", "none", "string", "number", "mapping", "iterable",
                                   "tojson", "length", "trim", "items", "default", "join"};
    for (const char* n : kKnown) {
      if (v.Str() == n) return true;
    }
    return false;
  }
  (void)interp;
  return TypeError(absl::StrCat("no test named '", name, "'"));
}

}  // namespace glm::tokenizer::jinja
