#include "arcflow/models/toy_mlp.h"

#include <cmath>

#include "arcflow/models/embedding.h"

namespace arcflow {

ToyMLPImpl::ToyMLPImpl(const ToyMLPConfig& cfg) : config(cfg) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.depth; ++i) layers->push_back(LoRALinear(i == 0 ? 2 + cfg.time_dim : cfg.hidden, cfg.hidden));
  proj_out = register_module("proj_out", LoRALinear(cfg.hidden, 2));
}

torch::Tensor ToyMLPImpl::features(const torch::Tensor& x, const torch::Tensor& sigma) {
  torch::Tensor h = torch::cat({x, timestep_embedding(sigma * 1000.0, config.time_dim).to(x.dtype())}, 1);
  for (const auto& layer : *layers) h = torch::silu(layer->as<LoRALinearImpl>()->forward(h));
  return h;
}

torch::Tensor ToyMLPImpl::forward(const torch::Tensor& x, const torch::Tensor& sigma) {
  return proj_out(features(x, sigma));
}

void init_mixture_head(const torch::Tensor& teacher_weight, const torch::Tensor& teacher_bias, int64_t K,
                       double bias_noise, double min_gamma, double max_gamma, torch::nn::Linear& means,
                       torch::nn::Linear& logweights, torch::nn::Linear& log_gammas) {
  torch::NoGradGuard no_grad;
  means->weight.copy_(teacher_weight.repeat({K, 1}));
  means->bias.copy_(teacher_bias.repeat({K}) + torch::randn({means->bias.size(0)}, teacher_bias.options()) * bias_noise);
  logweights->weight.zero_();
  logweights->bias.zero_();
  if (!log_gammas.is_empty()) {
    // Output (k - 1) * P + p belongs to component k >= 1 and pixel p of the token; each component
    // gets one of K - 1 evenly spaced log-gammas for all its pixels.
    const int64_t per = log_gammas->bias.size(0) / (K - 1);
    const torch::Tensor levels = torch::linspace(std::log(min_gamma), std::log(max_gamma), K - 1,
                                                 log_gammas->bias.options());
    log_gammas->weight.zero_();
    log_gammas->bias.copy_(levels.repeat_interleave(per));
  }
}

ToyStudentImpl::ToyStudentImpl(ToyMLP teacher, const ToyStudentConfig& cfg) : config(cfg) {
  if (cfg.K < 1) throw std::invalid_argument("K must be >= 1");
  trunk = register_module("trunk", ToyMLP(teacher->config));
  copy_state(*teacher, *trunk);
  freeze(*trunk);
  apply_lora(*trunk, cfg.lora);
  const int64_t h = teacher->config.hidden;
  proj_out_means = register_module("proj_out_means", torch::nn::Linear(h, cfg.K * 2));
  proj_out_logweights = register_module("proj_out_logweights", torch::nn::Linear(h, cfg.K));
  if (cfg.K > 1) proj_out_log_gammas = register_module("proj_out_log_gammas", torch::nn::Linear(h, cfg.K - 1));
  init_mixture_head(teacher->proj_out->weight, teacher->proj_out->bias, cfg.K, cfg.head_bias_noise, cfg.min_gamma,
                    cfg.max_gamma, proj_out_means, proj_out_logweights, proj_out_log_gammas);
}

Policy ToyStudentImpl::forward(const torch::Tensor& x, const torch::Tensor& sigma) {
  const torch::Tensor h = trunk->features(x, sigma);
  const int64_t B = x.size(0), K = config.K;
  torch::Tensor means = proj_out_means(h).reshape({B, K, 2});
  torch::Tensor logweights = proj_out_logweights(h).reshape({B, K, 1});
  torch::Tensor log_gammas;
  if (K > 1) log_gammas = proj_out_log_gammas(h).reshape({B, K - 1, 1});
  return make_policy(means, logweights, log_gammas, sigma);
}

std::vector<torch::Tensor> ToyStudentImpl::main_parameters() {
  std::vector<torch::Tensor> out = lora_parameters(*trunk);
  for (auto* m : {&proj_out_means, &proj_out_logweights})
    for (auto& p : (*m)->parameters()) out.push_back(p);
  return out;
}

std::vector<torch::Tensor> ToyStudentImpl::log_gamma_parameters() {
  if (proj_out_log_gammas.is_empty()) return {};
  return proj_out_log_gammas->parameters();
}

}  // namespace arcflow
