#include "arcflow/training/checkpoint.h"

#include <cstring>
#include <sstream>
#include <stdexcept>

namespace arcflow {

torch::Tensor bytes_to_tensor(const std::string& bytes) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  if (!bytes.empty()) std::memcpy(t.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  return t;
}

std::string tensor_to_bytes(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kCPU, torch::kUInt8).contiguous();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), static_cast<size_t>(c.numel()));
}

std::string serialize_optimizer(torch::optim::Optimizer& opt) {
  std::ostringstream out;
  torch::save(opt, out);
  return out.str();
}

namespace {
template <typename State>
bool move_moments(torch::optim::OptimizerParamState& base, torch::Device device) {
  auto* st = dynamic_cast<State*>(&base);
  if (st == nullptr) return false;
  st->exp_avg(st->exp_avg().to(device));
  st->exp_avg_sq(st->exp_avg_sq().to(device));
  if (st->max_exp_avg_sq().defined()) st->max_exp_avg_sq(st->max_exp_avg_sq().to(device));
  return true;
}
}  // namespace

void deserialize_optimizer(torch::optim::Optimizer& opt, const std::string& bytes, const std::string& source,
                           torch::Device device) {
  std::istringstream in(bytes);
  try {
    torch::load(opt, in);
  } catch (const c10::Error& e) {
    throw std::runtime_error(source + ": cannot restore the optimizer state: " + e.what_without_backtrace());
  }
  for (auto& kv : opt.state())
    if (!move_moments<torch::optim::AdamWParamState>(*kv.second, device) &&
        !move_moments<torch::optim::AdamParamState>(*kv.second, device))
      throw std::runtime_error(source + ": optimizer state of an unsupported kind (expected Adam or AdamW)");
}

void save_checkpoint(const std::string& path, const Checkpoint& ckpt) {
  io::TensorMap t;
  for (const auto& [k, v] : ckpt.model) t["model/" + k] = v;
  for (const auto& [k, v] : ckpt.ema) t["ema/" + k] = v;
  if (!ckpt.optimizer.empty()) t["optimizer"] = bytes_to_tensor(ckpt.optimizer);
  if (ckpt.rng_state.defined()) t["rng"] = ckpt.rng_state.to(torch::kCPU, torch::kUInt8);
  for (const auto& [k, v] : ckpt.extra) t["extra/" + k] = v;
  io::Metadata meta = ckpt.metadata;
  meta["step"] = std::to_string(ckpt.step);
  meta["format"] = "arcflow-checkpoint-1";
  io::save_safetensors(path, t, meta);
}

Checkpoint load_checkpoint(const std::string& path) {
  io::SafetensorsFile f = io::load_safetensors(path);
  if (f.metadata.count("format") == 0 || f.metadata.at("format") != "arcflow-checkpoint-1" ||
      f.metadata.count("step") == 0)
    throw std::runtime_error(path + ": not an arcflow checkpoint (no format/step metadata)");
  Checkpoint c;
  try {
    c.step = std::stoll(f.metadata.at("step"));
  } catch (const std::exception&) {
    throw std::runtime_error(path + ": checkpoint step '" + f.metadata.at("step") + "' is not a number");
  }
  for (auto& [k, v] : f.tensors) {
    if (k.rfind("model/", 0) == 0) c.model[k.substr(6)] = v;
    else if (k.rfind("ema/", 0) == 0) c.ema[k.substr(4)] = v;
    else if (k.rfind("extra/", 0) == 0) c.extra[k.substr(6)] = v;
    else if (k == "optimizer") c.optimizer = tensor_to_bytes(v);
    else if (k == "rng") c.rng_state = v;
    else throw std::runtime_error(path + ": unexpected tensor '" + k + "' in checkpoint");
  }
  f.metadata.erase("step");
  f.metadata.erase("format");
  c.metadata = std::move(f.metadata);
  return c;
}

}  // namespace arcflow
