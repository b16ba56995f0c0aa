#include "arcflow/util/resources.h"

#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>

namespace arcflow {

namespace {
int64_t status_kb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1)) * 1024;
  return -1;
}
}  // namespace

int64_t peak_rss_bytes() { return status_kb("VmHWM"); }
int64_t current_rss_bytes() { return status_kb("VmRSS"); }

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  if (!out) return false;
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace arcflow

// ------------------------------------------------------------------------------ device memory

#ifdef ARCFLOW_HAVE_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace arcflow {

int64_t peak_device_memory_bytes(const c10::Device& device) {
#ifdef ARCFLOW_HAVE_CUDA
  if (device.is_cuda()) {
    using namespace c10::cuda::CUDACachingAllocator;
    const auto stats = getDeviceStats(device.index() < 0 ? 0 : device.index());
    return stats.allocated_bytes[static_cast<size_t>(StatType::AGGREGATE)].peak;
  }
#endif
  if (device.is_cpu()) return peak_rss_bytes();
  return -1;
}

int64_t device_memory_capacity_bytes(const c10::Device& device) {
#ifdef ARCFLOW_HAVE_CUDA
  if (device.is_cuda())
    return static_cast<int64_t>(at::cuda::getDeviceProperties(device.index() < 0 ? 0 : device.index())->totalGlobalMem);
#endif
  if (!device.is_cpu()) return -1;
  int64_t total = -1;
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("MemTotal:", 0) == 0) total = std::stoll(line.substr(9)) * 1024;
  for (const char* limit : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream f(limit);
    std::string v;
    if (f >> v && !v.empty() && v.find_first_not_of("0123456789") == std::string::npos) {
      const int64_t bytes = std::stoll(v);
      if (bytes > 0 && (total < 0 || bytes < total)) total = bytes;
    }
  }
  return total;
}

void reset_peak_device_memory(const c10::Device& device) {
#ifdef ARCFLOW_HAVE_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.index() < 0 ? 0 : device.index());
    return;
  }
#endif
  if (device.is_cpu()) reset_peak_rss();
}

void check_memory(const std::string& flags, double need_bytes, const c10::Device& device, const std::string& detail) {
  const int64_t have = device_memory_capacity_bytes(device);
  if (have <= 0 || need_bytes <= static_cast<double>(have)) return;
  char buf[160];
  std::snprintf(buf, sizeof buf, "needs about %.3g GB", need_bytes / 1e9);
  std::string msg = flags + ": this request " + buf + (detail.empty() ? "" : " (" + detail + ")");
  std::snprintf(buf, sizeof buf, "; %s has %.3g GB", device.is_cpu() ? "this machine" : device.str().c_str(),
                static_cast<double>(have) / 1e9);
  throw std::invalid_argument(msg + buf);
}

}  // namespace arcflow
