// Logical KV blocks and the prefix cache. Blocks are reference counted; a block whose count
// drops to zero goes to the back of an LRU free list but keeps its contents, so a later prompt
// with the same prefix can take it back. Full blocks are identified by a hash chain over the
// tokens of every block up to and including them (a block's KV depends on the whole prefix).
// The workers hold the physical blocks with the same ids; this class only decides.
#ifndef GLM_COORDINATOR_KV_BLOCK_ALLOCATOR_H_
#define GLM_COORDINATOR_KV_BLOCK_ALLOCATOR_H_

#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>
#include <vector>

namespace glm::kv {

class BlockAllocator {
 public:
  BlockAllocator(int32_t num_blocks, int32_t block_size);

  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return num_blocks_; }
  // Blocks nobody references (cached or empty): what allocation can take.
  int32_t num_free() const { return static_cast<int32_t>(free_list_.size()); }
  int32_t num_used() const { return num_blocks_ - num_free(); }
  // Free blocks that still hold a registered prefix (kept as a count: read every step).
  int32_t num_cached_free() const { return cached_free_; }

  // Hash of a full block given the previous block's hash (0 for the first) and its tokens.
  static uint64_t ChainHash(uint64_t previous, const int32_t* tokens, int32_t count);

  // Takes the longest chain of cached full blocks matching the start of `tokens` (at most
  // `max_blocks`), referencing each; returns their ids in order. `seed` starts the chain (0 for
  // plain blocks; another value keeps a partition of blocks apart, e.g. ones that also hold MTP rows).
  // `lookahead`: each block's hash also covers that many tokens after it (blocks whose contents
  // depend on them: an MTP row at position j is built from token j + 1), as registered.
  std::vector<int32_t> MatchPrefix(const std::vector<int32_t>& tokens, int32_t max_blocks, uint64_t seed = 0,
                                   int32_t lookahead = 0);

  // The blocks MatchPrefix would take now, without taking them (a scheduler sizing up admission).
  std::vector<int32_t> PeekPrefix(const std::vector<int32_t>& tokens, int32_t max_blocks, uint64_t seed = 0,
                                  int32_t lookahead = 0) const;

  // A fresh block (evicting the least recently freed cached block if needed); nullopt when every
  // block is referenced.
  std::optional<int32_t> Allocate();
  // Drops one reference (blocks reaching zero become free, still cached if registered).
  void Release(int32_t block);
  // Records that `block` (full, referenced) holds the tokens whose chain hash is `hash`, so
  // later prompts can reuse it. A hash already cached by another block is left alone.
  void Register(int32_t block, uint64_t hash);

  int32_t ref_count(int32_t block) const { return blocks_[block].refs; }
  // Whether `block` holds a registered prefix that MatchPrefix can hand out.
  bool is_cached(int32_t block) const { return blocks_[block].hash.has_value(); }

 private:
  struct Block {
    int32_t refs = 0;
    std::optional<uint64_t> hash;
    std::list<int32_t>::iterator free_pos;
    bool in_free_list = false;
  };
  void TakeFromFreeList(int32_t block);

  int32_t num_blocks_;
  int32_t block_size_;
  std::vector<Block> blocks_;
  std::list<int32_t> free_list_;  // front = least recently freed (evicted first)
  std::unordered_map<uint64_t, int32_t> cached_;  // chain hash -> block
  int32_t cached_free_ = 0;                        // blocks in free_list_ with a hash
};

}  // namespace glm::kv

#endif  // GLM_COORDINATOR_KV_BLOCK_ALLOCATOR_H_
