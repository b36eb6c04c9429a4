#include "coordinator/api/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"

namespace glm::api {
namespace {

// Prometheus floats: the shortest text that reads back as the same double (0.005, not %.17g's
// 0.0050000000000000001: Prometheus before 3.0 compares a bucket's `le` as a string, so it must
// read as vLLM's does), integers without a fraction or exponent, +Inf spelled as Prometheus wants.
std::string FormatNumber(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[64];
  // Whole counts (tokens, bytes) stay plain digits up to 1e15 (exact in a double); the shortest
  // form would print 3000000000 as 3e+09.
  const bool whole = v == std::trunc(v) && std::fabs(v) < 1e15;
  const auto [end, ec] = whole ? std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed)
                               : std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) {  // cannot happen with 64 bytes; never print garbage if it did
    std::snprintf(buf, sizeof(buf), "%.17g", v);
    return buf;
  }
  return std::string(buf, end);
}

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string LabelText(const MetricLabels& labels, const std::string& extra_key = "",
                      const std::string& extra_value = "") {
  if (labels.empty() && extra_key.empty()) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ",";
    first = false;
    absl::StrAppend(&out, k, "=\"", EscapeLabelValue(v), "\"");
  }
  if (!extra_key.empty()) {
    if (!first) out += ",";
    absl::StrAppend(&out, extra_key, "=\"", extra_value, "\"");
  }
  out += "}";
  return out;
}

const char* TypeName(MetricsRegistry::Type t) {
  switch (t) {
    case MetricsRegistry::Type::kCounter: return "counter";
    case MetricsRegistry::Type::kGauge: return "gauge";
    case MetricsRegistry::Type::kHistogram: return "histogram";
  }
  return "untyped";
}

}  // namespace

void MetricsRegistry::Declare(const std::string& name, Type type, const std::string& help,
                              std::vector<double> buckets) {
  absl::MutexLock lock(&mu_);
  if (families_.count(name)) return;
  Family f;
  f.type = type;
  f.help = help;
  std::sort(buckets.begin(), buckets.end());
  f.bounds = std::move(buckets);
  families_.emplace(name, std::move(f));
  order_.push_back(name);
}

void MetricsRegistry::Add(const std::string& name, const MetricLabels& labels, double delta) {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  if (it == families_.end() || it->second.type == Type::kHistogram) return;
  it->second.series[labels].value += delta;
}

void MetricsRegistry::Set(const std::string& name, const MetricLabels& labels, double value) {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  if (it == families_.end() || it->second.type == Type::kHistogram) return;
  it->second.series[labels].value = value;
}

void MetricsRegistry::Observe(const std::string& name, const MetricLabels& labels, double value) {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  if (it == families_.end() || it->second.type != Type::kHistogram) return;
  Family& f = it->second;
  Series& s = f.series[labels];
  if (s.buckets.empty()) s.buckets.assign(f.bounds.size(), 0);
  // The first bound >= value; values above every bound land only in +Inf (= count).
  auto b = std::lower_bound(f.bounds.begin(), f.bounds.end(), value);
  if (b != f.bounds.end()) ++s.buckets[b - f.bounds.begin()];
  s.value += value;
  ++s.count;
}

double MetricsRegistry::Value(const std::string& name, const MetricLabels& labels) const {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  auto s = it->second.series.find(labels);
  if (s == it->second.series.end()) return 0;
  return it->second.type == Type::kHistogram ? static_cast<double>(s->second.count) : s->second.value;
}

std::string MetricsRegistry::Render() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const std::string& name : order_) {
    const Family& f = families_.at(name);
    absl::StrAppend(&out, "# HELP ", name, " ", f.help, "\n# TYPE ", name, " ", TypeName(f.type), "\n");
    for (const auto& [labels, s] : f.series) {
      if (f.type != Type::kHistogram) {
        absl::StrAppend(&out, name, LabelText(labels), " ", FormatNumber(s.value), "\n");
        continue;
      }
      uint64_t cumulative = 0;
      for (size_t i = 0; i < f.bounds.size(); ++i) {
        cumulative += s.buckets.empty() ? 0 : s.buckets[i];
        absl::StrAppend(&out, name, "_bucket", LabelText(labels, "le", FormatNumber(f.bounds[i])), " ",
                        cumulative, "\n");
      }
      absl::StrAppend(&out, name, "_bucket", LabelText(labels, "le", "+Inf"), " ", s.count, "\n");
      absl::StrAppend(&out, name, "_sum", LabelText(labels), " ", FormatNumber(s.value), "\n");
      absl::StrAppend(&out, name, "_count", LabelText(labels), " ", s.count, "\n");
    }
  }
  return out;
}

}  // namespace glm::api
