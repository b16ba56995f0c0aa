// A FLUX.1 model folder as a pipeline (models/pipeline.h): the transformer set up at the image size
// (flux_teacher.cpp), the conditions of a prompt-embeddings file (pre-encoded prompts; distilled
// guidance where the transformer has a guidance embedding), the VAE decoder, the scheduler's rule.
#include <algorithm>
#include <stdexcept>

#include "arcflow/io/atomic_file.h"
#include "arcflow/models/flux/flux_loader.h"
#include "arcflow/models/flux/flux_network.h"
#include "arcflow/models/flux/flux_vae.h"
#include "arcflow/models/pipeline.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/scheduler_config.h"
#include "arcflow/util/text.h"

namespace arcflow {

namespace {

class FluxPipeline : public Pipeline {
 public:
  FluxPromptEmbeddings prompts;
  bool guidance_embeds = false;
  mutable FluxVaeDecoder vae{nullptr};  // a module call is not const
  torch::ScalarType dtype = torch::kFloat32;

  int64_t num_prompts() const override { return prompts.size(); }
  std::string prompt_text(int64_t row) const override {
    return row >= 0 && static_cast<size_t>(row) < prompts.prompts.size() ? prompts.prompts[static_cast<size_t>(row)]
                                                                          : "";
  }
  Condition conditions(const std::vector<int64_t>& rows, double guidance) const override {
    return flux_condition(prompts, rows, guidance_embeds, guidance);
  }
  bool has_decoder() const override { return !vae.is_empty(); }
  torch::Tensor decode(const torch::Tensor& latents) const override {
    if (vae.is_empty()) throw std::logic_error(dir + ": pipeline loaded without its VAE");
    torch::NoGradGuard no_grad;
    return vae->decode(latents.to(network->device(), dtype)).to(torch::kCPU, torch::kFloat32);
  }
};

}  // namespace

PipelinePtr load_flux_pipeline(const std::string& dir, const PipelineOptions& o, torch::Device device) {
  const std::string vae_dir = join_path(dir, "vae");
  if (o.decoder && !io::is_regular_file(vae_dir + "/config.json"))
    throw std::invalid_argument(vae_dir + "/config.json: missing; the images need the VAE" +
                                (o.decoder_note.empty() ? "" : " (" + o.decoder_note + ")"));
  if (o.prompts.empty()) throw std::invalid_argument(dir + ": a FLUX model folder samples from a prompts file");
  auto p = std::make_unique<FluxPipeline>();
  p->dir = dir;
  p->shift_rule = read_folder_shift_rule(dir);
  p->dtype = o.dtype ? *o.dtype : device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  // Everything small is read and checked before the transformer's weights.
  const FluxConfig cfg = read_flux_config(join_path(transformer_folder(dir), "config.json"));
  p->guidance_embeds = cfg.guidance_embeds;
  if (!cfg.guidance_embeds && o.guidance_given)
    throw std::invalid_argument(o.guidance_flag + ": " + dir + " has no guidance embedding (a schnell-like model)");
  p->prompts = load_flux_prompt_embeddings(o.prompts, cfg);
  if (p->prompts.size() == 0) throw std::invalid_argument(o.prompts + ": holds no prompts");
  FolderTeacherOptions fo = o;  // conditions come from `prompts` here, not a training pool
  fo.prompts.clear();
  fo.text_tokens = p->prompts.prompt_embeds.size(1);
  fo.batch = std::min<int64_t>(std::max<int64_t>(1, o.batch), o.samples > 0 ? o.samples : p->prompts.size());
  fo.dtype = p->dtype;
  p->network = load_flux_folder_teacher(dir, fo, device);
  if (o.decoder) p->vae = load_flux_vae_decoder(vae_dir, p->dtype, device);
  return p;
}

}  // namespace arcflow
