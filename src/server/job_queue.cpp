#include "arcflow/server/job_queue.h"

#include <stdexcept>
#include <string>

namespace arcflow::server {

JobQueue::JobQueue(size_t capacity) : capacity_(capacity) {
  if (capacity < 1) throw std::invalid_argument("--queue must be >= 1, got " + std::to_string(capacity));
  worker_ = std::thread([this] { work(); });
}

JobQueue::~JobQueue() { shutdown(); }

std::optional<std::future<void>> JobQueue::try_submit(Job job, uint64_t tag) {
  std::packaged_task<void()> task(std::move(job));
  std::future<void> f = task.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || jobs_.size() >= capacity_) return std::nullopt;
    jobs_.push_back({std::move(task), tag});
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

std::optional<size_t> JobQueue::position(uint64_t tag) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < jobs_.size(); ++i)
    if (tag != 0 && jobs_[i].tag == tag) return i + 1;
  return std::nullopt;
}

bool JobQueue::remove(uint64_t tag) {
  std::packaged_task<void()> dropped;  // destroyed unrun, outside the lock: its future throws broken_promise
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = jobs_.begin(); it != jobs_.end(); ++it)
      if (tag != 0 && it->tag == tag) {
        dropped = std::move(it->task);
        jobs_.erase(it);
        return true;
      }
  }
  return false;
}

void JobQueue::shutdown() {
  std::deque<Waiting> dropped;
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
      task = std::move(jobs_.front().task);
      jobs_.pop_front();
      running_job_ = true;
    }
    task();  // exceptions go to the future
    std::lock_guard<std::mutex> lock(mu_);
    running_job_ = false;
  }
}

}  // namespace arcflow::server
