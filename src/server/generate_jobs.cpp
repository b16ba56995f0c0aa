#include "arcflow/server/generate_jobs.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "arcflow/server/job_queue.h"

namespace arcflow::server {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

struct Cancelled {};  // thrown from the progress callback: the job stops after the current step

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

http::Response json_response(int status, const json& body) {
  return {status, "application/json", body.dump(-1, ' ', false, json::error_handler_t::replace), {}};
}

struct Job {
  uint64_t number = 0;  // the JobQueue tag
  std::string id;       // for DELETE /v1/jobs/ID: random, so other clients cannot guess it
  GenerateRequest request;
  std::shared_ptr<http::Exchange> exchange;
  Clock::time_point t0;
  std::atomic<bool> cancelled{false};
  std::mutex mu;  // held while writing to the exchange, so events keep their order
  std::string cancel_reason;
  size_t shown_position = 0;  // the place last sent in a "queued" event
  bool finished = false;      // the last word has been given
};
using JobPtr = std::shared_ptr<Job>;

}  // namespace

struct GenerateJobs::Impl {
  ImageGenerator& generator;
  ServerLimits limits;
  JobQueue queue;
  mutable std::mutex mu;  // jobs, next_number, rng, stopping
  std::map<std::string, JobPtr> jobs;  // the open ones
  uint64_t next_number = 1;
  std::mt19937_64 rng{std::random_device{}()};
  bool stopping = false;
  std::condition_variable watch_cv;
  std::thread watcher;
  std::mutex shutdown_mu;

  Impl(ImageGenerator& g, const ServerLimits& l, size_t capacity) : generator(g), limits(l), queue(capacity) {}

  std::vector<JobPtr> open_jobs() {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<JobPtr> out;
    for (const auto& [id, job] : jobs) out.push_back(job);
    return out;
  }

  static void emit(Job& job, const std::string& event, const json& data) {
    std::lock_guard<std::mutex> lock(job.mu);
    if (job.request.stream && !job.finished) job.exchange->write(sse_event(event, data));
  }

  json queued_event(const Job& job, size_t position) const {
    return {{"job", job.id}, {"position", position}, {"queue_depth", queue.waiting()}, {"busy", queue.busy()}};
  }

  // The last word: 200 with the result, or an error; as the JSON answer or the stream's last event.
  void finish(const JobPtr& job, int status, json body) {
    {
      std::lock_guard<std::mutex> lock(job->mu);
      if (job->finished) return;
      job->finished = true;
      body["job"] = job->id;
      if (job->request.stream) {
        if (status != 200) body["status"] = status;
        job->exchange->write(sse_event(status == 200 ? "result" : "error", body));
        job->exchange->end();
      } else {
        http::Response res = json_response(status, body);
        if (status == 503) res.headers.emplace_back("Retry-After", "1");
        job->exchange->respond(std::move(res));
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    jobs.erase(job->id);
  }

  void finish_cancelled(const JobPtr& job) {
    std::string reason;
    {
      std::lock_guard<std::mutex> lock(job->mu);
      reason = job->cancel_reason.empty() ? "the client closed the connection" : job->cancel_reason;
    }
    finish(job, 409, error_json("cancelled (" + reason + ")"));
  }

  // Tells the streaming clients still waiting where they stand now.
  void publish_positions() {
    for (const JobPtr& job : open_jobs()) {
      if (!job->request.stream) continue;
      const std::optional<size_t> pos = queue.position(job->number);
      if (!pos) continue;
      std::lock_guard<std::mutex> lock(job->mu);
      if (job->finished || *pos == job->shown_position) continue;
      job->shown_position = *pos;
      job->exchange->write(sse_event("queued", queued_event(*job, *pos)));
    }
  }

  // "waiting" or "running" (it stops after its current step); "" when it was cancelled already.
  std::string cancel_job(const JobPtr& job, const std::string& reason) {
    if (job->cancelled.exchange(true)) return "";
    {
      std::lock_guard<std::mutex> lock(job->mu);
      job->cancel_reason = reason;
    }
    if (queue.remove(job->number)) {
      finish_cancelled(job);
      publish_positions();
      return "waiting";
    }
    return "running";
  }

  // On the worker thread.
  void run(const JobPtr& job) {
    { std::lock_guard<std::mutex> lock(job->mu); }  // submit() has written its part
    if (job->cancelled || job->exchange->client_gone()) {
      finish_cancelled(job);
      publish_positions();
      return;
    }
    const double queue_ms = ms_since(job->t0);
    publish_positions();  // the others moved up
    emit(*job, "started", {{"job", job->id}, {"queue_ms", queue_ms}});
    GenerateResult result;
    try {
      result = generator.run(job->request, [&](const StepProgress& p) {
        if (job->cancelled || job->exchange->client_gone()) throw Cancelled{};
        emit(*job, "progress", progress_json(job->id, p));
      });
    } catch (const Cancelled&) {
      finish_cancelled(job);
      return;
    } catch (const std::exception& e) {
      finish(job, 500, error_json(std::string("generation failed: ") + e.what()));
      return;
    }
    finish(job, 200, result_json(job->request, generator.catalog(), result, queue_ms, ms_since(job->t0)));
  }

  // A client that leaves while its job waits is not seen by the HTTP layer (the connection is
  // parked); this looks at their sockets every 200 ms and frees their places.
  void watch() {
    std::unique_lock<std::mutex> lock(mu);
    while (!stopping) {
      watch_cv.wait_for(lock, std::chrono::milliseconds(200));
      if (stopping) break;
      lock.unlock();
      for (const JobPtr& job : open_jobs())
        if (queue.position(job->number) && job->exchange->client_gone())
          cancel_job(job, "the client closed the connection");
      lock.lock();
    }
  }
};

GenerateJobs::GenerateJobs(ImageGenerator& generator, const ServerLimits& limits, size_t queue_capacity)
    : impl_(std::make_unique<Impl>(generator, limits, queue_capacity)) {
  impl_->watcher = std::thread([this] { impl_->watch(); });
}

GenerateJobs::~GenerateJobs() { shutdown(); }

void GenerateJobs::submit(const http::Request& request, const std::shared_ptr<http::Exchange>& exchange) {
  Impl& m = *impl_;
  uint64_t seed;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    seed = m.rng() % (uint64_t{1} << 31);  // short enough to read and type again
  }
  auto job = std::make_shared<Job>();
  job->t0 = Clock::now();
  try {
    job->request = parse_generate_request(request.body, m.generator.catalog(), m.limits, seed);
  } catch (const RequestError& e) {
    exchange->respond(json_response(400, error_json(e.what(), e.field())));
    return;
  }
  job->exchange = exchange;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (m.stopping) {
      exchange->respond(json_response(503, error_json("the server is stopping; the request was not run")));
      return;
    }
    job->number = m.next_number++;
    char id[17];
    std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(m.rng()));
    job->id = id;
    m.jobs[job->id] = job;
  }
  std::weak_ptr<Job> weak = job;
  exchange->on_abort([this, weak] {
    if (JobPtr j = weak.lock()) impl_->cancel_job(j, "the client closed the connection");
  });
  bool queued = false;
  {
    std::lock_guard<std::mutex> lock(job->mu);  // the worker waits for this part
    queued = m.queue.try_submit([this, job] { impl_->run(job); }, job->number).has_value();
    if (queued && job->request.stream) {
      exchange->start_stream("text/event-stream", {{"Cache-Control", "no-cache"}, {"X-Job-Id", job->id}});
      job->shown_position = m.queue.position(job->number).value_or(0);
      exchange->write(sse_event("queued", m.queued_event(*job, job->shown_position)));
    }
  }
  if (!queued) {
    {
      std::lock_guard<std::mutex> lock(m.mu);
      m.jobs.erase(job->id);
    }
    http::Response res = json_response(
        503, error_json("busy: " + std::to_string(m.queue.capacity()) +
                        " requests are already waiting for the generator (--queue); try again shortly"));
    res.headers.emplace_back("Retry-After", "1");
    exchange->respond(std::move(res));
  }
}

void GenerateJobs::cancel(const std::string& id, const std::shared_ptr<http::Exchange>& exchange) {
  Impl& m = *impl_;
  JobPtr job;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    const auto it = m.jobs.find(id);
    if (it != m.jobs.end()) job = it->second;
  }
  if (!job) {
    exchange->respond(json_response(404, error_json("no open job '" + to_valid_utf8(id) +
                                                    "' (finished, cancelled or never started)")));
    return;
  }
  const std::string was = m.cancel_job(job, "DELETE /v1/jobs/" + id);
  exchange->respond(json_response(200, {{"job", id}, {"cancelled", true}, {"was", was.empty() ? "cancelling" : was}}));
}

size_t GenerateJobs::waiting() const { return impl_->queue.waiting(); }
bool GenerateJobs::busy() const { return impl_->queue.busy(); }
size_t GenerateJobs::capacity() const { return impl_->queue.capacity(); }

void GenerateJobs::shutdown() {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> once(m.shutdown_mu);
  {
    std::lock_guard<std::mutex> lock(m.mu);
    m.stopping = true;
  }
  m.watch_cv.notify_all();
  if (m.watcher.joinable()) m.watcher.join();
  m.queue.shutdown();  // drops the waiting jobs, lets the running one finish
  for (const JobPtr& job : m.open_jobs())
    m.finish(job, 503, error_json("the server is stopping; the request was not run"));
}

}  // namespace arcflow::server
