// The 2-D toy models (ARCFLOW.md section 5): an MLP velocity teacher and its ArcFlow student.
//
// Teacher `ToyMLP`: input [x (2 values), sinusoidal features of sigma * 1000 (time_dim values)],
// `layers.0` (2 + time_dim -> hidden), then `layers.1` .. `layers.{depth-1}` (hidden -> hidden),
// SiLU after each, and `proj_out` (hidden -> 2) giving the velocity u = eps - x0.
//
// Student `ToyStudent`: a frozen copy of the teacher (`trunk`) with LoRA on its hidden layers and
// the mixture head of section 3 reading the trunk's last hidden features:
//   `proj_out_means` (hidden -> K * 2), `proj_out_logweights` (hidden -> K),
//   `proj_out_log_gammas` (hidden -> K - 1, absent when K = 1).
#pragma once

#include <torch/torch.h>

#include "arcflow/core/policy.h"
#include "arcflow/models/lora.h"

namespace arcflow {

struct ToyMLPConfig {
  int64_t hidden = 256;
  int64_t depth = 4;      // number of hidden-width layers (layers.0 .. layers.{depth-1})
  int64_t time_dim = 64;  // sinusoidal feature count
};

class ToyMLPImpl : public torch::nn::Module {
 public:
  explicit ToyMLPImpl(const ToyMLPConfig& cfg);
  // Last hidden features, (B, hidden). x: (B, 2), sigma: (B).
  torch::Tensor features(const torch::Tensor& x, const torch::Tensor& sigma);
  // Velocity, (B, 2).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma);

  ToyMLPConfig config;
  torch::nn::ModuleList layers;  // of LoRALinear
  LoRALinear proj_out{nullptr};
};
TORCH_MODULE(ToyMLP);

struct ToyStudentConfig {
  int64_t K = 16;
  LoRAConfig lora{8, 8.0, 0.05, {"layers.1", "layers.2", "layers.3"}};
  double head_bias_noise = 0.05;  // std of the noise added to each component's copied bias
  double min_gamma = 0.2, max_gamma = 4.0;
};

class ToyStudentImpl : public torch::nn::Module {
 public:
  // Copies `teacher`'s weights into a frozen trunk, adds LoRA and the head.
  ToyStudentImpl(ToyMLP teacher, const ToyStudentConfig& cfg);
  Policy forward(const torch::Tensor& x, const torch::Tensor& sigma);

  // Trainable tensors: LoRA + means/logweights heads, and the log-gamma head (its own lr).
  std::vector<torch::Tensor> main_parameters();
  std::vector<torch::Tensor> log_gamma_parameters();

  ToyStudentConfig config;
  ToyMLP trunk{nullptr};
  torch::nn::Linear proj_out_means{nullptr}, proj_out_logweights{nullptr}, proj_out_log_gammas{nullptr};
};
TORCH_MODULE(ToyStudent);

// The head initialisation of section 3, shared by every student: means from the teacher's
// output layer (each component a copy, bias + N(0, noise^2)), logweights zero, log-gamma weight
// zero with bias evenly spaced from ln(min_gamma) to ln(max_gamma). `out` is the teacher's
// output count per token; heads may be undefined (log_gammas when K = 1).
void init_mixture_head(const torch::Tensor& teacher_weight, const torch::Tensor& teacher_bias, int64_t K,
                       double bias_noise, double min_gamma, double max_gamma, torch::nn::Linear& means,
                       torch::nn::Linear& logweights, torch::nn::Linear& log_gammas);

}  // namespace arcflow
