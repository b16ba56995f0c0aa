// The seams between models and everything that uses them (sampling, distillation, evaluation,
// the CLI and the server):
//   Teacher  a velocity model u(x, sigma, condition), with its sample shape and NFE per call;
//   Network  a registered architecture (models/registry.h): a Teacher that can also be trained,
//            copied and given a student head (models/student.h);
//   GuidedTeacher  classifier-free guidance (ARCFLOW.md section 1) around any Network whose
//            conditions have a null value.
// Adding an architecture: a module implementing Network (one header/source pair) and one line in
// src/models/registry.cpp.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "arcflow/io/safetensors.h"
#include "arcflow/models/condition.h"
#include "arcflow/models/lora.h"

namespace arcflow {

class Teacher {
 public:
  virtual ~Teacher() = default;
  // Velocity u = eps - x0 at x (B, ...sample_shape), sigma (B) in [0, 1].
  virtual torch::Tensor velocity(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) = 0;
  // Per-sample shape of x, e.g. {1, 28, 28} or {2}.
  virtual std::vector<int64_t> sample_shape() const = 0;
  // Network evaluations one velocity() call costs per sample (2 for a guided teacher).
  virtual int nfe_per_call() const { return 1; }
  virtual torch::Device device() const = 0;
  // Throws std::invalid_argument naming the problem when `c` is not a valid condition for
  // `batch` samples of this model (wrong keys, sizes or values).
  virtual void check_condition(const Condition& c, int64_t batch) const;
  // The module whose training flag sampling switches off (and restores).
  virtual torch::nn::Module& module() = 0;
};

// What a student head reads from its base network (see models/policy_head.h).
struct HeadInput {
  torch::Tensor tokens;     // (B, N, D): the features the network's output layer reads
  torch::Tensor embedding;  // (B, E): the per-sample conditioning embedding
};

// How the network lays its outputs over the sample, for a head that emits several values per pixel.
struct HeadLayout {
  int64_t feature_dim = 0;  // D
  int64_t embed_dim = 0;    // E
  int64_t pixels = 1;       // pixels per token (p * p for patch size p; 1 for points)
  int64_t channels = 1;     // values per pixel in the sample (C)
  // Head outputs (B, N, K * pixels * per), each token's ordered (k, pixel, value), to
  // (B, K, per, ...spatial): the sample layout with `per` values per pixel.
  std::function<torch::Tensor(const torch::Tensor& tokens, int64_t K, int64_t per)> to_sample;
};

// What a network's guidance input is: none; classifier-free (a null condition: u(x, null) +
// scale * (u(x, c) - u(x, null)), 2 NFE per call); or distilled (a value the network reads
// with its condition, 1 NFE per call, e.g. FLUX.1-dev's guidance embedding).
enum class GuidanceKind { none, classifier_free, distilled };

class Network : public Teacher {
 public:
  // The weights file's "model" metadata, e.g. "dit", "toy_mlp".
  virtual std::string kind() const = 0;
  // The architecture's config as JSON (what its file's "config" metadata holds).
  virtual nlohmann::json config_json() const = 0;
  // Settings of this network beyond the architecture that its weights file keeps (metadata entries
  // next to "model" and "config"; e.g. FLUX's sample size and class prompts). Default: none.
  virtual io::Metadata extra_metadata() const { return {}; }
  // A network of the same architecture with a copy of the weights (on the same device).
  virtual std::shared_ptr<Network> copy_network() = 0;

  // For students: the output layer's input, the output layer, and its layout.
  virtual HeadInput head_input(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) = 0;
  virtual LoRALinear output_layer() = 0;
  virtual HeadLayout head_layout() const = 0;
  // LoRA targets of a default student (glob patterns over module names).
  virtual std::vector<std::string> default_lora_targets() const = 0;
  // The module of the final norm's modulation a student may train (empty: none).
  virtual std::string final_norm_module() const { return ""; }

  // Conditions: the number of classes (0 when not class-conditional), the null condition of `c`
  // for classifier-free guidance (std::invalid_argument when the model has none), and random
  // conditions for data-free distillation (default: uniform labels, or none).
  virtual int64_t num_classes() const { return 0; }
  virtual bool has_null_condition() const { return false; }
  virtual Condition null_condition(const Condition& c) const;
  virtual Condition random_condition(int64_t batch, at::Generator& gen) const;
  // Default: classifier-free with a null condition, else none.
  virtual GuidanceKind guidance_kind() const {
    return has_null_condition() ? GuidanceKind::classifier_free : GuidanceKind::none;
  }

  // Per-block activation checkpointing (recompute each block's activations in backward instead of
  // keeping them). Returns false when asked to switch it on for an architecture without it.
  virtual bool set_block_checkpointing(bool on) { return !on; }

  // Image tokens of one sample: the sequence length a model folder's dynamic shift rule reads
  // (core/schedule.h ShiftRule); 0 for networks that are not token transformers over a latent.
  virtual int64_t image_tokens() const { return 0; }

  // One line for a user: "<name>: <its shape>" (e.g. "DiT: width 64, depth 6, heads 4, patch 2, 196 tokens").
  virtual std::string summary() const { return kind(); }
  // Files a trained teacher's run folder gets beside its weights file, written into `dir`
  // (atomically); e.g. FLUX's class prompts as a prompt-embeddings file. Default: none.
  virtual void save_companions(const std::string& dir) const { (void)dir; }

  // Floating-point operations of one forward pass over `batch` samples (matrix products).
  virtual double forward_flops(int64_t batch) const = 0;
  // A lower bound on the peak memory (bytes) of one forward pass over `batch` samples: the weights
  // plus the largest block's live activations; with `for_backward`, the activations every block
  // keeps for the backward pass too (one block's inputs only where blocks are recomputed).
  // Commands compare it with the machine's memory before they allocate (util/resources.h).
  virtual double forward_memory_bytes(int64_t batch, bool for_backward = false) const = 0;
};

using NetworkPtr = std::shared_ptr<Network>;

// u = u(x, null) + scale * (u(x, c) - u(x, null)). scale 1 (or an empty condition) is one plain
// call, scale 0 one call on the null condition; otherwise ONE batched call on 2B samples
// ([c; null]), which counts as 2 NFE. Throws std::invalid_argument at construction when guidance
// is asked of a network without a null condition.
class GuidedTeacher : public Teacher {
 public:
  GuidedTeacher(NetworkPtr net, double scale);
  torch::Tensor velocity(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) override;
  std::vector<int64_t> sample_shape() const override { return net_->sample_shape(); }
  int nfe_per_call() const override { return batched() ? 2 : 1; }
  torch::Device device() const override { return net_->device(); }
  void check_condition(const Condition& c, int64_t batch) const override { net_->check_condition(c, batch); }
  torch::nn::Module& module() override { return net_->module(); }
  double scale() const { return scale_; }

 private:
  bool batched() const { return scale_ != 0.0 && scale_ != 1.0; }
  NetworkPtr net_;
  double scale_;
};

// Switches a module to eval mode and restores its training flag when destroyed (also when an
// exception unwinds).
class EvalModeGuard {
 public:
  explicit EvalModeGuard(torch::nn::Module& m) : m_(m), was_training_(m.is_training()) { m_.eval(); }
  ~EvalModeGuard() { m_.train(was_training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  torch::nn::Module& m_;
  bool was_training_;
};

}  // namespace arcflow
