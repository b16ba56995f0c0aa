// A terminal progress bar with rate and ETA, for every long-running loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace arcflow {

class ProgressBar {
 public:
  // Writes to stderr. On a terminal the bar redraws in place (at most ~10 times a second);
  // otherwise (logs, CI) it prints a line at every 10% so logs stay short.
  ProgressBar(std::string label, int64_t total, bool enabled = true);
  ~ProgressBar();
  // Marks `done` of `total` items complete; `extra` is shown after the bar (e.g. "loss 0.123").
  void update(int64_t done, const std::string& extra = "");
  void finish(const std::string& extra = "");
  double elapsed_seconds() const;

 private:
  void draw(bool final_line);
  std::string label_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  int last_decile_ = -1;
  std::string extra_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// "1m05s", "3.2s".
std::string format_duration(double seconds);

}  // namespace arcflow
