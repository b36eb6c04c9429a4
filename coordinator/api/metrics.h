// A small Prometheus registry: counters, gauges and histograms with labels, rendered in the text
// exposition format (version 0.0.4). Enough for /metrics; no client library is packaged for this
// distribution, and the format is simple enough that a dependency would cost more than it saves.
#ifndef GLM_COORDINATOR_API_METRICS_H_
#define GLM_COORDINATOR_API_METRICS_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace glm::api {

// Label pairs in the order they are printed, e.g. {{"model_name", "glm5"}}.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class MetricsRegistry {
 public:
  enum class Type { kCounter, kGauge, kHistogram };

  // Declares a family. `buckets` (upper bounds, ascending) only for histograms. Declaring the
  // same name twice keeps the first declaration.
  void Declare(const std::string& name, Type type, const std::string& help,
               std::vector<double> buckets = {});

  // Updates on an undeclared name are ignored (a typo must not crash a server).
  void Add(const std::string& name, const MetricLabels& labels, double delta);  // counters
  void Set(const std::string& name, const MetricLabels& labels, double value);  // gauges, and
                                                                                // counters mirrored from elsewhere
  void Observe(const std::string& name, const MetricLabels& labels, double value);  // histograms

  // The whole registry in Prometheus text format, families in declaration order.
  std::string Render() const;

  // For tests: a counter/gauge value, or a histogram's count; 0 when absent.
  double Value(const std::string& name, const MetricLabels& labels) const;

 private:
  struct Series {
    double value = 0;                // counter/gauge; histogram sum
    std::vector<uint64_t> buckets;   // histogram: per-bucket (non-cumulative) counts
    uint64_t count = 0;
  };
  struct Family {
    Type type;
    std::string help;
    std::vector<double> bounds;
    std::map<MetricLabels, Series> series;
  };

  mutable absl::Mutex mu_;
  std::vector<std::string> order_;
  std::map<std::string, Family> families_;
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_METRICS_H_
