// The policy heads' name table and the initialisation they share.
#include "arcflow/models/policy_head.h"

#include <stdexcept>

#include "arcflow/core/gmflow.h"
#include "arcflow/models/gmflow_head.h"
#include "arcflow/models/momentum_head.h"

namespace arcflow {

const std::vector<PolicyHeadEntry>& policy_heads() {
  static const std::vector<PolicyHeadEntry> table = {
      {"arcflow", make_momentum_head, "ArcFlow's mixture of K momentum processes, closed-form steps (K = 1: linear)",
       [](int) { return 1.0; }},
      {"gmflow", make_gmflow_head, "pi-Flow's Gaussian mixture over x0, Euler sub-steps",
       GMFlowPolicy::auto_temperature},
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

void init_means_from_teacher(torch::nn::Linear& means, LoRALinear teacher_out, const HeadLayout& layout,
                             const PolicyHeadConfig& cfg) {
  torch::NoGradGuard no_grad;
  const torch::Tensor w = teacher_out->weight, b = teacher_out->bias;
  const int64_t K = cfg.K, P = layout.pixels, C = layout.channels;
  if (b.size(0) != P * C)
    throw std::invalid_argument("policy head: the output layer has " + std::to_string(b.size(0)) +
                                " outputs, the layout says " + std::to_string(P) + " pixels x " + std::to_string(C) +
                                " channels");
  means->weight.copy_(w.repeat({K, 1}));
  const torch::Tensor noise = cfg.head_bias_noise_per_token
                                  ? torch::randn({K, 1, C}, b.options()).expand({K, P, C}).reshape({K * P * C})
                                  : torch::randn({K * P * C}, b.options());
  means->bias.copy_(b.repeat({K}) + noise * cfg.head_bias_noise);
}

}  // namespace arcflow
