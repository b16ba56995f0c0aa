// ArcFlow students of a FLUX teacher in the adapter folder of the reference implementation
// (pnotp/ArcFlow: what export_arcflow_to_diffusers.py writes and lakonlab/pipelines/arcflow_loader.py
// reads), so the published `arcflow-flux-2steps` adapter samples here and ours load there.
//
//   DIR/config.json                          the FLUX transformer config (diffusers spelling, sorted keys)
//                                            with "_class_name": "ArcFluxTransformer2DModel",
//                                            "num_gaussians": K, "logweights_channels": 4
//   DIR/diffusion_pytorch_model.safetensors  metadata "policy_config" = {"type": "ArcFlow"}; tensors
//     <module>.lora_A.weight (r, in), <module>.lora_B.weight (out, r)   PEFT names, no ".default",
//                                            optional "transformer." prefix; rank r = lora_B's
//                                            columns, alpha = r (scale 1)
//     proj_out_means.{weight,bias}           (K * 64, D): rows (k, c, py, px), as FLUX packs a token
//     proj_out_logweights.{weight,bias}      (K * 4, D): rows (k, py, px)
//     proj_out_loggamma.{weight,bias}        ((K - 1) * 4, D): rows (k', py, px) for components 1..K-1
//     norm_out.linear.{weight,bias}          (trained; absent: the teacher's)
// Our heads use the same row orders (FluxNetwork::head_layout), so the tensors map one to one; only
// the log-gamma head is named proj_out_log_gammas in our adapters.
#pragma once

#include <string>

#include "arcflow/io/safetensors.h"
#include "arcflow/models/network.h"
#include "arcflow/models/student.h"

namespace arcflow {

// The `_class_name` of the folder's config.json.
inline constexpr const char* kReferenceAdapterClass = "ArcFluxTransformer2DModel";
// True when `dir` is a folder whose config.json names ArcFluxTransformer2DModel.
bool is_reference_adapter(const std::string& dir);

// Writes an ArcFlow student of a FLUX teacher in the reference layout (float32 tensors; atomic
// files; the LoRA scale alpha / rank folded into lora_B, since the reference implies alpha = rank).
// Throws std::invalid_argument for another base model or policy.
void save_reference_adapter(LoRAStudent& student, const std::string& dir);

// Builds the student on `teacher` from a reference adapter folder. Errors (std::runtime_error) name
// the file: a config for another base (shapes), a missing or misshapen head, a LoRA module without
// its pair or of another shape, an unknown tensor, a policy_config whose type is not ArcFlow.
// `metadata` (optional) receives the reference's sampling settings (nfe 2, shift 3.2,
// timestep_ratio 1) for distilled_sampling().
LoRAStudent load_reference_adapter(const NetworkPtr& teacher, const std::string& dir,
                                   io::Metadata* metadata = nullptr);

}  // namespace arcflow
