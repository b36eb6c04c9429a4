#include "coordinator/structured/output_format.h"

#include <algorithm>
#include <chrono>
#include <unordered_map>

namespace glm::structured {

OutputFormat::OutputFormat(std::shared_ptr<const JsonGrammar> grammar, std::shared_ptr<const TokenVocabulary> vocabulary,
                           int64_t cache_bytes, int64_t walk_states)
    : grammar_(std::move(grammar)), vocabulary_(std::move(vocabulary)), cache_bytes_(cache_bytes),
      walk_states_(std::max<int64_t>(1, walk_states)) {}

namespace {
void SetBit(std::string* bitmap, int32_t id) { (*bitmap)[id >> 3] = static_cast<char>((*bitmap)[id >> 3] | (1 << (id & 7))); }

// The prefix-sharing walk over `sorted` (token ids in byte order; shared[i]: the bytes token i
// shares with the one before): sets the bit of every token whose bytes all step from `start`
// (step(prev, byte, &next) false: no continuation). at[d] is the state after the first d bytes
// of the current token, for d < valid; entries are assigned over, never freed, so their storage
// is reused from token to token. State: a JsonMatcher, or a RegexDfa state for a whole-output
// regex (no matcher copies).
template <typename State, typename StepFn>
void WalkSorted(const TokenVocabulary& vocabulary, const std::vector<int32_t>& sorted, const std::vector<int32_t>& shared,
                const State& start, int64_t vocab, StepFn step, std::string* bitmap) {
  std::vector<State> at(1, start);
  size_t valid = 1;
  size_t dead_at = SIZE_MAX;  // the current prefix of this length (and longer) cannot continue
  for (size_t i = 0; i < sorted.size(); ++i) {
    const int32_t id = sorted[i];
    const std::string& bytes = vocabulary.bytes(id);
    const size_t common = static_cast<size_t>(shared[i]);
    if (common >= dead_at) continue;  // shares the dead prefix
    dead_at = SIZE_MAX;
    valid = std::min(valid, common + 1);
    if (at.size() < bytes.size() + 1) at.resize(bytes.size() + 1, start);  // fillers: written before read
    for (size_t d = valid - 1; d < bytes.size(); ++d) {
      if (!step(at[d], static_cast<uint8_t>(bytes[d]), &at[d + 1])) {
        dead_at = d + 1;
        break;
      }
      valid = d + 2;
    }
    if (dead_at == SIZE_MAX && id < vocab) SetBit(bitmap, id);
  }
}

// A GBNF grammar's states met during one walk, numbered, with their transitions filled in as
// they are first taken: the walk then steps a table (as for a regex's automaton) instead of
// advancing matcher copies. A byte's successor depends on the state alone, and the vocabulary's
// trie holds few distinct states (a loop inside a string or a name is one state at every depth),
// so most of a walk's steps are lookups.
class CfgWalkStates {
 public:
  static constexpr int32_t kUnknown = -2, kDead = -1, kUntabled = -3;

  CfgWalkStates(const CfgMatcher& start, size_t max_states) : max_states_(max_states) { Intern(start); }

  // The state after `byte` from state `from`: false with *to kDead when there is none, or with
  // *to kUntabled when it would be one state past the bound (the caller then walks without the table).
  bool Step(int32_t from, uint8_t byte, int32_t* to) {
    int32_t next = next_[static_cast<size_t>(from) * 256 + byte];
    if (next == kUnknown) {
      CfgMatcher m = states_[from];
      next = m.Advance(byte) ? Intern(m) : kDead;
      if (next != kUntabled) next_[static_cast<size_t>(from) * 256 + byte] = next;
    }
    *to = next;
    return next >= 0;
  }

 private:
  int32_t Intern(const CfgMatcher& m) {
    auto [it, inserted] = ids_.try_emplace(m.Key(), static_cast<int32_t>(states_.size()));
    if (!inserted) return it->second;
    if (states_.size() >= max_states_) {
      ids_.erase(it);
      return kUntabled;
    }
    states_.push_back(m);
    next_.resize(states_.size() * 256, kUnknown);
    return it->second;
  }

  const size_t max_states_;
  std::vector<CfgMatcher> states_;
  std::unordered_map<std::string, int32_t> ids_;
  std::vector<int32_t> next_;  // [state, byte]
};

}  // namespace

std::string OutputFormat::Compute(const JsonMatcher& state, int64_t vocab) const {
  std::string bitmap((vocab + 7) / 8, '\0');
  const RegexDfa* dfa = nullptr;
  int32_t dfa_state = 0;
  if (state.InPatternText(&dfa, &dfa_state)) {
    auto step = [dfa](int32_t prev, uint8_t byte, int32_t* next) { return (*next = dfa->Next(prev, byte)) >= 0; };
    WalkSorted(*vocabulary_, vocabulary_->sorted(), vocabulary_->shared_prefix(), dfa_state, vocab, step, &bitmap);
    return bitmap;
  }
  if (const CfgMatcher* cfg = state.cfg(); cfg != nullptr) {
    CfgWalkStates states(*cfg, static_cast<size_t>(walk_states_));
    // A state past the table's bound counts as dead in this walk, which is then void: the plain
    // walk below computes the mask instead (a grammar whose trie meets thousands of states).
    bool overflow = false;
    auto step = [&](int32_t prev, uint8_t byte, int32_t* next) {
      const bool alive = states.Step(prev, byte, next);
      if (*next == CfgWalkStates::kUntabled) overflow = true;
      return alive;
    };
    WalkSorted(*vocabulary_, vocabulary_->sorted(), vocabulary_->shared_prefix(), int32_t{0}, vocab, step, &bitmap);
    if (!overflow) return bitmap;
    bitmap.assign((vocab + 7) / 8, '\0');  // too many states for the table: the plain walk below
  }
  // Inside a string, the string-safe tokens need no walk (all of them, or those that fit the
  // maxLength left); only the others are walked.
  int64_t room = 0;
  const bool in_string = state.InPlainString(&room);
  if (in_string) {
    for (int32_t id : vocabulary_->string_safe_ids())
      if (id < vocab && vocabulary_->code_points(id) <= room) SetBit(&bitmap, id);
  }
  auto step = [](const JsonMatcher& prev, uint8_t byte, JsonMatcher* next) {
    *next = prev;
    return next->Advance(byte);
  };
  WalkSorted(*vocabulary_, in_string ? vocabulary_->unsafe_sorted() : vocabulary_->sorted(),
             in_string ? vocabulary_->unsafe_shared_prefix() : vocabulary_->shared_prefix(), state, vocab, step, &bitmap);
  return bitmap;
}

std::string OutputFormat::MaskReference(const JsonMatcher& state, int64_t vocab) const {
  std::string bitmap((vocab + 7) / 8, '\0');
  for (int32_t id = 0; id < std::min<int64_t>(vocab, vocabulary_->size()); ++id) {
    const std::string& bytes = vocabulary_->bytes(id);
    if (bytes.empty()) continue;
    JsonMatcher m = state;
    if (m.Advance(bytes)) SetBit(&bitmap, id);
  }
  return bitmap;
}

std::shared_ptr<const std::string> OutputFormat::Mask(const JsonMatcher& state, int64_t vocab) {
  std::string key = state.Key();
  key.append(reinterpret_cast<const char*>(&vocab), sizeof vocab);
  {
    absl::MutexLock lock(&mu_);
    if (auto it = index_.find(key); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      stats_.hits++;
      return it->second->second;
    }
    stats_.misses++;
  }
  // Computed outside the lock: another request with this schema may compute the same mask at the
  // same time; either copy is right.
  const auto start = std::chrono::steady_clock::now();
  auto mask = std::make_shared<const std::string>(Compute(state, vocab));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  absl::MutexLock lock(&mu_);
  stats_.compute_seconds += seconds;
  if (index_.contains(key)) return mask;
  lru_.emplace_front(key, mask);
  index_[std::move(key)] = lru_.begin();
  cached_bytes_ += static_cast<int64_t>(mask->size() + lru_.front().first.size());
  while (cached_bytes_ > cache_bytes_ && lru_.size() > 1) {
    cached_bytes_ -= static_cast<int64_t>(lru_.back().second->size() + lru_.back().first.size());
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  stats_.entries = static_cast<int64_t>(lru_.size());
  return mask;
}

OutputFormat::Stats OutputFormat::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace glm::structured
