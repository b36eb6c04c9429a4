// How /metrics accounts for requests and renders its samples (ServingMetrics, MetricsRegistry),
// through the HTTP front end; the gRPC front end's accounting is tested in grpc_api_test.cc.
#include <cmath>
#include <limits>

#include "coordinator/api/metrics.h"
#include "coordinator/api/serving_metrics.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

class MetricsAccountingTest : public ApiTest {
 protected:
  int PostStatus(const std::string& path, const std::string& body) {
    httplib::Client client("127.0.0.1", server_->http_port());
    client.set_read_timeout(10, 0);
    auto res = client.Post(path.c_str(), body, "application/json");
    EXPECT_TRUE(res);
    return res ? res->status : -1;
  }
};

// A request the engine ends because its deadline passed or the server shut down is an abort
// (vLLM's finished_reason="abort"), not a server error; a cluster failure stays an error.
TEST_F(MetricsAccountingTest, HttpDeadlineAndShutdownEndingsCountAsAbortNotError) {
  const std::string abort = Series("vllm:request_success_total", "finished_reason", "abort");
  const std::string error = Series("glm:request_failures_total", "reason", "error");
  const std::string body = json{{"prompt", {1, 2}}, {"max_tokens", 10}}.dump();
  const std::string streamed = json{{"prompt", {1, 2}}, {"max_tokens", 10}, {"stream", true}}.dump();
  engine_->FailAfter(0, absl::DeadlineExceededError("deadline exceeded"));
  EXPECT_EQ(PostStatus("/v1/completions", body), 504);
  engine_->FailAfter(1, absl::UnavailableError(api::kShuttingDownMessage));
  EXPECT_EQ(PostStatus("/v1/completions", body), 503);
  engine_->FailAfter(1, absl::DeadlineExceededError("deadline exceeded"));
  EXPECT_EQ(PostStatus("/v1/completions", streamed), 200);  // the error is an SSE event
  EXPECT_EQ(MetricValue(abort), 3);
  EXPECT_EQ(MetricValue(error), 0);
  engine_->FailAfter(1, absl::UnavailableError("the cluster failed: shard worker 3 is gone"));
  EXPECT_EQ(PostStatus("/v1/completions", body), 503);
  EXPECT_EQ(MetricValue(error), 1);
  EXPECT_EQ(MetricValue(abort), 3);
}

}  // namespace
}  // namespace glm::testing
