// Jinja2's built-in filters, tests and globals plus the Python methods of str, list and dict
// that real chat templates call (startswith, split, strip, items, get, ...). Mutating methods
// (append, pop, update, ...) are refused, as in transformers' ImmutableSandboxedEnvironment.
#ifndef GLM_COORDINATOR_TOKENIZER_JINJA_BUILTINS_H_
#define GLM_COORDINATOR_TOKENIZER_JINJA_BUILTINS_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/tokenizer/jinja_value.h"

namespace glm::tokenizer::jinja {

class Interpreter;

// Helpers shared by jinja_builtins.cc, jinja_filters.cc and the interpreter.
namespace internal {
// Caps on what one template render may build. A chat template's output is a prompt bounded by
// the model's context (GLM-5: ~200k tokens, about 1 MB of text) and the HTTP body limit
// (64 MiB, most of it JSON escaping); no real template comes near 16 MiB in one string or a
// million list items, while "a" * 10**11, [1] * 10**12 or x|indent(10**10) would otherwise
// exhaust memory (or loop for ever) on every chat request.
constexpr size_t kMaxStringBytes = size_t{16} << 20;
constexpr size_t kMaxListItems = size_t{1} << 20;
// Error unless a string of `bytes` (produced by `what`) fits kMaxStringBytes.
absl::Status CheckStringSize(size_t bytes, const std::string& what);
absl::Status TypeError(const std::string& msg);
std::u32string ToU32(const std::string& s);
std::string FromU32(const std::u32string& s);
Value Arg(const ValueList& args, const KwArgs& kwargs, size_t index, const std::string& name,
          Value fallback = Value());
std::string StripChars(const std::string& s, const Value& chars, bool left, bool right);
// mode: 0 lower, 1 upper, 2 title, 3 capitalize (of the given text).
std::string MapCase(const std::string& s, int mode);
absl::StatusOr<std::string> Replace(const std::string& s, const std::string& from,
                                    const std::string& to, int64_t count);
Value AttributePath(const Value& v, const std::string& path);
absl::StatusOr<ValueList> SortValues(ValueList items, bool reverse, bool case_sensitive,
                                     const Value& attribute);
}  // namespace internal

class Builtins {
 public:
  // `obj.name`: a method of str/list/dict, else a dict item / namespace attribute, else
  // undefined. Attribute access on undefined is an error.
  static absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name);
  // `obj[key]`: item first, then attribute (Jinja's getitem order).
  static absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
  static absl::StatusOr<Value> Slice(const Value& obj, const Value& start, const Value& stop,
                                     const Value& step);
  // The elements a for loop visits (dict keys, string characters, list items).
  static absl::StatusOr<ValueList> Iterate(const Value& v);
  // Filters and tests live in jinja_filters.cc (kept apart for file size).
  static absl::StatusOr<Value> Filter(Interpreter* interp, const std::string& name,
                                      const Value& value, const ValueList& args,
                                      const KwArgs& kwargs);
  static absl::StatusOr<bool> Test(Interpreter* interp, const std::string& name,
                                   const Value& value, const ValueList& args);
  // range, namespace, raise_exception, strftime_now, dict.
  static Value::Dict Globals();
  // Number of code points (Python len of str).
  static int64_t Length(const std::string& s);
};

}  // namespace glm::tokenizer::jinja

#endif  // GLM_COORDINATOR_TOKENIZER_JINJA_BUILTINS_H_
