#include "bench/baseline_store.h"

#include <fstream>
#include <sstream>

#include "nlohmann/json.hpp"

namespace glm::bench {
namespace {

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) return nlohmann::json::object();
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  return j.is_object() ? j : nlohmann::json::object();
}

}  // namespace

BaselineStore::BaselineStore(std::string path) : path_(std::move(path)) {}

double BaselineStore::Get(const std::string& key) const {
  auto j = ReadJson(path_);
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

void BaselineStore::RecordIfBetter(const std::string& key, double value) {
  auto j = ReadJson(path_);
  auto it = j.find(key);
  if (it != j.end() && it->is_number() && it->get<double>() >= value) return;
  j[key] = value;
  std::ofstream out(path_, std::ios::trunc);
  out << j.dump(2) << "\n";
}

}  // namespace glm::bench
