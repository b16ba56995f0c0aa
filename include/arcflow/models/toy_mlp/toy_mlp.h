// The 2-D toy teacher (ARCFLOW.md section 5): an MLP velocity model for distributions in the plane.
//
// `ToyMLP`: input [x (2 values), sinusoidal features of sigma * 1000 (time_dim values)],
// `layers.0` (2 + time_dim -> hidden), then `layers.1` .. `layers.{depth-1}` (hidden -> hidden),
// SiLU after each, and `proj_out` (hidden -> 2) giving the velocity u = eps - x0.
//
// It is a registered Network (kind "toy_mlp", unconditional): its students (models/student.h)
// put LoRA on the hidden layers and read the last hidden features as one token; the per-sample
// embedding a GMFlow head reads is the sinusoidal time feature vector.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "arcflow/io/safetensors.h"
#include "arcflow/models/lora.h"
#include "arcflow/models/network.h"

namespace arcflow {

struct ToyMLPConfig {
  int64_t hidden = 256;
  int64_t depth = 4;      // number of hidden-width layers (layers.0 .. layers.{depth-1})
  int64_t time_dim = 64;  // sinusoidal feature count

  nlohmann::json to_json() const;                          // {"hidden", "depth", "time_dim"}
  static ToyMLPConfig from_json(const nlohmann::json& j);  // strict; std::invalid_argument naming the field
  double state_size() const;                               // values in the model's state, closed form
};

class ToyMLPImpl : public torch::nn::Module, public Network {
 public:
  explicit ToyMLPImpl(const ToyMLPConfig& cfg);
  // Last hidden features, (B, hidden). x: (B, 2), sigma: (B).
  torch::Tensor features(const torch::Tensor& x, const torch::Tensor& sigma);
  // Velocity, (B, 2).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma);

  // Network
  torch::Tensor velocity(const torch::Tensor& x, const torch::Tensor& sigma, const Condition&) override {
    return forward(x, sigma);
  }
  std::vector<int64_t> sample_shape() const override { return {2}; }
  torch::Device device() const override { return proj_out->weight.device(); }
  torch::nn::Module& module() override { return *this; }
  std::string kind() const override { return "toy_mlp"; }
  nlohmann::json config_json() const override { return config.to_json(); }
  NetworkPtr copy_network() override;
  HeadInput head_input(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) override;
  LoRALinear output_layer() override { return proj_out; }
  HeadLayout head_layout() const override;
  std::vector<std::string> default_lora_targets() const override;  // layers.1 .. layers.{depth-1}
  double forward_flops(int64_t batch) const override;
  double forward_memory_bytes(int64_t batch, bool for_backward = false) const override;

  ToyMLPConfig config;
  torch::nn::ModuleList layers;  // of LoRALinear
  LoRALinear proj_out{nullptr};
};
TORCH_MODULE(ToyMLP);

// The registry's loader and constructor (models/registry.h).
NetworkPtr load_toy_network(const io::SafetensorsFile& f, const std::string& path, torch::Device device);
NetworkPtr create_toy_network(const nlohmann::json& config);

}  // namespace arcflow
