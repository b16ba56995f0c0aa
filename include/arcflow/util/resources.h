// Process resources for benchmarks: peak resident memory, which can be reset between measurements
// (Linux: VmHWM in /proc/self/status, reset by writing 5 to /proc/self/clear_refs).
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace arcflow {

// Peak resident set size since start or the last reset, in bytes (-1 if unknown).
int64_t peak_rss_bytes();
// Current resident set size in bytes (-1 if unknown).
int64_t current_rss_bytes();
// Resets the peak to the current size; false where the kernel does not support it.
bool reset_peak_rss();

// Peak memory of computations on `device` since the last reset, in bytes: CUDA devices report the
// caching allocator's peak of allocated bytes (in CUDA builds), the CPU its peak resident set size.
// -1 when unknown.
int64_t peak_device_memory_bytes(const c10::Device& device);
void reset_peak_device_memory(const c10::Device& device);

// The memory a computation on `device` can have at most, in bytes: a CUDA device's total memory (CUDA
// builds), the machine's physical memory for the CPU (MemTotal, or the cgroup's limit when lower).
// -1 when unknown.
int64_t device_memory_capacity_bytes(const c10::Device& device);

// Refuses (std::invalid_argument) a request whose estimated memory `need_bytes` is past what
// `device` has (device_memory_capacity_bytes): "<flags>: ... needs
// about X GB (<detail>); <device> has Y GB". Does nothing when the capacity is unknown.
void check_memory(const std::string& flags, double need_bytes, const c10::Device& device, const std::string& detail = "");

}  // namespace arcflow
