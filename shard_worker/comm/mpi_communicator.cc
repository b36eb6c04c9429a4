#include "shard_worker/comm/mpi_communicator.h"

#include <mpi.h>

#include <chrono>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace glm::comm {
namespace {

constexpr int kBroadcastLengthTag = 1 << 20;

absl::Status MpiError(int code, const char* what) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return absl::UnavailableError(absl::StrCat("MPI ", what, " failed: ", std::string(text, len)));
}


// Completes a request. Polls flat out for ~20 µs (the common case between busy ranks), then
// yields the core between polls (lets an oversubscribed peer run) for up to 2 ms — 0.5 ms for a
// `relaxed` wait, one expected to be long (a worker idle between steps, the coordinator waiting
// for a whole step) — then sleeps in growing steps, so an idle process costs no CPU. Returns
// false on timeout (the request is then cancelled), or when `check` (Communicator::SetWaitCheck,
// run every kCheckEvery of the wait) fails: then with its status in *stopped.
constexpr auto kCheckEvery = std::chrono::milliseconds(50);
bool WaitFor(MPI_Request* req, absl::Duration timeout, int* error, bool relaxed = false,
             const std::function<absl::Status()>* check = nullptr, absl::Status* stopped = nullptr) {
  const auto start = std::chrono::steady_clock::now();
  auto next_check = start + kCheckEvery;
  const auto deadline = start + absl::ToChronoNanoseconds(timeout);
  const auto yield_for = relaxed ? std::chrono::microseconds(500) : std::chrono::microseconds(2000);
  for (;;) {
    int done = 0;
    int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      *error = rc;
      return true;
    }
    if (done) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now > deadline) {
      MPI_Cancel(req);
      MPI_Request_free(req);
      return false;
    }
    if (check != nullptr && *check && now >= next_check) {
      next_check = now + kCheckEvery;
      if (absl::Status s = (*check)(); !s.ok()) {
        MPI_Cancel(req);
        MPI_Request_free(req);
        if (stopped != nullptr) *stopped = std::move(s);
        return false;
      }
    }
    const auto waited = now - start;
    if (waited < std::chrono::microseconds(20)) continue;
    if (waited < yield_for) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(waited < std::chrono::milliseconds(50) ? std::chrono::microseconds(50)
                                                                         : std::chrono::microseconds(1000));
    }
  }
}

constexpr absl::Duration kForever = absl::Hours(24 * 365);

}  // namespace

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    FlushPosted(absl::Seconds(10)).IgnoreError();  // a posted message must not outlive its bytes
    if (owned_) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  absl::Status Send(int dest, int tag, const void* data, int64_t bytes) override {
    ScopedTimer t(&comm_seconds_);
    MPI_Request req;
    int rc = MPI_Isend(data, static_cast<int>(bytes), MPI_BYTE, dest, tag, comm_, &req);
    if (rc != MPI_SUCCESS) return MpiError(rc, "send");
    int err = MPI_SUCCESS;
    if (!WaitFor(&req, kForever, &err)) return absl::DeadlineExceededError("send timed out");
    return err == MPI_SUCCESS ? absl::OkStatus() : MpiError(err, "send");
  }
  absl::Status Recv(int src, int tag, void* data, int64_t bytes) override {
    return RecvWithTimeout(src, tag, data, bytes, kForever);
  }
  absl::Status SendString(int dest, int tag, const std::string& bytes) override {
    int64_t n = static_cast<int64_t>(bytes.size());
    if (auto s = Send(dest, tag, &n, sizeof n); !s.ok()) return s;
    return n == 0 ? absl::OkStatus() : Send(dest, tag, bytes.data(), n);
  }
  absl::Status RecvString(int src, int tag, std::string* bytes) override {
    return RecvStringWithTimeout(src, tag, bytes, kForever);
  }
  void SetWaitCheck(std::function<absl::Status()> check) override { wait_check_ = std::move(check); }
  absl::Status RecvStringWhenIdle(int src, int tag, std::string* bytes) override {
    return RecvLengthAndString(src, tag, bytes, kForever, /*relaxed=*/true);
  }
  absl::Status PostString(int dest, int tag, std::string bytes) override {
    if (auto s = CompletePosted(); !s.ok()) return s;
    // The length, then the bytes (what RecvString takes), both non-blocking sends: MPI keeps
    // their order. Each message owns its buffers until MPI is done with them.
    auto m = std::make_unique<PostedMessage>();
    m->length = static_cast<int64_t>(bytes.size());
    m->bytes = std::move(bytes);
    int rc = MPI_Isend(&m->length, sizeof m->length, MPI_BYTE, dest, tag, comm_, &m->requests[0]);
    if (rc != MPI_SUCCESS) return MpiError(rc, "send");
    m->count = 1;
    if (m->length > 0) {
      rc = MPI_Isend(m->bytes.data(), static_cast<int>(m->length), MPI_BYTE, dest, tag, comm_, &m->requests[1]);
      if (rc != MPI_SUCCESS) {
        posted_.push_back(std::move(m));  // the length is on its way: keep its buffer
        return MpiError(rc, "send");
      }
      m->count = 2;
    }
    posted_.push_back(std::move(m));
    return absl::OkStatus();
  }
  absl::Status FlushPosted(absl::Duration timeout) override {
    ScopedTimer t(&comm_seconds_);
    const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
    for (;;) {
      if (auto s = CompletePosted(); !s.ok() || posted_.empty()) return s;
      if (std::chrono::steady_clock::now() > deadline)
        return absl::DeadlineExceededError(absl::StrCat(posted_.size(), " posted messages not taken within ",
                                                        absl::FormatDuration(timeout)));
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  absl::Status RecvStringWithTimeout(int src, int tag, std::string* bytes, absl::Duration timeout) override {
    return RecvLengthAndString(src, tag, bytes, timeout, /*relaxed=*/timeout != kForever);
  }
  absl::Status BroadcastString(int root, std::string* bytes) override {
    ScopedTimer t(&comm_seconds_);
    int64_t n = static_cast<int64_t>(bytes->size());
    if (auto s = IBcast(&n, sizeof n, root); !s.ok()) return s;
    bytes->resize(n);
    return n == 0 ? absl::OkStatus() : IBcast(bytes->data(), n, root);
  }
  absl::Status AllGather(const void* send, int64_t bytes, void* recv) override {
    // Blocking: these are the per-layer reductions inside a step, between ranks that are all
    // computing; Open MPI's tuned blocking collectives have far lower latency than the
    // non-blocking ones progressed by polling (and yield when the job is oversubscribed).
    const auto start = std::chrono::steady_clock::now();
    int rc = MPI_Allgather(send, static_cast<int>(bytes), MPI_BYTE, recv, static_cast<int>(bytes), MPI_BYTE, comm_);
    const double d = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    comm_seconds_ += d;
    collective_log_.push_back(d);
    return rc == MPI_SUCCESS ? absl::OkStatus() : MpiError(rc, "allgather");
  }
  absl::Status Barrier() override {
    ScopedTimer t(&comm_seconds_);
    MPI_Request req;
    int rc = MPI_Ibarrier(comm_, &req);
    if (rc != MPI_SUCCESS) return MpiError(rc, "barrier");
    int err = MPI_SUCCESS;
    WaitFor(&req, kForever, &err);
    return err == MPI_SUCCESS ? absl::OkStatus() : MpiError(err, "barrier");
  }
  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) override {
    MPI_Comm out;
    int rc = MPI_Comm_split(comm_, color, key, &out);
    if (rc != MPI_SUCCESS) return MpiError(rc, "comm split");
    MPI_Comm_set_errhandler(out, MPI_ERRORS_RETURN);
    return std::unique_ptr<Communicator>(new MpiCommunicator(out, true));
  }

 private:
  absl::Status RecvWithTimeout(int src, int tag, void* data, int64_t bytes, absl::Duration timeout,
                               bool relaxed = false) {
    ScopedTimer t(&comm_seconds_);
    MPI_Request req;
    int rc = MPI_Irecv(data, static_cast<int>(bytes), MPI_BYTE, src, tag, comm_, &req);
    if (rc != MPI_SUCCESS) return MpiError(rc, "recv");
    int err = MPI_SUCCESS;
    absl::Status stopped;
    if (!WaitFor(&req, timeout, &err, relaxed, &wait_check_, &stopped)) {
      if (!stopped.ok()) return stopped;
      return absl::DeadlineExceededError(absl::StrCat("rank ", src, " did not answer within ", absl::FormatDuration(timeout)));
    }
    return err == MPI_SUCCESS ? absl::OkStatus() : MpiError(err, "recv");
  }
  absl::Status IBcast(void* data, int64_t bytes, int root) {
    MPI_Request req;
    int rc = MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_, &req);
    if (rc != MPI_SUCCESS) return MpiError(rc, "broadcast");
    int err = MPI_SUCCESS;
    WaitFor(&req, kForever, &err, /*relaxed=*/rank_ != root);
    return err == MPI_SUCCESS ? absl::OkStatus() : MpiError(err, "broadcast");
  }

  // A string as SendString / PostString send it: its length (waited for at most `timeout`, relaxed
  // as WaitFor's), then its bytes.
  absl::Status RecvLengthAndString(int src, int tag, std::string* bytes, absl::Duration timeout, bool relaxed) {
    int64_t n = 0;
    if (auto s = RecvWithTimeout(src, tag, &n, sizeof n, timeout, relaxed); !s.ok()) return s;
    bytes->resize(n);
    return n == 0 ? absl::OkStatus() : RecvWithTimeout(src, tag, bytes->data(), n, kForever);
  }

  // Drops the posted messages MPI is done with (oldest first); the first failed one's error.
  absl::Status CompletePosted() {
    absl::Status first;
    for (auto it = posted_.begin(); it != posted_.end();) {
      int done = 0;
      int rc = MPI_Testall((*it)->count, (*it)->requests, &done, MPI_STATUSES_IGNORE);
      if (rc != MPI_SUCCESS && first.ok()) first = MpiError(rc, "posted send");
      if (done) it = posted_.erase(it);
      else ++it;
    }
    return first;
  }

  struct PostedMessage {
    int64_t length = 0;
    std::string bytes;
    MPI_Request requests[2];
    int count = 0;
  };
  std::deque<std::unique_ptr<PostedMessage>> posted_;
  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1;
  std::function<absl::Status()> wait_check_;  // SetWaitCheck
};

absl::StatusOr<std::unique_ptr<MpiSession>> MpiSession::Init(int* argc, char*** argv) {
  int provided = 0;
  int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  if (rc != MPI_SUCCESS) return MpiError(rc, "init");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  return std::unique_ptr<MpiSession>(new MpiSession());
}

MpiSession::~MpiSession() { MPI_Finalize(); }

std::unique_ptr<Communicator> MpiSession::World() const {
  return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, false);
}

void MpiSession::Abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace glm::comm
