// Early-return helpers for absl::Status / absl::StatusOr (this abseil has no public macros).
#ifndef GLM_COORDINATOR_TOKENIZER_STATUS_MACROS_H_
#define GLM_COORDINATOR_TOKENIZER_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define GLM_TOK_CONCAT_INNER(a, b) a##b
#define GLM_TOK_CONCAT(a, b) GLM_TOK_CONCAT_INNER(a, b)

#define GLM_RETURN_IF_ERROR(expr)          \
  do {                                     \
    const absl::Status _glm_status = (expr); \
    if (!_glm_status.ok()) return _glm_status; \
  } while (0)

#define GLM_ASSIGN_OR_RETURN(lhs, expr) \
  GLM_ASSIGN_OR_RETURN_IMPL(GLM_TOK_CONCAT(_glm_statusor_, __LINE__), lhs, expr)
#define GLM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(*tmp)

#endif  // GLM_COORDINATOR_TOKENIZER_STATUS_MACROS_H_
