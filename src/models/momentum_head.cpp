// The ArcFlow head: see models/momentum_head.h.
#include "arcflow/models/momentum_head.h"

#include <cmath>

#include "arcflow/core/momentum.h"

namespace arcflow {

namespace {

class MomentumHead : public PolicyHead {
 public:
  MomentumHead(torch::nn::Module& owner, const HeadLayout& layout, const PolicyHeadConfig& cfg, LoRALinear teacher_out)
      : layout_(layout), K_(cfg.K) {
    const int64_t D = layout.feature_dim, P = layout.pixels;
    means_ = owner.register_module("proj_out_means", torch::nn::Linear(D, K_ * P * layout.channels));
    logweights_ = owner.register_module("proj_out_logweights", torch::nn::Linear(D, K_ * P));
    if (K_ > 1) log_gammas_ = owner.register_module("proj_out_log_gammas", torch::nn::Linear(D, (K_ - 1) * P));
    init_means_from_teacher(means_, teacher_out, layout, cfg);
    torch::NoGradGuard no_grad;
    logweights_->weight.zero_();
    logweights_->bias.zero_();
    if (K_ > 1) {
      // Output (k - 1) * P + p belongs to component k >= 1 and pixel p of the token; each component
      // gets one of K - 1 evenly spaced log-gammas for all its pixels.
      const torch::Tensor levels =
          torch::linspace(std::log(cfg.min_gamma), std::log(cfg.max_gamma), K_ - 1, log_gammas_->bias.options());
      log_gammas_->weight.zero_();
      log_gammas_->bias.copy_(levels.repeat_interleave(P));
    }
  }

  PolicyPtr forward(const HeadInput& in, const torch::Tensor& x, const torch::Tensor& sigma,
                    const IntegrationOptions& /*closed form*/) override {
    const torch::Tensor means = layout_.to_sample(means_(in.tokens), K_, layout_.channels);
    const torch::Tensor logweights = layout_.to_sample(logweights_(in.tokens), K_, 1);
    torch::Tensor log_gammas;
    if (K_ > 1) log_gammas = layout_.to_sample(log_gammas_(in.tokens), K_ - 1, 1);
    torch::Tensor s = sigma;
    if (s.dim() == 0) s = s.expand({x.size(0)});
    return std::make_shared<MomentumPolicy>(make_mixture(means, logweights, log_gammas, s.to(x.dtype())));
  }

  std::vector<torch::Tensor> main_parameters() override {
    std::vector<torch::Tensor> out = means_->parameters();
    for (const auto& p : logweights_->parameters()) out.push_back(p);
    return out;
  }
  std::vector<torch::Tensor> slow_parameters() override {
    return K_ > 1 ? log_gammas_->parameters() : std::vector<torch::Tensor>{};
  }
  std::vector<std::string> module_names() const override {
    std::vector<std::string> n{"proj_out_means", "proj_out_logweights"};
    if (K_ > 1) n.push_back("proj_out_log_gammas");
    return n;
  }

 private:
  HeadLayout layout_;
  int64_t K_;
  torch::nn::Linear means_{nullptr}, logweights_{nullptr}, log_gammas_{nullptr};
};

}  // namespace

std::unique_ptr<PolicyHead> make_momentum_head(torch::nn::Module& owner, const HeadLayout& layout,
                                               const PolicyHeadConfig& cfg, LoRALinear teacher_out) {
  return std::make_unique<MomentumHead>(owner, layout, cfg, std::move(teacher_out));
}

}  // namespace arcflow
