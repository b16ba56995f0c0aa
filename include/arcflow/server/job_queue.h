// A bounded queue of jobs run one at a time by a single worker thread: `arcflow serve` generates
// images for one request at a time (the models use every core already), and refuses new requests
// once `capacity` are waiting, instead of piling them up.
#pragma once

#include <condition_variable>
#include <cstddef>
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
  // when `capacity` jobs are already waiting or the queue is shut down.
  std::optional<std::future<void>> try_submit(Job job);

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
  std::deque<std::packaged_task<void()>> jobs_;
  bool running_job_ = false;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace arcflow::server
