#include "flux_sample.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <stdexcept>

#include "arcflow/io/atomic_file.h"
#include "arcflow/io/png.h"
#include "arcflow/models/flux_loader.h"
#include "arcflow/models/flux_network.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/student.h"
#include "arcflow/sampling/student_sampling.h"
#include "arcflow/util/progress.h"

namespace arcflow::cli {
namespace {

void validate(const FluxSampleOptions& o) {
  if (o.prompts.empty())
    throw std::invalid_argument("--teacher " + o.model_dir + " is a model folder: pass --prompts FILE (pre-encoded "
                                "prompts; scripts/encode_prompts.py writes one)");
  require_input_file("--prompts", o.prompts, "a prompt-embeddings file from scripts/encode_prompts.py");
  if (o.cfg_given && o.sampling.cfg_scale != 1.0)
    throw std::invalid_argument("--cfg-scale: FLUX models take no classifier-free guidance here (FLUX.1-dev's "
                                "guidance is distilled: use --guidance)");
  if (!std::isfinite(o.guidance)) throw std::invalid_argument("--guidance must be finite");
  if (o.height <= 0 || o.width <= 0)
    throw std::invalid_argument("--height and --width must be > 0, got " + std::to_string(o.height) + " x " +
                                std::to_string(o.width));
  if (o.n == 0 || o.n < -1) throw std::invalid_argument("-n must be >= 1, got " + std::to_string(o.n));
  if (o.output.empty() && o.save_tensors.empty())
    throw std::invalid_argument("-o is empty and no --save-tensors given: nothing would be written");
  o.sampling.validate();
}

}  // namespace

int run_flux_sample(const FluxSampleOptions& o, const GlobalOptions& global) {
  validate(o);
  const std::string vae_dir = o.model_dir + "/vae";
  if (!o.output.empty() && !file_exists(vae_dir + "/config.json"))
    throw std::invalid_argument(vae_dir + "/config.json: missing; the PNG needs the VAE (pass -o '' and "
                                "--save-tensors FILE to keep the latents only)");
  if (!o.output.empty()) io::make_output_dir(parent_dir(o.output, "-o"));
  if (!o.save_tensors.empty()) io::make_output_dir(parent_dir(o.save_tensors, "--save-tensors"));
  const torch::Device device = start_up(global);
  const torch::ScalarType dtype = parse_compute_dtype(o.dtype, device);

  // Everything small is read and checked before the transformer's weights.
  const FluxConfig cfg = read_flux_config(transformer_folder(o.model_dir) + "/config.json");
  const FluxPromptEmbeddings prompts = load_flux_prompt_embeddings(o.prompts, cfg);
  if (prompts.size() == 0) throw std::invalid_argument(o.prompts + ": holds no prompts");
  if (!cfg.guidance_embeds && o.guidance_given)
    throw std::invalid_argument("--guidance: " + o.model_dir + " has no guidance embedding (a schnell-like model)");
  FolderTeacherOptions fo;  // the size and the memory of one forward pass are checked before the weights
  fo.height = o.height;
  fo.width = o.width;
  fo.guidance = o.guidance;
  fo.batch = std::min<int64_t>(o.sampling.max_batch, o.n > 0 ? o.n : prompts.size());
  fo.dtype = dtype;
  fo.prompts = o.prompts;
  const NetworkPtr net = load_teacher(o.model_dir, fo, device);
  FluxVaeDecoder vae{nullptr};
  if (!o.output.empty()) vae = load_flux_vae_decoder(vae_dir, dtype, device);

  const int64_t n = o.n > 0 ? o.n : prompts.size();
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[static_cast<size_t>(i)] = i % prompts.size();
  const Condition cond = flux_condition(prompts, rows, cfg.guidance_embeds, o.guidance);
  const torch::Tensor noise = make_noise(n, net->sample_shape(), o.seed, torch::kCPU);

  TeacherSampling s = o.sampling;
  s.cfg_scale = 1.0;
  const int64_t chunks = (n + s.max_batch - 1) / s.max_batch;
  torch::Tensor latents;
  double seconds = 0;
  int nfe = teacher_nfe(s);
  std::string method = s.sampler + " " + std::to_string(s.steps) + " steps";
  if (o.adapter.empty()) {
    ProgressBar bar("FLUX " + s.sampler, chunks * s.steps, !o.quiet);
    latents = sample_teacher(net, noise, cond, s, [&bar](const StepInfo& info) { bar.update(info.step + 1); });
    bar.finish();
    seconds = bar.elapsed_seconds();
  } else {
    io::Metadata meta;
    LoRAStudent student = load_adapter(net, o.adapter, &meta);
    student->to(device);
    student->fuse_lora();
    StudentSampling so = distilled_sampling(meta, o.adapter);  // its schedule, unless given
    if (o.nfe_given) so.nfe = o.nfe;
    so.temperature = o.temperature;
    if (o.shift_given) so.shift = s.shift;
    so.max_batch = s.max_batch;
    so.validate();
    ProgressBar bar("FLUX student", chunks * so.nfe, !o.quiet);
    latents = sample_student(*student, noise, cond, so, [&bar](const StepInfo& info) { bar.update(info.step + 1); });
    bar.finish();
    seconds = bar.elapsed_seconds();
    nfe = so.nfe;
    method = student->config.policy + " student, " + std::to_string(so.nfe) + " steps, shift " + format_number(so.shift) +
             ", temperature " + format_number(so.temperature_for(*student)) + (so.temperature ? "" : " (auto)");
  }

  io::Metadata params = {{"model", o.adapter.empty() ? "teacher" : "student"},
                         {"method", method},
                         {"adapter", o.adapter},
                         {"teacher", o.model_dir},
                         {"prompts", o.prompts},
                         {"sampler", s.sampler},
                         {"steps", std::to_string(s.steps)},
                         {"nfe", std::to_string(nfe)},
                         {"guidance", cfg.guidance_embeds ? format_number(o.guidance) : "none"},
                         {"shift", format_number(s.shift)},
                         {"height", std::to_string(o.height)},
                         {"width", std::to_string(o.width)},
                         {"dtype", std::string(c10::toString(dtype))},
                         {"seed", std::to_string(o.seed)},
                         {"n", std::to_string(n)},
                         {"command", command_line()}};
  if (!o.output.empty()) {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> images;
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t start = c * s.max_batch, len = std::min(s.max_batch, n - start);
      images.push_back(vae->decode(latents.narrow(0, start, len).to(device, dtype)).to(torch::kCPU, torch::kFloat32));
    }
    std::map<std::string, std::string> text(params.begin(), params.end());
    std::string which;
    for (int64_t i = 0; i < n; ++i) {
      const size_t r = static_cast<size_t>(rows[static_cast<size_t>(i)]);
      which += (i ? " | " : "") + (r < prompts.prompts.size() ? prompts.prompts[r] : std::to_string(r));
    }
    text["prompts_used"] = which;
    text["Software"] = "arcflow 0.1.0";
    io::write_png(o.output, images_to_grid(torch::cat(images, 0), o.nrow, 2), text);
    std::printf("wrote %s (%lld images of %lld x %lld)\n", o.output.c_str(), static_cast<long long>(n),
                static_cast<long long>(o.width), static_cast<long long>(o.height));
  }
  if (!o.save_tensors.empty()) {
    save_sample_tensors(o.save_tensors, noise, torch::tensor(rows, torch::kLong), latents, params);
    std::printf("wrote %s (noise, labels = prompt index, samples = latents)\n", o.save_tensors.c_str());
  }
  std::printf("NFE per image: %d\n", nfe);
  std::printf("time: %.2f ms per image (%s for %lld on %s, %s)\n", 1000.0 * seconds / static_cast<double>(n),
              format_duration(seconds).c_str(), static_cast<long long>(n), device.str().c_str(),
              c10::toString(dtype));
  return 0;
}

}  // namespace arcflow::cli
