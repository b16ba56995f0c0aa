#include "arcflow/training/teacher.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <stdexcept>

#include "arcflow/core/schedule.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/weights.h"

namespace arcflow {

namespace {
void require(bool ok, const std::string& field, const std::string& what) {
  if (!ok) throw std::invalid_argument("teacher config: " + field + " " + what);
}

// The registry entry of `arch` with train-teacher hooks; std::invalid_argument listing those otherwise.
const ModelEntry& trainable_entry(const std::string& arch) {
  std::string names;
  for (const ModelEntry& e : model_registry()) {
    if (e.create_image_teacher == nullptr || e.image_teacher_config == nullptr) continue;
    if (arch == e.kind) return e;
    names += (names.empty() ? "" : ", ") + std::string(e.kind);
  }
  throw std::invalid_argument("teacher config: arch must be one of " + names + ", got '" + arch + "'");
}
}  // namespace

void TeacherTrainConfig::validate() const {
  (void)model_json();  // the architecture is trainable and its config valid
  require(iters >= 1, "iters", "must be >= 1");
  require(batch_size >= 1, "batch_size", "must be >= 1");
  require(std::isfinite(lr) && lr > 0, "lr", "must be > 0");
  require(beta1 >= 0 && beta1 < 1, "beta1", "must be in [0, 1)");
  require(beta2 >= 0 && beta2 < 1, "beta2", "must be in [0, 1)");
  require(weight_decay >= 0, "weight_decay", "must be >= 0");
  require(warmup_iters >= 0, "warmup_iters", "must be >= 0");
  require(std::isfinite(grad_clip), "grad_clip", "must be finite");
  require(ema_decay >= 0 && ema_decay < 1, "ema_decay", "must be in [0, 1)");
  require(class_dropout >= 0 && class_dropout <= 1, "class_dropout", "must be in [0, 1]");
  require(shift >= 1, "shift", "must be >= 1");
  require(max_bad_steps >= 1, "max_bad_steps", "must be >= 1");
}

nlohmann::json TeacherTrainConfig::model_json() const {
  const ModelEntry& e = trainable_entry(arch);
  if (model.is_null()) throw std::invalid_argument("teacher config: model is not set (the " + arch + " config)");
  return e.image_teacher_config(model);
}

nlohmann::json TeacherTrainConfig::to_json() const {
  return {{"arch", arch},               {"model", model_json()},   {"iters", iters},
          {"batch_size", batch_size},   {"lr", lr},
          {"beta1", beta1},             {"beta2", beta2},
          {"weight_decay", weight_decay}, {"warmup_iters", warmup_iters},
          {"grad_clip", grad_clip},     {"ema_decay", ema_decay},
          {"class_dropout", class_dropout}, {"shift", shift},
          {"seed", seed}};
}

TeacherTrainer::TeacherTrainer(TeacherTrainConfig cfg, const torch::Tensor& images, const torch::Tensor& labels,
                               torch::Device device, std::shared_ptr<Communicator> comm)
    : cfg_(std::move(cfg)),
      device_(device),
      comm_(std::move(comm)),
      gen_(at::detail::createCPUGenerator(stream_seed(cfg_.seed, comm_ ? comm_->rank() : 0))) {
  cfg_.validate();
  if (images.dim() != 4 || images.size(0) == 0)
    throw std::invalid_argument("teacher training: images must be (N >= 1, C, H, W), got " + c10::str(images.sizes()));
  const ModelEntry& entry = trainable_entry(cfg_.arch);
  const std::vector<int64_t> image_shape = {images.size(1), images.size(2), images.size(3)};
  // Initialised from the global seed, so the weights are reproducible: the network, then its EMA copy.
  torch::manual_seed(cfg_.seed);
  model_ = entry.create_image_teacher(cfg_.model, image_shape);
  ema_ = entry.create_image_teacher(cfg_.model, image_shape);
  if (labels.dim() != 1 || labels.size(0) != images.size(0) || labels.scalar_type() != torch::kInt64)
    throw std::invalid_argument("teacher training: labels must be (N) int64 matching the images");
  const int64_t classes = model_->num_classes();
  if (labels.min().item<int64_t>() < 0 || labels.max().item<int64_t>() >= classes)
    throw std::invalid_argument("teacher training: labels must be in 0.." + std::to_string(classes - 1));
  images_ = images.to(device_, torch::kFloat32).contiguous();
  labels_ = labels.to(device_);

  model_->module().to(device_);
  ema_->module().to(device_);
  ema_->module().eval();
  params_ = model_->module().parameters();
  ema_params_ = ema_->module().parameters();
  {
    torch::NoGradGuard g;
    for (size_t i = 0; i < params_.size(); ++i) ema_params_[i].copy_(params_[i]);
  }
  for (auto& p : ema_params_) p.set_requires_grad(false);
  opt_ = std::make_unique<torch::optim::AdamW>(
      params_, torch::optim::AdamWOptions(cfg_.lr)
                   .betas({cfg_.beta1, cfg_.beta2})
                   .weight_decay(cfg_.weight_decay)
                   .eps(1e-8));
}

double TeacherTrainer::lr_at(int64_t step) const {
  if (cfg_.warmup_iters > 0 && step <= cfg_.warmup_iters)
    return cfg_.lr * static_cast<double>(step) / static_cast<double>(cfg_.warmup_iters);
  return cfg_.lr;
}

TeacherStepStats TeacherTrainer::step() {
  const int64_t B = cfg_.batch_size;
  TeacherStepStats st;
  st.step = step_ + 1;
  st.lr = lr_at(st.step);

  // All random draws on the CPU generator (device-independent), in a fixed order.
  const torch::Tensor idx = torch::randint(images_.size(0), {B}, gen_, torch::kLong);
  const torch::Tensor eps =
      torch::randn({B, images_.size(1), images_.size(2), images_.size(3)}, gen_, torch::kFloat32).to(device_);
  const torch::Tensor tau = torch::rand({B}, gen_, torch::kFloat32);
  const torch::Tensor drop = torch::rand({B}, gen_, torch::kFloat32) < cfg_.class_dropout;

  const torch::Tensor idx_d = idx.to(device_);
  const torch::Tensor x0 = images_.index_select(0, idx_d);
  torch::Tensor y = labels_.index_select(0, idx_d);
  y = torch::where(drop.to(device_), torch::full_like(y, model_->num_classes()), y);  // the null class
  const torch::Tensor sigma = warp(tau, cfg_.shift).to(device_);
  const torch::Tensor s4 = sigma.view({B, 1, 1, 1});
  const torch::Tensor x = (1 - s4) * x0 + s4 * eps;
  const torch::Tensor target = eps - x0;

  model_->module().train();
  const torch::Tensor loss = (model_->velocity(x, sigma, Condition::labels(y)) - target).pow(2).mean();
  opt_->zero_grad();
  loss.backward();
  st.loss = loss.item<double>();
  if (comm_ && comm_->world_size() > 1)  // data parallel: the mean gradient and loss of all ranks
    st.loss = average_gradients(*comm_, params_,
                                torch::full({1}, st.loss, torch::TensorOptions().dtype(torch::kFloat64).device(device_)),
                                !std::isfinite(st.loss))
                  .item<double>();
  double norm = 0.0;
  if (cfg_.grad_clip > 0) {
    norm = static_cast<double>(torch::nn::utils::clip_grad_norm_(params_, cfg_.grad_clip));
  } else {
    torch::NoGradGuard g;
    torch::Tensor total = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
    for (auto& p : params_)
      if (p.grad().defined()) total += p.grad().pow(2).sum().to(torch::kFloat64);
    norm = std::sqrt(total.item<double>());
  }
  st.grad_norm = norm;
  step_ = st.step;
  if (!std::isfinite(st.loss) || !std::isfinite(norm)) {
    st.skipped = true;
    ++skipped_;
    if (++bad_in_a_row_ >= cfg_.max_bad_steps)
      throw std::runtime_error("teacher training: " + std::to_string(bad_in_a_row_) +
                               " non-finite losses or gradients in a row (last at step " + std::to_string(step_) +
                               "); lower the learning rate or resume from the last checkpoint");
    opt_->zero_grad();
    return st;
  }
  bad_in_a_row_ = 0;
  for (auto& group : opt_->param_groups())
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(st.lr);
  opt_->step();
  update_ema();
  return st;
}

// beta_t = min(decay, (1 + t) / (10 + t)): early on the EMA follows the weights closely, so short
// runs still get a useful average; later it averages over ~1 / (1 - decay) steps.
void TeacherTrainer::update_ema() {
  const double t = static_cast<double>(step_);
  const double beta = std::min(cfg_.ema_decay, (1.0 + t) / (10.0 + t));
  torch::NoGradGuard g;
  for (size_t i = 0; i < params_.size(); ++i) ema_params_[i].mul_(beta).add_(params_[i].detach(), 1.0 - beta);
}

Checkpoint TeacherTrainer::checkpoint() {
  Checkpoint c;
  c.model = state_dict(model_->module());
  c.ema = state_dict(ema_->module());
  c.optimizer = serialize_optimizer(*opt_);
  const std::vector<torch::Tensor> states = gather_states(comm_.get(), gen_.get_state());
  for (size_t r = 0; r < states.size(); ++r) c.extra["rng." + std::to_string(r)] = states[r];
  c.rng_state = states[0];
  c.step = step_;
  c.metadata["world_size"] = std::to_string(states.size());
  c.metadata["config"] = cfg_.to_json().dump();
  c.metadata["kind"] = "teacher";
  c.metadata["skipped_steps"] = std::to_string(skipped_);
  return c;
}

void TeacherTrainer::restore(const Checkpoint& ckpt, const std::string& source) {
  if (ckpt.metadata.count("kind") == 0 || ckpt.metadata.at("kind") != "teacher")
    throw std::runtime_error(source + ": not a teacher-training checkpoint");
  nlohmann::json saved_cfg, wanted = cfg_.model_json();
  std::string saved_arch;
  try {
    const nlohmann::json j = nlohmann::json::parse(ckpt.metadata.at("config"));
    saved_arch = j.value("arch", std::string("dit"));  // written before "arch" existed: a DiT
    saved_cfg = j.at("model");
    if (saved_arch == cfg_.arch) saved_cfg = trainable_entry(saved_arch).image_teacher_config(saved_cfg);
  } catch (const std::exception& e) {
    throw std::runtime_error(source + ": unreadable config metadata: " + e.what());
  }
  if (saved_arch != cfg_.arch)
    throw std::runtime_error(source + ": the checkpoint trains a '" + saved_arch + "' model, not '" + cfg_.arch + "'");
  if (saved_cfg != wanted)
    throw std::runtime_error(source + ": the checkpoint's model config " + saved_cfg.dump() +
                             " differs from the requested one " + wanted.dump());
  load_state(model_->module(), ckpt.model, source);
  load_state(ema_->module(), ckpt.ema, source);
  if (ckpt.optimizer.empty()) throw std::runtime_error(source + ": checkpoint has no optimizer state");
  deserialize_optimizer(*opt_, ckpt.optimizer, source, device_);
  if (!ckpt.rng_state.defined()) throw std::runtime_error(source + ": checkpoint has no generator state");
  const int world = comm_ ? comm_->world_size() : 1, rank = comm_ ? comm_->rank() : 0;
  const int saved_world = ckpt.metadata.count("world_size") ? std::stoi(ckpt.metadata.at("world_size")) : 1;
  if (saved_world != world)
    throw std::runtime_error(source + ": written by " + std::to_string(saved_world) +
                             " process(es); resume with the same world size (now " + std::to_string(world) + ")");
  const auto mine = ckpt.extra.find("rng." + std::to_string(rank));
  gen_.set_state(mine != ckpt.extra.end() ? mine->second : ckpt.rng_state);
  step_ = ckpt.step;
  skipped_ = ckpt.metadata.count("skipped_steps") ? std::stoll(ckpt.metadata.at("skipped_steps")) : 0;
  bad_in_a_row_ = 0;
}

}  // namespace arcflow
