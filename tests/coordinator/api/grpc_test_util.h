// The gRPC API tests' shared pieces: a FakeEngine-backed server fixture with a Generate helper,
// and raw streams for services whose generated stubs libgrpc++ does not install (health,
// reflection).
#ifndef GLM_TESTS_COORDINATOR_API_GRPC_TEST_UTIL_H_
#define GLM_TESTS_COORDINATOR_API_GRPC_TEST_UTIL_H_

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "grpcpp/generic/generic_stub.h"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {

namespace pb = glm::inference::v1;

struct Collected {
  std::vector<pb::GenerateResponse> messages;
  grpc::Status status;
  std::vector<int32_t> tokens() const {
    std::vector<int32_t> t;
    for (const auto& m : messages) t.insert(t.end(), m.token_ids().begin(), m.token_ids().end());
    return t;
  }
  std::string text() const {
    std::string s;
    for (const auto& m : messages) s += m.text();
    return s;
  }
};

// A server-streaming call made through a generic stub, for services whose generated stubs are not
// installed with libgrpc++ (health, reflection): one request message, then every response
// message (raw bytes) until the server ends the stream.
class RawStream {
 public:
  RawStream(const std::string& address, const std::string& method, const std::string& request)
      : stub_(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())) {
    call_ = stub_.PrepareCall(&ctx_, method, &cq_);
    call_->StartCall(this);
    reader_ = std::thread([this, request] { Read(request); });
  }
  ~RawStream() {
    ctx_.TryCancel();
    reader_.join();
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
    }
  }
  // Waits until `n` messages arrived or the stream ended (at most `timeout`); all so far.
  std::vector<std::string> WaitFor(size_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto ready = [&] { return messages_.size() >= n || ended_; };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    return messages_;
  }
  bool WaitForEnd(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&ended_), timeout);
  }

 private:
  bool Wait() {
    void* tag;
    bool ok = false;
    return cq_.Next(&tag, &ok) && ok;
  }
  void Read(const std::string& bytes) {
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    bool ok = Wait();
    if (ok) {
      call_->Write(request, this);
      ok = Wait();
    }
    if (ok) {
      call_->WritesDone(this);
      ok = Wait();
    }
    while (ok) {
      grpc::ByteBuffer response;
      call_->Read(&response, this);
      if (!Wait()) break;
      std::vector<grpc::Slice> slices;
      std::string got;
      if (response.Dump(&slices).ok())
        for (const auto& s : slices) got.append(reinterpret_cast<const char*>(s.begin()), s.size());
      absl::MutexLock lock(&mu_);
      messages_.push_back(std::move(got));
    }
    grpc::Status status;
    call_->Finish(&status, this);
    Wait();
    absl::MutexLock lock(&mu_);
    ended_ = true;
  }

  grpc::GenericStub stub_;
  grpc::ClientContext ctx_;
  grpc::CompletionQueue cq_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
  std::thread reader_;
  absl::Mutex mu_;
  std::vector<std::string> messages_;
  bool ended_ = false;
};

// A length-delimited protobuf field (names < 128 bytes): enough to build health and reflection
// requests by hand.
inline std::string ProtoString(int field, const std::string& value) {
  if (value.empty()) return "";
  return std::string(1, static_cast<char>(field << 3 | 2)) + static_cast<char>(value.size()) + value;
}

// A grpc.health.v1 Watch stream (HealthCheckRequest{service = 1}).
inline std::unique_ptr<RawStream> WatchHealth(const std::string& address, const std::string& service) {
  return std::make_unique<RawStream>(address, "/grpc.health.v1.Health/Watch", ProtoString(1, service));
}

// HealthCheckResponse{status = 1 (varint)} of each message; an empty message is UNKNOWN (0).
inline std::vector<int> Statuses(const std::vector<std::string>& messages) {
  std::vector<int> out;
  for (const std::string& m : messages) out.push_back(m.size() >= 2 && m[0] == 0x08 ? m[1] : 0);
  return out;
}

class GrpcApiTest : public ApiTest {
 protected:
  Collected Generate(const pb::GenerateRequest& request, absl::Duration timeout = absl::Seconds(10)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
    auto reader = stub_->Generate(&ctx, request);
    Collected c;
    pb::GenerateResponse r;
    while (reader->Read(&r)) c.messages.push_back(r);
    c.status = reader->Finish();
    return c;
  }

  static pb::GenerateRequest TokenRequest(std::vector<int32_t> ids, int max_tokens) {
    pb::GenerateRequest r;
    r.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
    r.mutable_sampling()->set_max_tokens(max_tokens);
    return r;
  }
};

}  // namespace glm::testing

#endif  // GLM_TESTS_COORDINATOR_API_GRPC_TEST_UTIL_H_
