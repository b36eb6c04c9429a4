#include "shard_worker/runtime/step_executor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "shard_worker/moe/expert_store.h"
#include "shard_worker/runtime/protocol_tags.h"
#include "shard_worker/runtime/sampler.h"

namespace glm::runtime {

namespace {

// The DSA selection crosses a stage boundary as, per token, a count then the positions
// (count 0 = every causal key). Usually all counts are 0: contexts shorter than index_topk.
std::string PackSelection(const attention::KeySelection& selection, int64_t tokens) {
  std::vector<int32_t> words;
  for (int64_t t = 0; t < tokens; ++t) {
    if (t >= static_cast<int64_t>(selection.size())) {
      words.push_back(0);
      continue;
    }
    words.push_back(static_cast<int32_t>(selection[t].size()));
    words.insert(words.end(), selection[t].begin(), selection[t].end());
  }
  return std::string(reinterpret_cast<const char*>(words.data()), words.size() * sizeof(int32_t));
}

absl::Status UnpackSelection(const std::string& packed, int64_t tokens, attention::KeySelection* selection) {
  const int32_t* w = reinterpret_cast<const int32_t*>(packed.data());
  const size_t n = packed.size() / sizeof(int32_t);
  size_t i = 0;
  selection->assign(tokens, {});
  for (int64_t t = 0; t < tokens; ++t) {
    if (i >= n) return absl::DataLossError("truncated key selection from the previous stage");
    const size_t count = static_cast<size_t>(w[i++]);
    if (i + count > n) return absl::DataLossError("truncated key selection from the previous stage");
    (*selection)[t].assign(w + i, w + i + count);
    i += count;
  }
  return absl::OkStatus();
}

}  // namespace

StepExecutor::StepExecutor(const model::Glm5Model* model, ExecutorContext ctx) : model_(model), ctx_(ctx) {}

absl::StatusOr<std::unique_ptr<StepExecutor>> StepExecutor::Create(const model::Glm5Model* model, ExecutorContext ctx) {
  if (model == nullptr || ctx.world == nullptr || ctx.plan == nullptr) return absl::InvalidArgumentError("incomplete executor context");
  if (ctx.kv_blocks <= 0 || ctx.kv_block_size <= 0) return absl::InvalidArgumentError("KV pool needs blocks");
  auto ex = std::unique_ptr<StepExecutor>(new StepExecutor(model, ctx));
  const placement::PlacementPlan& plan = *ctx.plan;
  const placement::RankAssignment* me = nullptr;
  for (const auto& r : plan.ranks())
    if (r.rank() == ctx.world_rank) me = &r;
  if (me == nullptr) return absl::InvalidArgumentError(absl::StrCat("rank ", ctx.world_rank, " is not in the plan"));
  ex->stage_index_ = me->stage();
  ex->tp_index_ = me->tp_index();
  ex->is_first_stage_ = me->stage() == 0;
  ex->is_last_stage_ = me->stage() == plan.stages_size() - 1;
  if (!ex->is_first_stage_) ex->prev_stage_leader_ = plan.stages(me->stage() - 1).ranks(0);
  if (!ex->is_last_stage_)
    for (int r : plan.stages(me->stage() + 1).ranks()) ex->next_stage_ranks_.push_back(r);
  const model::ModelConfig& c = model->config();
  const placement::Stage& st = plan.stages(me->stage());
  const kv_cache::KvCacheShape shape =
      kv_cache::StageKvShape(c, st.layer_begin(), st.layer_end(), ex->is_last_stage_, ctx.kv_dtype, ctx.index_key_dtype);
  ex->pool_ = std::make_unique<kv_cache::KvBlockPool>(shape, ctx.kv_block_size, ctx.kv_blocks, /*growable=*/false);
  if (ex->is_last_stage_) ex->sampler_ = std::make_unique<LastStageSampler>(model, ex->pool_.get());
  return ex;
}

int64_t StepExecutor::PrefaultKvCache() { return pool_->Prefault(model_->pool()); }

absl::Status StepExecutor::Validate(const shard::StepPlan& plan) const {
  const model::ModelConfig& c = model_->config();
  if (plan.sequences().empty()) return absl::InvalidArgumentError("step has no sequences");
  std::unordered_set<uint64_t> seen;  // a sequence appears once (its block table updates once)
  for (const auto& s : plan.sequences()) {
    if (!seen.insert(s.seq_id()).second)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id(), " appears twice in the step"));
    if (s.tokens().empty()) return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id(), " has no tokens"));
    for (int32_t t : s.tokens())
      if (t < 0 || t >= c.vocab_size) return absl::InvalidArgumentError(absl::StrCat("token id ", t, " is outside the vocabulary"));
    const int64_t end = s.start_position() + s.tokens_size();
    if (s.start_position() < 0 || end > c.max_position_embeddings)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id(), " exceeds the context"));
    auto held = block_tables_.find(s.seq_id());
    const int64_t held_blocks = held == block_tables_.end() ? 0 : static_cast<int64_t>(held->second.size());
    if (s.block_table_from() < 0 || s.block_table_from() > held_blocks)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id(), ": block table entries start at ",
                                                     s.block_table_from(), " but this rank holds ", held_blocks));
    if ((static_cast<int64_t>(s.block_table_from()) + s.block_table_size()) * ctx_.kv_block_size < end)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id(), ": block table too short"));
    for (int32_t b : s.block_table())
      if (b < 0 || b >= ctx_.kv_blocks) return absl::InvalidArgumentError(absl::StrCat("KV block ", b, " does not exist"));
  }
  return absl::OkStatus();
}

std::vector<const std::vector<int32_t>*> StepExecutor::UpdateBlockTables(const shard::StepPlan& plan) {
  std::vector<const std::vector<int32_t>*> tables;
  tables.reserve(plan.sequences_size());
  for (const auto& s : plan.sequences()) {
    std::vector<int32_t>& t = block_tables_[s.seq_id()];
    t.resize(s.block_table_from());  // from 0: a new table (a new or re-admitted sequence)
    t.insert(t.end(), s.block_table().begin(), s.block_table().end());
    tables.push_back(&t);
  }
  return tables;
}

absl::Status StepExecutor::Run(const shard::StepPlan& plan,
                               const std::vector<const std::vector<int32_t>*>& block_tables,
                               shard::StepResult* result) {
  const model::ModelConfig& c = model_->config();
  std::vector<std::unique_ptr<kv_cache::KvCache>> caches;
  std::vector<model::SequenceInput> batch(plan.sequences_size());
  int64_t T = 0;
  bool want_all_rows = false;
  for (int i = 0; i < plan.sequences_size(); ++i) {
    const auto& s = plan.sequences(i);
    caches.push_back(std::make_unique<kv_cache::KvCache>(pool_.get(), *block_tables[i], s.start_position()));
    batch[i].cache = caches.back().get();
    batch[i].tokens.assign(s.tokens().begin(), s.tokens().end());
    batch[i].logit_tail = LastStageSampler::LogitRowsFor(s);
    T += s.tokens_size();
    want_all_rows |= s.return_logits();
  }
  std::vector<float> input;
  attention::KeySelection selection;
  if (!is_first_stage_) {
    input.resize(T * c.hidden_size);
    if (auto s = ctx_.world->Recv(prev_stage_leader_, kTagHidden, input.data(),
                                  static_cast<int64_t>(input.size() * sizeof(float)));
        !s.ok())
      return s;
    std::string packed;
    if (auto s = ctx_.world->RecvString(prev_stage_leader_, kTagSelection, &packed); !s.ok()) return s;
    if (auto s = UnpackSelection(packed, T, &selection); !s.ok()) return s;
  }
  auto out = model_->ForwardStage(batch, is_first_stage_ ? nullptr : input.data(),
                                  want_all_rows ? model::LogitRows::kAll : model::LogitRows::kTail, nullptr,
                                  is_first_stage_ ? nullptr : &selection);
  if (!out.ok()) return out.status();
  if (!is_last_stage_) {
    if (tp_index_ == 0) {
      const std::string packed = PackSelection(out->selection, T);
      for (int r : next_stage_ranks_) {
        if (auto s = ctx_.world->Send(r, kTagHidden, out->hidden.data(),
                                      static_cast<int64_t>(out->hidden.size() * sizeof(float)));
            !s.ok())
          return s;
        if (auto s = ctx_.world->SendString(r, kTagSelection, packed); !s.ok()) return s;
      }
    }
    return absl::OkStatus();
  }
  // Every rank of the last stage samples (identically) and runs the MTP layer together.
  return sampler_->Process(plan, *out, want_all_rows, block_tables, result);
}

absl::Status StepExecutor::Execute(const shard::StepPlan& plan) {
  auto start = std::chrono::steady_clock::now();
  comm::Communicator* tp = model_->stage().tp;
  const double comm_before = ctx_.world->comm_seconds() + (tp ? tp->comm_seconds() : 0.0);
  const int64_t expert_bytes_before = model_->routed_expert_bytes_read();
  if (tp != nullptr) tp->ClearCollectiveLog();
  shard::StepResult result;
  result.set_step_id(plan.step_id());
  // Finished sequences go first (whatever becomes of this step: the coordinator lists them once),
  // the last stage's sampling state with them (a plan rejected before sampling kept it for good).
  for (uint64_t id : plan.finished()) {
    block_tables_.erase(id);
    if (sampler_ != nullptr) sampler_->Forget(id);
  }
  absl::Status status = Validate(plan);
  if (status.ok()) status = Run(plan, UpdateBlockTables(plan), &result);
  double comm = ctx_.world->comm_seconds() + (tp ? tp->comm_seconds() : 0.0) - comm_before;
  double comm_min = comm, comm_max = comm;
  if (is_last_stage_ && tp != nullptr && tp->size() > 1 && status.ok()) {
    // Transfer cost vs waiting: for each collective of the step, the last rank to arrive waits
    // least — the minimum over ranks is what moving the data cost. Summed, that is this
    // step's communication; the most any rank spent in collectives, minus it, is imbalance.
    std::vector<double> mine = tp->collective_log();
    mine.push_back(comm);
    const int64_t n = static_cast<int64_t>(mine.size());
    std::vector<double> all(n * tp->size());
    if (auto s = tp->AllGather(mine.data(), n * static_cast<int64_t>(sizeof(double)), all.data()); !s.ok()) status = s;
    comm_min = 0;
    comm_max = 0;
    for (int64_t i = 0; i + 1 < n; ++i) {
      double m = all[i];
      for (int r = 1; r < tp->size(); ++r) m = std::min(m, all[r * n + i]);
      comm_min += m;
    }
    // Point-to-point time (stage hand-offs) is not in the log: add this rank's share of it.
    comm_min += std::max(0.0, comm - [&] {
      double own = 0;
      for (int64_t i = 0; i + 1 < n; ++i) own += mine[i];
      return own;
    }());
    for (int r = 0; r < tp->size(); ++r) comm_max = std::max(comm_max, all[r * n + n - 1]);
  }
  const double step_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ++steps_;
  step_seconds_ += step_seconds;
  comm_seconds_ += comm;
  if (!reports_results()) return status;
  if (!status.ok()) {
    result.clear_sequences();
    result.set_error(std::string(status.message()));
    // This rank leaves after reporting anything but a rejected plan (worker_service.cc).
    result.set_fatal(status.code() != absl::StatusCode::kInvalidArgument);
  }
  result.set_step_seconds(step_seconds);
  result.set_expert_bytes_read(model_->routed_expert_bytes_read() - expert_bytes_before);
  result.set_comm_seconds(comm_min);
  result.set_comm_seconds_max(comm_max);
  // A validation error is the coordinator's to report; a transport error ends this worker.
  auto sent = ctx_.world->SendString(0, kTagResult, result.SerializeAsString());
  if (!sent.ok()) return sent;
  return status.code() == absl::StatusCode::kInvalidArgument ? absl::OkStatus() : status;
}

shard::RankStats StepExecutor::Stats() const {
  shard::RankStats stats;
  stats.set_rank(ctx_.world->rank());
  stats.set_stage(stage_index_);
  stats.set_steps(steps_);
  stats.set_step_seconds(step_seconds_);
  stats.set_comm_seconds(comm_seconds_);
  stats.set_expert_bytes_read(model_->routed_expert_bytes_read());
  if (tp_index_ == 0) {
    for (const auto& [layer, counts] : model_->routed_tokens()) {
      shard::LayerRouting* r = stats.add_routing();
      r->set_layer(static_cast<int32_t>(layer));
      r->mutable_tokens_per_expert()->Add(counts.begin(), counts.end());
    }
  }
  if (const moe::ExpertStore* store = model_->weights().expert_store(); store != nullptr && store->streaming()) {
    const moe::ExpertStoreStats s = store->stats();
    stats.set_expert_cache_hits(s.hits);
    stats.set_expert_cache_misses(s.misses);
    stats.set_expert_disk_bytes(s.bytes_read);
    stats.set_expert_disk_seconds(s.read_seconds);
  }
  return stats;
}

}  // namespace glm::runtime
