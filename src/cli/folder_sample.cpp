#include "folder_sample.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <stdexcept>

#include "arcflow/io/atomic_file.h"
#include "arcflow/io/png.h"
#include "arcflow/models/pipeline.h"
#include "arcflow/models/student.h"
#include "arcflow/sampling/student_sampling.h"
#include "arcflow/util/progress.h"

namespace arcflow::cli {
namespace {

void validate(const FolderSampleOptions& o) {
  if (o.prompts.empty())
    throw std::invalid_argument("--teacher " + o.model_dir + " is a model folder: pass --prompts FILE (pre-encoded "
                                "prompts; scripts/encode_prompts.py writes one)");
  require_input_file("--prompts", o.prompts, "a prompt-embeddings file from scripts/encode_prompts.py");
  if (o.cfg_given && o.sampling.cfg_scale != 1.0)
    throw std::invalid_argument("--cfg-scale: model folders take no classifier-free guidance here (FLUX.1-dev's "
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

int run_folder_sample(const FolderSampleOptions& o, const GlobalOptions& global) {
  validate(o);
  if (!o.output.empty()) io::make_output_dir(parent_dir(o.output, "-o"));
  if (!o.save_tensors.empty()) io::make_output_dir(parent_dir(o.save_tensors, "--save-tensors"));
  const torch::Device device = start_up(global);
  const torch::ScalarType dtype = parse_compute_dtype(o.dtype, device);

  // The pipeline checks the size, the prompts and the memory of one forward pass before the weights.
  PipelineOptions po;
  po.prompts = o.prompts;
  po.height = o.height;
  po.width = o.width;
  po.guidance = o.guidance;
  po.guidance_given = o.guidance_given;
  po.batch = o.sampling.max_batch;
  po.samples = o.n > 0 ? o.n : 0;
  po.dtype = dtype;
  po.decoder = !o.output.empty();
  po.decoder_note = "pass -o '' and --save-tensors FILE to keep the latents only";
  const PipelinePtr pipe = load_pipeline(o.model_dir, po, device);
  const NetworkPtr net = pipe->network;

  const int64_t n = o.n > 0 ? o.n : pipe->num_prompts();
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[static_cast<size_t>(i)] = i % pipe->num_prompts();
  const Condition cond = pipe->conditions(rows, o.guidance);
  const torch::Tensor noise = make_noise(n, net->sample_shape(), o.seed, torch::kCPU);
  const ShiftRule& shift_rule = pipe->shift_rule;  // the teacher's shift unless given: the folder's scheduler

  TeacherSampling s = o.sampling;
  s.cfg_scale = 1.0;
  if (!o.shift_given) s.shift = shift_rule.at(net->image_tokens());
  const int64_t chunks = (n + s.max_batch - 1) / s.max_batch;
  torch::Tensor latents;
  double seconds = 0;
  int nfe = teacher_nfe(s);
  std::string method = s.sampler + " " + std::to_string(s.steps) + " steps";
  double shift = s.shift;  // the one sampled at (a student's: its adapter's unless --shift)
  std::string shift_from = o.shift_given ? "--shift" : shift_rule.describe();
  if (o.adapter.empty()) {
    ProgressBar bar("teacher " + s.sampler, chunks * s.steps, !o.quiet);
    latents = sample_teacher(net, noise, cond, s, [&bar](const StepInfo& info) { bar.update(info.step + 1); });
    bar.finish();
    seconds = bar.elapsed_seconds();
  } else {
    SamplingOverrides given;  // the adapter's schedule, unless given
    if (o.nfe_given) given.nfe = o.nfe;
    if (o.shift_given) given.shift = s.shift;
    given.temperature = o.temperature;
    given.max_batch = s.max_batch;
    SamplingStudent loaded = load_sampling_student(net, o.adapter, given);
    LoRAStudent student = loaded.student;
    const StudentSampling& so = loaded.sampling;
    ProgressBar bar("student", chunks * so.nfe, !o.quiet);
    latents = sample_student(*student, noise, cond, so, [&bar](const StepInfo& info) { bar.update(info.step + 1); });
    bar.finish();
    seconds = bar.elapsed_seconds();
    nfe = so.nfe;
    shift = so.shift;
    if (!o.shift_given) shift_from = "the adapter's";
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
                         {"guidance", net->guidance_kind() == GuidanceKind::distilled ? format_number(o.guidance) : "none"},
                         {"shift", format_exact(shift)},
                         {"shift_rule", shift_from},
                         {"height", std::to_string(o.height)},
                         {"width", std::to_string(o.width)},
                         {"dtype", std::string(c10::toString(dtype))},
                         {"seed", std::to_string(o.seed)},
                         {"n", std::to_string(n)},
                         {"command", command_line()}};
  if (!o.output.empty()) {
    std::vector<torch::Tensor> images;
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t start = c * s.max_batch, len = std::min(s.max_batch, n - start);
      images.push_back(pipe->decode(latents.narrow(0, start, len)));
    }
    std::map<std::string, std::string> text(params.begin(), params.end());
    std::string which;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = rows[static_cast<size_t>(i)];
      const std::string prompt = pipe->prompt_text(r);
      which += (i ? " | " : "") + (prompt.empty() ? std::to_string(r) : prompt);
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
