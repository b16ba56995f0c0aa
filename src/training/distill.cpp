#include "arcflow/training/distill.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "arcflow/core/schedule.h"
#include "arcflow/core/step_loop.h"

namespace arcflow {

namespace {

std::vector<int64_t> batch_shape(int64_t b, const std::vector<int64_t>& sample_shape) {
  std::vector<int64_t> s{b};
  s.insert(s.end(), sample_shape.begin(), sample_shape.end());
  return s;
}

// Splits `total` (B) at n sorted uniform points per sample into n + 1 intervals, (B, n + 1).
torch::Tensor random_intervals(int64_t batch, int64_t n, const torch::Tensor& total, at::Generator& gen) {
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor points = std::get<0>(torch::sort(torch::rand({batch, n}, gen, f64), 1));
  torch::Tensor edges = torch::cat({torch::zeros({batch, 1}, f64), points, torch::ones({batch, 1}, f64)}, 1);
  return (edges.narrow(1, 1, n + 1) - edges.narrow(1, 0, n + 1)) * total.reshape({batch, 1});
}

}  // namespace

Distiller::Distiller(DistillProblem problem, DistillConfig cfg, std::shared_ptr<Communicator> comm)
    : problem_(std::move(problem)), cfg_(cfg), comm_(std::move(comm)) {
  if (cfg_.nfe < 1) throw std::invalid_argument("nfe must be >= 1");
  if (cfg_.num_intermediate_states < 1) throw std::invalid_argument("num_intermediate_states must be >= 1");
  if (cfg_.total_substeps < 1 || cfg_.window_substeps < 0) throw std::invalid_argument("bad substep counts");
  if (cfg_.batch_size < 1) throw std::invalid_argument("batch size must be >= 1");
  if (cfg_.max_bad_steps < 1) throw std::invalid_argument("max_bad_steps must be >= 1");
  if (cfg_.micro_batches < 1 || cfg_.batch_size % cfg_.micro_batches != 0)
    throw std::invalid_argument("micro_batches (" + std::to_string(cfg_.micro_batches) +
                                ") must be >= 1 and divide the batch size (" + std::to_string(cfg_.batch_size) + ")");
  for (int j = 0; j < cfg_.micro_batches; ++j)
    gens_.push_back(at::detail::createCPUGenerator(stream_seed(cfg_.seed, int64_t{rank()} * cfg_.micro_batches + j)));
  using torch::optim::AdamWOptions;
  auto opts = [&](double lr) {
    return std::make_unique<AdamWOptions>(
        AdamWOptions(lr).betas({cfg_.beta1, cfg_.beta2}).weight_decay(cfg_.weight_decay));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(problem_.params, opts(cfg_.lr));
  if (!problem_.log_gamma_params.empty())
    groups.emplace_back(problem_.log_gamma_params, opts(cfg_.lr * cfg_.log_gamma_lr_mult));
  optimizer_ = std::make_unique<torch::optim::AdamW>(groups, *opts(cfg_.lr));
  all_params_ = problem_.params;
  all_params_.insert(all_params_.end(), problem_.log_gamma_params.begin(), problem_.log_gamma_params.end());
  for (const auto& p : all_params_) ema_.push_back(p.detach().clone());
}

double Distiller::teacher_ratio() const {
  if (cfg_.num_decay_iters <= 0) return 0.0;
  return std::max(0.0, 1.0 - static_cast<double>(iteration_) / cfg_.num_decay_iters);
}

double Distiller::lr_at(int iteration) const {
  if (cfg_.warmup_iters <= 0) return cfg_.lr;
  return cfg_.lr * std::min(1.0, static_cast<double>(iteration) / cfg_.warmup_iters);
}

std::vector<double> Distiller::micro_batch(int64_t B, at::Generator& gen, double teacher_ratio, double weight) {
  const int64_t M = cfg_.num_intermediate_states;
  const auto dev = problem_.device;
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  std::vector<double> losses;

  Condition cond = problem_.sample_conditions ? problem_.sample_conditions(B, gen) : Condition();
  cond = cond.to(dev);
  // Noise is drawn on the CPU so that a seed gives the same samples on every device.
  const torch::Tensor noise = torch::randn(batch_shape(B, problem_.sample_shape), gen).to(dev);
  const auto dtype = noise.scalar_type();
  auto sig = [&](const torch::Tensor& tau) { return warp(tau, cfg_.shift).to(dev, dtype); };
  const double substep = 1.0 / cfg_.total_substeps;

  // One student step (steps 2-5): the walk inside the segment, the step's loss and its backward
  // pass; returns the state at the segment's end, where the next student step starts.
  const StepAdvance walk = [&](const PolicyPtr& P, const torch::Tensor& x_src, const StepContext& ctx) {
    const Segment& seg = ctx.segment;
    const double L = seg.length();
    const double W = std::min(cfg_.window_substeps * substep, L);
    const PolicyPtr Pd = P->detached()->dropout(cfg_.component_dropout, gen);

    // Step 3: the walk's student and teacher intervals inside the segment (raw time).
    const torch::Tensor span = torch::full({B}, L - W, f64);
    const torch::Tensor student_iv = random_intervals(B, M, span * (1.0 - teacher_ratio), gen);
    const torch::Tensor teacher_iv = random_intervals(B, M - 1, span * teacher_ratio, gen);

    // Step 4: walk M states; collect the student's predictions and the teacher's velocities.
    torch::Tensor x = x_src;
    torch::Tensor tau = torch::full({B}, seg.tau_src, f64);
    torch::Tensor loss = torch::zeros({}, x.options());
    for (int64_t j = 0; j < M; ++j) {
      const torch::Tensor tau_a = tau - student_iv.select(1, j);
      const torch::Tensor sigma_a = sig(tau_a);
      const torch::Tensor x_a = Pd->integrate(x, sig(tau), sigma_a);
      torch::Tensor u_t;
      {
        torch::NoGradGuard no_grad;
        u_t = problem_.teacher(x_a, sigma_a, cond);
      }
      const torch::Tensor tau_b = tau_a - teacher_iv.select(1, j);
      // Mean velocity over [tau_a, tau_b - W], or the instantaneous one when that is < 2 substeps
      // (closed form for the momentum mixture, a differentiated Euler rollout for GMFlow).
      torch::Tensor span_end = tau_b - W;
      span_end = torch::where(tau_a - span_end < 2.0 * substep, tau_a, span_end);
      const torch::Tensor pred = P->imitation_velocity(x_a, sigma_a, sig(span_end));
      loss = loss + (pred - u_t).pow(2).mean();
      // Move by the teacher interval with one Euler step of the teacher velocity.
      const torch::Tensor sigma_b = sig(tau_b);
      x = x_a - broadcast_sigma(sigma_a - sigma_b, x_a.dim()) * u_t;
      tau = tau_b;
    }
    // Step 5: loss for this student step; no gradient flows between steps.
    loss = loss * (0.5 * cfg_.loss_scale * L / static_cast<double>(M));
    const double value = loss.item<double>();
    losses.push_back(value);
    if (std::isfinite(value)) (loss * weight).backward();
    return Pd->integrate(x, sig(tau), ctx.sigma_dst).detach();
  };
  const PolicyFn student = [&](const torch::Tensor& x, const torch::Tensor& sigma) {
    return problem_.student(x, sigma, cond);
  };
  run_steps(student, noise, cfg_.segments(), {}, nullptr, walk);
  return losses;
}

DistillStats Distiller::step() {
  const int it = iteration_ + 1;
  DistillStats stats;
  stats.iteration = it;
  stats.teacher_ratio = teacher_ratio();
  stats.lr = lr_at(it);
  const int64_t micro = cfg_.micro_batches;

  optimizer_->zero_grad();
  stats.step_losses.assign(cfg_.nfe, 0.0);
  for (int64_t j = 0; j < micro; ++j) {
    const std::vector<double> l = micro_batch(cfg_.batch_size / micro, gens_[j], stats.teacher_ratio, 1.0 / micro);
    for (size_t k = 0; k < l.size(); ++k) {
      stats.step_losses[k] += l[k] / static_cast<double>(micro);
      if (!std::isfinite(l[k])) stats.skipped = true;
    }
  }
  if (world_size() > 1) {
    // Average gradients and losses over the ranks. A rank that skipped sends NaN gradients, so
    // every rank sees a non-finite norm below and skips the same update.
    const torch::Tensor l = average_gradients(*comm_, all_params_,
                                              torch::tensor(stats.step_losses, torch::kFloat64).to(problem_.device),
                                              stats.skipped)
                                .cpu();
    for (size_t k = 0; k < stats.step_losses.size(); ++k) stats.step_losses[k] = l[k].item<double>();
  }
  for (double l : stats.step_losses) stats.loss += l;

  // Step 6: one optimizer step for all student steps; skip it on a non-finite loss or gradient.
  for (auto& g : optimizer_->param_groups()) {
    auto& o = static_cast<torch::optim::AdamWOptions&>(g.options());
    o.lr(&g == &optimizer_->param_groups().front() ? stats.lr : stats.lr * cfg_.log_gamma_lr_mult);
  }
  // Before grad_clip_start the norm is measured but nothing is clipped.
  const double clip = it >= cfg_.grad_clip_start ? cfg_.grad_clip : std::numeric_limits<double>::infinity();
  stats.grad_norm = torch::nn::utils::clip_grad_norm_(all_params_, clip);
  if (!std::isfinite(stats.grad_norm)) stats.skipped = true;
  if (stats.skipped) {
    ++skipped_;
    optimizer_->zero_grad();
    if (++bad_in_a_row_ >= cfg_.max_bad_steps)
      throw std::runtime_error("distillation: " + std::to_string(bad_in_a_row_) +
                               " non-finite losses or gradients in a row (last at iteration " + std::to_string(it) +
                               "); lower the learning rate or resume from the last checkpoint");
  } else {
    bad_in_a_row_ = 0;
    optimizer_->step();
  }
  iteration_ = it;
  update_ema();
  return stats;
}

void Distiller::update_ema() {
  torch::NoGradGuard no_grad;
  // beta_t = (1 - 1/t)^(gamma + 1) from iteration ema_start on; before it the EMA tracks the weights.
  const double t = cfg_.ema_clock_from_start ? iteration_ + 1.0 - cfg_.ema_start : static_cast<double>(iteration_);
  const double beta = iteration_ < cfg_.ema_start || t < 1.0 ? 0.0 : std::pow(1.0 - 1.0 / t, cfg_.ema_gamma + 1.0);
  for (size_t i = 0; i < all_params_.size(); ++i) ema_[i].mul_(beta).add_(all_params_[i].detach(), 1.0 - beta);
}

Checkpoint Distiller::checkpoint() {
  Checkpoint c;
  for (size_t i = 0; i < all_params_.size(); ++i) {
    c.model["param." + std::to_string(i)] = all_params_[i].detach().to(torch::kCPU, false, true);
    c.ema["param." + std::to_string(i)] = ema_[i].to(torch::kCPU, false, true);
  }
  c.optimizer = serialize_optimizer(*optimizer_);
  // Random streams and global generators of every rank (gathered: the states differ by rank).
  std::vector<torch::Tensor> mine;
  for (auto& g : gens_) mine.push_back(g.get_state());
  at::Generator global = at::detail::getDefaultCPUGenerator();
  mine.push_back(global.get_state());
  const torch::Tensor local = torch::stack(mine);  // (micro + 1, state bytes), uint8
  const std::vector<torch::Tensor> all = gather_states(comm_.get(), local);
  for (size_t r = 0; r < all.size(); ++r) {
    for (int j = 0; j < cfg_.micro_batches; ++j)
      c.extra["rng." + std::to_string(r * cfg_.micro_batches + j)] = all[r][j].clone();
    c.extra["global_rng." + std::to_string(r)] = all[r][cfg_.micro_batches].clone();
  }
  c.rng_state = c.extra.at("rng.0");
  c.extra["global_rng"] = c.extra.at("global_rng.0");  // the single-process name of earlier versions
  c.step = iteration_;
  c.metadata["skipped_steps"] = std::to_string(skipped_);
  c.metadata["world_size"] = std::to_string(world_size());
  c.metadata["micro_batches"] = std::to_string(cfg_.micro_batches);
  // The recipe rules a resume must keep (files without them: clip from 1, EMA clock t = iteration).
  c.metadata["grad_clip_start"] = std::to_string(cfg_.grad_clip_start);
  c.metadata["ema_clock"] = cfg_.ema_clock_from_start ? "from_start" : "iteration";
  return c;
}

void Distiller::restore(const Checkpoint& ckpt, const std::string& source) {
  const auto take = [&](const io::TensorMap& m, size_t i, const char* part) {
    const auto it = m.find("param." + std::to_string(i));
    if (it == m.end()) throw std::runtime_error(source + ": checkpoint lacks " + part + " tensor param." + std::to_string(i));
    if (it->second.sizes() != all_params_[i].sizes())
      throw std::runtime_error(source + ": " + part + " tensor param." + std::to_string(i) + " has shape " +
                               c10::str(it->second.sizes()) + ", the student expects " + c10::str(all_params_[i].sizes()));
    return it->second;
  };
  if (ckpt.model.size() != all_params_.size() || ckpt.ema.size() != all_params_.size())
    throw std::runtime_error(source + ": checkpoint holds " + std::to_string(ckpt.model.size()) +
                             " trainable tensors, this student has " + std::to_string(all_params_.size()));
  if (ckpt.optimizer.empty() || !ckpt.rng_state.defined())
    throw std::runtime_error(source + ": checkpoint lacks the optimizer or generator state");
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < all_params_.size(); ++i) {
      all_params_[i].copy_(take(ckpt.model, i, "model"));
      ema_[i].copy_(take(ckpt.ema, i, "ema"));
    }
  }
  deserialize_optimizer(*optimizer_, ckpt.optimizer, source, problem_.device);
  // Files from before data parallelism hold one stream and no sizes: world 1, 1 micro-batch.
  const auto number = [&](const char* key) {
    return ckpt.metadata.count(key) ? std::stoi(ckpt.metadata.at(key)) : 1;
  };
  if (number("world_size") != world_size() || number("micro_batches") != cfg_.micro_batches)
    throw std::runtime_error(source + ": written by " + std::to_string(number("world_size")) + " process(es) with " +
                             std::to_string(number("micro_batches")) + " micro-batch(es); resume with the same world " +
                             "size and micro-batches (now " + std::to_string(world_size()) + " and " +
                             std::to_string(cfg_.micro_batches) + ")");
  for (int j = 0; j < cfg_.micro_batches; ++j) {
    const std::string key = "rng." + std::to_string(int64_t{rank()} * cfg_.micro_batches + j);
    if (ckpt.extra.count(key)) gens_[j].set_state(ckpt.extra.at(key));
    else if (j == 0 && rank() == 0) gens_[j].set_state(ckpt.rng_state);
    else throw std::runtime_error(source + ": checkpoint lacks the random stream " + key);
  }
  const std::string gkey = "global_rng." + std::to_string(rank());
  const std::string gname = ckpt.extra.count(gkey) ? gkey : (rank() == 0 ? "global_rng" : "");
  if (!gname.empty() && ckpt.extra.count(gname)) {
    at::Generator global = at::detail::getDefaultCPUGenerator();
    global.set_state(ckpt.extra.at(gname));
  }
  iteration_ = static_cast<int>(ckpt.step);
  skipped_ = ckpt.metadata.count("skipped_steps") ? std::stoi(ckpt.metadata.at("skipped_steps")) : 0;
}

void Distiller::recipe_of_checkpoint(const Checkpoint& ckpt, DistillConfig& cfg) {
  const auto it = ckpt.metadata.find("grad_clip_start");
  cfg.grad_clip_start = it == ckpt.metadata.end() ? 1 : std::stoi(it->second);
  const auto clock = ckpt.metadata.find("ema_clock");
  cfg.ema_clock_from_start = clock != ckpt.metadata.end() && clock->second == "from_start";
}

void Distiller::load_ema_into_params() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < all_params_.size(); ++i) all_params_[i].copy_(ema_[i]);
}

DistillProblem make_distill_problem(LoRAStudent student, const NetworkPtr& teacher, double guidance,
                                    const DistillConfig& cfg, torch::Device device) {
  teacher->module().eval();
  freeze(teacher->module());
  student->train();
  student->integration = IntegrationOptions{cfg.shift, cfg.total_substeps};
  auto guided = std::make_shared<GuidedTeacher>(teacher, guidance);
  DistillProblem p;
  p.student = [student](const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) mutable {
    return student->policy(x, sigma, c);
  };
  p.teacher = [guided](const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) {
    return guided->velocity(x, sigma, c);
  };
  p.sample_conditions = [teacher](int64_t batch, at::Generator& gen) { return teacher->random_condition(batch, gen); };
  p.sample_shape = teacher->sample_shape();
  p.params = student->main_parameters();
  p.log_gamma_params = student->log_gamma_parameters();
  p.device = device;
  return p;
}

}  // namespace arcflow
