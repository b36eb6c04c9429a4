#include "shard_worker/model/checkpoint.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "shard_worker/model/json_duplicate_keys.h"
#include "shard_worker/model/model_file.h"

namespace glm::model {

std::string Checkpoint::Located::Where() const {
  return absl::StrCat(file->path(), ": tensor '", info->name, "'");
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return absl::NotFoundError(absl::StrCat(dir, ": not a model directory"));
  auto ckpt = std::unique_ptr<Checkpoint>(new Checkpoint());
  ckpt->dir_ = dir;
  auto config = ModelConfig::FromFile((fs::path(dir) / "config.json").string());
  if (!config.ok()) return config.status();
  ckpt->config_ = *std::move(config);

  // tensor name -> shard file name
  std::map<std::string, std::string> weight_map;
  fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index_path, ec)) {
    auto text = ReadModelFile(index_path.string(), kMaxLargeModelFileBytes);
    if (!text.ok()) return text.status();
    if (auto s = CheckJsonNesting(*text, kMaxModelJsonDepth, index_path.string()); !s.ok()) return s;
    std::vector<DuplicateJsonKey> duplicates;
    auto j = ParseJsonFindingDuplicateKeys(*text, &duplicates);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      return absl::DataLossError(absl::StrCat(index_path.string(), ": not a safetensors index (needs \"weight_map\")"));
    // nlohmann keeps the last of two entries of one name: which shard holds the tensor would be a
    // guess. (Repeats inside "metadata" change nothing that is read.)
    for (const auto& d : duplicates) {
      if (d.depth == 1)
        return absl::DataLossError(absl::StrCat(index_path.string(), ": key '", d.key, "' appears twice"));
      if (d.depth == 2 && d.outer_key == "weight_map")
        return absl::DataLossError(absl::StrCat(index_path.string(), ": tensor '", d.key, "' appears twice in weight_map"));
    }
    if (j["weight_map"].empty())
      return absl::DataLossError(absl::StrCat(index_path.string(), ": weight_map lists no tensors"));
    for (auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string())
        return absl::DataLossError(absl::StrCat(index_path.string(), ": weight_map['", name, "'] is not a file name"));
      std::string f = file;
      if (f.find('/') != std::string::npos || f == "..")
        return absl::DataLossError(absl::StrCat(index_path.string(), ": weight_map['", name, "'] points outside the directory"));
      weight_map[name] = f;
    }
  } else if (fs::exists(fs::path(dir) / "model.safetensors", ec)) {
    // Single-file checkpoint: every tensor in it.
  } else {
    return absl::NotFoundError(absl::StrCat(dir, ": no model.safetensors.index.json or model.safetensors"));
  }

  std::map<std::string, const SafetensorsFile*> by_name;
  auto open_file = [&](const std::string& fname) -> absl::StatusOr<const SafetensorsFile*> {
    if (auto it = by_name.find(fname); it != by_name.end()) return it->second;
    auto f = SafetensorsFile::Open((fs::path(dir) / fname).string());
    if (!f.ok()) return f.status();
    const SafetensorsFile* raw = f->get();
    ckpt->files_.push_back(*std::move(f));
    by_name[fname] = raw;
    return raw;
  };
  if (weight_map.empty()) {
    auto f = open_file("model.safetensors");
    if (!f.ok()) return f.status();
    for (const auto& [name, info] : (*f)->tensors()) ckpt->tensors_[name] = {*f, &info};
  } else {
    for (const auto& [name, fname] : weight_map) {
      auto f = open_file(fname);
      if (!f.ok()) return f.status();
      const TensorInfo* info = (*f)->Find(name);
      if (info == nullptr)
        return absl::DataLossError(absl::StrCat((*f)->path(), ": tensor '", name,
                                                "' is listed in the index but missing from the file"));
      ckpt->tensors_[name] = {*f, info};
    }
  }
  return ckpt;
}

Checkpoint::Located Checkpoint::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? Located{} : it->second;
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [n, _] : tensors_) names.push_back(n);
  return names;
}

}  // namespace glm::model
