// Reading a model directory's JSON files (config.json, model.safetensors.index.json,
// tokenizer.json, tokenizer_config.json) and safetensors headers as untrusted input: a file
// that is not a regular file (a FIFO would block the open forever), one over a size bound, or
// JSON nested absurdly deep is refused with a message naming the file, before the parser can
// spend gigabytes on it (nlohmann builds a node per level: 120M nested brackets took 7.6 GB and
// ended in an uncaught std::bad_alloc). Real files nest a handful of levels.
#ifndef GLM_SHARD_WORKER_MODEL_MODEL_FILE_H_
#define GLM_SHARD_WORKER_MODEL_MODEL_FILE_H_

#include <cstdint>
#include <new>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace glm::model {

// config.json, tokenizer_config.json, generation_config.json: a few KB in practice.
inline constexpr int64_t kMaxSmallModelFileBytes = int64_t{64} << 20;
// tokenizer.json (GLM-5: ~20 MB) and the index (~10 MB for GLM-5's FP8 shards).
inline constexpr int64_t kMaxLargeModelFileBytes = int64_t{1} << 30;
// Arrays/objects one model JSON document may nest (Hugging Face's files: under 10).
inline constexpr int kMaxModelJsonDepth = 64;

// The whole file: NotFound when it cannot be opened, InvalidArgument when it is not a regular
// file or is larger than max_bytes, DataLoss on a read error.
absl::StatusOr<std::string> ReadModelFile(const std::string& path, int64_t max_bytes);

// InvalidArgument "<what>: JSON nested deeper than N levels" when the text's brackets (outside
// strings) open more than max_depth levels at once; a linear scan that allocates nothing.
absl::Status CheckJsonNesting(absl::string_view text, int max_depth, absl::string_view what);

// Parses `text` (nlohmann::json or ordered_json) after CheckJsonNesting: InvalidArgument
// "<what>: not valid JSON" on a syntax error, ResourceExhausted if the parse runs out of memory.
template <typename Json>
absl::StatusOr<Json> ParseModelJson(const std::string& text, absl::string_view what) {
  if (absl::Status s = CheckJsonNesting(text, kMaxModelJsonDepth, what); !s.ok()) return s;
  try {
    Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(what, ": not valid JSON"));
    return j;
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(what, ": out of memory parsing its ", text.size(), " bytes"));
  }
}

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_MODEL_FILE_H_
