// The value model of the Jinja interpreter: Python's objects as Jinja2 templates see them
// (undefined, None, bool, int, float, str, list, dict with insertion order, callables and
// namespace objects), with Python's str()/repr(), truthiness, equality and ordering, and
// json.dumps formatting for `tojson`.
#ifndef GLM_COORDINATOR_TOKENIZER_JINJA_VALUE_H_
#define GLM_COORDINATOR_TOKENIZER_JINJA_VALUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace glm::tokenizer::jinja {

class Value;
using ValueList = std::vector<Value>;
using KwArgs = std::vector<std::pair<std::string, Value>>;
using NativeFunction =
    std::function<absl::StatusOr<Value>(const ValueList& args, const KwArgs& kwargs)>;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kFunction,
                    kNamespace };
  // Dicts keep insertion order (Python 3.7+), which `tojson` and `items()` expose.
  using Dict = std::vector<std::pair<std::string, Value>>;

  Value() = default;  // Undefined.
  Value(const Value&) = default;
  Value(Value&&) noexcept = default;
  Value& operator=(const Value&) = default;
  Value& operator=(Value&&) noexcept = default;
  // Frees nested lists/dicts/functions iteratively: a chain built at render time (namespaces
  // linked through attributes, which no depth count sees) must not overflow the stack when
  // it is released.
  ~Value();
  static Value Undefined(std::string hint = "") {
    Value v;
    v.str_ = std::move(hint);
    return v;
  }
  static Value None() { return Value(Kind::kNone); }
  static Value Bool(bool b) { Value v(Kind::kBool); v.int_ = b; return v; }
  static Value Int(int64_t i) { Value v(Kind::kInt); v.int_ = i; return v; }
  // A JSON integer above INT64_MAX (tool arguments, schema bounds): printed and dumped exactly as
  // given (Python's ints are unbounded); in arithmetic and comparisons it counts as INT64_MAX.
  static Value Unsigned(uint64_t u);
  static Value Float(double d) { Value v(Kind::kFloat); v.float_ = d; return v; }
  static Value String(std::string s) { Value v(Kind::kString); v.str_ = std::move(s); return v; }
  static Value List(ValueList items = {});
  // A list that prints as a Python tuple: (a, b).
  static Value Tuple(ValueList items);
  static Value MakeDict(Dict entries = {});
  // A string that also answers a dict's lookups (`.items()`, `.keys()`, `.get(k)`, `x.k`, `x["k"]`)
  // with `object`'s entries; everything else (printing, `+`, `is string`, tojson) sees the string.
  // For tool-call arguments, which OpenAI clients send as JSON text while chat templates differ:
  // GLM's iterate `arguments.items()` (transformers' convention, a dict), DeepSeek's concatenate
  // the text. `object` must be a dict.
  static Value StringWithObject(std::string text, const Value& object);
  static Value Namespace(Dict entries = {});
  static Value Function(std::string name, NativeFunction fn);
  // Converts JSON (ordered, as received) into values.
  static Value FromJson(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_function() const { return kind_ == Kind::kFunction; }
  bool is_tuple() const { return kind_ == Kind::kList && tuple_; }
  // A StringWithObject value, and its object (a dict sharing the entries).
  bool has_object() const { return kind_ == Kind::kString && dict_ != nullptr; }
  Value object() const;
  // Container nesting when built (0 for scalars, 1 + deepest item for lists, dicts and
  // namespaces). Printing, comparing and destroying recurse per level, so the interpreter
  // refuses values deeper than a bound. A namespace mutated after it was stored elsewhere is
  // not re-measured there; tojson bounds its own recursion for that case.
  int depth() const { return depth_; }

  bool as_bool() const { return int_ != 0; }
  // A float truncates toward zero, saturating at int64's range (NaN gives 0): Python's big
  // integers have no such bound, but a bare cast out of range is undefined behaviour.
  int64_t as_int() const { return kind_ == Kind::kFloat ? SaturatingInt(float_) : int_; }
  static int64_t SaturatingInt(double d) {
    if (!(d == d)) return 0;
    if (d >= 9223372036854775807.0) return INT64_MAX;
    if (d <= -9223372036854775808.0) return INT64_MIN;
    return static_cast<int64_t>(d);
  }
  double as_float() const { return kind_ == Kind::kFloat ? float_ : static_cast<double>(int_); }
  const std::string& as_string() const { return str_; }
  // For undefined values: what was undefined, for error messages.
  const std::string& undefined_hint() const { return str_; }
  const ValueList& list() const { return *list_; }
  ValueList& mutable_list() { return *list_; }
  const Dict& dict() const { return *dict_; }
  Dict& mutable_dict() { return *dict_; }
  const std::string& function_name() const { return str_; }
  absl::StatusOr<Value> Call(const ValueList& args, const KwArgs& kwargs) const {
    return (*fn_)(args, kwargs);
  }

  // Dict/namespace entry or nullptr.
  const Value* Find(const std::string& key) const;
  void Set(const std::string& key, Value v);

  // Python truthiness.
  bool Truthy() const;
  // Python str() as Jinja prints it ({{ x }}); undefined prints as "".
  std::string Str() const;
  // Python repr().
  std::string Repr() const;
  // Python's type name, for error messages ("dict object", "str object", ...).
  std::string TypeName() const;
  // json.dumps(v, ensure_ascii, indent, separators, sort_keys) as transformers' tojson.
  absl::StatusOr<std::string> ToJson(bool ensure_ascii, int indent, const std::string& item_sep,
                                     const std::string& key_sep, bool sort_keys) const;
  absl::StatusOr<nlohmann::ordered_json> ToJsonValue() const;

  // Python ==.
  bool Equals(const Value& other) const;
  // Python <, or an error for unorderable types.
  static absl::StatusOr<bool> Less(const Value& a, const Value& b);

 private:
  explicit Value(Kind k) : kind_(k) {}
  absl::Status WriteJson(std::string* out, bool ensure_ascii, int indent, int depth,
                         const std::string& item_sep, const std::string& key_sep,
                         bool sort_keys) const;

  Kind kind_ = Kind::kUndefined;
  bool tuple_ = false;
  int64_t int_ = 0;
  double float_ = 0;
  std::string str_;
  std::shared_ptr<ValueList> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<NativeFunction> fn_;
  int depth_ = 0;
};

// Python's repr() of a float ("1.0", "0.1", "1e-05", "inf").
std::string PythonFloatRepr(double d);
// Python str.isspace() for one code point.
bool IsPythonSpace(char32_t cp);

}  // namespace glm::tokenizer::jinja

#endif  // GLM_COORDINATOR_TOKENIZER_JINJA_VALUE_H_
