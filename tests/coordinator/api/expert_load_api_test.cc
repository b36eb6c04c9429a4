// GetExpertLoad: the cluster's routing statistics through gRPC (what `glmctl --server HOST:PORT
// expert-load` saves for the planner's hot-expert replicas).
#include "coordinator/api/grpc_client.h"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

namespace pb = glm::inference::v1;

class ExpertLoadApiTest : public ApiTest {};

TEST_F(ExpertLoadApiTest, ReturnsTheEnginesRoutingCounts) {
  server_->Shutdown();
  model_.model_dir_name = "glm5-tiny-code";
  model_.experts_per_token = 4;
  StartServer(true);
  {
    // Nothing ran yet: no layers, still the model.
    grpc::ClientContext ctx;
    pb::ExpertLoadResponse r;
    ASSERT_TRUE(stub_->GetExpertLoad(&ctx, pb::ExpertLoadRequest(), &r).ok());
    EXPECT_EQ(r.model(), "glm5-tiny-code");
    EXPECT_EQ(r.experts_per_token(), 4);
    EXPECT_EQ(r.layers_size(), 0);
  }
  engine_->SetExpertRouting({{1, {5, 0, 3}}, {3, {1, 1, 6}}});
  auto r = api::RemoteExpertLoad(grpc_address_, api::RemoteInfoOptions());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->layers_size(), 2);
  EXPECT_EQ(r->layers(0).layer(), 1);
  EXPECT_THAT(r->layers(0).tokens_per_expert(), ::testing::ElementsAre(5, 0, 3));
  EXPECT_EQ(r->layers(1).layer(), 3);
  EXPECT_THAT(r->layers(1).tokens_per_expert(), ::testing::ElementsAre(1, 1, 6));
  // An unreachable server is UNAVAILABLE, naming it.
  api::RemoteInfoOptions quick;
  quick.timeout = absl::Milliseconds(300);
  auto down = api::RemoteExpertLoad("127.0.0.1:1", quick);
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace glm::testing
