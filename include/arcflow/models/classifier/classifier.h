// The evaluation network: a small CNN classifier for Fashion-MNIST. Its penultimate features play
// the role Inception features play in the usual FID (ARCFLOW.md section 5 data; see
// arcflow/evaluation/image_metrics.h), and its logits give the class accuracy of generated images.
//
// Layout (checkpoint keys; c_i = channels[i], c_{-1} = in_channels, S = image_size):
//   blocks.{i}.conv.weight (c_i, c_{i-1}, 3, 3)        Conv2d 3x3, padding 1, no bias
//   blocks.{i}.bn.weight, .bias, .running_mean,        BatchNorm2d(c_i), eps 1e-5, momentum 0.1
//     .running_var (c_i), .num_batches_tracked ()
//   fc1.weight (F, c_last * s * s), fc1.bias (F)        s = S halved (floor) once per block
//   fc2.weight (L, F), fc2.bias (L)                    F = feature_dim, L = num_classes
// Computation: each block is conv -> BN -> ReLU -> 2x2 max pool; then flatten, dropout, fc1, ReLU
// (= the features, (B, F)), dropout, fc2 (= the logits, (B, L)). With the defaults (1x28x28,
// channels 32/64/128: 28 -> 14 -> 7 -> 3) it has about 243k parameters (~1 MB as float32).
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "arcflow/io/safetensors.h"

namespace arcflow {

struct ClassifierConfig {
  int64_t in_channels = 1, image_size = 28;
  std::vector<int64_t> channels = {32, 64, 128};  // one conv block (and one 2x pooling) per entry
  int64_t feature_dim = 128, num_classes = 10;
  double dropout = 0.25;

  // Side of the feature map after the last pooling (image_size halved per block, floor).
  int64_t final_size() const;
  // Number of values in the model's state (parameters and BatchNorm buffers), in closed form (see
  // DiTConfig::state_size).
  double state_size() const;

  // Throws std::invalid_argument naming the field: every size > 0, at least one block, the final
  // feature map at least 1x1, dropout in [0, 1).
  void validate() const;
  // {"in_channels": .., "image_size": .., "channels": [..], "feature_dim": .., "num_classes": ..,
  //  "dropout": ..}
  nlohmann::json to_json() const;
  // Strict: every field above must be present with the right type (integers, an array of integers
  // for channels, a number for dropout), unknown fields are rejected, then validate(). Throws
  // std::invalid_argument naming the field.
  static ClassifierConfig from_json(const nlohmann::json& j);
};

// conv 3x3 (no bias) -> BatchNorm -> ReLU -> 2x2 max pool.
class ConvBlockImpl : public torch::nn::Module {
 public:
  ConvBlockImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(ConvBlock);

class ClassifierImpl : public torch::nn::Module {
 public:
  explicit ClassifierImpl(const ClassifierConfig& cfg);

  // Penultimate features (B, feature_dim), after the ReLU. x: (B, C, S, S), pixels in [-1, 1].
  torch::Tensor features(const torch::Tensor& x);
  // Class logits (B, num_classes).
  torch::Tensor forward(const torch::Tensor& x);
  // The logits from features(x) (dropout, fc2): forward(x) == logits_from_features(features(x)).
  torch::Tensor logits_from_features(const torch::Tensor& features);

  ClassifierConfig config;
  torch::nn::ModuleList blocks{nullptr};  // of ConvBlock
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::Dropout drop{nullptr};       // no parameters, no checkpoint key
};
TORCH_MODULE(Classifier);

// Writes the weights (atomically) as safetensors with metadata {"model": "classifier", "config":
// config JSON} plus `extra` entries (e.g. "test_accuracy", "command"); "model" and "config" in
// `extra` are rejected with std::invalid_argument.
void save_classifier(Classifier& m, const std::string& path, const io::Metadata& extra = {});
// Builds the classifier from the file's "config" metadata and loads its weights strictly: missing,
// extra or wrongly shaped tensors, missing or invalid config metadata, or a "model" entry other
// than "classifier" throw std::runtime_error naming `path` (and the tensor or field). The model is
// returned in eval mode on `device`. When `metadata` is given it receives the file's metadata.
Classifier load_classifier(const std::string& path, torch::Device device = torch::kCPU,
                           io::Metadata* metadata = nullptr);

}  // namespace arcflow
