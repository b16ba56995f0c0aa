// A FLUX model folder as a teacher: its VAE's downscale, the image size it samples at, the prompt
// pool distillation draws from, and the memory check before the weights (flux_network.h).

#include <stdexcept>

#include "arcflow/io/atomic_file.h"
#include "arcflow/models/flux/flux_loader.h"
#include "arcflow/models/flux/flux_network.h"
#include "arcflow/models/flux/flux_vae.h"
#include "arcflow/models/registry.h"
#include "arcflow/util/resources.h"

namespace arcflow {

int64_t flux_vae_downscale(const std::string& model_dir) {
  const std::string vae = model_dir + "/vae/config.json";
  return io::is_regular_file(vae) ? read_flux_vae_config(vae).downscale() : 8;
}

void check_flux_image_size(int64_t height, int64_t width, int64_t downscale, const std::string& flags) {
  const int64_t cell = 2 * downscale;
  if (height <= 0 || width <= 0 || height % cell != 0 || width % cell != 0)
    throw std::invalid_argument(flags + " must be positive multiples of " + std::to_string(cell) +
                                " (2 x the VAE's downscale " + std::to_string(downscale) + "), got " +
                                std::to_string(height) + " x " + std::to_string(width));
}

NetworkPtr load_flux_folder_teacher(const std::string& dir, const FolderTeacherOptions& o, torch::Device device) {
  const torch::ScalarType dtype = o.dtype ? *o.dtype : device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  const int64_t down = flux_vae_downscale(dir);
  check_flux_image_size(o.height, o.width, down, o.size_flags);
  // Before the weights: the prompts (small), then what one forward pass at the batch needs at least.
  const FluxConfig cfg = read_flux_config(transformer_folder(dir) + "/config.json");
  FluxPromptEmbeddings prompts;
  if (!o.prompts.empty()) prompts = load_flux_prompt_embeddings(o.prompts, cfg);
  const int64_t n_img = flux_packed_tokens(o.height / down, o.width / down);
  const int64_t n_txt = prompts.size() > 0 ? prompts.prompt_embeds.size(1) : o.text_tokens > 0 ? o.text_tokens : 512;
  const int64_t batch = std::max<int64_t>(1, o.batch);
  check_memory(o.memory_flags, flux_forward_memory_bytes(cfg, batch, n_img, n_txt, c10::elementSize(dtype)), device,
               "a forward pass alone at " + std::to_string(o.width) + " x " + std::to_string(o.height) + " (" +
                   std::to_string(n_img) + " image tokens, " + std::to_string(n_txt) + " text tokens), batch " +
                   std::to_string(batch) + ", " + std::string(c10::toString(dtype)) +
                   (o.memory_note.empty() ? "" : "; " + o.memory_note));
  LoadOptions lo;
  lo.dtype = dtype;
  NetworkPtr net = load_network(dir, device, lo);
  auto* flux = dynamic_cast<FluxNetwork*>(net.get());
  if (flux == nullptr) throw std::invalid_argument(dir + ": not a FLUX model folder");
  flux->set_latent_size(o.height / down, o.width / down);
  if (prompts.size() > 0) flux->set_prompt_pool(prompts, o.guidance);
  return net;
}

}  // namespace arcflow
