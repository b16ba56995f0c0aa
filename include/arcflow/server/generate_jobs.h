// POST /v1/generate and DELETE /v1/jobs/ID of `arcflow serve`: each valid request becomes a job in
// the bounded JobQueue, run by its one worker thread; the answer goes back through the request's
// http::Exchange when the job ends, so no thread waits for it.
//
// With "stream": true the answer is text/event-stream (api.h, sse_event): "queued" (and again when
// the place in the line changes), "started", one "progress" per sampler step, then "result" (or
// "error"). A job is cancelled when its client goes away (checked after every sampler step, and
// every 200 ms while it waits) or on DELETE /v1/jobs/ID; a running job stops after its current
// step and frees the worker, a waiting one leaves the line at once. A cancelled request that is
// still connected gets 409 (or an "error" event with status 409).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "arcflow/server/api.h"
#include "arcflow/server/http_server.h"
#include "arcflow/server/image_generator.h"

namespace arcflow::server {

class GenerateJobs {
 public:
  // Starts the worker (JobQueue) and the watcher of waiting clients. `generator` must outlive this.
  GenerateJobs(ImageGenerator& generator, const ServerLimits& limits, size_t queue_capacity);
  ~GenerateJobs();  // shutdown()
  GenerateJobs(const GenerateJobs&) = delete;
  GenerateJobs& operator=(const GenerateJobs&) = delete;

  // POST /v1/generate: 400 for a bad body, 503 when the queue is full, else the job's answer later.
  void submit(const http::Request& request, const std::shared_ptr<http::Exchange>& exchange);
  // DELETE /v1/jobs/ID: 200 {"job", "cancelled": true, "was": "waiting"|"running"}, or 404.
  void cancel(const std::string& id, const std::shared_ptr<http::Exchange>& exchange);

  size_t waiting() const;
  bool busy() const;
  size_t capacity() const;

  // Refuses new jobs, drops the waiting ones, lets the running one finish, and answers every job
  // still open with 503. Idempotent.
  void shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace arcflow::server
