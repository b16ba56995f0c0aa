// The ArcFlow head (ARCFLOW.md section 3), emitting the momentum mixture of core/momentum.h:
//   proj_out_means       Linear(D, K * pixels * C)   per token, ordered (k, pixel, c)
//   proj_out_logweights  Linear(D, K * pixels)       zero: uniform weights
//   proj_out_log_gammas  Linear(D, (K-1) * pixels)   zero weight, bias ln(gamma) evenly spaced
//                                                    from ln(min_gamma) to ln(max_gamma); absent for K = 1
// K = 1 is the linear-shortcut baseline.
#pragma once

#include "arcflow/models/policy_head.h"

namespace arcflow {

std::unique_ptr<PolicyHead> make_momentum_head(torch::nn::Module& owner, const HeadLayout& layout,
                                               const PolicyHeadConfig& cfg, LoRALinear teacher_out);

}  // namespace arcflow
