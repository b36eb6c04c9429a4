// What the HTTP generation endpoints (OpenAI chat/completions, Anthropic messages) share once
// their requests are in the engine: reading every choice's events, turning them into output
// deltas, and sending the response, whole or as server-sent events, while watching for a client
// that hangs up (its generation is aborted, freeing its KV blocks) and for server stop. A
// ResponseFormat turns deltas into the API's own JSON.
#ifndef GLM_COORDINATOR_API_HTTP_RESPONSE_H_
#define GLM_COORDINATOR_API_HTTP_RESPONSE_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/api/request_output.h"
#include "coordinator/api/serving_metrics.h"
#include "coordinator/api/text_frontend.h"
#include "coordinator/scheduler/engine.h"
#include "nlohmann/json.hpp"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace glm::api {

// One choice of a response: its engine request and what turns its events into deltas.
struct ResponseChoice {
  std::string id;  // the engine request id
  std::shared_ptr<scheduler::RequestStream> stream;
  std::unique_ptr<RequestOutput> output;
  std::unique_ptr<RequestTracker> tracker;
  bool finished = false;
  std::optional<scheduler::GenerationEvent> pending;  // taken from the stream early, not yet consumed
};

// How an API writes its response from the choices' deltas.
class ResponseFormat {
 public:
  virtual ~ResponseFormat() = default;
  // Non-streaming: fold in a delta of choice `choice`; after every choice finished, Final().
  virtual void Accumulate(size_t choice, const OutputDelta& delta) = 0;
  virtual nlohmann::json Final() const = 0;
  // Streaming: the text a delta of `choice` adds; `last` when every choice has now finished
  // (the stream's end follows it).
  virtual std::string StreamChunks(size_t choice, const OutputDelta& delta, bool last) = 0;
  // Streaming failure after the headers went out.
  virtual std::string StreamError(const absl::Status& status) = 0;
  // A failure before any output: the API's error response.
  virtual void SendError(httplib::Response& res, const absl::Status& status) const = 0;
};

// A response's state (all its choices), shared by the streaming content provider and its releaser.
struct ResponseState {
  std::vector<ResponseChoice> choices;
  std::unique_ptr<ResponseFormat> format;
  bool done = false;
  absl::Time last_write = absl::Now();  // streaming: when the client was last written to

  void AbortUnfinished(scheduler::Engine* engine);
  bool AllFinished() const;
  // Whether the engine has produced every choice's last event (its output may still be unread).
  // Stopping cuts a response that is still generating, not one a drain let finish.
  bool AllProduced() const;
  // Waits (up to `wait` when nothing is ready) for the next event of any unfinished choice and
  // turns it into a delta; false when none came. *which is the choice.
  absl::StatusOr<bool> Next(scheduler::Engine* engine, absl::Duration wait, size_t* which, OutputDelta* delta);
};

// A request refused before the engine has it: counted ("rejected" in glm:request_failures_total)
// and logged (request_rejected, with the path and why), so an operator sees why clients fail.
void RecordRejected(ServingMetrics* metrics, const std::string& path, const absl::Status& status);

// Submits `prepared` as the only choice of `state`: its tracker (metrics under `api_kind`), its
// stream (grouped by `interval`) and its output state. The engine's refusal is returned (the
// tracker has counted it).
absl::Status SubmitSingleChoice(scheduler::Engine* engine, const tokenizer::Tokenizer* tokenizer,
                                ServingMetrics* metrics, scheduler::StreamInterval interval, const char* api_kind,
                                PreparedRequest prepared, ResponseState* state);

// Sends the response of `state` (its choices submitted, its format set): non-streaming, waits for
// every choice's end, answering 499 to nobody if the client hung up; streaming, sends
// `content_type` events as they come, a keep-alive comment when idle, and aborts what is left
// when a write fails or the response is dropped. Either way a server stop ends it with an error.
void SendResponse(std::shared_ptr<ResponseState> state, bool stream, const std::string& request_id,
                  scheduler::Engine* engine, const std::atomic<bool>* stopping, const httplib::Request& req,
                  httplib::Response& res);

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_HTTP_RESPONSE_H_
