// Training the Fashion-MNIST evaluation classifier (arcflow/models/classifier/classifier.h): cross-entropy,
// AdamW with a cosine learning-rate decay, light augmentation (random horizontal flip, random shift
// of up to +-max_shift pixels with background fill), everything drawn from one seeded generator so
// the same seed reproduces the run on the same device and thread count.
#pragma once

#include <torch/torch.h>

#include <string>

#include "arcflow/io/idx.h"
#include "arcflow/models/classifier/classifier.h"

namespace arcflow {

struct ClassifierTrainConfig {
  int epochs = 8;
  int64_t batch_size = 128;
  double lr = 2e-3;            // peak AdamW learning rate (after a short linear warm-up)
  double weight_decay = 5e-4;  // AdamW decoupled weight decay
  double min_lr_ratio = 0.02;  // the cosine decays to lr * min_lr_ratio at the last step
  int64_t warmup_steps = 100;
  int64_t max_shift = 2;       // random shift in pixels, each axis independently
  bool flip = true;            // random horizontal flip with probability 1/2
  uint64_t seed = 0;
  torch::Device device = torch::kCPU;
  bool progress = true;
  int64_t eval_batch = 1000;

  // Throws std::invalid_argument naming the option (with its command-line spelling).
  void validate() const;
};

struct ClassifierTrainResult {
  double test_accuracy = 0;  // on the test set, BN in eval mode
  double train_loss = 0;     // running mean of the last epoch's loss
  double train_accuracy = 0; // running accuracy over the last epoch (augmented, dropout on)
  int64_t steps = 0;
  double seconds = 0;
};

// Augments a batch (B, C, H, W) in [-1, 1]: flips each image horizontally with probability 1/2
// (when `flip`), then shifts it by (dy, dx) uniform in [-max_shift, max_shift], filling uncovered
// pixels with -1 (the black background). Random numbers come from `gen` (CPU); the result is on
// x's device.
torch::Tensor augment_batch(const torch::Tensor& x, int64_t max_shift, bool flip, at::Generator& gen);

// Fraction of `images` (N, C, H, W) that `model` classifies as `labels` (N), in eval mode, batched
// under NoGradGuard. Restores the module's training flag afterwards.
double classifier_accuracy(Classifier& model, const torch::Tensor& images, const torch::Tensor& labels,
                           int64_t batch = 1000);

// Trains `model` (moved to cfg.device) on `train`, evaluates on `test` and returns the result; the
// model is left in eval mode. The model's initial weights are the caller's: seed them with
// torch::manual_seed before constructing it for a reproducible run.
ClassifierTrainResult train_classifier(Classifier& model, const io::FashionMnist& train, const io::FashionMnist& test,
                                       const ClassifierTrainConfig& cfg);

}  // namespace arcflow
