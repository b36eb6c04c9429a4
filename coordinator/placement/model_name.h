// The name a model directory is planned and served under (a plan's `model`, the coordinator's
// served name and /v1/models id): the directory's last component. One place for glmctl plan and
// the coordinator, because `std::filesystem::path("models/glm5-tiny-code/").filename()` is ""
// and a trailing slash on --model made the coordinator serve '' (requests naming the model
// failed with --strict-model-name, and a pinned plan's model could never match).
#ifndef GLM_COORDINATOR_PLACEMENT_MODEL_NAME_H_
#define GLM_COORDINATOR_PLACEMENT_MODEL_NAME_H_

#include <string>

namespace glm::placement {

// "models/glm5-tiny-code", "models/glm5-tiny-code/", "models/glm5-tiny-code/./" and
// "models/glm5-tiny-code/config.json" all give "glm5-tiny-code"; "." and ".." give the name of
// the directory they resolve to.
std::string ModelNameFromPath(const std::string& path);

}  // namespace glm::placement

#endif  // GLM_COORDINATOR_PLACEMENT_MODEL_NAME_H_
