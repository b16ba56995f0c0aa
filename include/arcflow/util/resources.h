// Process resources for benchmarks: peak resident memory, which can be reset between measurements
// (Linux: VmHWM in /proc/self/status, reset by writing 5 to /proc/self/clear_refs).
#pragma once

#include <cstdint>

namespace arcflow {

// Peak resident set size since start or the last reset, in bytes (-1 if unknown).
int64_t peak_rss_bytes();
// Current resident set size in bytes (-1 if unknown).
int64_t current_rss_bytes();
// Resets the peak to the current size; false where the kernel does not support it.
bool reset_peak_rss();

}  // namespace arcflow
