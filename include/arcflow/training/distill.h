// Data-free ArcFlow distillation by trajectory imitation (ARCFLOW.md section 4), written once and
// generic over the model and the policy: the student and the (guided) teacher are callables
// (make_distill_problem builds them for any registered network and any policy head), so the 2-D
// toy and the image DiT use the same code, and the step loop is core/step_loop.h's.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "arcflow/core/policy.h"
#include "arcflow/core/schedule.h"
#include "arcflow/models/condition.h"
#include "arcflow/models/network.h"
#include "arcflow/models/student.h"
#include "arcflow/training/checkpoint.h"
#include "arcflow/training/communicator.h"

namespace arcflow {

// The student's schedule (core/schedule.h: nfe, shift, timestep_ratio, total_substeps) and the recipe.
struct DistillConfig : StepSchedule {
  int batch_size = 16;
  int num_intermediate_states = 4;  // M
  int window_substeps = 3;
  double component_dropout = 0.1;
  int num_decay_iters = 100;        // teacher_ratio goes linearly 1 -> 0 over these iterations
  double loss_scale = 30.0;
  double lr = 1e-4;
  double log_gamma_lr_mult = 0.1;
  double beta1 = 0.9, beta2 = 0.95, weight_decay = 0.0;
  int warmup_iters = 100;
  double grad_clip = 50.0;
  // Gradients are clipped from this iteration on (1-based; before it the learning rate is still
  // warming up and nothing is clipped, as the reference does). 1: from the first iteration, the
  // rule of runs made before this setting existed.
  int grad_clip_start = 100;
  double ema_gamma = 7.0;
  // EMA: before iteration ema_start the EMA copies the weights; from it on it averages with
  // beta_t = (1 - 1/t)^(ema_gamma + 1) on the clock t = iteration + 1 - ema_start (t = 1 at
  // ema_start: a copy). ema_clock_from_start = false keeps the old clock t = iteration (runs
  // made before the clock started at ema_start).
  int ema_start = 100;
  bool ema_clock_from_start = true;
  uint64_t seed = 0;
  // Gradient accumulation: the batch is split into this many micro-batches of batch_size /
  // micro_batches samples (it must divide), each with its own random stream. Data parallelism
  // adds streams: micro-batch j of rank r draws from stream r * micro_batches + j, so 2 ranks x 1
  // micro-batch see exactly the samples of 1 rank x 2 micro-batches and reach the same weights.
  int micro_batches = 1;
  // Consecutive skipped (non-finite) iterations before step() gives up with an error.
  int max_bad_steps = 20;
};

// What the distiller needs to know about a model pair.
struct DistillProblem {
  // Student policy at (x, sigma (B), cond), with gradients.
  std::function<PolicyPtr(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& cond)> student;
  // Teacher velocity at (x, sigma (B), cond), guidance included; called under no-grad.
  std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& cond)> teacher;
  // Conditions for a batch (e.g. class labels) drawn with `gen`; may return an empty condition.
  std::function<Condition(int64_t batch, at::Generator& gen)> sample_conditions;
  std::vector<int64_t> sample_shape;           // per-sample shape of x, e.g. {2} or {1, 28, 28}
  std::vector<torch::Tensor> params;           // trainable, learning rate lr
  std::vector<torch::Tensor> log_gamma_params; // trainable, learning rate lr * log_gamma_lr_mult
  torch::Device device = torch::kCPU;
};

struct DistillStats {
  int iteration = 0;                // 1-based index of the iteration just done
  std::vector<double> step_losses;  // one per student step
  double loss = 0.0;                // sum of step losses
  double teacher_ratio = 0.0;
  double lr = 0.0;
  double grad_norm = 0.0;
  bool skipped = false;             // non-finite loss or gradient: no update was made
};

class Distiller {
 public:
  // With a communicator of world size > 1 the distiller is one data-parallel rank: step() averages
  // the gradients (and the logged losses) over all ranks before the update, so every rank keeps
  // the same weights; checkpoint() and restore() are then collective (every rank calls them).
  Distiller(DistillProblem problem, DistillConfig cfg, std::shared_ptr<Communicator> comm = nullptr);

  // One training iteration (all nfe student steps, then one optimizer step and the EMA update).
  // A non-finite loss or gradient skips the update (counted); max_bad_steps of them in a row
  // throw std::runtime_error (the last checkpoint written stays the last good state).
  DistillStats step();

  int iteration() const { return iteration_; }
  double teacher_ratio() const;  // for the next iteration
  // EMA copies of the trainable tensors (params then log_gamma_params order).
  const std::vector<torch::Tensor>& ema() const { return ema_; }
  // Copies the EMA weights into the live trainable tensors (for evaluation).
  void load_ema_into_params();
  int skipped_steps() const { return skipped_; }

  // Everything needed to continue exactly: trainable tensors ("param.<i>" in model/ and ema/),
  // optimizer moments, every rank's random streams ("rng.<stream>"; stream 0 also as the
  // checkpoint's generator state) and torch's global CPU generator ("global_rng.<rank>", LoRA
  // dropout), iteration, skipped count, world size and micro-batches (resume needs the same). restore() needs a distiller built over the same problem (same
  // tensors in the same order and shapes); errors name `source`.
  Checkpoint checkpoint();
  void restore(const Checkpoint& ckpt, const std::string& source);
  // The recipe rules a checkpoint was written under (grad_clip_start, ema_clock_from_start) set
  // in `cfg`: checkpoints from before these settings existed clip from iteration 1 and run the
  // EMA clock on the iteration. Resume builds its distiller with them so a run continues as it began.
  static void recipe_of_checkpoint(const Checkpoint& ckpt, DistillConfig& cfg);

 private:
  double lr_at(int iteration) const;
  void update_ema();
  // Runs every student step on one micro-batch of B samples drawn from `gen`, accumulating
  // gradients scaled by `weight`; returns the step losses (unscaled); NaN marks a skipped step.
  std::vector<double> micro_batch(int64_t B, at::Generator& gen, double teacher_ratio, double weight);
  int world_size() const { return comm_ ? comm_->world_size() : 1; }
  int rank() const { return comm_ ? comm_->rank() : 0; }

  DistillProblem problem_;
  DistillConfig cfg_;
  std::vector<torch::Tensor> all_params_;
  std::vector<torch::Tensor> ema_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::shared_ptr<Communicator> comm_;
  std::vector<at::Generator> gens_;  // this rank's streams, one per micro-batch
  int iteration_ = 0;
  int skipped_ = 0;
  int bad_in_a_row_ = 0;
};

// The problem for `student` imitating `teacher` with classifier-free guidance `guidance` (1: none):
// any registered network, any policy head. The teacher is put in eval mode and frozen, the student
// in train mode (LoRA dropout on); conditions are the teacher's random_condition() (uniform class
// labels for the DiT, none for the toy). The student's policies integrate with cfg's shift and
// total_substeps (GMFlow's Euler sub-steps).
DistillProblem make_distill_problem(LoRAStudent student, const NetworkPtr& teacher, double guidance,
                                    const DistillConfig& cfg, torch::Device device);

}  // namespace arcflow
