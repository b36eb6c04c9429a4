#include "coordinator/api/http_response.h"

#include <httplib.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/api/client_connection.h"
#include "coordinator/api/openai_protocol.h"
#include "coordinator/scheduler/engine_errors.h"

namespace glm::api {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(20);
// A stream that has had nothing to send for this long (a long prefill, a queued request, tokens
// held by --stream-interval) gets an SSE comment, which clients ignore: writing is the only way to
// learn that the client hung up, and its generation must not run on for nobody.
constexpr absl::Duration kStreamHeartbeat = absl::Seconds(1);

}  // namespace

void ResponseState::AbortUnfinished(scheduler::Engine* engine) {
  for (ResponseChoice& c : choices)
    if (c.stream != nullptr && !c.finished) engine->AbortStream(*c.stream);
}

bool ResponseState::AllFinished() const {
  for (const ResponseChoice& c : choices)
    if (!c.finished) return false;
  return true;
}

bool ResponseState::AllProduced() const {
  for (const ResponseChoice& c : choices)
    if (!c.finished && (c.stream == nullptr || !c.stream->finished())) return false;
  return true;
}

absl::StatusOr<bool> ResponseState::Next(scheduler::Engine* engine, absl::Duration wait, size_t* which,
                                         OutputDelta* delta) {
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < choices.size(); ++i) {
      ResponseChoice& c = choices[i];
      if (c.finished) continue;
      scheduler::GenerationEvent event;
      // First a sweep that takes what is ready; then one bounded wait on the first unfinished.
      if (c.pending.has_value()) {
        event = *std::move(c.pending);
        c.pending.reset();
      } else if (!c.stream->Next(&event, pass == 0 ? absl::ZeroDuration() : wait)) {
        if (pass == 1) return false;
        continue;
      }
      auto d = c.output->ConsumeReleased(event, *c.stream);  // one chunk per released group
      if (!d.ok()) {
        engine->AbortStream(*c.stream);  // an output error ends the request on the workers too (a no-op if it failed there)
        c.finished = true;
        c.tracker->Finish(FailureFinishReason(d.status()));  // the engine's deadline or shutdown is an abort
        return d.status();
      }
      if (d->stop_string_matched) engine->AbortStream(*c.stream);
      c.tracker->OnTokens(static_cast<int>(d->tokens.size()), d->times);
      if (d->finished) {
        c.finished = true;
        c.tracker->Finish(d->finish_reason);
      }
      *which = i;
      *delta = *std::move(d);
      return true;
    }
  }
  return false;
}

void RecordRejected(ServingMetrics* metrics, const std::string& path, const absl::Status& status) {
  if (metrics != nullptr) metrics->ObserveFinished("rejected", 0);
  LogRequestEvent("request_rejected", "",
                  absl::StrCat(path, ": ", absl::StatusCodeToString(status.code()), ": ", status.message()));
}

absl::Status SubmitSingleChoice(scheduler::Engine* engine, const tokenizer::Tokenizer* tokenizer,
                                ServingMetrics* metrics, scheduler::StreamInterval interval, const char* api_kind,
                                PreparedRequest prepared, ResponseState* state) {
  ResponseChoice& c = state->choices.emplace_back();
  c.id = prepared.engine_request.request_id;
  c.tracker = std::make_unique<RequestTracker>(metrics, c.id, api_kind,
                                               static_cast<int>(prepared.engine_request.prompt.size()));
  auto stream = engine->Submit(std::move(prepared.engine_request));
  if (!stream.ok()) {
    c.tracker->Finish("rejected");
    return stream.status();
  }
  c.stream = std::move(*stream);
  c.stream->SetInterval(interval);
  c.output = std::make_unique<RequestOutput>(tokenizer, std::move(prepared.output));
  return absl::OkStatus();
}

void SendResponse(std::shared_ptr<ResponseState> state, bool stream, const std::string& request_id,
                  scheduler::Engine* engine, const std::atomic<bool>* stopping, const httplib::Request& req,
                  httplib::Response& res) {
  res.set_header("X-Request-Id", request_id);  // streamed or not: the id the server's log lines carry
  if (!stream) {
    // Non-streaming: wait for the end, watching the connection: a client that hung up (timed out
    // and retried, say) must not leave its generation running for nobody.
    const std::optional<ClientConnection> client =
        ClientConnection::Find(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
    while (!state->AllFinished()) {
      if (client.has_value() && client->Closed()) {
        state->AbortUnfinished(engine);
        res.status = 499;  // nginx's "client closed request": nobody reads it
        return;
      }
      if (stopping->load() && !state->AllProduced()) {
        state->AbortUnfinished(engine);
        return state->format->SendError(res, scheduler::ShuttingDownError());
      }
      size_t which = 0;
      OutputDelta delta;
      auto got = state->Next(engine, kPollInterval, &which, &delta);
      if (!got.ok()) {
        state->AbortUnfinished(engine);
        return state->format->SendError(res, got.status());
      }
      if (*got) state->format->Accumulate(which, delta);
    }
    res.set_content(DumpJson(state->format->Final()), "application/json");
    return;
  }

  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [state, engine, stopping](size_t, httplib::DataSink& sink) -> bool {
        auto write = [&](const std::string& s) {
          if (s.empty()) return true;
          state->last_write = absl::Now();
          return sink.write(s.data(), s.size());
        };
        if (state->done) {
          sink.done();
          return true;
        }
        if (stopping->load() && !state->AllProduced()) {
          state->AbortUnfinished(engine);
          state->done = true;
          write(state->format->StreamError(scheduler::ShuttingDownError()));
          sink.done();
          return true;
        }
        size_t which = 0;
        OutputDelta delta;
        // Returning true without writing makes httplib call again: the wait bounds the loop.
        auto got = state->Next(engine, kPollInterval, &which, &delta);
        if (!got.ok()) {
          state->AbortUnfinished(engine);
          state->done = true;
          write(state->format->StreamError(got.status()));
          sink.done();
          return true;
        }
        if (!*got) {
          if (absl::Now() - state->last_write < kStreamHeartbeat) return true;
          if (write(": keep-alive\n\n")) return true;
          state->AbortUnfinished(engine);  // the client went away while there was nothing to send
          state->done = true;
          return false;
        }
        const bool last = state->AllFinished();
        if (last) state->done = true;
        if (!write(state->format->StreamChunks(which, delta, last))) {
          // The client went away: free the KV blocks now rather than at the length limit.
          state->AbortUnfinished(engine);
          state->done = true;
          return false;
        }
        if (last) sink.done();
        return true;
      },
      [state, engine](bool) {
        // The response is gone (finished, failed write, or server stop): unfinished choices
        // must not keep generating for nobody.
        if (!state->done) {
          state->AbortUnfinished(engine);
          state->done = true;
        }
      });
}

}  // namespace glm::api
