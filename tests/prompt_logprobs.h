// log p(prompt[p] | prompt[0, p)) for p >= 1 from a forward's logits of the whole prompt: the
// reference the clusters' prompt logprobs are compared with (engine and end-to-end tests).
#ifndef GLM_TESTS_PROMPT_LOGPROBS_H_
#define GLM_TESTS_PROMPT_LOGPROBS_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace glm::testing {

// logits [prompt.size(), vocab] (row p predicts prompt[p + 1]).
inline std::vector<double> PromptLogprobsFromLogits(const std::vector<float>& logits, int64_t vocab,
                                                    const std::vector<int32_t>& prompt) {
  std::vector<double> lp;
  for (size_t p = 1; p < prompt.size(); ++p) {
    const float* row = logits.data() + (p - 1) * vocab;
    const float max = *std::max_element(row, row + vocab);
    double z = 0;
    for (int64_t v = 0; v < vocab; ++v) z += std::exp(static_cast<double>(row[v] - max));
    lp.push_back(row[prompt[p]] - max - std::log(z));
  }
  return lp;
}

}  // namespace glm::testing

#endif  // GLM_TESTS_PROMPT_LOGPROBS_H_
