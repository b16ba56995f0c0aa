// The Fashion-MNIST evaluation classifier (layout and keys in arcflow/models/classifier/classifier.h), its
// config JSON and its weights files.
#include "arcflow/models/classifier/classifier.h"

#include <cmath>
#include <set>
#include <stdexcept>

#include "arcflow/models/weights.h"

namespace arcflow {

// ----------------------------------------------------------------------------------- config

double ClassifierConfig::state_size() const {
  double n = 0, in = static_cast<double>(in_channels);
  for (int64_t c : channels) {
    const double out = static_cast<double>(c);
    n += in * out * 9 + 4 * out + 1;  // 3x3 conv without bias; BatchNorm weight, bias, mean, var, count
    in = out;
  }
  const double s = static_cast<double>(final_size()), F = static_cast<double>(feature_dim);
  return n + (in * s * s + 1) * F + (F + 1) * static_cast<double>(num_classes);
}

int64_t ClassifierConfig::final_size() const {
  int64_t s = image_size;
  for (size_t i = 0; i < channels.size(); ++i) s /= 2;  // 2x2 max pool, floor
  return s;
}

void ClassifierConfig::validate() const {
  auto positive = [](const std::string& name, int64_t v) {
    if (v <= 0) throw std::invalid_argument("classifier config: " + name + " must be > 0 (got " + std::to_string(v) + ")");
  };
  positive("in_channels", in_channels);
  positive("image_size", image_size);
  positive("feature_dim", feature_dim);
  positive("num_classes", num_classes);
  if (channels.empty()) throw std::invalid_argument("classifier config: channels must list at least one block");
  for (size_t i = 0; i < channels.size(); ++i) positive("channels[" + std::to_string(i) + "]", channels[i]);
  if (final_size() < 1)
    throw std::invalid_argument("classifier config: image_size " + std::to_string(image_size) + " is too small for " +
                                std::to_string(channels.size()) + " pooling blocks");
  if (!(dropout >= 0 && dropout < 1))
    throw std::invalid_argument("classifier config: dropout must be in [0, 1) (got " + std::to_string(dropout) + ")");
}

nlohmann::json ClassifierConfig::to_json() const {
  return {{"in_channels", in_channels}, {"image_size", image_size}, {"channels", channels},
          {"feature_dim", feature_dim}, {"num_classes", num_classes}, {"dropout", dropout}};
}

ClassifierConfig ClassifierConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("classifier config: expected a JSON object, got " + j.dump());
  static const std::set<std::string> known = {"in_channels", "image_size",  "channels",
                                              "feature_dim", "num_classes", "dropout"};
  for (const auto& item : j.items())
    if (known.count(item.key()) == 0) throw std::invalid_argument("classifier config: unknown field '" + item.key() + "'");
  auto field = [&](const char* name) -> const nlohmann::json& {
    if (!j.contains(name)) throw std::invalid_argument(std::string("classifier config: missing field '") + name + "'");
    return j.at(name);
  };
  auto as_integer = [](const nlohmann::json& v, const std::string& name) {
    if (!v.is_number_integer())
      throw std::invalid_argument("classifier config: field '" + name + "' must be an integer, got " + v.dump());
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      throw std::invalid_argument("classifier config: field '" + name + "' is too large");
    return v.get<int64_t>();
  };
  ClassifierConfig c;
  c.in_channels = as_integer(field("in_channels"), "in_channels");
  c.image_size = as_integer(field("image_size"), "image_size");
  c.feature_dim = as_integer(field("feature_dim"), "feature_dim");
  c.num_classes = as_integer(field("num_classes"), "num_classes");
  const nlohmann::json& ch = field("channels");
  if (!ch.is_array())
    throw std::invalid_argument("classifier config: field 'channels' must be an array of integers, got " + ch.dump());
  c.channels.clear();
  for (size_t i = 0; i < ch.size(); ++i) c.channels.push_back(as_integer(ch[i], "channels[" + std::to_string(i) + "]"));
  const nlohmann::json& d = field("dropout");
  if (!d.is_number()) throw std::invalid_argument("classifier config: field 'dropout' must be a number, got " + d.dump());
  c.dropout = d.get<double>();
  c.validate();
  return c;
}

// ----------------------------------------------------------------------------------- modules

ConvBlockImpl::ConvBlockImpl(int64_t in, int64_t out) {
  conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1).bias(false)));
  bn = register_module("bn", torch::nn::BatchNorm2d(out));
}

torch::Tensor ConvBlockImpl::forward(const torch::Tensor& x) {
  return torch::max_pool2d(torch::relu(bn->forward(conv->forward(x))), 2);
}

ClassifierImpl::ClassifierImpl(const ClassifierConfig& cfg) : config(cfg) {
  config.validate();
  blocks = register_module("blocks", torch::nn::ModuleList());
  int64_t in = config.in_channels;
  for (int64_t out : config.channels) {
    blocks->push_back(ConvBlock(in, out));
    in = out;
  }
  const int64_t s = config.final_size();
  fc1 = register_module("fc1", torch::nn::Linear(in * s * s, config.feature_dim));
  fc2 = register_module("fc2", torch::nn::Linear(config.feature_dim, config.num_classes));
  drop = register_module("drop", torch::nn::Dropout(config.dropout));
}

torch::Tensor ClassifierImpl::features(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == config.in_channels && x.size(2) == config.image_size &&
                  x.size(3) == config.image_size,
              "classifier: expected input (B, ", config.in_channels, ", ", config.image_size, ", ", config.image_size,
              "), got ", x.sizes());
  torch::Tensor h = x;
  for (const auto& b : *blocks) h = b->as<ConvBlockImpl>()->forward(h);
  return torch::relu(fc1->forward(drop->forward(h.flatten(1))));
}

torch::Tensor ClassifierImpl::logits_from_features(const torch::Tensor& f) { return fc2->forward(drop->forward(f)); }

torch::Tensor ClassifierImpl::forward(const torch::Tensor& x) { return logits_from_features(features(x)); }

// ----------------------------------------------------------------------------------- files

void save_classifier(Classifier& m, const std::string& path, const io::Metadata& extra) {
  save_described(*m, path, "classifier", m->config.to_json(), extra);
}

Classifier load_classifier(const std::string& path, torch::Device device, io::Metadata* metadata) {
  const io::SafetensorsFile f = io::load_safetensors(path);
  Classifier m(read_described_config<ClassifierConfig>(f, path, "classifier"));
  load_state(*m, f.tensors, path);
  m->to(device);
  m->eval();
  if (metadata != nullptr) *metadata = f.metadata;
  return m;
}

}  // namespace arcflow
