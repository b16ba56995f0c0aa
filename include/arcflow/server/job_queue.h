// A bounded queue of jobs run one at a time by a single worker thread: `arcflow serve` generates
// images for one request at a time (the models use every core already), and refuses new requests
// once `capacity` are waiting, instead of piling them up. A job may carry a tag (the server's job
// number) so that its place in the line can be reported while it waits and it can be taken out.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

namespace arcflow::server {

class JobQueue {
 public:
  using Job = std::function<void()>;

  // Starts the worker. `capacity` (>= 1, else std::invalid_argument) bounds the jobs waiting; the
  // one running is not counted.
  explicit JobQueue(size_t capacity);
  ~JobQueue();  // shutdown()
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  // Queues `job`; the future becomes ready when it has run (get() rethrows what it threw). Empty
  // when `capacity` jobs are already waiting or the queue is shut down. `tag` (0: none) names the
  // job for position() and remove().
  std::optional<std::future<void>> try_submit(Job job, uint64_t tag = 0);

  // 1 for the next job to run, 2 for the one after it, ...; empty when no waiting job has `tag`.
  std::optional<size_t> position(uint64_t tag) const;
  // Takes the waiting job with `tag` out of the line (its future throws std::future_error,
  // broken_promise); false when it is not waiting (running, done or unknown).
  bool remove(uint64_t tag);

  size_t capacity() const { return capacity_; }
  size_t waiting() const;  // jobs queued, not yet started
  bool busy() const;       // a job is running

  // Drops the waiting jobs (their futures throw std::future_error, broken_promise), lets the running
  // one finish and joins the worker. Idempotent.
  void shutdown();

 private:
  void work();

  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  struct Waiting {
    std::packaged_task<void()> task;
    uint64_t tag = 0;
  };
  std::deque<Waiting> jobs_;
  bool running_job_ = false;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace arcflow::server
