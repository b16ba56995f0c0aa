#include "arcflow/models/toy_mlp/toy_mlp.h"

#include <stdexcept>

#include "arcflow/models/embedding.h"
#include "arcflow/models/weights.h"

namespace arcflow {

nlohmann::json ToyMLPConfig::to_json() const { return {{"hidden", hidden}, {"depth", depth}, {"time_dim", time_dim}}; }

ToyMLPConfig ToyMLPConfig::from_json(const nlohmann::json& j) {
  ToyMLPConfig c;
  if (!j.is_object()) throw std::invalid_argument("toy_mlp config must be a JSON object");
  for (const auto& [k, v] : j.items())
    if (k != "hidden" && k != "depth" && k != "time_dim") throw std::invalid_argument("unknown toy_mlp config field '" + k + "'");
  const auto field = [&](const char* key, int64_t& out) {
    if (!j.contains(key) || !j.at(key).is_number_integer() || j.at(key).get<int64_t>() < 1)
      throw std::invalid_argument(std::string("toy_mlp config field '") + key + "' must be an integer >= 1");
    out = j.at(key).get<int64_t>();
  };
  field("hidden", c.hidden);
  field("depth", c.depth);
  field("time_dim", c.time_dim);
  return c;
}

double ToyMLPConfig::state_size() const {
  const double h = static_cast<double>(hidden);
  return (2.0 + time_dim) * h + h + (depth - 1.0) * (h * h + h) + 2.0 * h + 2.0;
}

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

NetworkPtr ToyMLPImpl::copy_network() {
  auto m = std::make_shared<ToyMLPImpl>(config);
  copy_state(*this, *m);
  m->to(device());
  return m;
}

HeadInput ToyMLPImpl::head_input(const torch::Tensor& x, const torch::Tensor& sigma, const Condition&) {
  torch::Tensor s = sigma.dim() == 0 ? sigma.expand({x.size(0)}) : sigma;
  return {features(x, s).unsqueeze(1), timestep_embedding(s * 1000.0, config.time_dim).to(x.dtype())};
}

HeadLayout ToyMLPImpl::head_layout() const {
  HeadLayout l;
  l.feature_dim = config.hidden;
  l.embed_dim = config.time_dim;
  l.pixels = 1;
  l.channels = 2;
  // One token per point: (B, 1, K * per) -> (B, K, per).
  l.to_sample = [](const torch::Tensor& tokens, int64_t K, int64_t per) {
    return tokens.reshape({tokens.size(0), K, per});
  };
  return l;
}

std::vector<std::string> ToyMLPImpl::default_lora_targets() const {
  std::vector<std::string> t;
  for (int64_t i = 1; i < config.depth; ++i) t.push_back("layers." + std::to_string(i));
  return t;
}

double ToyMLPImpl::forward_flops(int64_t batch) const {
  const double h = static_cast<double>(config.hidden);
  return 2.0 * batch * ((2.0 + config.time_dim) * h + (config.depth - 1.0) * h * h + 2.0 * h);
}

double ToyMLPImpl::forward_memory_bytes(int64_t batch, bool for_backward) const {
  const double h = static_cast<double>(config.hidden);
  const double weights = (2.0 + config.time_dim) * h + (config.depth - 1.0) * h * h + 3.0 * h + 2.0;
  return 4 * (weights + 2.0 * batch * h * (for_backward ? config.depth : 1.0));
}

NetworkPtr load_toy_network(const io::SafetensorsFile& f, const std::string& path, torch::Device device) {
  auto m = std::make_shared<ToyMLPImpl>(read_described_config<ToyMLPConfig>(f, path, "toy_mlp"));
  load_state(*m, f.tensors, path);
  m->to(device);
  return m;
}

NetworkPtr create_toy_network(const nlohmann::json& config) {
  return std::make_shared<ToyMLPImpl>(ToyMLPConfig::from_json(config));
}

}  // namespace arcflow
