#include "flux_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "arcflow/io/atomic_file.h"
#include "arcflow/models/flux/flux_loader.h"
#include "arcflow/models/flux/flux_network.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/student.h"
#include "arcflow/sampling/generate.h"
#include "arcflow/training/distill.h"
#include "arcflow/util/resources.h"
#include "arcflow/models/teacher_options.h"

namespace arcflow::cli {
namespace {

void sync(torch::Device d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}

double seconds_of(const std::function<void()>& f) {
  const auto a = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

// The median of `repeats` timed calls after one warm-up.
double median_seconds(const std::function<void()>& f, int repeats) {
  f();
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) t.push_back(seconds_of(f));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// FLUX.1-dev's sampling settings, also the reference's distillation recipe (configs/flux/arcflow-2.toml):
// every row of this bench samples and distils at them.
constexpr double kShift = 3.2;
constexpr double kGuidance = 3.5;  // distilled guidance

FluxConfig named_config(const std::string& name) {
  if (name == "flux-dev") return FluxConfig::flux1_dev();
  if (name == "flux-schnell") {
    FluxConfig c = FluxConfig::flux1_dev();
    c.guidance_embeds = false;
    return c;
  }
  if (name == "tiny") return FluxConfig::tiny();  // the tests' shape
  return read_flux_config(name);  // a config.json
}

// One distillation row: a fresh ArcFlow student (K 16, LoRA rank o.lora_rank on FLUX's default targets,
// norm_out trained) over `net` at its current latent size, trained with the reference's FLUX recipe
// at batch 1 (distilled guidance from the prompt pool, no CFG); seconds per iteration (median of
// o.distill_iters after one warm-up) and the peak memory of building and training it. Out of
// device memory is a row of its own ("error"), not a failed bench.
nlohmann::json distill_row(const NetworkPtr& net, const FluxBenchOptions& o, bool checkpoint_blocks,
                           torch::Device dev) {
  StudentConfig s;
  s.lora = LoRAConfig{o.lora_rank, static_cast<double>(o.lora_rank), 0.05, {}};
  s.train_norm_out = true;
  DistillConfig d;
  d.batch_size = 1;
  d.shift = kShift;
  d.num_decay_iters = 2000;
  nlohmann::json row = {{"checkpoint_blocks", checkpoint_blocks}, {"lora_rank", o.lora_rank}, {"batch", 1}};
  try {
    reset_peak_device_memory(dev);
    torch::manual_seed(0);
    LoRAStudent student(net, s);
    student->base->set_block_checkpointing(checkpoint_blocks);
    row["trainable_fraction"] =
        static_cast<double>(student->trainable_count()) / static_cast<double>(student->total_count());
    Distiller dist(make_distill_problem(student, net, 1.0, d, dev), d);
    row["s_per_iter"] = median_seconds([&] { dist.step(); sync(dev); }, o.distill_iters);
    row["peak_gb"] = static_cast<double>(peak_device_memory_bytes(dev)) / 1e9;
  } catch (const c10::OutOfMemoryError&) {
    row["error"] = "out of memory";
  }
  return row;
}

}  // namespace

int run_flux_bench(const FluxBenchOptions& o, const GlobalOptions& g) {
  if (o.repeats < 1) throw std::invalid_argument("--repeats must be >= 1");
  if (o.text_tokens < 1) throw std::invalid_argument("--text-tokens must be >= 1");
  if (o.distill_iters < 0) throw std::invalid_argument("--distill-iters must be >= 0");
  if (o.lora_rank < 1) throw std::invalid_argument("--lora-rank must be >= 1");
  for (int64_t r : o.resolutions)
    if (r < 8 || r % 8 != 0) throw std::invalid_argument("--resolutions: " + std::to_string(r) + " is not a multiple of 8");
  for (int s : o.teacher_steps)
    if (s < 1) throw std::invalid_argument("--teacher-steps must be >= 1");
  const torch::Device dev = start_up(g);
  const torch::ScalarType dtype = parse_compute_dtype(o.dtype, dev);

  {  // every resolution's forward pass (batch 1) must fit before anything is built
    const FluxConfig c = o.random_weights ? named_config(o.config)
                                          : read_flux_config(transformer_folder(o.model_dir) + "/config.json");
    const int64_t down = o.random_weights ? 8 : flux_vae_downscale(o.model_dir);
    for (int64_t r : o.resolutions) {
      const int64_t n_img = flux_packed_tokens(r / down, r / down);
      check_memory("--resolutions " + std::to_string(r) + " and --text-tokens",
                   flux_forward_memory_bytes(c, 1, n_img, o.text_tokens, c10::elementSize(dtype)), dev,
                   std::to_string(n_img + o.text_tokens) + " tokens at batch 1, " + std::string(c10::toString(dtype)));
    }
  }
  reset_peak_device_memory(dev);
  NetworkPtr net;
  std::string source;
  const double t_load = seconds_of([&] {
    if (o.random_weights) {
      net = random_flux_network(named_config(o.config), dev, dtype);
      source = "random weights, config " + o.config;
    } else {
      LoadOptions lo;
      lo.dtype = dtype;
      net = load_network(o.model_dir, dev, lo);
      source = o.model_dir;
    }
    sync(dev);
  });
  auto* flux = dynamic_cast<FluxNetwork*>(net.get());
  if (flux == nullptr) throw std::invalid_argument(o.model_dir + ": not a FLUX model folder");
  const FluxConfig& cfg = flux->transformer->config;
  flux->set_text_tokens(o.text_tokens);
  // The folder's VAE gives the image scale; random weights take FLUX.1's VAE (2^(4 - 1) = 8).
  const int64_t downscale = o.random_weights ? 8 : flux_vae_downscale(o.model_dir);

  nlohmann::json out;
  out["device"] = dev.str();
  out["dtype"] = c10::toString(dtype);
  out["source"] = source;
  out["parameters"] = flux_parameter_count(cfg);
  out["load_s"] = t_load;
  out["weights_peak_gb"] = static_cast<double>(peak_device_memory_bytes(dev)) / 1e9;
  out["text_tokens"] = o.text_tokens;
  std::printf("FLUX transformer: %.6g M parameters (%s), %s on %s; built/loaded in %.1f s, peak %.2f GB\n",
              flux_parameter_count(cfg) / 1e6, source.c_str(), c10::toString(dtype), dev.str().c_str(), t_load,
              out["weights_peak_gb"].get<double>());

  nlohmann::json rows = nlohmann::json::array();
  for (int64_t res : o.resolutions) {
    check_flux_image_size(res, res, downscale, "--resolutions");
    flux->set_latent_size(res / downscale, res / downscale);
    const int64_t n_img = flux_packed_tokens(res / downscale, res / downscale);
    torch::NoGradGuard no_grad;
    const auto opt = torch::TensorOptions().device(dev);
    Condition c;
    c.set("prompt_embeds", torch::randn({1, o.text_tokens, cfg.joint_attention_dim}, opt).to(dtype));
    c.set("pooled_prompt_embeds", torch::randn({1, cfg.pooled_projection_dim}, opt).to(dtype));
    if (cfg.guidance_embeds) c.set("guidance", torch::full({1}, kGuidance, opt));
    const torch::Tensor x = make_noise(1, net->sample_shape(), 0, dev);
    const torch::Tensor sigma = torch::full({1}, 0.5, opt);

    reset_peak_device_memory(dev);
    const double nfe_s = median_seconds([&] { net->velocity(x, sigma, c); sync(dev); }, o.repeats);
    const double peak_gb = static_cast<double>(peak_device_memory_bytes(dev)) / 1e9;
    const double flops = net->forward_flops(1);
    nlohmann::json row = {{"resolution", res},       {"image_tokens", n_img},
                          {"tflop_per_nfe", flops / 1e12}, {"ms_per_nfe", 1e3 * nfe_s},
                          {"tflops", flops / nfe_s / 1e12}, {"peak_gb", peak_gb}};
    std::printf("%4lld^2 (%lld + %lld tokens): %.4g GFLOP per NFE, %.1f ms per NFE (%.4g GFLOP/s), peak %.2f GB\n",
                static_cast<long long>(res), static_cast<long long>(n_img), static_cast<long long>(o.text_tokens),
                flops / 1e9, 1e3 * nfe_s, flops / nfe_s / 1e9, peak_gb);
    // Whole images: Euler sampling at each step count (one NFE per step: distilled guidance, no CFG).
    const torch::Tensor noise = make_noise(1, net->sample_shape(), 0, torch::kCPU);
    std::vector<int> steps = o.teacher_steps;
    steps.push_back(2);
    for (int n : steps) {
      TeacherSampling s;
      s.steps = n;
      s.cfg_scale = 1.0;
      s.shift = kShift;
      const double t = seconds_of([&] { sample_teacher(net, noise, c.to(torch::kCPU), s); sync(dev); });
      const std::string name = n == 2 ? "2-step" : "teacher-" + std::to_string(n);
      row[name + "_s_per_image"] = t;
      std::printf("      %-12s %3d NFE  %9.2f s per image\n", name.c_str(), n, t);
    }
    rows.push_back(row);
  }
  // Distillation: batch 1 per resolution, with and without per-block activation checkpointing.
  if (o.distill_iters > 0) {
    FluxPromptEmbeddings pool;  // two random prompts stand in for encoded text
    pool.prompt_embeds = torch::randn({2, o.text_tokens, cfg.joint_attention_dim});
    pool.pooled_prompt_embeds = torch::randn({2, cfg.pooled_projection_dim});
    flux->set_prompt_pool(pool, kGuidance);
    for (size_t i = 0; i < o.resolutions.size(); ++i) {
      const int64_t res = o.resolutions[i];
      flux->set_latent_size(res / downscale, res / downscale);
      for (bool ckpt : {false, true}) {
        const nlohmann::json r = distill_row(net, o, ckpt, dev);
        rows[i][ckpt ? "distill_checkpoint_blocks" : "distill"] = r;
        if (r.contains("error"))
          std::printf("%4lld^2 distillation, block checkpointing %-3s: %s\n", static_cast<long long>(res),
                      ckpt ? "on" : "off", r["error"].get<std::string>().c_str());
        else
          std::printf("%4lld^2 distillation, block checkpointing %-3s: %.3f s per iteration (batch 1, LoRA rank %d, "
                      "%.2f%% trainable), peak %.2f GB\n",
                      static_cast<long long>(res), ckpt ? "on" : "off", r["s_per_iter"].get<double>(), o.lora_rank,
                      100 * r["trainable_fraction"].get<double>(), r["peak_gb"].get<double>());
      }
    }
  }
  out["rows"] = rows;
  io::write_file_atomic(o.output, out.dump(2) + "\n");
  std::printf("wrote %s\n", o.output.c_str());
  return 0;
}

}  // namespace arcflow::cli
