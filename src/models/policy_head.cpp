// The policy heads' name table and the initialisation they share.
#include "arcflow/models/policy_head.h"

#include <stdexcept>

#include "arcflow/models/gmflow_head.h"
#include "arcflow/models/momentum_head.h"

namespace arcflow {

const std::vector<PolicyHeadEntry>& policy_heads() {
  static const std::vector<PolicyHeadEntry> table = {
      {"arcflow", make_momentum_head, "ArcFlow's mixture of K momentum processes, closed-form steps (K = 1: linear)"},
      {"gmflow", make_gmflow_head, "pi-Flow's Gaussian mixture over x0, Euler sub-steps"},
  };
  return table;
}

const PolicyHeadEntry& find_policy_head(const std::string& name) {
  std::string names;
  for (const auto& e : policy_heads()) {
    if (name == e.name) return e;
    names += (names.empty() ? "" : ", ") + std::string(e.name);
  }
  throw std::invalid_argument("unknown policy '" + name + "' (known: " + names + ")");
}

void init_means_from_teacher(torch::nn::Linear& means, LoRALinear teacher_out, int64_t K, double bias_noise) {
  torch::NoGradGuard no_grad;
  const torch::Tensor w = teacher_out->weight, b = teacher_out->bias;
  means->weight.copy_(w.repeat({K, 1}));
  means->bias.copy_(b.repeat({K}) + torch::randn({means->bias.size(0)}, b.options()) * bias_noise);
}

}  // namespace arcflow
