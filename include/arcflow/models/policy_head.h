// Student output heads: the layers that replace a network's output layer and emit a policy
// (core/policy.h), one kind per policy, behind one interface and a name table.
//
// A head registers its layers on the student module that owns it, under the names that become
// the adapter file's keys (e.g. `proj_out_means`), and initialises them from the teacher's output
// layer (ARCFLOW.md sections 2b and 3), so before training the student's velocity at the source is
// the teacher's up to the documented bias noise.
//
// Adding a policy: the policy class in core/, a head (header/source pair in models/ with a
// factory), and one line in the table of src/models/policy_head.cpp.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "arcflow/core/policy.h"
#include "arcflow/models/lora.h"
#include "arcflow/models/network.h"

namespace arcflow {

struct PolicyHeadConfig {
  std::string policy = "arcflow";  // a name from policy_heads()
  int64_t K = 16;                  // mixture components
  double head_bias_noise = 0.05;   // std of the noise on each component's copied bias
  bool head_bias_noise_per_token = true;  // one draw per (component, channel), shared by a token's pixels
  double min_gamma = 0.2, max_gamma = 4.0;  // momentum head: initial gammas, evenly spaced in log
  int64_t logstd_hidden = 1024;    // GMFlow head: logstd MLP width (0: the embedding width)
};

// How policies without a closed form integrate (GMFlow's Euler sub-steps): the schedule's shift
// and the sub-steps of a whole trajectory.
struct IntegrationOptions {
  double shift = 1.0;
  int total_substeps = 128;
};

class PolicyHead {
 public:
  virtual ~PolicyHead() = default;
  // The policy at (x, sigma (B)) from the base network's head input.
  virtual PolicyPtr forward(const HeadInput& in, const torch::Tensor& x, const torch::Tensor& sigma,
                            const IntegrationOptions& integration) = 0;
  // Trainable tensors at the main learning rate, and at the slow one (lr x log_gamma_lr_mult).
  virtual std::vector<torch::Tensor> main_parameters() = 0;
  virtual std::vector<torch::Tensor> slow_parameters() { return {}; }
  // The names the head registered on its owner (their keys belong to the adapter).
  virtual std::vector<std::string> module_names() const = 0;
};

using PolicyHeadFactory = std::unique_ptr<PolicyHead> (*)(torch::nn::Module& owner, const HeadLayout& layout,
                                                          const PolicyHeadConfig& cfg, LoRALinear teacher_out);

struct PolicyHeadEntry {
  const char* name;
  PolicyHeadFactory make;
  const char* description;
  // The sampling temperature of all but the last step when none is asked for ("auto"): the
  // policy's published protocol at `nfe` steps (GMFlow: pi-Flow's rule; ArcFlow: 1, as its
  // reference samples).
  double (*auto_temperature)(int nfe);
};

// The name table, in display order: arcflow, gmflow.
const std::vector<PolicyHeadEntry>& policy_heads();
// The entry called `name`; throws std::invalid_argument listing the valid names.
const PolicyHeadEntry& find_policy_head(const std::string& name);

// Section 3's initialisation of a means layer from the teacher's output layer (out = pixels *
// channels values per token, ordered (pixel, channel)): each of the K components a copy of the
// teacher's weight and bias, plus N(0, noise^2) on the bias (torch's global generator), drawn once
// per (component, channel) and shared by the token's pixels when per_token, else once per output.
void init_means_from_teacher(torch::nn::Linear& means, LoRALinear teacher_out, const HeadLayout& layout,
                             const PolicyHeadConfig& cfg);

}  // namespace arcflow
