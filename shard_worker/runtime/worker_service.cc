#include "shard_worker/runtime/worker_service.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "shard_worker/kernels/dtype.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/moe/expert_store.h"
#include "shard_worker/runtime/protocol_tags.h"
#include "shard_worker/runtime/step_executor.h"

namespace glm::runtime {

namespace {

// The rank's replicas of hot experts (RankAssignment::replicas) into what it loads, and for every
// MoE layer some of whose experts several ranks of the stage hold, who holds what: the stage's
// ranks then agree in each step which of them computes a shared expert (moe::ExpertReplicas).
absl::Status AddExpertReplicas(const placement::PlacementPlan& plan, const placement::RankAssignment& me,
                               const model::ModelConfig& config, int64_t layer_begin, int64_t layer_end,
                               const std::vector<bool>& owned, model::LoadOptions* o) {
  const int64_t E = config.n_routed_experts;
  auto moe_layer = [&](int64_t l) {
    return l >= layer_begin && l < layer_end && config.mlp_kind(l) == model::MlpKind::kSparse;
  };
  auto replica_error = [&](const placement::ExpertReplica& r, const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", me.rank(), ": replica of expert ", r.expert(), " in layer ", r.layer(), " ", why));
  };
  if (me.replicas_size() > 0 && plan.expert_layout() == "expert-tensor-parallel")
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", me.rank(), ": expert replicas need the expert-parallel layout (every rank already holds every expert)"));
  // Holders per layer with replicas: [layer] -> [expert] -> stage positions, ascending.
  std::map<int64_t, std::vector<std::vector<int32_t>>> holders;
  std::set<std::pair<int64_t, int64_t>> mine;
  for (const placement::RankAssignment& r : plan.ranks()) {
    if (r.stage() != me.stage()) continue;
    for (const placement::ExpertReplica& rep : r.replicas()) {
      if (!moe_layer(rep.layer())) return replica_error(rep, "is not in a MoE layer of the rank's stage");
      if (rep.expert() < 0 || rep.expert() >= E) return replica_error(rep, "names no expert of the model");
      holders.try_emplace(rep.layer(), std::vector<std::vector<int32_t>>(E));
      if (r.rank() == me.rank()) {
        if (owned[rep.expert()]) return replica_error(rep, "duplicates an expert the rank owns");
        if (!mine.emplace(rep.layer(), rep.expert()).second) return replica_error(rep, "is listed twice");
      }
    }
  }
  for (auto& [layer, by_expert] : holders) {
    for (const placement::RankAssignment& r : plan.ranks()) {
      if (r.stage() != me.stage()) continue;
      for (int e : r.experts())
        if (e >= 0 && e < E) by_expert[e].push_back(r.tp_index());
      for (const placement::ExpertReplica& rep : r.replicas())
        if (rep.layer() == layer) by_expert[rep.expert()].push_back(r.tp_index());
    }
    for (auto& h : by_expert) {
      std::sort(h.begin(), h.end());
      if (std::adjacent_find(h.begin(), h.end()) != h.end())
        return absl::InvalidArgumentError(absl::StrCat("layer ", layer, ": a rank of stage ", me.stage(),
                                                       " holds an expert both as its own and as a replica"));
    }
  }
  std::map<int64_t, std::shared_ptr<const moe::ExpertReplicas>> by_layer;
  for (auto& [layer, by_expert] : holders) {
    auto r = moe::ExpertReplicas::Create(std::move(by_expert), me.tp_size(), me.tp_index());
    if (!r.ok())
      return absl::InvalidArgumentError(absl::StrCat("rank ", me.rank(), ", layer ", layer, ": ", r.status().message()));
    by_layer[layer] = std::make_shared<const moe::ExpertReplicas>(*std::move(r));
  }
  o->owns_expert = [owned, mine](int64_t layer, int64_t e) { return owned[e] || mine.count({layer, e}) > 0; };
  if (!by_layer.empty())
    o->expert_replicas = [by_layer](int64_t layer) -> std::shared_ptr<const moe::ExpertReplicas> {
      auto it = by_layer.find(layer);
      return it == by_layer.end() ? nullptr : it->second;
    };
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<model::LoadOptions> LoadOptionsFor(const placement::PlacementPlan& plan, int rank,
                                                  const model::ModelConfig& config) {
  const placement::RankAssignment* me = nullptr;
  for (const auto& r : plan.ranks())
    if (r.rank() == rank) me = &r;
  if (me == nullptr) return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " has no assignment in the plan"));
  if (me->stage() < 0 || me->stage() >= plan.stages_size())
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " names stage ", me->stage()));
  const placement::Stage& st = plan.stages(me->stage());
  model::LoadOptions o;
  o.layer_begin = st.layer_begin();
  o.layer_end = st.layer_end();
  o.load_embedding = st.has_embedding();
  o.load_head = st.has_head();
  if (st.has_head() && config.has_mtp()) {
    // The MTP layer lives on the last stage: load [layer_begin, num_hidden_layers + 1).
    if (o.layer_end != config.num_hidden_layers)
      return absl::InvalidArgumentError("the stage with the head must end at the last layer");
    o.layer_end = config.num_weight_layers();
  }
  o.head_begin = me->head_begin();
  o.head_end = me->head_end();
  o.dense_begin = me->dense_begin();
  o.dense_end = me->dense_end();
  o.shared_begin = me->shared_begin();
  o.shared_end = me->shared_end();
  o.vocab_begin = st.has_head() ? me->vocab_begin() : 0;
  o.vocab_end = st.has_head() ? me->vocab_end() : 0;
  if (plan.expert_layout() == "expert-tensor-parallel") {
    // Every rank a slice of every expert (the planner lists all experts for each rank).
    o.expert_slice_begin = me->expert_slice_begin();
    o.expert_slice_end = me->expert_slice_end();
    if (o.expert_slice_begin < 0 || o.expert_slice_begin >= o.expert_slice_end ||
        o.expert_slice_end > config.moe_intermediate_size)
      return absl::InvalidArgumentError(absl::StrCat("rank ", rank, ": expert slice [", o.expert_slice_begin, ", ",
                                                     o.expert_slice_end, ") outside [0, ",
                                                     config.moe_intermediate_size, ")"));
  } else if (!plan.expert_layout().empty() && plan.expert_layout() != "expert-parallel") {
    return absl::InvalidArgumentError(absl::StrCat("expert layout '", plan.expert_layout(), "' is unknown"));
  }
  std::vector<bool> owned(config.n_routed_experts, false);
  for (int e : me->experts()) {
    if (e < 0 || e >= config.n_routed_experts) return absl::InvalidArgumentError(absl::StrCat("expert ", e, " does not exist"));
    owned[e] = true;
  }
  if (auto s = AddExpertReplicas(plan, *me, config, o.layer_begin, o.layer_end, owned, &o); !s.ok()) return s;
  // How to hold the matrices and how much memory the routed experts may take: the coordinator
  // validated these, but a worker must not trust a plan it cannot load as asked.
  if (auto s = model::ParseWeightDType(plan.weight_dtype(), &o); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat("plan weight_dtype: ", s.message()));
  if (!plan.quantize_scope().empty() && !model::ParseQuantizeScope(plan.quantize_scope(), &o.quantize_scope))
    return absl::InvalidArgumentError(
        absl::StrCat("plan quantize_scope '", plan.quantize_scope(), "' is not one of experts, all, mtp"));
  if (!kernels::ParseActivationDType(plan.activation_dtype(), &o.bf16_activations))
    return absl::InvalidArgumentError(
        absl::StrCat("plan activation_dtype '", plan.activation_dtype(), "' is not one of f32, bf16"));
  if (me->expert_memory_bytes() < 0)
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, ": expert_memory_bytes ", me->expert_memory_bytes(), " is negative"));
  o.expert_memory_bytes = me->expert_memory_bytes();
  return o;
}

namespace {

absl::Status Serve(comm::Communicator* world, StepExecutor* executor, kernels::ThreadPool* pool) {
  for (;;) {
    std::string bytes;
    if (auto s = world->RecvStringWhenIdle(0, kTagPlan, &bytes); !s.ok()) return s;
    // Rouse the parked threads now: they wake while the plan is parsed and the step set up, instead
    // of at the step's first fork, which then waited for them (tens of microseconds on a VM).
    pool->Wake();
    shard::StepPlan plan;
    if (!plan.ParseFromString(bytes)) return absl::DataLossError("unreadable StepPlan");
    if (plan.kind() == shard::StepPlan::SHUTDOWN) return absl::OkStatus();
    if (plan.kind() == shard::StepPlan::PING || plan.kind() == shard::StepPlan::STATS) {
      pool->Park();  // no step: back to sleep at once
      if (plan.kind() == shard::StepPlan::STATS) {
        if (auto s = world->SendString(0, kTagStats, executor->Stats().SerializeAsString()); !s.ok()) return s;
      }
      continue;
    }
    absl::Status s = executor->Execute(plan);
    pool->Park();  // until the next plan: the coordinator and the API threads need the cores now
    // Bad plans are reported to the coordinator by the executor; anything else ends the worker.
    if (!s.ok() && s.code() != absl::StatusCode::kInvalidArgument) return s;
  }
}

}  // namespace

absl::Status RunWorker(comm::Communicator* world, const WorkerOptions& options) {
  const int rank = world->rank();
  auto log = [&](const std::string& m) {
    if (options.log) options.log(m);
  };
  shard::WorkerHello hello = options.hello;
  hello.set_rank(rank);
  if (auto s = world->SendString(0, kTagHello, hello.SerializeAsString()); !s.ok()) return s;

  std::string bytes;
  if (auto s = world->BroadcastString(0, &bytes); !s.ok()) return s;
  shard::WorkerSetup setup;
  if (!setup.ParseFromString(bytes)) return absl::DataLossError("unreadable WorkerSetup");
  if (setup.model_dir().empty()) return absl::OkStatus();  // the coordinator gave up before planning

  // Stage sub-communicator (collective over the world; the coordinator joins with color 0).
  const placement::PlacementPlan& plan = setup.plan();
  int stage = -1, tp_index = 0;
  for (const auto& r : plan.ranks())
    if (r.rank() == rank) {
      stage = r.stage();
      tp_index = r.tp_index();
    }
  auto stage_comm = world->Split(stage + 1, tp_index);
  if (!stage_comm.ok()) return stage_comm.status();

  shard::WorkerReady ready;
  ready.set_rank(rank);
  auto start = std::chrono::steady_clock::now();
  std::unique_ptr<kernels::ThreadPool> pool;
  std::unique_ptr<model::Glm5Model> model;
  std::unique_ptr<StepExecutor> executor;
  absl::Status load_status = [&]() -> absl::Status {
    if (stage < 0) return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " is not in the plan"));
    auto ckpt = model::Checkpoint::Open(setup.model_dir());
    if (!ckpt.ok()) return ckpt.status();
    auto load = LoadOptionsFor(plan, rank, (*ckpt)->config());
    if (!load.ok()) return load.status();
    load->progress = [&](const std::string& line) { log(line); };
    // Process-wide, before any matmul: every rank of the cluster gets the same plan value.
    kernels::SetBf16Activations(load->bf16_activations);
    if (load->bf16_activations)
      log(absl::StrCat("rank ", rank, ": BF16 activations for BF16 weights (", kernels::Bf16ActivationsDetails(), ")"));
    auto weights = model::ModelWeights::Load(**ckpt, *load);
    if (!weights.ok()) return weights.status();
    ready.set_weight_bytes((*weights)->bytes_loaded());
    if (load->matrix_dtype) {
      // A pre-quantised checkpoint (`glmctl quantize`) holds the experts as codes: those are taken
      // as stored, and only the scope's other matrices (if any) are converted.
      const std::string& stored = (*ckpt)->config().expert_quant_format;
      if (!stored.empty() && load->quantize_scope == model::QuantizeScope::kExperts) {
        log(absl::StrCat("rank ", rank, ": experts pre-quantised to ", stored,
                         " in the checkpoint, taken as stored (nothing converted)"));
      } else {
        log(absl::StrCat(
            "rank ", rank, ": weights converted to ", plan.weight_dtype(),
            kernels::IsGroupQuantized(*load->matrix_dtype)
                ? absl::StrCat(" (quantize scope ", model::QuantizeScopeName(load->quantize_scope),
                               stored.empty() ? "" : "; experts pre-quantised, taken as stored", ")")
                : ""));
      }
    }
    if (const moe::ExpertStore* store = (*weights)->expert_store(); store != nullptr && store->streaming())
      log(absl::StrCat("rank ", rank, ": routed experts exceed ", load->expert_memory_bytes / 1048576.0,
                       " MiB of expert memory: streaming them from disk through an LRU cache of that size"));
    int threads = options.threads;
    const char* threads_from = "--threads";
    for (const auto& r : plan.ranks())
      if (r.rank() == rank && threads <= 0) {
        threads = r.cores();
        threads_from = "the plan's cores";
      }
    if (threads <= 0) {
      threads = glm::kernels::AvailableCpus();
      threads_from = "the CPUs this process may run on";
    }
    // The coordinator's plan check has the same cap (placement::kMaxRankCores); a worker does not
    // trust a plan it would die running (std::thread throws once the system refuses threads).
    constexpr int kMaxThreads = 4096;
    if (threads > kMaxThreads)
      return absl::InvalidArgumentError(absl::StrCat("rank ", rank, ": ", threads, " compute threads (the plan's cores or --threads); at most ", kMaxThreads));
    pool = std::make_unique<kernels::ThreadPool>(threads);
    // One thread per core, pinned, when this rank owns its NUMA node.
    const placement::RankAssignment* me = nullptr;
    for (const auto& r : plan.ranks())
      if (r.rank() == rank) me = &r;
    int sharing = 0;
    for (const auto& r : plan.ranks()) sharing += r.host() == me->host() && r.numa_node() == me->numa_node();
    std::string pinning;
    if (!options.pin_thread) {
      pinning = "not pinned (no NUMA binding)";
    } else if (sharing > 1) {
      pinning = absl::StrCat("not pinned: ", sharing, " ranks share NUMA node ", me->numa_node());
    } else {
      std::vector<absl::Status> pinned(threads);
      pool->RunOnAll([&](int index) { pinned[index] = options.pin_thread(index); });
      int failed = 0;
      absl::Status first;
      for (const absl::Status& p : pinned)
        if (!p.ok() && failed++ == 0) first = p;
      pinning = failed == 0 ? absl::StrCat("pinned one per core of NUMA node ", me->numa_node())
                            : absl::StrCat("pinning failed for ", failed, " of ", threads, ": ", first.message());
    }
    log(absl::StrCat("rank ", rank, ": ", threads, " compute threads (", threads_from, "), ", pinning));
    const placement::Stage& st = plan.stages(stage);
    model::StageContext ctx;
    ctx.layer_begin = st.layer_begin();
    ctx.layer_end = st.layer_end();
    ctx.has_embedding = st.has_embedding();
    ctx.has_head = st.has_head();
    ctx.tp = stage_comm->get();
    auto m = model::Glm5Model::Create(std::shared_ptr<const model::ModelWeights>(std::move(*weights)), pool.get(), ctx);
    if (!m.ok()) return m.status();
    model = std::move(*m);
    ExecutorContext ex;
    ex.world = world;
    ex.plan = &plan;
    ex.world_rank = rank;
    ex.kv_blocks = setup.kv_blocks();
    ex.kv_block_size = setup.kv_block_size();
    if (!setup.kv_cache_dtype().empty() && !kv_cache::ParseKvDType(setup.kv_cache_dtype(), &ex.kv_dtype))
      return absl::InvalidArgumentError(
          absl::StrCat("kv_cache_dtype '", setup.kv_cache_dtype(), "' is not one of f32, bf16, fp8_e4m3, int8"));
    if (!setup.index_key_dtype().empty() && !kv_cache::ParseKvDType(setup.index_key_dtype(), &ex.index_key_dtype))
      return absl::InvalidArgumentError(
          absl::StrCat("index_key_dtype '", setup.index_key_dtype(), "' is not one of f32, bf16, fp8_e4m3, int8"));
    auto e = StepExecutor::Create(model.get(), ex);
    if (!e.ok()) return e.status();
    executor = std::move(*e);
    if (options.prefault_kv) {
      const auto touch_start = std::chrono::steady_clock::now();
      const int64_t bytes = executor->PrefaultKvCache();
      log(absl::StrCat("rank ", rank, ": KV cache of ", setup.kv_blocks(), " blocks committed (",
                       absl::StrFormat("%.1f", bytes / 1048576.0), " MiB written in ",
                       absl::StrFormat("%.2f", std::chrono::duration<double>(std::chrono::steady_clock::now() - touch_start).count()),
                       " s)"));
    }
    return absl::OkStatus();
  }();
  ready.set_load_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  if (!load_status.ok()) ready.set_error(absl::StrCat("rank ", rank, ": ", load_status.message()));
  log(absl::StrCat("rank ", rank, ": ", load_status.ok() ? "loaded" : ready.error(), " in ", ready.load_seconds(), " s"));
  if (auto s = world->SendString(0, kTagReady, ready.SerializeAsString()); !s.ok()) return s;
  if (!load_status.ok()) {
    // Wait for the coordinator's SHUTDOWN so every rank leaves together.
    for (;;) {
      std::string b;
      if (auto s = world->RecvStringWhenIdle(0, kTagPlan, &b); !s.ok()) return s;
      shard::StepPlan p;
      if (p.ParseFromString(b) && p.kind() == shard::StepPlan::SHUTDOWN) return load_status;
    }
  }
  return Serve(world, executor.get(), pool.get());
}

}  // namespace glm::runtime
