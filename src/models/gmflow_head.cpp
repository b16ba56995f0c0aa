// The GMFlow head: see models/gmflow_head.h.
#include "arcflow/models/gmflow_head.h"

#include "arcflow/core/gmflow.h"

namespace arcflow {

namespace {

class GMFlowHead : public PolicyHead {
 public:
  GMFlowHead(torch::nn::Module& owner, const HeadLayout& layout, const PolicyHeadConfig& cfg, LoRALinear teacher_out)
      : layout_(layout), K_(cfg.K) {
    const int64_t D = layout.feature_dim, E = layout.embed_dim, P = layout.pixels;
    const int64_t H = cfg.logstd_hidden > 0 ? cfg.logstd_hidden : E;  // 0: the width of files before H was set
    means_ = owner.register_module("proj_out_means", torch::nn::Linear(D, K_ * P * layout.channels));
    logweights_ = owner.register_module("proj_out_logweights", torch::nn::Linear(D, K_ * P));
    logstds_ = owner.register_module(
        "proj_out_logstds", torch::nn::Sequential(torch::nn::SiLU(), torch::nn::Linear(E, H), torch::nn::SiLU(),
                                                  torch::nn::Linear(H, 1)));
    init_means_from_teacher(means_, teacher_out, layout, cfg);
    torch::NoGradGuard no_grad;
    logweights_->weight.zero_();
    logweights_->bias.zero_();
    if (cfg.logstd_hidden > 0) {  // pi-Flow's init of the hidden layer (older files kept torch's default)
      auto hidden = logstds_[1]->as<torch::nn::Linear>();
      torch::nn::init::xavier_uniform_(hidden->weight);
      hidden->bias.zero_();
    }
    for (auto& p : logstds_[3]->parameters()) p.zero_();  // logstd 0 at the start: v = sigma_s^2
  }

  PolicyPtr forward(const HeadInput& in, const torch::Tensor& x, const torch::Tensor& sigma,
                    const IntegrationOptions& integration) override {
    GaussianMixture g;
    g.means = layout_.to_sample(means_(in.tokens), K_, layout_.channels);
    g.logweights = layout_.to_sample(logweights_(in.tokens), K_, 1);
    g.logstd = logstds_->forward(in.embedding.detach()).reshape({x.size(0)});
    g.x_src = x;
    g.sigma_src = sigma.dim() == 0 ? sigma.expand({x.size(0)}) : sigma;
    return std::make_shared<GMFlowPolicy>(std::move(g),
                                          GMFlowIntegration{integration.shift, integration.total_substeps});
  }

  std::vector<torch::Tensor> main_parameters() override {
    std::vector<torch::Tensor> out = means_->parameters();
    for (auto* m : {&logweights_})
      for (const auto& p : (*m)->parameters()) out.push_back(p);
    for (const auto& p : logstds_->parameters()) out.push_back(p);
    return out;
  }
  std::vector<std::string> module_names() const override {
    return {"proj_out_means", "proj_out_logweights", "proj_out_logstds"};
  }

 private:
  HeadLayout layout_;
  int64_t K_;
  torch::nn::Linear means_{nullptr}, logweights_{nullptr};
  torch::nn::Sequential logstds_{nullptr};
};

}  // namespace

std::unique_ptr<PolicyHead> make_gmflow_head(torch::nn::Module& owner, const HeadLayout& layout,
                                             const PolicyHeadConfig& cfg, LoRALinear teacher_out) {
  return std::make_unique<GMFlowHead>(owner, layout, cfg, std::move(teacher_out));
}

}  // namespace arcflow
