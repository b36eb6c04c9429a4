// A reference twin for CfgGrammar / CfgMatcher tests: whole-text membership decided straight
// from a grammar's flat form by a memoised recogniser over code points (the text positions where
// each rule, begun at a position, can end), written independently of CfgMatcher's stacks; and
// strict UTF-8 helpers.
#ifndef GLM_TESTS_COORDINATOR_STRUCTURED_CFG_REFERENCE_H_
#define GLM_TESTS_COORDINATOR_STRUCTURED_CFG_REFERENCE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/structured/cfg_grammar.h"
#include "gtest/gtest.h"

namespace glm::structured::cfg_reference {

using Type = CfgElement::Type;

// `text` compiled, or null (and a test failure naming it).
inline std::shared_ptr<const CfgGrammar> MustParse(const std::string& text, const std::string& field = "grammar") {
  auto grammar = CfgGrammar::ParseGbnf(text, field);
  EXPECT_TRUE(grammar.ok()) << text << "\n" << grammar.status();
  return grammar.ok() ? *grammar : nullptr;
}

// Strict UTF-8 to code points; false for anything else.
inline bool Decode(const std::string& bytes, std::vector<uint32_t>& out) {
  out.clear();
  for (size_t k = 0; k < bytes.size();) {
    const auto c = static_cast<uint8_t>(bytes[k]);
    const int n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (n == 0 || k + n > bytes.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (int j = 1; j < n; ++j) {
      const auto d = static_cast<uint8_t>(bytes[k + j]);
      if ((d & 0xC0) != 0x80) return false;
      cp = cp << 6 | (d & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    out.push_back(cp);
    k += n;
  }
  return true;
}

inline std::string Encode(uint32_t cp) {
  static constexpr uint8_t kLead[] = {0, 0, 0xC0, 0xE0, 0xF0};
  if (cp < 0x80) return std::string(1, static_cast<char>(cp));
  const int n = cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  std::string s(n, '\0');
  for (int k = n - 1; k > 0; --k, cp >>= 6) s[k] = static_cast<char>(0x80 | (cp & 0x3F));
  s[0] = static_cast<char>(kLead[n] | cp);
  return s;
}

inline bool InSet(const CodePointSet& set, uint32_t cp) {
  for (const auto& [lo, hi] : set.ranges())
    if (cp >= lo && cp <= hi) return true;
  return false;
}

// A rule's alternatives as [begin, end) element positions.
inline std::vector<std::pair<int32_t, int32_t>> Alternatives(const CfgGrammar& g, int32_t rule) {
  std::vector<std::pair<int32_t, int32_t>> alts;
  for (int32_t begin = g.rule_start(rule), p = begin;; ++p) {
    const Type type = g.element(p).type;
    if (type != Type::kAlt && type != Type::kEnd) continue;
    alts.push_back({begin, p});
    begin = p + 1;
    if (type == Type::kEnd) break;
  }
  return alts;
}

// The reference: the text positions where each rule, begun at a position, can end.
class Reference {
 public:
  explicit Reference(const CfgGrammar& grammar) : g_(grammar) {}
  bool Accepts(const std::string& text) {
    if (!Decode(text, cps_)) return false;
    memo_.clear();
    return Ends(g_.root(), 0).count(cps_.size()) > 0;
  }

 private:
  std::set<size_t> Ends(int32_t rule, size_t start) {
    const auto key = std::make_pair(rule, start);
    if (auto it = memo_.find(key); it != memo_.end()) {
      if (!it->second.first) ADD_FAILURE() << "left recursion through " << g_.rule_name(rule);
      return it->second.second;
    }
    memo_[key] = {false, {}};
    std::set<size_t> result;
    for (const auto& [begin, end] : Alternatives(g_, rule)) {
      std::set<size_t> current = {start};
      for (int32_t p = begin; p < end && !current.empty(); ++p) {
        const CfgElement& e = g_.element(p);
        std::set<size_t> next;
        for (size_t i : current) {
          if (e.type == Type::kClass) {
            if (i < cps_.size() && InSet(g_.code_points(e.value), cps_[i])) next.insert(i + 1);
          } else {
            const std::set<size_t> ends = Ends(e.value, i);
            next.insert(ends.begin(), ends.end());
          }
        }
        current = std::move(next);
      }
      result.insert(current.begin(), current.end());
    }
    memo_[key] = {true, result};
    return result;
  }

  const CfgGrammar& g_;
  std::vector<uint32_t> cps_;
  std::map<std::pair<int32_t, size_t>, std::pair<bool, std::set<size_t>>> memo_;  // done, ends
};

}  // namespace glm::structured::cfg_reference

#endif  // GLM_TESTS_COORDINATOR_STRUCTURED_CFG_REFERENCE_H_
