// The student (ARCFLOW.md section 3): a frozen copy of a teacher network (`base`, any registered
// architecture), LoRA adapters on named Linear layers, and a policy head (models/policy_head.h)
// that replaces the network's output layer and emits a policy (core/policy.h).
//
// Adapter files (section 6) hold only what the student adds: `<module>.lora_A.weight` (r x in)
// and `<module>.lora_B.weight` (out x r) under the teacher's module names (PEFT/diffusers naming),
// the head tensors (`proj_out_*`), the final norm when it was trained, and metadata
// {"model": "arcflow-adapter", "base_model": the teacher's kind, "config": StudentConfig JSON,
//  "teacher_config": the teacher's config, "lora_rank", "lora_alpha"}. Files from before
// "base_model" existed are DiT adapters; configs without "policy" are ArcFlow's.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "arcflow/core/schedule.h"
#include "arcflow/io/safetensors.h"
#include "arcflow/models/lora.h"
#include "arcflow/models/network.h"
#include "arcflow/models/policy_head.h"

namespace arcflow {

// What samplers and the distiller need of a student.
class Student {
 public:
  virtual ~Student() = default;
  // The policy at (x (B, ...), sigma (B) or 0-d, condition).
  virtual PolicyPtr policy(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) = 0;
  virtual std::vector<int64_t> sample_shape() const = 0;
  virtual torch::Device device() const = 0;
  virtual void check_condition(const Condition& c, int64_t batch) const = 0;
  virtual torch::nn::Module& module() = 0;
  // The temperature an nfe-step sample uses when none is asked for ("auto"; policy_head.h).
  virtual double auto_temperature(int nfe) const = 0;
  // How policies without a closed form integrate (set by samplers and the distiller).
  IntegrationOptions integration;
};

struct StudentConfig {
  std::string policy = "arcflow";  // a name from policy_heads(); "arcflow" with K = 1 is linear
  int64_t K = 16;
  LoRAConfig lora{8, 8.0, 0.05, {}};  // no targets: the network's default_lora_targets()
  bool train_norm_out = false;        // also train the final norm's modulation (as the reference does)
  double head_bias_noise = 0.05;      // std of the noise on each component's copied bias
  // The bias noise is drawn once per (component, channel) and shared by a token's pixels (the
  // reference's rule); false: one draw per output (configs written before this field).
  bool head_bias_noise_per_token = true;
  double min_gamma = 0.2, max_gamma = 4.0;
  // GMFlow: hidden width H of the logstd MLP (pi-Flow's 1024); 0: the network's embedding width
  // (files written before this field). Adapters load with the width their tensors have.
  int64_t logstd_hidden = 1024;

  PolicyHeadConfig head() const {
    return {policy, K, head_bias_noise, head_bias_noise_per_token, min_gamma, max_gamma, logstd_hidden};
  }
  void validate() const;  // std::invalid_argument naming the field
  // "policy" is written only when it is not "arcflow" (so ArcFlow configs read as before);
  // "logstd_hidden" only for GMFlow. Fields missing from older files read as those files meant
  // (head_bias_noise_per_token false, logstd_hidden 0).
  nlohmann::json to_json() const;
  static StudentConfig from_json(const nlohmann::json& j);  // strict; std::invalid_argument
};

class LoRAStudentImpl : public torch::nn::Module, public Student {
 public:
  // Copies the teacher's weights into a frozen `base`, adds LoRA and the head (random parts drawn
  // from torch's global generator: seed it for reproducible students). Empty LoRA targets become
  // the teacher's defaults (stored in `config`).
  LoRAStudentImpl(const NetworkPtr& teacher, StudentConfig cfg);

  PolicyPtr policy(const torch::Tensor& x, const torch::Tensor& sigma, const Condition& c) override;
  std::vector<int64_t> sample_shape() const override { return base->sample_shape(); }
  torch::Device device() const override { return base->device(); }
  void check_condition(const Condition& c, int64_t batch) const override { base->check_condition(c, batch); }
  torch::nn::Module& module() override { return *this; }
  double auto_temperature(int nfe) const override { return find_policy_head(config.policy).auto_temperature(nfe); }

  std::vector<torch::Tensor> main_parameters();       // LoRA, head (main lr), final norm
  std::vector<torch::Tensor> log_gamma_parameters();  // the head's slow tensors (log-gamma lr)
  int64_t trainable_count();
  int64_t total_count();
  void fuse_lora();  // fold the adapters into the base weights for inference

  // Adapter tensors (see above), CPU copies.
  io::TensorMap adapter_tensors();
  // Copies an adapter's tensors in; strict (missing, extra or wrongly shaped tensors throw naming
  // `source` and the tensor).
  void load_adapter_tensors(const io::TensorMap& t, const std::string& source);

  StudentConfig config;
  NetworkPtr base;

 private:
  std::unique_ptr<PolicyHead> head_;
};
TORCH_MODULE(LoRAStudent);

void save_adapter(LoRAStudent& s, const std::string& path, const io::Metadata& extra = {});
// Builds the student on `teacher` from the adapter file alone (config from its metadata) and loads
// it. Throws std::runtime_error naming `path` when the file is not an adapter, was made for a
// teacher of another kind or shape, names an unknown policy, or its tensors do not match.
// An adapter is a file from `arcflow distill`, or a folder in a reference implementation's layout
// (config.json's `_class_name` names a registry entry's reference_adapter_class; pnotp/ArcFlow's
// for FLUX), read by that entry's loader.
LoRAStudent load_adapter(const NetworkPtr& teacher, const std::string& path, io::Metadata* metadata = nullptr);
// True when `path` is such an adapter folder.
bool is_adapter_folder(const std::string& path);
// For a folder that is not one: what was found there instead, as one line naming the folder and
// saying what an adapter path may be ("DIR: not an adapter: the folder has no config.json; ...").
std::string not_an_adapter_folder(const std::string& dir);

// An adapter's schedule in its metadata, the keys "nfe", "shift", "timestep_ratio" and
// "total_substeps" (numbers that read back exactly). Every writer of adapter metadata uses
// write_schedule; read_schedule keeps `defaults`' value for an absent key (adapters older than the
// key) and throws std::runtime_error naming `source` and the key for a value that is not a number.
void write_schedule(const StepSchedule& schedule, io::Metadata& meta);
StepSchedule read_schedule(const io::Metadata& meta, const std::string& source, const StepSchedule& defaults = {});

}  // namespace arcflow
