#include "arcflow/models/lora.h"

#include "arcflow/models/param_init.h"

#include <cmath>
#include <stdexcept>

namespace arcflow {

LoRALinearImpl::LoRALinearImpl(int64_t in, int64_t out, bool with_bias) : in_features(in), out_features(out) {
  // torch::nn::Linear's default initialisation (kaiming-uniform weight, uniform bias), unless the
  // weights are about to be read (ParamInitGuard: allocated on its device, left uninitialised).
  const torch::TensorOptions opts = ParamInitGuard::options();
  weight = register_parameter("weight", torch::empty({out, in}, opts));
  if (!ParamInitGuard::active()) torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (with_bias) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    torch::Tensor b = torch::empty({out}, opts);
    if (!ParamInitGuard::active()) b.uniform_(-bound, bound);
    bias = register_parameter("bias", b);
  }
}

torch::Tensor LoRALinearImpl::forward(const torch::Tensor& x) {
  // A float32 layer inside a half-precision network (a trained norm_out) computes in float32 and
  // answers in the input's dtype.
  if (x.scalar_type() != weight.scalar_type())
    return forward(x.to(weight.scalar_type())).to(x.scalar_type());
  torch::Tensor y = torch::nn::functional::linear(x, weight, bias);
  if (has_lora() && !fused_) {
    const torch::ScalarType t = lora_A->weight.scalar_type();
    y = y + (lora_B(lora_A(lora_dropout(x.to(t)))) * scale_).to(y.scalar_type());
  }
  return y;
}

void LoRALinearImpl::enable_lora(int rank, double alpha, double dropout) {
  if (rank < 1) throw std::invalid_argument("LoRA rank must be >= 1");
  if (has_lora()) throw std::logic_error("LoRA already enabled on this layer");
  scale_ = alpha / rank;
  const auto opts = weight.options();
  lora_A = register_module("lora_A", torch::nn::Linear(torch::nn::LinearOptions(in_features, rank).bias(false)));
  lora_B = register_module("lora_B", torch::nn::Linear(torch::nn::LinearOptions(rank, out_features).bias(false)));
  lora_dropout = register_module("lora_dropout", torch::nn::Dropout(dropout));
  torch::NoGradGuard no_grad;
  lora_A->weight.normal_(0.0, 1.0 / rank);
  lora_B->weight.zero_();
  // Trainable weights stay float32 over a half-precision (BF16/F16) frozen base.
  const torch::ScalarType base = opts.dtype().toScalarType();
  const torch::ScalarType train = base == torch::kBFloat16 || base == torch::kHalf ? torch::kFloat32 : base;
  lora_A->to(opts.device(), train);
  lora_B->to(opts.device(), train);
  weight.set_requires_grad(false);
  if (bias.defined()) bias.set_requires_grad(false);
}

void LoRALinearImpl::fuse() {
  if (!has_lora() || fused_) return;
  torch::NoGradGuard no_grad;
  const torch::Tensor delta = torch::mm(lora_B->weight, lora_A->weight);
  if (delta.scalar_type() == weight.scalar_type()) weight.add_(delta, scale_);
  else weight.add_((delta * scale_).to(weight.scalar_type()));  // float32 adapter over a half base
  fused_ = true;
}

void LoRALinearImpl::unfuse() {
  if (!has_lora() || !fused_) return;
  torch::NoGradGuard no_grad;
  const torch::Tensor delta = torch::mm(lora_B->weight, lora_A->weight);
  if (delta.scalar_type() == weight.scalar_type()) weight.sub_(delta, scale_);
  else weight.sub_((delta * scale_).to(weight.scalar_type()));
  fused_ = false;
}

bool glob_match(const std::string& pattern, const std::string& name) {
  // Iterative wildcard match with backtracking to the last '*'.
  size_t p = 0, n = 0, star = std::string::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (p < pattern.size() && pattern[p] == name[n]) {
      ++p;
      ++n;
    } else if (star != std::string::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::vector<std::string> apply_lora(torch::nn::Module& root, const LoRAConfig& cfg) {
  std::vector<std::string> adapted;
  for (const auto& pattern : cfg.targets) {
    bool matched = false;
    for (const auto& item : root.named_modules("", /*include_self=*/false)) {
      auto* layer = dynamic_cast<LoRALinearImpl*>(item.value().get());
      if (layer == nullptr || !glob_match(pattern, item.key())) continue;
      matched = true;
      if (layer->has_lora()) continue;
      layer->enable_lora(cfg.rank, cfg.alpha, cfg.dropout);
      adapted.push_back(item.key());
    }
    if (!matched) throw std::invalid_argument("LoRA target pattern '" + pattern + "' matches no Linear layer");
  }
  return adapted;
}

namespace {
template <typename F>
void for_each_lora(torch::nn::Module& root, F f) {
  for (const auto& m : root.modules(/*include_self=*/true))
    if (auto* layer = dynamic_cast<LoRALinearImpl*>(m.get()); layer != nullptr && layer->has_lora()) f(*layer);
}
}  // namespace

std::vector<torch::Tensor> lora_parameters(torch::nn::Module& root) {
  std::vector<torch::Tensor> out;
  for_each_lora(root, [&](LoRALinearImpl& l) {
    out.push_back(l.lora_A->weight);
    out.push_back(l.lora_B->weight);
  });
  return out;
}

void fuse_lora(torch::nn::Module& root) {
  for_each_lora(root, [](LoRALinearImpl& l) { l.fuse(); });
}
void unfuse_lora(torch::nn::Module& root) {
  for_each_lora(root, [](LoRALinearImpl& l) { l.unfuse(); });
}

void copy_state(torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  auto dst_params = to.named_parameters(true);
  auto dst_buffers = to.named_buffers(true);
  auto copy = [](const std::string& name, const torch::Tensor& src, torch::Tensor* dst) {
    if (dst == nullptr) throw std::invalid_argument("copy_state: destination has no tensor '" + name + "'");
    if (dst->sizes() != src.sizes())
      throw std::invalid_argument("copy_state: tensor '" + name + "' has shape " + std::string(c10::str(src.sizes())) +
                                  ", destination expects " + std::string(c10::str(dst->sizes())));
    dst->copy_(src);
  };
  for (const auto& p : from.named_parameters(true)) copy(p.key(), p.value(), dst_params.find(p.key()));
  for (const auto& b : from.named_buffers(true)) copy(b.key(), b.value(), dst_buffers.find(b.key()));
}

void freeze(torch::nn::Module& m) {
  for (auto& p : m.parameters(true)) p.set_requires_grad(false);
}

}  // namespace arcflow
