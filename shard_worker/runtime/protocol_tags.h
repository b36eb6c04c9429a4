// Message tags of the coordinator <-> worker protocol (world communicator).
#ifndef GLM_SHARD_WORKER_RUNTIME_PROTOCOL_TAGS_H_
#define GLM_SHARD_WORKER_RUNTIME_PROTOCOL_TAGS_H_

namespace glm::runtime {

inline constexpr int kTagHello = 1;   // worker -> coordinator: WorkerHello
inline constexpr int kTagReady = 2;   // worker -> coordinator: WorkerReady
inline constexpr int kTagResult = 3;  // last stage, tp rank 0 -> coordinator: StepResult
inline constexpr int kTagHidden = 4;  // stage s, tp rank 0 -> every rank of stage s+1: [T, hidden] f32
inline constexpr int kTagSelection = 5;  // with it: the DSA key selection (packed int32)
inline constexpr int kTagStats = 6;  // every worker -> coordinator, on a STATS plan: RankStats
// StepPlan and WorkerSetup travel as broadcasts from the coordinator (rank 0).

}  // namespace glm::runtime

#endif  // GLM_SHARD_WORKER_RUNTIME_PROTOCOL_TAGS_H_
