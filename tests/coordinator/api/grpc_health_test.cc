// gRPC health (grpc.health.v1 Check / Watch), server reflection, and the loading phase's server
// that holds the ports (health NOT_SERVING, every other call UNAVAILABLE) until the API server
// takes them over.
#include <httplib.h>

#include "coordinator/api/grpc_client.h"
#include "coordinator/api/loading_health_server.h"
#include "google/protobuf/descriptor.pb.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/grpc_test_util.h"

namespace glm::testing {
namespace {

using ::testing::HasSubstr;

TEST_F(GrpcApiTest, HealthNotServingBeforeSetServing) {
  server_->Shutdown();
  StartServer(/*serving=*/false);
  auto s = api::RemoteHealthServing(grpc_address_, "", absl::Seconds(5));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(*s);
  auto info = api::RemoteInfo(grpc_address_, {});
  EXPECT_EQ(info.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(info.status().message()), HasSubstr("NOT_SERVING"));
  server_->SetServing(true);
  s = api::RemoteHealthServing(grpc_address_, "glm.inference.v1.Inference", absl::Seconds(5));
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(*s);
}

// A Watch stream sees each change of health once: repeated SetServing calls and the shutdown
// publish nothing new (they sent the same status again and again: 1 SERVING, 2 NOT_SERVING).
TEST_F(GrpcApiTest, HealthWatchSeesEachChangeOnce) {
  constexpr int kServing = 1, kNotServing = 2;
  auto server_health = WatchHealth(grpc_address_, "");
  auto service_health = WatchHealth(grpc_address_, "glm.inference.v1.Inference");
  for (RawStream* w : {server_health.get(), service_health.get()})
    ASSERT_EQ(Statuses(w->WaitFor(1, absl::Seconds(5))), std::vector<int>{kServing});
  server_->SetServing(true);
  server_->SetServing(true);
  server_->SetServing(false);
  server_->SetServing(false);
  for (RawStream* w : {server_health.get(), service_health.get()})
    EXPECT_EQ(Statuses(w->WaitFor(2, absl::Seconds(5))), (std::vector<int>{kServing, kNotServing}));
  server_->SetServing(true);
  for (RawStream* w : {server_health.get(), service_health.get()})
    EXPECT_EQ(Statuses(w->WaitFor(3, absl::Seconds(5))), (std::vector<int>{kServing, kNotServing, kServing}));
  server_->Shutdown();  // stopping: NOT_SERVING, once
  server_->SetServing(false);
  for (RawStream* w : {server_health.get(), service_health.get()}) {
    EXPECT_TRUE(w->WaitForEnd(absl::Seconds(5)));
    EXPECT_EQ(Statuses(w->WaitFor(100, absl::ZeroDuration())),
              (std::vector<int>{kServing, kNotServing, kServing, kNotServing}));
  }
}

// Server reflection describes every service it lists, gRPC's built-in health service included
// (FileContainingSymbol("grpc.health.v1.Health") was NOT_FOUND: no descriptor was linked).
TEST_F(GrpcApiTest, ReflectionDescribesTheHealthService) {
  struct Want {
    std::string symbol, package, service;
    std::vector<std::string> methods;
  };
  for (const Want& want : {Want{"grpc.health.v1.Health", "grpc.health.v1", "Health", {"Check", "Watch"}},
                           Want{"glm.inference.v1.Inference", "glm.inference.v1", "Inference", {"Generate"}}}) {
    // ServerReflectionRequest{file_containing_symbol = 4}
    RawStream call(grpc_address_, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                   ProtoString(4, want.symbol));
    std::vector<std::string> messages = call.WaitFor(1, absl::Seconds(5));
    ASSERT_EQ(messages.size(), 1u) << want.symbol;
    google::protobuf::UnknownFieldSet response;
    ASSERT_TRUE(response.ParseFromString(messages[0]));
    // ServerReflectionResponse: file_descriptor_response = 4 {repeated bytes file_descriptor_proto = 1}
    // (the file, then its dependencies); an error is error_response = 7.
    std::vector<google::protobuf::FileDescriptorProto> files;
    for (int i = 0; i < response.field_count(); ++i) {
      const google::protobuf::UnknownField& f = response.field(i);
      EXPECT_NE(f.number(), 7) << want.symbol << ": reflection answered an error";
      if (f.number() != 4 || f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) continue;
      google::protobuf::UnknownFieldSet fd;
      ASSERT_TRUE(fd.ParseFromString(f.length_delimited()));
      for (int j = 0; j < fd.field_count(); ++j) {
        if (fd.field(j).number() != 1) continue;
        ASSERT_TRUE(files.emplace_back().ParseFromString(fd.field(j).length_delimited()));
      }
    }
    ASSERT_FALSE(files.empty()) << want.symbol;
    const google::protobuf::FileDescriptorProto& file = files.front();
    EXPECT_EQ(file.package(), want.package);
    bool found = false;
    for (const auto& service : file.service()) {
      if (service.name() != want.service) continue;
      found = true;
      std::vector<std::string> methods;
      for (const auto& m : service.method()) methods.push_back(m.name());
      for (const std::string& m : want.methods) EXPECT_THAT(methods, ::testing::Contains(m)) << want.symbol;
    }
    EXPECT_TRUE(found) << want.symbol << " in " << file.name();
  }
}

// While the model loads, health is NOT_SERVING / 503 on the addresses the API server then takes
// over: probes never see a refused connection, and the ports asked as 0 stay the same.
TEST_F(GrpcApiTest, LoadingHealthServerHandsItsPortsToTheApiServer) {
  server_->Shutdown();
  server_.reset();
  auto loading = api::LoadingHealthServer::Start("127.0.0.1:0", "127.0.0.1:0");
  ASSERT_TRUE(loading.ok()) << loading.status();
  const std::string grpc_address = (*loading)->GrpcAddress("127.0.0.1:0");
  const std::string http_address = (*loading)->HttpAddress("127.0.0.1:0");
  ASSERT_NE(grpc_address, "127.0.0.1:0");
  ASSERT_NE(http_address, "127.0.0.1:0");
  for (const char* service : {"", "glm.inference.v1.Inference"}) {
    auto s = api::RemoteHealthServing(grpc_address, service, absl::Seconds(5));
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_FALSE(*s) << service;
  }
  // Every other call is UNAVAILABLE (clients retry it), not gRPC's UNIMPLEMENTED (never works).
  {
    auto channel = grpc::CreateChannel(grpc_address, grpc::InsecureChannelCredentials());
    auto stub = pb::Inference::NewStub(channel);
    grpc::ClientContext info_ctx;
    pb::ModelInfoRequest info_request;
    pb::ModelInfo info;
    const grpc::Status info_status = stub->GetModelInfo(&info_ctx, info_request, &info);
    EXPECT_EQ(info_status.error_code(), grpc::StatusCode::UNAVAILABLE) << info_status.error_message();
    EXPECT_THAT(info_status.error_message(), HasSubstr("loading"));
    grpc::ClientContext generate_ctx;
    pb::GenerateRequest request;
    request.mutable_token_ids()->add_ids(5);
    auto reader = stub->Generate(&generate_ctx, request);
    pb::GenerateResponse response;
    EXPECT_FALSE(reader->Read(&response));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  const int http_port = std::stoi(http_address.substr(http_address.rfind(':') + 1));
  httplib::Client http("127.0.0.1", http_port);
  auto health = http.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  auto completion = http.Post("/v1/completions", R"({"prompt":"x"})", "application/json");
  ASSERT_TRUE(completion);
  EXPECT_EQ(completion->status, 503);
  EXPECT_EQ(nlohmann::json::parse(completion->body)["error"]["code"], "loading");
  {
    auto watch = WatchHealth(grpc_address, "");  // sees NOT_SERVING once, then the end of the stream
    ASSERT_EQ(Statuses(watch->WaitFor(1, absl::Seconds(5))), std::vector<int>{2});
    (*loading)->Stop();
    EXPECT_TRUE(watch->WaitForEnd(absl::Seconds(5)));
    EXPECT_EQ(Statuses(watch->WaitFor(100, absl::ZeroDuration())), std::vector<int>{2});
  }

  api::ApiOptions options;
  options.grpc_listen = grpc_address;
  options.http_listen = http_address;
  auto server = api::ApiServer::Start(options, engine_.get(), &model_);
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = std::move(*server);
  server_->SetServing(true);
  EXPECT_EQ("127.0.0.1:" + std::to_string(server_->grpc_port()), grpc_address);
  EXPECT_EQ(server_->http_port(), http_port);
  auto s = api::RemoteHealthServing(grpc_address, "", absl::Seconds(5));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(*s);
  httplib::Client after("127.0.0.1", http_port);
  health = after.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

}  // namespace
}  // namespace glm::testing
