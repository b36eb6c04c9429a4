// The plan's two printed forms: a table for people (host -> NUMA node -> rank) and protobuf
// JSON for machines and for operators who pin an edited plan.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/placement/planner.h"
#include "coordinator/placement/range_split.h"
#include "coordinator/placement/size_flags.h"
#include "coordinator/placement/weight_format.h"
#include "google/protobuf/util/json_util.h"

namespace glm::placement {
namespace {

std::string RangeText(int64_t begin, int64_t end) {
  if (end <= begin) return "-";
  return end - begin == 1 ? absl::StrCat(begin) : absl::StrCat(begin, "-", end - 1);
}

std::string ExpertText(const RankAssignment& r, const std::string& layout) {
  if (layout == "expert-tensor-parallel")
    return absl::StrCat("all x cols ", RangeText(r.expert_slice_begin(), r.expert_slice_end()));
  std::string text = FormatIdRanges({r.experts().begin(), r.experts().end()});
  // Replicas of hot experts (copies of other ranks' experts), counted over the stage's layers.
  if (r.replicas_size() > 0) absl::StrAppend(&text, " +", r.replicas_size(), " hot");
  return text;
}

}  // namespace

std::string PlanToTable(const PlacementPlan& plan) {
  std::string out = absl::StrFormat("Placement of %s: %d worker rank%s, %d pipeline stage%s, %s, weights %s\n",
                                    plan.model().empty() ? "the model" : plan.model(), plan.world_size() - 1,
                                    plan.world_size() == 2 ? "" : "s", plan.stages_size(),
                                    plan.stages_size() == 1 ? "" : "s", plan.expert_layout(), WeightFormatText(plan));
  for (const Stage& st : plan.stages()) {
    absl::StrAppendFormat(&out, "  stage %d: layers %d-%d%s%s, ranks %s\n", st.index(), st.layer_begin(),
                          st.layer_end() - 1, st.has_embedding() ? " + embedding" : "",
                          st.has_head() ? " + head" : "",
                          FormatIdRanges({st.ranks().begin(), st.ranks().end()}));
  }
  // Host order as the plan lists hosts, then hosts only the ranks name.
  std::vector<std::string> hosts;
  for (const HostTopology& h : plan.hosts()) hosts.push_back(h.hostname());
  for (const RankAssignment& r : plan.ranks())
    if (std::find(hosts.begin(), hosts.end(), r.host()) == hosts.end()) hosts.push_back(r.host());
  std::map<int, const Stage*> stage_of;
  for (const Stage& st : plan.stages()) stage_of[st.index()] = &st;

  auto row = [&out](auto... cells) {
    absl::StrAppendFormat(&out, "%-14s %4s %5s %5s %-7s %-7s %-13s %-11s %-15s %9s %6s %9s\n", cells...);
  };
  out += "\n";
  row("host", "numa", "rank", "stage", "layers", "heads", "experts", "dense",
                        "vocab", "weights", "GB/s", "ms/token");
  int64_t total_bytes = 0;
  for (const std::string& host : hosts) {
    std::vector<const RankAssignment*> ranks;
    for (const RankAssignment& r : plan.ranks())
      if (r.host() == host) ranks.push_back(&r);
    std::sort(ranks.begin(), ranks.end(), [](const RankAssignment* a, const RankAssignment* b) {
      return a->numa_node() != b->numa_node() ? a->numa_node() < b->numa_node() : a->rank() < b->rank();
    });
    for (const RankAssignment* r : ranks) {
      const Stage* st = stage_of.count(r->stage()) ? stage_of[r->stage()] : nullptr;
      const std::string layers = st != nullptr ? RangeText(st->layer_begin(), st->layer_end()) : "?";
      total_bytes += r->weight_bytes();
      row(host, absl::StrCat(r->numa_node()), absl::StrCat(r->rank()),
                            absl::StrCat(r->stage()), layers, RangeText(r->head_begin(), r->head_end()),
                            ExpertText(*r, plan.expert_layout()), RangeText(r->dense_begin(), r->dense_end()),
                            RangeText(r->vocab_begin(), r->vocab_end()),
                            SizeText(r->weight_bytes()),
                            absl::StrFormat("%.0f", r->bandwidth_gbps()),
                            absl::StrFormat("%.2f", r->predicted_ms_per_token()));
    }
  }
  absl::StrAppendFormat(&out,
                        "\ntotal weights %s over %d ranks; predicted %.2f ms/token (%.1f tokens/s at batch 1, "
                        "%.2f ms of it communication); slowest rank %d\n",
                        SizeText(total_bytes), plan.ranks_size(), plan.predicted_ms_per_token(),
                        plan.predicted_tokens_per_s(), plan.communication_ms_per_token(), plan.slowest_rank());
  int64_t expert_memory = 0, streamed = 0;
  for (const RankAssignment& r : plan.ranks()) {
    expert_memory = std::max(expert_memory, r.expert_memory_bytes());
    streamed += r.streamed_expert_bytes();
  }
  if (expert_memory > 0 && streamed > 0) {
    absl::StrAppendFormat(&out,
                          "routed experts beyond %s per rank stay on disk, streamed through an LRU cache of that "
                          "size: %s on disk in all (the weights above count the cache, not them)\n",
                          SizeText(expert_memory), SizeText(streamed));
  } else if (expert_memory > 0) {
    absl::StrAppendFormat(&out, "routed experts fit the %s expert memory of every rank: all resident\n",
                          SizeText(expert_memory));
  }
  int64_t replicas = 0;
  for (const RankAssignment& r : plan.ranks()) replicas += r.replicas_size();
  if (replicas > 0 || plan.replicas_without_memory() > 0) {
    absl::StrAppendFormat(&out,
                          "hot-expert replicas: %d copies of the most-chosen experts (\"+N hot\"; each step one holder "
                          "computes a shared expert: the least loaded)",
                          replicas);
    if (plan.replicas_without_memory() > 0)
      absl::StrAppendFormat(&out, "; %d more wanted, no rank of the stage had the memory", plan.replicas_without_memory());
    out += "\n";
  }
  return out;
}

absl::StatusOr<std::string> PlanToJson(const PlacementPlan& plan) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  // Zero-valued fields (head_begin 0, stage 0) stay visible to an operator editing the plan.
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(plan, &json, options);
  if (!status.ok()) return absl::InternalError(absl::StrCat("plan to JSON: ", status.ToString()));
  return json;
}

absl::StatusOr<std::string> ReadPlanFile(const std::string& path) {
  return ReadJsonFile(path, "a plan from `glmctl plan --json`");
}

absl::StatusOr<std::string> ReadJsonFile(const std::string& path, const std::string& expected) {
  // stdio rather than ifstream: errno says why (missing, a directory, no permission), where an
  // unreadable ifstream just reads as an empty plan.
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (f == nullptr) {
    const int err = errno;
    const std::string m = absl::StrCat(path, ": cannot open: ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(m)
                         : err == EACCES ? absl::PermissionDeniedError(m) : absl::InvalidArgumentError(m);
  }
  std::string json;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f.get())) > 0) json.append(buf, n);
  if (std::ferror(f.get()))  // e.g. EISDIR: fopen accepts a directory, reading it fails
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read: ", std::strerror(errno)));
  if (json.find_first_not_of(" \t\r\n") == std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat(path, ": the file is empty (expected ", expected, ")"));
  return json;
}

absl::StatusOr<PlacementPlan> PlanFromJson(const std::string& json, const model::ModelConfig& config,
                                           int world_size) {
  PlacementPlan plan;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;  // a misspelt field must not be silently dropped
  auto status = google::protobuf::util::JsonStringToMessage(json, &plan, options);
  if (!status.ok()) {
    // `glmctl plan` without --json prints the table first: saved to a file, it fails as
    // "Unexpected token" with no hint which file format was meant.
    const size_t first = json.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && json.compare(first, 13, "Placement of ") == 0)
      return absl::InvalidArgumentError(
          "placement plan JSON: the file looks like glmctl's table output (the plan saved without --json); "
          "save it with `glmctl plan --json ... > plan.json`");
    return absl::InvalidArgumentError(absl::StrCat("placement plan JSON: ", status.message().as_string()));
  }
  if (auto s = ValidatePlan(plan, config, world_size); !s.ok())
    return absl::Status(s.code(), absl::StrCat("placement plan: ", s.message()));
  return plan;
}

}  // namespace glm::placement
