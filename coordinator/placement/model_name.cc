#include "coordinator/placement/model_name.h"

#include <filesystem>
#include <system_error>

namespace glm::placement {

std::string ModelNameFromPath(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path p = fs::path(path).lexically_normal();  // "a/b/./" -> "a/b/", "a/b/../b" -> "a/b"
  if (p.filename().empty()) p = p.parent_path();    // the trailing slash's empty component
  if (p.filename() == "config.json") p = p.parent_path();
  const std::string name = p.filename().string();
  if (!name.empty() && name != "." && name != "..") return name;
  // ".", "..", "/": the directory they name (the working directory's name for ".").
  std::error_code ec;
  const fs::path resolved = fs::weakly_canonical(fs::absolute(p.empty() ? fs::path(".") : p, ec), ec);
  if (!ec && !resolved.filename().empty()) return resolved.filename().string();
  return name;
}

}  // namespace glm::placement
