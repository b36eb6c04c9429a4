#include "coordinator/structured/json_grammar.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/structured/schema_overlap.h"

namespace glm::structured {

using json = nlohmann::ordered_json;

namespace {

// The most digits an integer part may have (JsonMatcher::kMaxIntegerDigits): bounds clamp to it.
constexpr int64_t kLargestInteger = 999'999'999'999'999'999;

std::string Group(const std::string& x) { return x.empty() ? x : absl::StrCat("(?:", x, ")"); }

// The decimals from `lo` to `hi`, both of the same width (no leading zeros), as a regex: fix the
// shared leading digits, then split into the part below lo's next leading digit, the whole
// leading digits between, and the part from hi's leading digit on.
std::string SameWidthRange(const std::string& lo, const std::string& hi) {
  if (lo == hi) return lo;
  if (lo[0] == hi[0]) return lo.substr(0, 1) + Group(SameWidthRange(lo.substr(1), hi.substr(1)));
  const size_t rest = lo.size() - 1;
  std::vector<std::string> parts;
  char first = lo[0], last = hi[0];
  if (lo.find_first_not_of('0', 1) != std::string::npos) {
    parts.push_back(lo.substr(0, 1) + Group(SameWidthRange(lo.substr(1), std::string(rest, '9'))));
    ++first;
  }
  std::string top;
  if (hi.find_first_not_of('9', 1) != std::string::npos) {
    top = hi.substr(0, 1) + Group(SameWidthRange(std::string(rest, '0'), hi.substr(1)));
    --last;
  }
  if (first <= last)
    parts.push_back(absl::StrCat(first == last ? std::string(1, first) : absl::StrCat("[", std::string(1, first), "-",
                                                                                      std::string(1, last), "]"),
                                 rest > 0 ? absl::StrCat("[0-9]{", rest, "}") : ""));
  if (!top.empty()) parts.push_back(top);
  return absl::StrJoin(parts, "|");
}

// The non-negative integers [lo, hi] in JSON (no leading zeros) as a regex; "" when lo > hi.
std::string NonNegativeRange(int64_t lo, int64_t hi) {
  std::vector<std::string> parts;
  int64_t width_start = 0, width_end = 9;  // the numbers of one width: [width_start, width_end]
  while (lo <= hi) {
    if (lo <= width_end) {
      parts.push_back(SameWidthRange(std::to_string(lo), std::to_string(std::min(hi, width_end))));
      lo = width_end + 1;
    }
    if (width_end == kLargestInteger) break;
    width_start = width_end + 1;
    width_end = width_start * 10 - 1;
  }
  return absl::StrJoin(parts, "|");
}

// A regex of JSON numbers within bounds: the integers [first, last], and with `fractions` the
// decimals of 1-8 fraction digits (the last not 0) whose whole value range lies inside: n.f is
// strictly between n and n + 1, so n in [fraction_lo, fraction_hi - 1] (fraction_lo = ceil of
// the lower bound, fraction_hi = floor of the upper), -n.f strictly between -(n + 1) and -n, and
// -0.f where the bounds hold (-1, 0). A subset of the interval's numbers, never one outside it.
std::string NumberRangeRegex(int64_t first, int64_t last, bool fractions, int64_t fraction_lo, int64_t fraction_hi) {
  auto integers = [](int64_t a, int64_t b) -> std::string {
    if (a > b) return "";
    if (a >= 0) return NonNegativeRange(a, b);
    if (b < 0) return "-" + Group(NonNegativeRange(-b, -a));
    return absl::StrCat("-", Group(NonNegativeRange(1, -a)), "|", NonNegativeRange(0, b));
  };
  std::vector<std::string> parts = {integers(first, last)};
  if (fractions) {
    const std::string frac = "\\.[0-9]{0,7}[1-9]";
    parts.push_back(NonNegativeRange(std::max<int64_t>(0, fraction_lo), fraction_hi - 1));
    if (!parts.back().empty()) parts.back() = Group(parts.back()) + frac;
    parts.push_back(NonNegativeRange(std::max<int64_t>(1, -fraction_hi), -fraction_lo - 1));
    if (!parts.back().empty()) parts.back() = "-" + Group(parts.back()) + frac;
    if (fraction_lo <= -1 && fraction_hi >= 0) parts.push_back("-0" + frac);
  }
  std::vector<std::string> grouped;
  for (const std::string& p : parts)
    if (!p.empty()) grouped.push_back(Group(p));
  return absl::StrJoin(grouped, "|");
}

}  // namespace

// Builds a JsonGrammar from a schema, resolving local $refs (memoised, so recursion terminates).
class SchemaCompiler {
 public:
  // Compiles into `g` (a new grammar when null).
  SchemaCompiler(const json& root, std::string field, JsonGrammar* g = nullptr)
      : root_(root), field_(std::move(field)), g_(g) {}

  absl::StatusOr<std::shared_ptr<const JsonGrammar>> Compile() {
    auto g = std::make_shared<JsonGrammar>();
    g_ = g.get();
    g_->keywords_ = Add(Literals({"true", "false", "null"}));
    auto root = Node(root_, "");
    if (!root.ok()) return root.status();
    g_->root_ = *root;
    g_->fingerprint_ = root_.dump();
    return std::shared_ptr<const JsonGrammar>(std::move(g));
  }

  // The node of the schema at `where` (a JSON pointer into the root).
  absl::StatusOr<int32_t> CompileAt(const json& schema, const std::string& where) { return Node(schema, where); }
  absl::Status Error(const std::string& where, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(field_, where.empty() ? "" : where, ": ", what));
  }
  int32_t Add(GrammarNode n) {
    g_->nodes_.push_back(std::move(n));
    return static_cast<int32_t>(g_->nodes_.size() - 1);
  }

  static GrammarNode Literals(std::vector<std::string> texts) {
    GrammarNode n;
    n.kind = GrammarNode::Kind::kLiterals;
    n.literals = std::move(texts);
    return n;
  }

 private:

  absl::StatusOr<int64_t> NonNegative(const json& s, const char* key, const std::string& where) const {
    if (!s.contains(key)) return -1;
    const json& v = s[key];
    if (!v.is_number_integer() && !(v.is_number_float() && v.get<double>() == static_cast<int64_t>(v.get<double>())))
      return Error(absl::StrCat(where, "/", key), "must be a non-negative integer");
    const int64_t x = v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(v.get<double>());
    if (x < 0) return Error(absl::StrCat(where, "/", key), "must be a non-negative integer");
    return x;
  }

  // A string schema's `pattern`, or the pattern of its `format` (formats this server does not
  // check are annotations, as JSON Schema has them by default): null when neither applies.
  absl::StatusOr<std::shared_ptr<const RegexDfa>> StringPattern(const json& s, const std::string& where) {
    std::string key, text;
    if (s.contains("pattern")) {
      if (s.contains("format") && !FormatPattern(s["format"]).empty())
        return Error(where, "'pattern' and a checked 'format' together are not supported");
      if (!s["pattern"].is_string()) return Error(absl::StrCat(where, "/pattern"), "must be a string");
      key = "pattern";
      text = s["pattern"].get<std::string>();
    } else if (s.contains("format")) {
      if (!s["format"].is_string()) return Error(absl::StrCat(where, "/format"), "must be a string");
      key = "format";
      text = FormatPattern(s["format"]);
      if (text.empty()) return nullptr;
    } else {
      return nullptr;
    }
    return CompilePattern(text, {.json_string = true}, absl::StrCat(where, "/", key));
  }

  // A schema's automaton, counted against the states all of the schema's automata may hold.
  absl::StatusOr<std::shared_ptr<const RegexDfa>> CompilePattern(const std::string& text, RegexDfa::Options options,
                                                                 const std::string& where) {
    auto dfa = RegexDfa::Compile(text, options);
    if (!dfa.ok()) return Error(where, std::string(dfa.status().message()));
    pattern_states_ += (*dfa)->num_states();
    if (pattern_states_ > kMaxPatternStates)
      return Error(where, absl::StrCat("the schema's patterns are too complex together (over ", kMaxPatternStates, " states)"));
    return *std::move(dfa);
  }

  // minimum / maximum / exclusiveMinimum / exclusiveMaximum (numbers, or draft 4's booleans) as
  // the automaton of the numbers written within them (NumberRangeRegex: integers, and for
  // "number" decimals of up to 8 fraction digits, no exponents); null without bounds.
  absl::StatusOr<std::shared_ptr<const RegexDfa>> NumberBounds(const json& s, const std::string& where, bool integer) {
    // long double holds every int64 exactly (a double would round 999999999999999990).
    constexpr long double kLimit = kLargestInteger;
    long double lo = -kLimit, hi = kLimit;
    bool lo_exclusive = false, hi_exclusive = false, bounded = false;
    for (const char* key : {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}) {
      if (!s.contains(key)) continue;
      const std::string name = key;
      const bool lower = name == "minimum" || name == "exclusiveMinimum";
      const bool exclusive = name.rfind("exclusive", 0) == 0;
      const json& v = s[key];
      long double x = 0;
      if (v.is_boolean() && exclusive) {  // draft 4: makes minimum / maximum exclusive
        const char* base = lower ? "minimum" : "maximum";
        if (!v.get<bool>()) continue;
        if (!s.contains(base) || !s[base].is_number())
          return Error(absl::StrCat(where, "/", key), absl::StrCat("true needs a numeric ", base));
        x = s[base].get<long double>();
      } else if (v.is_number() && std::isfinite(v.get<double>())) {
        x = v.get<long double>();
      } else {
        return Error(absl::StrCat(where, "/", key), "must be a number");
      }
      bounded = true;
      if (lower && (x > lo || (x == lo && exclusive))) lo = x, lo_exclusive = exclusive;
      if (!lower && (x < hi || (x == hi && exclusive))) hi = x, hi_exclusive = exclusive;
    }
    if (!bounded) return nullptr;
    auto clamp = [&](long double v) { return static_cast<int64_t>(std::clamp(v, -kLimit, kLimit)); };
    const int64_t first = clamp(lo_exclusive ? std::floor(lo) + 1 : std::ceil(lo));
    const int64_t last = clamp(hi_exclusive ? std::ceil(hi) - 1 : std::floor(hi));
    if (lo > hi || (lo == hi && (lo_exclusive || hi_exclusive)) || (integer && first > last))
      return Error(where, integer ? "no integer lies within its bounds" : "no number lies within its bounds");
    const std::string regex = NumberRangeRegex(first, last, !integer, clamp(std::ceil(lo)), clamp(std::floor(hi)));
    if (regex.empty()) return Error(where, "no integer, nor decimal of at most 8 fraction digits, lies within its bounds");
    return CompilePattern(regex, {}, where);
  }

  // The pattern a checked `format` stands for ("" for the others).
  static std::string FormatPattern(const json& format) {
    if (!format.is_string()) return "";
    // Real calendar dates: each month's length, and February 29 only in leap years (every 4th,
    // but not the 100th unless the 400th); "3333-02-30" passed before.
    static const std::string kDate =
        R"((\d{4}-((0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31))"
        R"(|(\d\d(0[48]|[2468][048]|[13579][26])|([02468][048]|[13579][26])00)-02-29))";
    static const std::string kTime = R"(([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d))";
    static const std::string kLabel = R"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)";
    static const std::string kOctet = R"((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d))";
    static const std::map<std::string, std::string> kFormats = {
        {"date", kDate},
        {"time", kTime},
        {"date-time", kDate + "[Tt]" + kTime},
        {"uuid", R"([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})"},
        {"ipv4", "(" + kOctet + "\\.){3}" + kOctet},
        {"hostname", kLabel + "(\\." + kLabel + ")*"},
        {"email", R"([A-Za-z0-9!#$%&'*+/=?^_{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_{|}~-]+)*@)" + kLabel + "(\\." + kLabel + ")+"},
        {"uri", R"([A-Za-z][A-Za-z0-9+.-]*:[!#$%&'()*+,./0-9:;=?@A-Z\[\]_a-z~-]+)"},
    };
    const auto it = kFormats.find(format.get<std::string>());
    return it == kFormats.end() ? "" : it->second;
  }

  // One schema (object or boolean) at JSON pointer `where`.
  absl::StatusOr<int32_t> Node(const json& s, const std::string& where) {
    if (g_->nodes_.size() > JsonGrammar::kMaxNodes)
      return Error(where, absl::StrCat("the schema is too large (over ", JsonGrammar::kMaxNodes, " parts)"));
    if (s.is_boolean()) {
      if (!s.get<bool>()) return Error(where, "the schema `false` matches nothing");
      return Add(GrammarNode{});
    }
    if (!s.is_object()) return Error(where, "a schema must be an object or a boolean");
    static const std::set<std::string> kAnnotations = {
        "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
        "readOnly", "writeOnly", "$defs", "definitions", "strict", "name", "discriminator", "nullable"};
    static const std::set<std::string> kHandled = {
        "type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "properties", "required",
        "additionalProperties", "items", "minItems", "maxItems", "minLength", "maxLength", "pattern", "format",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
    for (const auto& [key, value] : s.items()) {
      if (kAnnotations.contains(key) || kHandled.contains(key)) continue;
      return Error(absl::StrCat(where, "/", key), absl::StrCat("'", key, "' is not supported by this server's structured outputs"));
    }
    if (s.contains("$ref")) {
      if (s.size() > 1)
        for (const auto& [key, value] : s.items())
          if (!kAnnotations.contains(key) && key != "$ref")
            return Error(absl::StrCat(where, "/", key), "keywords next to $ref are not supported");
      return Ref(s["$ref"], absl::StrCat(where, "/$ref"));
    }
    if (s.contains("allOf")) {
      const json& all = s["allOf"];
      if (!all.is_array() || all.size() != 1)
        return Error(absl::StrCat(where, "/allOf"), "only an allOf of exactly one schema is supported");
      for (const auto& [key, value] : s.items())
        if (!kAnnotations.contains(key) && key != "allOf")
          return Error(absl::StrCat(where, "/", key), "keywords next to allOf are not supported");
      return Node(all[0], absl::StrCat(where, "/allOf/0"));
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (!s.contains(key)) continue;
      const json& alts = s[key];
      if (!alts.is_array() || alts.empty()) return Error(absl::StrCat(where, "/", key), "must be a non-empty array");
      for (const auto& [k, value] : s.items())
        if (!kAnnotations.contains(k) && k != key)
          return Error(absl::StrCat(where, "/", k), absl::StrCat("keywords next to ", key, " are not supported"));
      // oneOf means exactly one branch matches: compiled as anyOf only where no two branches can
      // match one value (an output matching two would break the schema).
      if (std::string(key) == "oneOf")
        for (size_t i = 0; i < alts.size(); ++i)
          for (size_t j = i + 1; j < alts.size(); ++j)
            if (!SchemasDisjoint(root_, alts[i], alts[j]))
              return Error(absl::StrCat(where, "/oneOf"),
                           absl::StrCat("branches ", i, " and ", j, " may both match a value; oneOf is supported where "
                                        "its branches cannot overlap (different types or const values, or objects told "
                                        "apart by a required property's const); use anyOf where overlap is fine"));
      GrammarNode n;
      n.kind = GrammarNode::Kind::kAnyOf;
      for (size_t i = 0; i < alts.size(); ++i) {
        auto o = Node(alts[i], absl::StrCat(where, "/", key, "/", i));
        if (!o.ok()) return o.status();
        n.options.push_back(*o);
      }
      return Add(std::move(n));
    }
    if (s.contains("enum") || s.contains("const")) {
      // The values are the whole choice: every other keyword must hold for each of them. `type`
      // filters them; const and enum together allow the const if the enum has it; any other
      // keyword is refused (it was ignored: an enum [5, 50, -3] next to minimum 0 gave -3).
      for (const auto& [key, value] : s.items())
        if (!kAnnotations.contains(key) && key != "enum" && key != "const" && key != "type")
          return Error(absl::StrCat(where, "/", key), "keywords next to enum / const other than type are not supported");
      std::vector<json> values;
      if (s.contains("enum")) {
        const json& e = s["enum"];
        if (!e.is_array() || e.empty()) return Error(absl::StrCat(where, "/enum"), "must be a non-empty array");
        values.assign(e.begin(), e.end());
      }
      if (s.contains("const")) {
        const bool in_enum = !s.contains("enum") || std::find(values.begin(), values.end(), s["const"]) != values.end();
        if (!in_enum) return Error(absl::StrCat(where, "/const"), "is not one of the enum's values: nothing matches");
        values = {s["const"]};
      }
      std::vector<std::string> texts;
      for (const json& v : values) {
        bool typed = !s.contains("type");
        if (s.contains("type")) {
          const json& t = s["type"];
          for (const json& x : t.is_array() ? t : json::array({t}))
            typed = typed || (x.is_string() && TypeSatisfies(JsonTypeOf(v), x.get<std::string>()));
        }
        if (typed) texts.push_back(v.dump());
      }
      if (texts.empty()) return Error(absl::StrCat(where, "/type"), "no enum / const value has this type: nothing matches");
      std::sort(texts.begin(), texts.end());
      texts.erase(std::unique(texts.begin(), texts.end()), texts.end());
      if (static_cast<int>(texts.size()) > JsonGrammar::kMaxLiterals)
        return Error(where, absl::StrCat("at most ", JsonGrammar::kMaxLiterals, " enum values are supported"));
      return Add(Literals(std::move(texts)));
    }
    std::vector<std::string> types;
    if (s.contains("type")) {
      const json& t = s["type"];
      if (t.is_string()) {
        types.push_back(t.get<std::string>());
      } else if (t.is_array() && !t.empty()) {
        for (const json& x : t) {
          if (!x.is_string()) return Error(absl::StrCat(where, "/type"), "must be a string or an array of strings");
          types.push_back(x.get<std::string>());
        }
      } else {
        return Error(absl::StrCat(where, "/type"), "must be a string or an array of strings");
      }
    } else if (s.contains("properties") || s.contains("additionalProperties") || s.contains("required")) {
      types.push_back("object");
    } else if (s.contains("items") || s.contains("minItems") || s.contains("maxItems")) {
      types.push_back("array");
    } else if (s.contains("minLength") || s.contains("maxLength") || s.contains("pattern") ||
               (s.contains("format") && !FormatPattern(s["format"]).empty())) {
      types.push_back("string");
    } else if (s.contains("minimum") || s.contains("maximum") || s.contains("exclusiveMinimum") ||
               s.contains("exclusiveMaximum")) {
      types.push_back("number");  // bounds constrain numbers only: a number within them
    } else {
      return Add(GrammarNode{});  // {}: any value
    }
    GrammarNode any_of;
    any_of.kind = GrammarNode::Kind::kAnyOf;
    for (const std::string& type : types) {
      auto n = Typed(s, type, where);
      if (!n.ok()) return n.status();
      any_of.options.push_back(*n);
    }
    if (any_of.options.size() == 1) return any_of.options[0];
    return Add(std::move(any_of));
  }

  absl::StatusOr<int32_t> Typed(const json& s, const std::string& type, const std::string& where) {
    GrammarNode n;
    if (type == "null") return Add(Literals({"null"}));
    if (type == "boolean") return Add(Literals({"false", "true"}));
    if (type == "number" || type == "integer") {
      n.kind = type == "number" ? GrammarNode::Kind::kNumber : GrammarNode::Kind::kInteger;
      auto bounds = NumberBounds(s, where, type == "integer");
      if (!bounds.ok()) return bounds.status();
      n.pattern = *std::move(bounds);
      return Add(std::move(n));
    }
    if (type == "string") {
      n.kind = GrammarNode::Kind::kString;
      auto lo = NonNegative(s, "minLength", where);
      auto hi = NonNegative(s, "maxLength", where);
      if (!lo.ok()) return lo.status();
      if (!hi.ok()) return hi.status();
      n.min_length = std::max<int64_t>(0, *lo);
      n.max_length = *hi;
      if (n.max_length >= 0 && n.max_length < n.min_length)
        return Error(absl::StrCat(where, "/maxLength"), "is below minLength");
      auto pattern = StringPattern(s, where);
      if (!pattern.ok()) return pattern.status();
      n.pattern = *std::move(pattern);
      if (n.pattern != nullptr && !n.pattern->CanEndWithin(n.pattern->start(), 0, n.min_length, n.max_length))
        return Error(where, absl::StrCat("no string matches its ", s.contains("pattern") ? "pattern" : "format",
                                         " within minLength and maxLength"));
      return Add(std::move(n));
    }
    if (type == "array") {
      n.kind = GrammarNode::Kind::kArray;
      auto lo = NonNegative(s, "minItems", where);
      auto hi = NonNegative(s, "maxItems", where);
      if (!lo.ok()) return lo.status();
      if (!hi.ok()) return hi.status();
      n.min_items = std::max<int64_t>(0, *lo);
      n.max_items = *hi;
      if (n.max_items >= 0 && n.max_items < n.min_items)
        return Error(absl::StrCat(where, "/maxItems"), "is below minItems");
      const int32_t index = Add(std::move(n));
      int32_t items = -1;
      if (s.contains("items")) {
        if (s["items"].is_array()) return Error(absl::StrCat(where, "/items"), "tuple items (an array) are not supported");
        auto it = Node(s["items"], absl::StrCat(where, "/items"));
        if (!it.ok()) return it.status();
        items = *it;
      } else {
        items = Add(GrammarNode{});
      }
      g_->nodes_[index].items = items;
      return index;
    }
    if (type == "object") {
      n.kind = GrammarNode::Kind::kObject;
      const int32_t index = Add(std::move(n));
      std::vector<GrammarNode::Property> props;
      std::set<std::string> required;
      if (s.contains("required")) {
        const json& r = s["required"];
        if (!r.is_array()) return Error(absl::StrCat(where, "/required"), "must be an array of strings");
        for (const json& x : r) {
          if (!x.is_string()) return Error(absl::StrCat(where, "/required"), "must be an array of strings");
          required.insert(x.get<std::string>());
        }
      }
      if (s.contains("properties")) {
        const json& p = s["properties"];
        if (!p.is_object()) return Error(absl::StrCat(where, "/properties"), "must be an object");
        if (static_cast<int>(p.size()) > JsonGrammar::kMaxProperties)
          return Error(absl::StrCat(where, "/properties"),
                       absl::StrCat("at most ", JsonGrammar::kMaxProperties, " properties are supported"));
        // ordered_json keeps the client's order: properties are generated in it (a schema that
        // puts "reasoning" before "answer" means it).
        for (const auto& [key, value] : p.items()) {
          auto v = Node(value, absl::StrCat(where, "/properties/", key));
          if (!v.ok()) return v.status();
          props.push_back({json(key).dump(), *v, required.contains(key)});
        }
      }
      for (const std::string& key : required) {
        bool found = false;
        for (const auto& prop : props) found |= prop.key_literal == json(key).dump();
        if (!found)
          return Error(absl::StrCat(where, "/required"),
                       absl::StrCat("'", key, "' is required but not among the properties"));
      }
      GrammarNode& obj = g_->nodes_[index];
      obj.properties = std::move(props);
      if (obj.properties.empty()) {
        obj.free_keys = true;
        if (s.contains("additionalProperties")) {
          const json& a = s["additionalProperties"];
          if (a.is_boolean() && !a.get<bool>()) {
            obj.additional = -1;
          } else {
            auto v = Node(a, absl::StrCat(where, "/additionalProperties"));
            if (!v.ok()) return v.status();
            g_->nodes_[index].additional = *v;
          }
        } else {
          const int32_t any = Add(GrammarNode{});
          g_->nodes_[index].additional = any;
        }
      }
      return index;
    }
    return Error(absl::StrCat(where, "/type"), absl::StrCat("unknown type '", type, "'"));
  }

  absl::StatusOr<int32_t> Ref(const json& ref, const std::string& where) {
    if (!ref.is_string()) return Error(where, "must be a string");
    const std::string target = ref.get<std::string>();
    if (auto it = refs_.find(target); it != refs_.end()) return it->second;
    const json* node = nullptr;
    for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
      const std::string p(prefix);
      if (target.rfind(p, 0) != 0) continue;
      const std::string container = p.substr(2, p.size() - 3);
      const std::string name = target.substr(p.size());
      if (root_.is_object() && root_.contains(container) && root_[container].is_object() &&
          root_[container].contains(name))
        node = &root_[container][name];
    }
    if (target == "#") node = &root_;
    if (node == nullptr)
      return Error(where, absl::StrCat("'", target, "' is not a local definition (#/$defs/NAME or #/definitions/NAME)"));
    // Reserve the index first: a recursive reference inside resolves to it. The placeholder is
    // an anyOf of one option, filled in below.
    GrammarNode placeholder;
    placeholder.kind = GrammarNode::Kind::kAnyOf;
    const int32_t index = Add(std::move(placeholder));
    refs_[target] = index;
    auto body = Node(*node, target.substr(1));
    if (!body.ok()) return body.status();
    g_->nodes_[index].options = {*body};
    return index;
  }

  // DFA states of all the schema's patterns together (each state holds 1 KiB of transitions).
  static constexpr int64_t kMaxPatternStates = 16384;

  const json& root_;
  std::string field_;
  JsonGrammar* g_ = nullptr;
  std::map<std::string, int32_t> refs_;
  int64_t pattern_states_ = 0;
};

absl::StatusOr<std::shared_ptr<const JsonGrammar>> JsonGrammar::FromSchema(const json& schema, const std::string& field) {
  return SchemaCompiler(schema, field).Compile();
}

std::string ToolCallLayout::Describe() const {
  return absl::StrCat("after the name \"", absl::CEscape(after_name), "\", after </arg_key> \"", absl::CEscape(after_key),
                      "\", after </arg_value> \"", absl::CEscape(after_value), "\"");
}

absl::StatusOr<std::shared_ptr<const JsonGrammar>> JsonGrammar::ForToolCalls(const std::vector<ToolSpec>& tools,
                                                                            const std::string& field, int max_calls,
                                                                            const ToolCallLayout& layout) {
  if (tools.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": there is no tool to call"));
  if (max_calls == 0 || max_calls < -1) return absl::InvalidArgumentError(absl::StrCat(field, ": at least one call"));
  if (static_cast<int>(tools.size()) > kMaxLiterals)
    return absl::InvalidArgumentError(absl::StrCat(field, ": at most ", kMaxLiterals, " tools can be forced"));
  for (const std::string* gap : {&layout.after_name, &layout.after_key, &layout.after_value})
    if (gap->find_first_not_of(" \t\r\n") != std::string::npos)
      return absl::InvalidArgumentError(absl::StrCat(field, ": a tool-call layout is whitespace only (", layout.Describe(), ")"));
  auto g = std::make_shared<JsonGrammar>();
  g->tool_calls_ = std::make_shared<const ToolCallSource>(ToolCallSource{tools, field, max_calls, layout});
  const std::string mark(1, kSpecialMark);
  static const json kNoSchema;
  SchemaCompiler base(kNoSchema, field, g.get());
  g->keywords_ = base.Add(SchemaCompiler::Literals({"true", "false", "null"}));
  // Every tag is a special token, spelt mark + text. A literal that a tag follows ends with that
  // tag's mark, and the tag's own literal starts after it: a call's opening ends with the mark
  // after the name, so tool names that are prefixes of each other ("get", "get_weather") never
  // need lookahead, in any layout (GLM-4.7 writes <arg_key> right after the name).
  const int32_t value_close = base.Add(SchemaCompiler::Literals({absl::StrCat(mark, "</arg_value>", layout.after_value, mark)}));
  // An argument's opening, from its key tag (after its mark) to its value tag.
  auto opening = [&mark, &layout](const std::string& key) {
    return absl::StrCat("<arg_key>", key, mark, "</arg_key>", layout.after_key, mark, "<arg_value>");
  };
  GrammarNode call;
  call.kind = GrammarNode::Kind::kToolCall;
  json fingerprint = json::array();
  for (size_t t = 0; t < tools.size(); ++t) {
    const ToolSpec& tool = tools[t];
    const std::string at = tool.field.empty() ? absl::StrCat(field, "[", t, "]") : tool.field;
    if (tool.name.empty() || tool.name.find_first_of(absl::StrCat("<\n", mark)) != std::string::npos)
      return absl::InvalidArgumentError(absl::StrCat(at, ": a forced tool needs a name without '<' or newlines"));
    GrammarNode args;
    args.kind = GrammarNode::Kind::kToolArgs;
    args.close_literal = value_close;
    const json& params = tool.parameters;
    SchemaCompiler compiler(params, absl::StrCat(at, ".parameters"), g.get());
    if (!params.is_null()) {
      if (!params.is_object()) return compiler.Error("", "must be an object schema");
      // The call's arguments are its properties: top-level keywords that would constrain them
      // otherwise (anyOf, minProperties, not, ...) were ignored, so they are refused.
      static const std::set<std::string> kToolKeys = {
          "type", "properties", "required", "additionalProperties", "title", "description", "$schema",
          "$id", "$comment", "$defs", "definitions", "strict", "examples", "default"};
      for (const auto& [key, value] : params.items())
        if (!kToolKeys.contains(key))
          return compiler.Error(absl::StrCat("/", key), "is not supported at the top of a forced tool's parameters "
                                                        "(its arguments are its properties)");
      if (params.contains("type") && params["type"] != "object")
        return compiler.Error("/type", "a tool's parameters must be an object schema");
      // The call's text may not spell a closing tag (GLM's parser would cut the call there), so
      // neither may a name, enum or const the schema would make it write.
      const std::string text = params.dump();
      for (const char* tag : {"</arg_value>", "</tool_call>"})
        if (text.find(tag) != std::string::npos)
          return compiler.Error("", absl::StrCat("a forced tool's schema cannot contain the text '", tag, "'"));
      std::set<std::string> required;
      if (params.contains("required") && params["required"].is_array())
        for (const json& r : params["required"])
          if (r.is_string()) required.insert(r.get<std::string>());
      if (params.contains("properties")) {
        const json& props = params["properties"];
        if (!props.is_object()) return compiler.Error("/properties", "must be an object");
        if (static_cast<int>(props.size()) >= kMaxProperties)
          return compiler.Error("/properties", absl::StrCat("at most ", kMaxProperties - 1, " arguments are supported"));
        for (const auto& [key, schema] : props.items()) {
          if (key.find('<') != std::string::npos)
            return compiler.Error(absl::StrCat("/properties/", key), "an argument name cannot contain '<'");
          auto node = compiler.CompileAt(schema, absl::StrCat("/properties/", key));
          if (!node.ok()) return node.status();
          GrammarNode::Property p;
          p.key_literal = opening(key);
          p.node = *node;
          p.required = required.contains(key);
          // GLM's parser reads a "type": "string" argument verbatim, any other as JSON.
          p.raw_text = schema.is_object() && schema.contains("type") && schema["type"] == "string";
          if (p.raw_text && g->nodes_[p.node].kind == GrammarNode::Kind::kLiterals) {
            // An enum of strings, written raw: the literals without their JSON quotes.
            GrammarNode raw = g->nodes_[p.node];
            for (std::string& lit : raw.literals) {
              const json v = json::parse(lit, nullptr, false);
              if (!v.is_string()) return compiler.Error(absl::StrCat("/properties/", key), "a string enum with a non-string");
              lit = v.get<std::string>();
            }
            p.node = base.Add(std::move(raw));
          }
          args.properties.push_back(std::move(p));
        }
      }
      for (const std::string& key : required) {
        bool found = false;
        for (const auto& p : args.properties)
          found |= p.key_literal == opening(key);
        if (!found)
          return compiler.Error("/required", absl::StrCat("'", key, "' is required but not among the properties"));
      }
    }
    // The call's closing tag: the last "property", never required.
    args.properties.push_back({"</tool_call>", -1, false, false});
    call.options.push_back(base.Add(std::move(args)));
    call.literals.push_back(absl::StrCat(mark, "<tool_call>", tool.name, layout.after_name, mark));
    fingerprint.push_back({tool.name, params});
  }
  GrammarNode list;
  list.kind = GrammarNode::Kind::kToolCallList;
  list.items = base.Add(std::move(call));
  list.max_items = max_calls;
  g->root_ = base.Add(std::move(list));
  g->fingerprint_ = absl::StrCat("tool_call:", max_calls, ":",
                                 json::array({layout.after_name, layout.after_key, layout.after_value}).dump(), ":",
                                 fingerprint.dump());
  return std::shared_ptr<const JsonGrammar>(std::move(g));
}

absl::StatusOr<std::shared_ptr<const JsonGrammar>> JsonGrammar::InToolCallLayout(std::shared_ptr<const JsonGrammar> grammar,
                                                                              const ToolCallLayout& layout) {
  if (grammar == nullptr || grammar->tool_calls_ == nullptr || grammar->tool_calls_->layout == layout) return grammar;
  const ToolCallSource& source = *grammar->tool_calls_;
  return ForToolCalls(source.tools, source.field, source.max_calls, layout);
}

std::shared_ptr<const JsonGrammar> JsonGrammar::AnyObject() {
  static const std::shared_ptr<const JsonGrammar> grammar = [] {
    auto g = SchemaCompiler(json{{"type", "object"}}, "").Compile();
    return *g;
  }();
  return grammar;
}

std::shared_ptr<const JsonGrammar> JsonGrammar::OfRoot(GrammarNode root, std::string fingerprint) {
  auto g = std::make_shared<JsonGrammar>();
  g->nodes_.push_back(std::move(root));
  g->root_ = 0;
  g->fingerprint_ = std::move(fingerprint);
  return g;
}

absl::StatusOr<std::shared_ptr<const JsonGrammar>> JsonGrammar::ForRegex(std::string_view pattern,
                                                                      const std::string& field) {
  auto dfa = RegexDfa::Compile(pattern);
  if (!dfa.ok()) return absl::InvalidArgumentError(absl::StrCat(field, ": ", dfa.status().message()));
  GrammarNode n;
  n.kind = GrammarNode::Kind::kText;
  n.pattern = *std::move(dfa);
  return OfRoot(std::move(n), absl::StrCat("regex:", std::string(pattern)));
}

absl::StatusOr<std::shared_ptr<const JsonGrammar>> JsonGrammar::ForGbnf(std::string_view text,
                                                                     const std::string& field) {
  auto cfg = CfgGrammar::ParseGbnf(text, field);
  if (!cfg.ok()) return cfg.status();
  GrammarNode n;
  n.kind = GrammarNode::Kind::kCfg;
  n.cfg = *std::move(cfg);
  return OfRoot(std::move(n), absl::StrCat("gbnf:", std::string(text)));
}

absl::StatusOr<std::shared_ptr<const JsonGrammar>> JsonGrammar::ForChoice(const std::vector<std::string>& choices,
                                                                       const std::string& field) {
  if (choices.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": must name at least one choice"));
  std::string pattern;
  for (const std::string& c : choices) {
    if (c.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": a choice is empty"));
    absl::StrAppend(&pattern, pattern.empty() ? "" : "|", RegexEscape(c));
  }
  return ForRegex(pattern, field);
}

}  // namespace glm::structured
