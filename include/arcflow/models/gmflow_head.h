// The GMFlow head (ARCFLOW.md section 2b), emitting pi-Flow's Gaussian mixture (core/gmflow.h):
//   proj_out_means       Linear(D, K * pixels * C)   as ArcFlow's (teacher's proj_out repeated, bias noise)
//   proj_out_logweights  Linear(D, K * pixels)       zero: uniform weights
//   proj_out_logstds     Sequential(SiLU, Linear(E, E), SiLU, Linear(E, 1)) on the DETACHED
//                        conditioning embedding: one log standard deviation per sample; the last
//                        layer starts at zero (keys proj_out_logstds.1.* and proj_out_logstds.3.*)
#pragma once

#include "arcflow/models/policy_head.h"

namespace arcflow {

std::unique_ptr<PolicyHead> make_gmflow_head(torch::nn::Module& owner, const HeadLayout& layout,
                                             const PolicyHeadConfig& cfg, LoRALinear teacher_out);

}  // namespace arcflow
