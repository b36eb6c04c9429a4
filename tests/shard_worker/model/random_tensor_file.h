// A safetensors file of U8 tensors of the given sizes filled with seeded random bytes, named
// "t<size>", for the tests of SafetensorsFile's reads (direct_read_test, parallel_read_test):
// their begins land at arbitrary file offsets (the header length is not a multiple of anything).
// Also the tensor that ends the file, for truncation cases.
#ifndef GLM_TESTS_SHARD_WORKER_MODEL_RANDOM_TENSOR_FILE_H_
#define GLM_TESTS_SHARD_WORKER_MODEL_RANDOM_TENSOR_FILE_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "shard_worker/model/safetensors_file.h"

namespace glm::model {

inline absl::Status WriteRandomTensorFile(const std::string& path, const std::vector<int64_t>& sizes, uint32_t seed) {
  std::mt19937 rng(seed);
  SafetensorsWriter w;
  for (int64_t n : sizes) {
    SafetensorsWriter::Entry e;
    e.name = "t" + std::to_string(n);
    e.dtype = "U8";
    e.shape = {n};
    e.bytes.resize(static_cast<size_t>(n));
    for (auto& b : e.bytes) b = static_cast<uint8_t>(rng());
    w.Add(std::move(e));
  }
  return w.Write(path).status();
}

inline const TensorInfo* LastTensorInFile(const SafetensorsFile& file) {
  const TensorInfo* last = nullptr;
  for (const auto& [name, info] : file.tensors())
    if (last == nullptr || info.begin > last->begin) last = &info;
  return last;
}

}  // namespace glm::model

#endif  // GLM_TESTS_SHARD_WORKER_MODEL_RANDOM_TENSOR_FILE_H_
