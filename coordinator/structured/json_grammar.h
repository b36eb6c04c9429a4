// A JSON Schema compiled into the small node graph the output matcher walks (structured outputs:
// OpenAI `response_format` json_object / json_schema). Immutable once built, shared by every
// request that uses the same schema.
//
// What a schema may say, and how it is honoured:
// - `type` (one or a list), `enum`, `const`, `anyOf` / `oneOf` (any branch that fits; oneOf's
//   exclusivity is not enforced), a single-element `allOf`, `$ref` to `#/$defs/...` or
//   `#/definitions/...` (recursion allowed).
// - Objects: `properties` are generated in the schema's order; every `required` one appears,
//   the others may be left out; no other key is generated (valid whatever additionalProperties
//   says). Without `properties`: any keys, their values per `additionalProperties` (a schema,
//   or any value; `false`: only `{}`).
// - Arrays: `items`, `minItems`, `maxItems`. Strings: `minLength`, `maxLength` (code points).
// - Annotations are ignored (title, description, default, examples, ...). Every other keyword
//   (pattern, format, minimum, ...) is refused with its path: generating text the schema does
//   not accept would hand the client a reply it cannot use.
#ifndef GLM_COORDINATOR_STRUCTURED_JSON_GRAMMAR_H_
#define GLM_COORDINATOR_STRUCTURED_JSON_GRAMMAR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/structured/cfg_grammar.h"
#include "coordinator/structured/regex_dfa.h"
#include "nlohmann/json.hpp"

namespace glm::structured {

struct GrammarNode {
  enum class Kind : uint8_t {
    kAny,       // any JSON value
    kObject,
    kArray,
    kString,
    kNumber,
    kInteger,
    kLiterals,  // one of fixed texts (enum, const, true/false, null), compact JSON
    kAnyOf,
    // A forced tool call in GLM's format (ForToolCalls): `literals` are the calls' openings,
    // `options` the kToolArgs node of each.
    kToolCall,
    // One tool's arguments: `properties` are the argument openings (key_literal), `close_literal`
    // the node of the literal after each value, and the last property the call's closing tag.
    kToolArgs,
    // One or more calls (the root of ForToolCalls): `items` is the kToolCall node, `max_items`
    // the most calls (-1: no limit); one newline may separate two calls.
    kToolCallList,
    // The whole output as raw text (not JSON) that `pattern` matches: ForRegex, ForChoice.
    kText,
    // The whole output as raw text that the context-free grammar `cfg` matches: ForGbnf.
    kCfg,
  };
  struct Property {
    std::string key_literal;  // the key as JSON text, quotes included: "\"name\""
    int32_t node = -1;
    bool required = false;
    bool raw_text = false;    // kToolArgs: a string argument, written as raw text (not JSON)
  };
  Kind kind = Kind::kAny;
  // kObject: with properties, exactly those (schema order); without, free keys whose values are
  // `additional` (-1: no key at all).
  std::vector<Property> properties;
  bool free_keys = false;
  int32_t additional = -1;
  // kArray, kToolCallList
  int32_t items = -1;
  int64_t min_items = 0;
  int64_t max_items = -1;  // -1: no limit
  // kString
  int64_t min_length = 0;
  int64_t max_length = -1;
  // kString: the value matches this whole (JSON Schema `pattern` or `format`); kText: the output.
  std::shared_ptr<const RegexDfa> pattern;
  // kCfg
  std::shared_ptr<const CfgGrammar> cfg;
  // kLiterals
  std::vector<std::string> literals;
  // kAnyOf, kToolCall
  std::vector<int32_t> options;
  // kToolArgs
  int32_t close_literal = -1;
};

// A tool the model may be made to call: its name and its `parameters` JSON schema (in the
// client's key order; null: no arguments).
struct ToolSpec {
  std::string name;
  nlohmann::ordered_json parameters;
  std::string field;  // how errors name the tool ("" : `field`[index])
};

// How a chat template spaces GLM's tool call: what it writes after the tool's name, after each
// </arg_key> and after each </arg_value>. GLM-4.5 / 4.6 write a newline at each (the default);
// GLM-4.7 and GLM-5 write nothing. Whitespace only. A forced call is generated in the layout the
// served model's template writes, the one the model learnt.
struct ToolCallLayout {
  std::string after_name = "\n";
  std::string after_key = "\n";
  std::string after_value = "\n";
  static ToolCallLayout Compact() { return {"", "", ""}; }
  bool operator==(const ToolCallLayout&) const = default;
  // E.g. "after the name \"\\n\", after </arg_key> \"\\n\", after </arg_value> \"\\n\"" (C escapes).
  std::string Describe() const;
};

class JsonGrammar {
 public:
  // Limits that keep a matcher state small (candidate sets are 64-bit masks).
  static constexpr int kMaxProperties = 64;
  static constexpr int kMaxLiterals = 64;
  static constexpr int kMaxNodes = 4096;

  // `schema` as the client sent it, in its key order; errors name the offending place as `field` + JSON pointer
  // ("response_format.json_schema.schema/properties/when: 'format' is not supported ...").
  static absl::StatusOr<std::shared_ptr<const JsonGrammar>> FromSchema(const nlohmann::ordered_json& schema,
                                                                      const std::string& field);
  // Any JSON object (OpenAI's json_object mode).
  static std::shared_ptr<const JsonGrammar> AnyObject();
  // One to `max_calls` (-1: any number of) calls of `tools` (tool_choice "required" / a named
  // function), in GLM's tool-call format, special tokens spelt kSpecialMark + their text
  // (S1, S2, S3: the layout's after_name, after_key, after_value):
  //   <tool_call>NAME S1 (<arg_key>K</arg_key> S2 <arg_value>V</arg_value> S3)*</tool_call>
  // with an optional newline between calls. Arguments in the schema's order (required ones
  // always); a string argument's V is raw text (what GLM's template writes and its parser reads
  // back verbatim), any other V is JSON of its schema. `field` names the tools in errors
  // ("tools[1].function.parameters/...").
  static absl::StatusOr<std::shared_ptr<const JsonGrammar>> ForToolCalls(const std::vector<ToolSpec>& tools,
                                                                        const std::string& field, int max_calls = 1,
                                                                        const ToolCallLayout& layout = {});
  // `grammar` when it is not a forced tool call or already in `layout`; else the same calls
  // compiled in `layout` (the API parses a request before it knows the served template).
  static absl::StatusOr<std::shared_ptr<const JsonGrammar>> InToolCallLayout(std::shared_ptr<const JsonGrammar> grammar,
                                                                            const ToolCallLayout& layout);
  // Raw text that `pattern` (RegexDfa's syntax) matches whole; one of `choices` exactly. `field`
  // names the pattern or choices in errors.
  static absl::StatusOr<std::shared_ptr<const JsonGrammar>> ForRegex(std::string_view pattern, const std::string& field);
  // Raw text that the GBNF grammar `text` (CfgGrammar's syntax: llama.cpp's `grammar`, vLLM's
  // `guided_grammar`) matches from its rule `root`. `field` names the grammar in errors.
  static absl::StatusOr<std::shared_ptr<const JsonGrammar>> ForGbnf(std::string_view text, const std::string& field);
  static absl::StatusOr<std::shared_ptr<const JsonGrammar>> ForChoice(const std::vector<std::string>& choices,
                                                                     const std::string& field);
  // Special tokens' bytes in a TokenVocabulary start with this byte (never in UTF-8 text), so a
  // grammar can ask for one (a tool-call tag) and JSON never matches one.
  static constexpr char kSpecialMark = '\xFF';
  bool is_tool_call() const { return node(root_).kind == GrammarNode::Kind::kToolCallList; }

  const GrammarNode& node(int32_t i) const { return nodes_[i]; }
  int32_t root() const { return root_; }
  // The literal node of true / false / null, which kAny values use.
  int32_t keyword_literals() const { return keywords_; }
  // A stable identity of the compiled grammar (its source schema, compact), for caches.
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  friend class SchemaCompiler;
  // A grammar of one node (a whole-output regex or GBNF grammar) and its cache identity.
  static std::shared_ptr<const JsonGrammar> OfRoot(GrammarNode root, std::string fingerprint);
  // What ForToolCalls compiled (null for other grammars), for InToolCallLayout.
  struct ToolCallSource {
    std::vector<ToolSpec> tools;
    std::string field;
    int max_calls = 1;
    ToolCallLayout layout;
  };
  std::vector<GrammarNode> nodes_;
  std::shared_ptr<const ToolCallSource> tool_calls_;
  int32_t root_ = -1;
  int32_t keywords_ = -1;
  std::string fingerprint_;
};

}  // namespace glm::structured

#endif  // GLM_COORDINATOR_STRUCTURED_JSON_GRAMMAR_H_
