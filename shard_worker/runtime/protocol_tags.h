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
// coordinator -> every worker: StepPlan (steps, STATS, PING, SHUTDOWN), posted to each worker
// (first stage first) rather than broadcast: with steps in flight a worker still busy with an
// earlier step takes it later, and a broadcast tree would hold the next stages' plans behind it.
inline constexpr int kTagPlan = 7;
// WorkerSetup travels as a broadcast from the coordinator (rank 0), when every worker waits for it.

}  // namespace glm::runtime

#endif  // GLM_SHARD_WORKER_RUNTIME_PROTOCOL_TAGS_H_
