#include "arcflow/util/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace arcflow {

std::string format_duration(double s) {
  char buf[32];
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) % 3600) / 60);
  return buf;
}

ProgressBar::ProgressBar(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total > 0 ? total : 1), enabled_(enabled), tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  // Left without finish() (an error unwinding): end the line where the work stopped, not at 100%.
  if (!finished_ && done_ > 0 && enabled_) draw(true);
}

double ProgressBar::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::update(int64_t done, const std::string& extra) {
  done_ = done;
  extra_ = extra;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (std::chrono::duration<double>(now - last_draw_).count() < 0.1 && done_ < total_) return;
    last_draw_ = now;
    draw(false);
  } else {
    const int decile = static_cast<int>(10 * done_ / total_);
    if (decile != last_decile_) {
      last_decile_ = decile;
      draw(true);
    }
  }
}

void ProgressBar::finish(const std::string& extra) {
  if (finished_) return;
  finished_ = true;
  extra_ = extra;
  done_ = total_;
  if (!enabled_) return;
  if (!tty_ && last_decile_ == 10) return;  // the 100% line was printed already
  draw(true);
}

void ProgressBar::draw(bool final_line) {
  const double t = elapsed_seconds();
  const double frac = static_cast<double>(done_) / total_;
  const double rate = t > 0 ? done_ / t : 0.0;
  const double eta = rate > 0 ? (total_ - done_) / rate : NAN;
  constexpr int kWidth = 24;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "%s%-18s [%s] %3d%% %lld/%lld %.1f it/s %s ETA %s %s%s", tty_ ? "\r\033[K" : "",
               label_.c_str(), bar.c_str(), static_cast<int>(100 * frac), static_cast<long long>(done_),
               static_cast<long long>(total_), rate, format_duration(t).c_str(),
               format_duration(done_ >= total_ ? 0.0 : eta).c_str(), extra_.c_str(),
               (final_line || !tty_) ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace arcflow
