#include "coordinator/structured/cfg_matcher.h"

#include <algorithm>
#include <span>

namespace glm::structured {

namespace {

using Type = CfgElement::Type;

// Expansion steps one byte may take (over all its stacks): a grammar whose rules fan out into
// very many parses at once stops the match instead of stalling the engine thread.
constexpr int64_t kExpandBudget = 1 << 16;

bool EndsSequence(Type t) { return t == Type::kEnd || t == Type::kAlt; }

// Scratch of Advance, kept per thread: the masker advances millions of matcher copies a mask.
struct Scratch {
  std::vector<int32_t> stack;
  std::vector<int32_t> out;
  std::vector<std::span<const int32_t>> views;
  std::vector<int32_t> sorted;
};
Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

}  // namespace

CfgMatcher::CfgMatcher(const CfgGrammar* grammar) : grammar_(grammar) {
  Scratch& sc = ThreadScratch();
  sc.out.clear();
  int64_t budget = kExpandBudget;
  // One stack per alternative of root.
  bool ok = true;
  for (int32_t p = grammar_->rule_start(grammar_->root());; ++p) {
    sc.stack.assign(1, p);
    ok = ok && ExpandInto(sc.stack, sc.out, budget);
    while (!EndsSequence(grammar_->element(p).type)) ++p;
    if (grammar_->element(p).type == Type::kEnd) break;
  }
  if (ok)
    SetStacks(sc.out);
  else
    over_bounds_ = true;
}

bool CfgMatcher::ExpandInto(std::vector<int32_t>& stack, std::vector<int32_t>& out, int64_t& budget) const {
  if (--budget < 0 || stack.size() > kMaxDepth) return false;
  if (stack.empty()) {
    out.push_back(0);  // the text may end here
    return true;
  }
  const int32_t pos = stack.back();
  const CfgElement& e = grammar_->element(pos);
  switch (e.type) {
    case Type::kClass:
      out.push_back(static_cast<int32_t>(stack.size()));
      out.insert(out.end(), stack.begin(), stack.end());
      return true;
    case Type::kEnd:
    case Type::kAlt: {  // this alternative is done: back to what follows the rule
      stack.pop_back();
      const bool ok = ExpandInto(stack, out, budget);
      stack.push_back(pos);
      return ok;
    }
    case Type::kRef: {
      stack.pop_back();
      // What follows the reference, unless the reference ends its sequence (then nothing of this
      // rule is left to match: the stack does not grow on right recursion).
      const bool rest = !EndsSequence(grammar_->element(pos + 1).type);
      if (rest) stack.push_back(pos + 1);
      bool ok = true;
      for (int32_t p = grammar_->rule_start(e.value); ok; ++p) {
        stack.push_back(p);
        ok = ExpandInto(stack, out, budget);
        stack.pop_back();
        while (!EndsSequence(grammar_->element(p).type)) ++p;
        if (grammar_->element(p).type == Type::kEnd) break;
      }
      if (rest) stack.pop_back();
      stack.push_back(pos);
      return ok;
    }
  }
  return false;
}

void CfgMatcher::SetStacks(const std::vector<int32_t>& out) {
  Scratch& sc = ThreadScratch();
  sc.views.clear();
  for (size_t i = 0; i < out.size(); i += out[i] + 1) sc.views.emplace_back(out.data() + i + 1, out[i]);
  std::sort(sc.views.begin(), sc.views.end(), [](std::span<const int32_t> a, std::span<const int32_t> b) {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
  });
  stacks_.clear();
  count_ = 0;
  for (size_t i = 0; i < sc.views.size(); ++i) {
    if (i > 0 && std::equal(sc.views[i].begin(), sc.views[i].end(), sc.views[i - 1].begin(), sc.views[i - 1].end()))
      continue;
    stacks_.push_back(static_cast<int32_t>(sc.views[i].size()));
    stacks_.insert(stacks_.end(), sc.views[i].begin(), sc.views[i].end());
    ++count_;
  }
  if (static_cast<size_t>(count_) > kMaxStacks) DieOverBounds();
}

void CfgMatcher::Die() {
  stacks_.clear();
  count_ = 0;
  partial_left_ = 0;
}

bool CfgMatcher::Advance(std::string_view bytes) {
  for (char c : bytes)
    if (!Advance(static_cast<uint8_t>(c))) return false;
  return true;
}

bool CfgMatcher::Advance(uint8_t byte) {
  if (dead()) return false;
  // Strict UTF-8: the lead byte says how many continuation bytes follow; the byte after an
  // E0 / ED / F0 / F4 lead is narrowed so that no overlong form, surrogate or code point past
  // U+10FFFF gets through.
  if (partial_left_ == 0) {
    int left;
    if (byte < 0x80) {
      left = 0;
      partial_ = byte;
    } else if (byte >= 0xC2 && byte <= 0xDF) {
      left = 1;
      partial_ = byte & 0x1F;
    } else if (byte >= 0xE0 && byte <= 0xEF) {
      left = 2;
      partial_ = byte & 0x0F;
    } else if (byte >= 0xF0 && byte <= 0xF4) {
      left = 3;
      partial_ = byte & 0x07;
    } else {
      Die();
      return false;
    }
    partial_left_ = partial_total_ = left;
  } else {
    if ((byte & 0xC0) != 0x80) {
      Die();
      return false;
    }
    if (partial_left_ == partial_total_) {  // the byte after the lead: partial_ holds the lead's bits
      const uint32_t lead = partial_;
      const bool bad = (partial_total_ == 2 && ((lead == 0x0 && byte < 0xA0) || (lead == 0xD && byte > 0x9F))) ||
                       (partial_total_ == 3 && ((lead == 0x0 && byte < 0x90) || (lead == 0x4 && byte > 0x8F)));
      if (bad) {
        Die();
        return false;
      }
    }
    partial_ = (partial_ << 6) | (byte & 0x3F);
    --partial_left_;
  }
  // The code points still possible after this byte: the bits so far, any bits to come, and no
  // fewer than the form's length needs (after an E0 / F0 lead the next byte rules out overlongs).
  const int shift = 6 * partial_left_;
  const uint32_t least = partial_total_ == 3 ? 0x10000 : partial_total_ == 2 ? 0x800 : 0;
  const uint32_t lo = std::max(partial_ << shift, least), hi = (partial_ << shift) | ((uint32_t{1} << shift) - 1);
  auto top_set = [&](size_t at) -> const CodePointSet& {
    return grammar_->code_points(grammar_->element(stacks_[at + stacks_[at]]).value);
  };

  Scratch& sc = ThreadScratch();
  sc.out.clear();
  if (partial_left_ > 0) {
    // Mid-character: keep the stacks whose next set holds some character with this prefix (their
    // order, hence the sorting, is kept).
    int32_t kept = 0;
    for (size_t i = 0; i < stacks_.size(); i += stacks_[i] + 1) {
      if (stacks_[i] == 0 || !top_set(i).Intersects(lo, hi)) continue;
      sc.out.insert(sc.out.end(), stacks_.begin() + static_cast<std::ptrdiff_t>(i),
                    stacks_.begin() + static_cast<std::ptrdiff_t>(i + stacks_[i] + 1));
      ++kept;
    }
    stacks_.swap(sc.out);
    count_ = kept;
  } else {
    int64_t budget = kExpandBudget;
    for (size_t i = 0; i < stacks_.size(); i += stacks_[i] + 1) {
      if (stacks_[i] == 0 || !top_set(i).Contains(lo)) continue;
      sc.stack.assign(stacks_.begin() + static_cast<std::ptrdiff_t>(i + 1),
                      stacks_.begin() + static_cast<std::ptrdiff_t>(i + 1 + stacks_[i]));
      sc.stack.back() += 1;  // past the set just matched
      if (!ExpandInto(sc.stack, sc.out, budget)) {
        DieOverBounds();
        return false;
      }
    }
    SetStacks(sc.out);
  }
  if (dead()) {
    partial_left_ = 0;
    return false;
  }
  return true;
}

bool CfgMatcher::CanEnd() const {
  // Stacks are sorted: an empty one (the text may end) comes first.
  return partial_left_ == 0 && count_ > 0 && stacks_[0] == 0;
}

bool CfgMatcher::MustEnd() const { return CanEnd() && count_ == 1; }

std::string CfgMatcher::Key() const {
  std::string key;
  key.push_back(partial_left_ > 0 ? 'p' : 'c');
  if (partial_left_ > 0) {  // the bits of a character in progress (else partial_ is stale)
    key.append(reinterpret_cast<const char*>(&partial_), sizeof partial_);
    key.append(reinterpret_cast<const char*>(&partial_left_), sizeof partial_left_);
  }
  key.append(reinterpret_cast<const char*>(stacks_.data()), stacks_.size() * sizeof(int32_t));
  return key;
}

}  // namespace glm::structured
