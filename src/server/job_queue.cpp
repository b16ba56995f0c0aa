#include "arcflow/server/job_queue.h"

#include <stdexcept>
#include <string>

namespace arcflow::server {

JobQueue::JobQueue(size_t capacity) : capacity_(capacity) {
  if (capacity < 1) throw std::invalid_argument("--queue must be >= 1, got " + std::to_string(capacity));
  worker_ = std::thread([this] { work(); });
}

JobQueue::~JobQueue() { shutdown(); }

std::optional<std::future<void>> JobQueue::try_submit(Job job) {
  std::packaged_task<void()> task(std::move(job));
  std::future<void> f = task.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || jobs_.size() >= capacity_) return std::nullopt;
    jobs_.push_back(std::move(task));
  }
  cv_.notify_one();
  return f;
}

size_t JobQueue::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return jobs_.size();
}

bool JobQueue::busy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_job_;
}

void JobQueue::shutdown() {
  std::deque<std::packaged_task<void()>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    dropped.swap(jobs_);
  }
  cv_.notify_all();
  dropped.clear();  // destroying an unrun packaged_task makes its future throw broken_promise
  if (worker_.joinable() && worker_.get_id() != std::this_thread::get_id()) worker_.join();
}

void JobQueue::work() {
  for (;;) {
    std::packaged_task<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping
      task = std::move(jobs_.front());
      jobs_.pop_front();
      running_job_ = true;
    }
    task();  // exceptions go to the future
    std::lock_guard<std::mutex> lock(mu_);
    running_job_ = false;
  }
}

}  // namespace arcflow::server
