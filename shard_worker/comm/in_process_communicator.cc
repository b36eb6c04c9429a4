#include "shard_worker/comm/in_process_communicator.h"

#include <chrono>
#include <cstring>
#include <deque>
#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace glm::comm {

// Mailboxes keyed by (context, source global id, dest global id, tag).
class InProcessHub {
 public:
  using Key = std::tuple<uint64_t, int, int, int64_t>;
  void Put(const Key& key, std::string msg) {
    absl::MutexLock lock(&mu_);
    boxes_[key].push_back(std::move(msg));
  }
  bool Take(const Key& key, std::string* msg, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto ready = [&] {
      auto it = boxes_.find(key);
      return it != boxes_.end() && !it->second.empty();
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return false;
    auto& q = boxes_[key];
    *msg = std::move(q.front());
    q.pop_front();
    return true;
  }
 private:
  absl::Mutex mu_;
  std::map<Key, std::deque<std::string>> boxes_;
};

namespace {
constexpr int64_t kCollectiveTagBase = int64_t{1} << 40;
constexpr absl::Duration kForever = absl::Hours(24 * 365);

}  // namespace

std::vector<std::unique_ptr<Communicator>> InProcessCommunicator::CreateGroup(int size) {
  auto hub = std::make_shared<InProcessHub>();
  std::vector<int> members(size);
  for (int i = 0; i < size; ++i) members[i] = i;
  std::vector<std::unique_ptr<Communicator>> out;
  for (int i = 0; i < size; ++i) out.push_back(std::make_unique<InProcessCommunicator>(hub, 0, members, i));
  return out;
}

absl::Status InProcessCommunicator::Send(int dest, int tag, const void* data, int64_t bytes) {
  return SendString(dest, tag, std::string(static_cast<const char*>(data), bytes));
}

absl::Status InProcessCommunicator::Recv(int src, int tag, void* data, int64_t bytes) {
  std::string msg;
  if (auto s = RecvString(src, tag, &msg); !s.ok()) return s;
  if (static_cast<int64_t>(msg.size()) != bytes)
    return absl::InternalError(absl::StrCat("message of ", msg.size(), " bytes, expected ", bytes));
  std::memcpy(data, msg.data(), bytes);
  return absl::OkStatus();
}

absl::Status InProcessCommunicator::SendString(int dest, int tag, const std::string& bytes) {
  if (dest < 0 || dest >= size()) return absl::InvalidArgumentError("bad destination rank");
  hub_->Put({context_, members_[rank_], members_[dest], tag}, bytes);
  return absl::OkStatus();
}

absl::Status InProcessCommunicator::RecvString(int src, int tag, std::string* bytes) {
  return RecvStringWithTimeout(src, tag, bytes, kForever);
}

absl::Status InProcessCommunicator::RecvStringWithTimeout(int src, int tag, std::string* bytes, absl::Duration timeout) {
  if (src < 0 || src >= size()) return absl::InvalidArgumentError("bad source rank");
  ScopedTimer t(&comm_seconds_);
  if (!hub_->Take({context_, members_[src], members_[rank_], tag}, bytes, timeout))
    return absl::DeadlineExceededError(absl::StrCat("rank ", src, " did not answer within ", absl::FormatDuration(timeout)));
  return absl::OkStatus();
}

absl::Status InProcessCommunicator::BroadcastString(int root, std::string* bytes) {
  const int64_t tag = kCollectiveTagBase + static_cast<int64_t>(collective_seq_++);
  if (rank_ == root) {
    for (int r = 0; r < size(); ++r)
      if (r != root) hub_->Put({context_, members_[root], members_[r], tag}, *bytes);
    return absl::OkStatus();
  }
  ScopedTimer t(&comm_seconds_);
  hub_->Take({context_, members_[root], members_[rank_], tag}, bytes, kForever);
  return absl::OkStatus();
}

absl::Status InProcessCommunicator::AllGather(const void* send, int64_t bytes, void* recv) {
  const int64_t tag = kCollectiveTagBase + static_cast<int64_t>(collective_seq_++);
  std::string mine(static_cast<const char*>(send), bytes);
  for (int r = 0; r < size(); ++r)
    if (r != rank_) hub_->Put({context_, members_[rank_], members_[r], tag}, mine);
  ScopedTimer t(&comm_seconds_);
  for (int r = 0; r < size(); ++r) {
    char* dst = static_cast<char*>(recv) + static_cast<int64_t>(r) * bytes;
    if (r == rank_) {
      std::memcpy(dst, send, bytes);
      continue;
    }
    std::string msg;
    hub_->Take({context_, members_[r], members_[rank_], tag}, &msg, kForever);
    std::memcpy(dst, msg.data(), bytes);
  }
  return absl::OkStatus();
}

absl::Status InProcessCommunicator::Barrier() {
  char b = 0;
  std::vector<char> all(size());
  return AllGather(&b, 1, all.data());
}

absl::StatusOr<std::unique_ptr<Communicator>> InProcessCommunicator::Split(int color, int key) {
  // Exchange (color, key) with everyone through an all-gather, then derive the new group.
  int mine[2] = {color, key};
  std::vector<int> all(2 * size());
  if (auto s = AllGather(mine, sizeof mine, all.data()); !s.ok()) return s;
  std::vector<std::pair<int, int>> group;  // (key, old rank)
  for (int r = 0; r < size(); ++r)
    if (all[2 * r] == color) group.push_back({all[2 * r + 1], r});
  std::sort(group.begin(), group.end());
  // Context: deterministic from the parent context, the split count and the color.
  uint64_t ctx = (context_ * 1000003ull + collective_seq_) * 1009ull + static_cast<uint64_t>(color) + 1;
  std::vector<int> members;
  int new_rank = 0;
  for (size_t i = 0; i < group.size(); ++i) {
    if (group[i].second == rank_) new_rank = static_cast<int>(i);
    members.push_back(members_[group[i].second]);
  }
  return std::unique_ptr<Communicator>(new InProcessCommunicator(hub_, ctx, members, new_rank));
}

}  // namespace glm::comm
