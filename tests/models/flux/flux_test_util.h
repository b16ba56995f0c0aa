// Shared helpers of the FLUX tests: the fixture paths (tests/data/flux, written by
// tests/flux_reference/make_fixtures.py), error-message checks and copying model folders.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <initializer_list>
#include <string>

#include "arcflow/io/atomic_file.h"
#include "arcflow/io/safetensors.h"

namespace arcflow::test {

inline std::string flux_data(const std::string& rel) { return std::string(ARCFLOW_TEST_DATA_DIR) + "/flux/" + rel; }

// The reference inputs and outputs (name -> float32 tensor).
inline const io::TensorMap& flux_cases() {
  static const io::TensorMap cases = io::load_safetensors(flux_data("cases.safetensors")).tensors;
  return cases;
}
inline torch::Tensor flux_case(const std::string& name) {
  const auto it = flux_cases().find(name);
  if (it == flux_cases().end()) throw std::runtime_error("no case tensor " + name);
  return it->second;
}

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// Expects fn() to throw std::exception whose message contains every string of `parts`; returns it.
template <typename F>
std::string expect_error(F fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no exception";
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
    return msg;
  }
  return "";
}

inline void copy_file(const std::string& from, const std::string& to) { io::write_file_atomic(to, io::read_file(from)); }

}  // namespace arcflow::test
