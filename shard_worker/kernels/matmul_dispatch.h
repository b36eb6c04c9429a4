// Run-time choice among the compiled matmul paths (internal to kernels/).
#ifndef GLM_SHARD_WORKER_KERNELS_MATMUL_DISPATCH_H_
#define GLM_SHARD_WORKER_KERNELS_MATMUL_DISPATCH_H_

#include <string>
#include <vector>

#include "shard_worker/kernels/matmul.h"

namespace glm::kernels {

struct MatMulPath {
  std::string name;
  MatMulRowsFn fn;
};

// Every path this CPU can run, fastest first (the last is always the portable one).
std::vector<MatMulPath> SupportedMatMulPaths();
// The first of SupportedMatMulPaths(), or the one named by ForceMatMulPath().
const MatMulPath& SelectedMatMulPath();
// Test and benchmark hook: choose a path by name (returns false if unsupported here).
bool ForceMatMulPath(const std::string& name);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_MATMUL_DISPATCH_H_
