// Flow-matching training of a class-conditional image teacher (ARCFLOW.md section 5) of any
// architecture the registry can create for training (models/registry.h: the DiT, or a FLUX
// transformer whose class "prompts" are fixed embeddings, models/flux/flux_network.h):
//   x0 ~ data, eps ~ N(0, I), tau ~ U(0, 1), sigma = warp(tau, shift),
//   x = (1 - sigma) x0 + sigma eps,  loss = mean((model(x, sigma, y') - (eps - x0))^2),
// where y' is the class label, replaced by the null class with probability class_dropout (so the
// model also learns the unconditional velocity that classifier-free guidance needs).
// AdamW with linear warm-up, gradient-norm clipping, EMA weights.
//
// Reproducible by construction: every random draw (batch indices, noise, tau, class dropout) comes
// from one CPU generator seeded by `seed`, then moves to the device, so a run gives the same
// batches on every device, and a checkpoint (weights, EMA, optimizer moments, generator state,
// step) resumes with exactly the losses an uninterrupted run would have had.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>

#include "arcflow/models/network.h"
#include "arcflow/training/checkpoint.h"
#include "arcflow/training/communicator.h"

namespace arcflow {

struct TeacherTrainConfig {
  // The architecture, a registry kind with train-teacher hooks (models/registry.h: "dit", "flux"),
  // and its config JSON (a DiTConfig or a FluxTeacherModel converts to one).
  std::string arch = "dit";
  nlohmann::json model;
  int64_t iters = 6000;        // total optimizer steps
  int64_t batch_size = 64;
  double lr = 3e-4;
  double beta1 = 0.9, beta2 = 0.999, weight_decay = 0.0;
  int64_t warmup_iters = 200;  // linear warm-up from lr / warmup_iters to lr
  double grad_clip = 1.0;      // max gradient norm (<= 0: no clipping)
  double ema_decay = 0.999;    // EMA beta_t = min(ema_decay, (1 + t) / (10 + t))
  double class_dropout = 0.1;  // probability of training on the null class
  double shift = 1.0;          // sigma = warp(tau, shift) for the training noise levels
  uint64_t seed = 0;
  int max_bad_steps = 20;      // consecutive non-finite losses/gradients before giving up

  // Throws std::invalid_argument naming the field.
  void validate() const;
  nlohmann::json to_json() const;
  nlohmann::json model_json() const;  // `model` with every field filled in (the registry's hook)
};

struct TeacherStepStats {
  int64_t step = 0;        // 1-based index of the step just done
  double loss = 0.0;
  double grad_norm = 0.0;  // before clipping
  double lr = 0.0;
  bool skipped = false;    // non-finite loss or gradient: no update
};

class TeacherTrainer {
 public:
  // images: (N, C, H, W) float in [-1, 1]; labels: (N) int64 in 0..num_classes-1. Both are moved to
  // `device` once. Throws std::invalid_argument when they do not fit the model.
  // With a communicator of world size > 1 the trainer is one data-parallel rank: it draws its own
  // batches (random stream `rank`), averages gradients and losses over the ranks before each
  // update, and checkpoint() / restore() are collective.
  TeacherTrainer(TeacherTrainConfig cfg, const torch::Tensor& images, const torch::Tensor& labels,
                 torch::Device device, std::shared_ptr<Communicator> comm = nullptr);

  // One optimizer step. Throws std::runtime_error after max_bad_steps non-finite steps in a row.
  TeacherStepStats step();

  int64_t steps_done() const { return step_; }
  int64_t skipped_steps() const { return skipped_; }
  const TeacherTrainConfig& config() const { return cfg_; }
  // The network trained, and its EMA (what `arcflow train-teacher` saves as the teacher).
  const NetworkPtr& model() const { return model_; }
  const NetworkPtr& ema() const { return ema_; }

  // Everything needed to continue (metadata: "config" = cfg.to_json(), "kind" = "teacher").
  Checkpoint checkpoint();
  // Restores a checkpoint() of a run with the same model config (else std::runtime_error naming
  // `source`). Training hyperparameters are this trainer's.
  void restore(const Checkpoint& ckpt, const std::string& source);

 private:
  double lr_at(int64_t step) const;
  void update_ema();

  TeacherTrainConfig cfg_;
  torch::Device device_;
  torch::Tensor images_, labels_;
  NetworkPtr model_, ema_;
  std::vector<torch::Tensor> params_, ema_params_;
  std::unique_ptr<torch::optim::AdamW> opt_;
  std::shared_ptr<Communicator> comm_;
  at::Generator gen_;
  int64_t step_ = 0, skipped_ = 0, bad_in_a_row_ = 0;
};

}  // namespace arcflow
