// `arcflow sample`: images from a trained image model, written as a PNG grid (with the generation
// parameters in tEXt chunks) and optionally as a sample-tensor file for `arcflow eval --samples`.
//
// A Generator turns (noise, labels) into images and describes itself (NFE, parameters). Today the
// only one is the guided many-step teacher; distilled students (issue 4: --adapter A --nfe N) add
// a second make_*_generator() and a branch in make_generator(), and reuse everything else.
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "arcflow/io/atomic_file.h"
#include "arcflow/io/png.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/student.h"
#include "arcflow/sampling/student_sampling.h"
#include "arcflow/sampling/generate.h"
#include "arcflow/sampling/samplers.h"
#include "arcflow/util/progress.h"
#include "commands.h"
#include "folder_sample.h"

namespace arcflow::cli {

namespace {

struct SampleOptions {
  std::string teacher;
  std::string output = "samples.png";
  std::vector<int64_t> classes;
  int64_t n = 20;
  uint64_t seed = 0;
  TeacherSampling sampling;
  std::string adapter;  // set: sample the distilled student instead of the teacher
  StudentSampling student;  // nfe and temperature; shift, ratio and batch come from `sampling`
  std::string temperature = "auto";  // --temperature, parsed into student.temperature
  bool shift_given = false, ratio_given = false, nfe_given = false;
  int nrow = 10;
  std::string save_tensors;
  bool quiet = false;
  FolderSampleOptions folder;  // --prompts, --guidance, --height, --width, --dtype (model folders)
};

// Something that maps starting noise and labels to images.
struct Generator {
  std::vector<int64_t> sample_shape;  // (C, H, W)
  int64_t num_classes = 0;
  int nfe = 0;                        // network evaluations per image
  int64_t progress_total = 0;         // callback steps over the whole run (for the progress bar)
  std::string label;                  // progress bar label
  io::Metadata params;                // generation parameters (PNG text chunks, tensor metadata)
  std::function<torch::Tensor(const torch::Tensor& noise, const Condition& cond, const SamplerCallback&)> run;
};

std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

// Everything that can be checked without the model.
void validate(const SampleOptions& o) {
  require_input_file("--teacher", o.teacher, "the shipped one is models/teacher.safetensors");
  if (!o.adapter.empty()) require_adapter("--adapter", o.adapter, "from `arcflow distill`, e.g. models/arcflow-2.safetensors");
  if (o.n < 1) throw std::invalid_argument("-n must be >= 1, got " + std::to_string(o.n));
  if (o.sampling.steps < 1) throw std::invalid_argument("--steps must be >= 1, got " + std::to_string(o.sampling.steps));
  if (!(o.sampling.shift > 0.0) || !std::isfinite(o.sampling.shift))
    throw std::invalid_argument("--shift must be > 0, got " + format_number(o.sampling.shift));
  if (!(o.sampling.timestep_ratio > 0.0) || !std::isfinite(o.sampling.timestep_ratio))
    throw std::invalid_argument("--timestep-ratio must be > 0, got " + format_number(o.sampling.timestep_ratio));
  if (!std::isfinite(o.sampling.cfg_scale))
    throw std::invalid_argument("--cfg-scale must be finite, got " + format_number(o.sampling.cfg_scale));
  if (o.sampling.max_batch < 1)
    throw std::invalid_argument("--batch must be >= 1, got " + std::to_string(o.sampling.max_batch));
  if (o.nrow < 1) throw std::invalid_argument("--nrow must be >= 1, got " + std::to_string(o.nrow));
  for (int64_t c : o.classes)
    if (c < 0) throw std::invalid_argument("--class " + std::to_string(c) + " is negative");
  if (o.output.empty() && o.save_tensors.empty())
    throw std::invalid_argument("-o is empty and no --save-tensors given: nothing would be written");
  o.sampling.validate();  // the sampler name, with the list of valid ones
  if (!o.adapter.empty()) o.student.validate();
  if (o.adapter.empty() && (o.nfe_given || o.student.temperature))
    throw std::invalid_argument("--nfe and --temperature are for students: pass --adapter (teachers use --steps)");
}

// The teacher of --teacher, checked to make images that a PNG can hold.
NetworkPtr load_image_teacher(const SampleOptions& o, torch::Device device) {
  NetworkPtr model = load_network(o.teacher, device);
  const int64_t batch = std::min<int64_t>(o.n, o.sampling.max_batch);
  check_memory("--batch", model->forward_memory_bytes(2 * batch), device,
               "a guided call on 2 x " + std::to_string(batch) + " samples");
  const std::vector<int64_t> shape = model->sample_shape();
  if (shape.size() != 3 || (shape[0] != 1 && shape[0] != 3))
    throw std::invalid_argument(o.teacher + ": the '" + model->kind() + "' model does not make images of 1 (gray) "
                                "or 3 (RGB) channels");
  return model;
}

Generator make_teacher_generator(const SampleOptions& o, torch::Device device) {
  NetworkPtr model = load_image_teacher(o, device);
  Generator g;
  g.sample_shape = model->sample_shape();
  g.num_classes = model->num_classes();
  g.nfe = teacher_nfe(o.sampling);
  const int64_t chunks = (o.n + o.sampling.max_batch - 1) / o.sampling.max_batch;
  g.progress_total = chunks * o.sampling.steps;
  g.label = "teacher " + o.sampling.sampler;
  g.params = {{"model", "teacher"},
              {"teacher", o.teacher},
              {"sampler", o.sampling.sampler},
              {"steps", std::to_string(o.sampling.steps)},
              {"nfe", std::to_string(g.nfe)},
              {"cfg_scale", format_number(o.sampling.cfg_scale)},
              {"shift", format_number(o.sampling.shift)},
              {"timestep_ratio", format_number(o.sampling.timestep_ratio)}};
  const TeacherSampling s = o.sampling;
  g.run = [model, s](const torch::Tensor& noise, const Condition& cond, const SamplerCallback& cb) {
    return sample_teacher(model, noise, cond, s, cb);
  };
  return g;
}

// The distilled student: LoRA fused, one NFE per step, no guidance pass.
Generator make_student_generator(const SampleOptions& o, torch::Device device) {
  NetworkPtr teacher = load_image_teacher(o, device);
  // Unless given, the schedule is the one the adapter was distilled for (its metadata).
  StudentSampling defaults;  // for the keys an adapter's metadata lacks
  defaults.nfe = o.student.nfe;
  defaults.shift = o.sampling.shift;
  defaults.timestep_ratio = o.sampling.timestep_ratio;
  SamplingOverrides given;
  if (o.nfe_given) given.nfe = o.student.nfe;
  if (o.shift_given) given.shift = o.sampling.shift;
  if (o.ratio_given) given.timestep_ratio = o.sampling.timestep_ratio;
  given.temperature = o.student.temperature;
  given.max_batch = o.sampling.max_batch;
  const SamplingStudent loaded = load_sampling_student(teacher, o.adapter, given, defaults);
  LoRAStudent student = loaded.student;
  const io::Metadata& meta = loaded.metadata;
  const StudentSampling so = loaded.sampling;
  Generator g;
  g.sample_shape = teacher->sample_shape();
  g.num_classes = teacher->num_classes();
  g.label = "student";
  g.params = {{"model", "student"},
              {"teacher", o.teacher},
              {"adapter", o.adapter},
              {"policy", student->config.policy},
              {"K", std::to_string(student->config.K)}};
  if (meta.count("nfe") && meta.at("nfe") != std::to_string(so.nfe))
    std::fprintf(stderr, "note: %s was distilled for %s steps; sampling with --nfe %d\n", o.adapter.c_str(),
                 meta.at("nfe").c_str(), so.nfe);
  g.params["nfe"] = std::to_string(so.nfe);
  g.params["shift"] = format_number(so.shift);
  g.params["timestep_ratio"] = format_number(so.timestep_ratio);
  g.params["temperature"] = format_number(so.temperature_for(*student));
  if (!so.temperature) g.params["temperature_rule"] = temperature_rule(true);
  g.nfe = so.nfe;
  g.progress_total = ((o.n + so.max_batch - 1) / so.max_batch) * so.nfe;
  g.run = [student, so](const torch::Tensor& noise, const Condition& cond, const SamplerCallback& cb) mutable {
    return sample_student(*student, noise, cond, so, cb);
  };
  return g;
}

// The generator the options ask for.
Generator make_generator(const SampleOptions& o, torch::Device device) {
  return o.adapter.empty() ? make_teacher_generator(o, device) : make_student_generator(o, device);
}

int run_sample(const SampleOptions& o, const GlobalOptions& global) {
  validate(o);
  if (!o.output.empty()) io::make_output_dir(parent_dir(o.output, "-o"));
  if (!o.save_tensors.empty()) io::make_output_dir(parent_dir(o.save_tensors, "--save-tensors"));
  const torch::Device device = start_up(global);

  Generator gen = make_generator(o, device);
  for (int64_t c : o.classes)
    if (c >= gen.num_classes)
      throw std::invalid_argument("--class " + std::to_string(c) + " is outside 0.." +
                                  std::to_string(gen.num_classes - 1) + " (the model has " +
                                  std::to_string(gen.num_classes) + " classes)");
  {  // the noise, the samples and the grid of all -n images live in memory at once
    int64_t numel = 1;
    for (int64_t d : gen.sample_shape) numel *= d;
    check_memory("-n", 3.0 * static_cast<double>(o.n) * static_cast<double>(numel) * 4, torch::kCPU,
                 std::to_string(o.n) + " images of " + std::to_string(numel) + " float32 values, three copies");
  }
  const torch::Tensor labels = make_label_tensor(o.n, o.classes, gen.num_classes);
  const torch::Tensor noise = make_noise(o.n, gen.sample_shape, o.seed, torch::kCPU);

  ProgressBar bar(gen.label, gen.progress_total, !o.quiet);
  const SamplerCallback cb = [&bar](const StepInfo& info) { bar.update(info.step + 1); };
  const torch::Tensor samples = gen.run(noise, Condition::labels(labels), cb);  // on the CPU: the device work is done
  bar.finish();
  const double seconds = bar.elapsed_seconds();

  io::Metadata params = gen.params;
  params["seed"] = std::to_string(o.seed);
  params["n"] = std::to_string(o.n);
  params["classes"] = o.classes.empty() ? "all" : join(o.classes);
  params["command"] = command_line();
  if (!o.output.empty()) {
    std::map<std::string, std::string> text(params.begin(), params.end());
    text["labels"] = join(make_labels(o.n, o.classes, gen.num_classes));
    text["Software"] = "arcflow 0.1.0";
    io::write_png(o.output, images_to_grid(samples, o.nrow, 2), text);
    std::printf("wrote %s (%lld images, %d per row)\n", o.output.c_str(), static_cast<long long>(o.n),
                static_cast<int>(std::min<int64_t>(o.nrow, o.n)));
  }
  if (!o.save_tensors.empty()) {
    save_sample_tensors(o.save_tensors, noise, labels, samples, params);
    std::printf("wrote %s (noise, labels, samples)\n", o.save_tensors.c_str());
  }
  std::printf("NFE per image: %d\n", gen.nfe);
  std::printf("time: %.2f ms per image (%s for %lld on %s)\n", 1000.0 * seconds / static_cast<double>(o.n),
              format_duration(seconds).c_str(), static_cast<long long>(o.n), device.str().c_str());
  return 0;
}

}  // namespace

Runner add_sample_command(CLI::App& app, GlobalOptions& g) {
  auto* sub = app.add_subcommand("sample", "Generate images with a trained image model (PNG grid, optionally raw "
                                           "tensors for `arcflow eval --samples`)");
  auto o = std::make_shared<SampleOptions>();
  std::vector<std::string> names;
  for (const auto& e : samplers()) names.push_back(e.name);
  sub->add_option("--teacher", o->teacher, "Teacher: weights file (.safetensors from `arcflow train-teacher`; its \"model\" metadata picks the architecture) or a FLUX.1 model folder (diffusers layout)")->required();
  sub->add_option("-o,--output", o->output, "PNG grid to write (empty: none, with --save-tensors)")
      ->capture_default_str();
  sub->add_option("--class", o->classes,
                  "Class of the images; repeat for several (cycled). Default: all classes cycling 0, 1, ...");
  sub->add_option("-n", o->n, "Number of images (the default gives two of each of 10 classes)")->capture_default_str();
  sub->add_option("-s,--seed", o->seed, "Noise seed; image i depends only on the seed and i, so a larger -n keeps "
                                        "the first images")
      ->capture_default_str();
  sub->add_option("--steps", o->sampling.steps, "Teacher sampler steps")->capture_default_str();
  sub->add_option("--cfg-scale", o->sampling.cfg_scale,
                  "Classifier-free guidance scale (1: conditional model alone, 1 NFE per call instead of 2)")
      ->capture_default_str();
  sub->add_option("--sampler", o->sampling.sampler, "Teacher ODE sampler")
      ->check(CLI::IsMember(names))
      ->capture_default_str();
  sub->add_option("--shift", o->sampling.shift, "Schedule shift s (> 0; s > 1 moves steps toward high noise)")
      ->capture_default_str();
  sub->add_option("--timestep-ratio", o->sampling.timestep_ratio, "Length of the last step relative to the others")
      ->capture_default_str();
  sub->add_option("--adapter", o->adapter,
                  "Distilled student adapter (from `arcflow distill`): sample it instead of the teacher");
  sub->add_option("--nfe", o->student.nfe, "Student steps (with --adapter; 1 NFE each; default: what the adapter was distilled for)")->capture_default_str();
  sub->add_option("--temperature", o->temperature,
                  "Student mixture temperature on all but the last step (with --adapter): a number > 0 (1: the "
                  "plain mixture), or auto: the policy's published protocol (GMFlow: pi-Flow's "
                  "min(max(0.1 (nfe - 1), 0), 1), 0.1 at 2 steps; ArcFlow: 1)")
      ->capture_default_str();
  sub->add_option("--nrow", o->nrow, "Images per row of the grid")->capture_default_str();
  sub->add_option("--save-tensors", o->save_tensors,
                  "Also write noise, labels and raw samples as safetensors (input of `arcflow eval --samples`)");
  sub->add_option("--batch", o->sampling.max_batch, "Images per model call (lower it if memory runs out)")
      ->capture_default_str();
  sub->add_flag("-q,--quiet", o->quiet, "No progress bar");
  sub->add_option("--prompts", o->folder.prompts,
                  "Model folders only: prompt-embeddings file (safetensors: prompt_embeds, pooled_prompt_embeds; "
                  "scripts/encode_prompts.py writes one); image i gets prompt i mod N, and -n defaults to N");
  sub->add_option("--guidance", o->folder.guidance,
                  "Model folders only: distilled guidance fed to the guidance embedding (FLUX.1-dev; 1 NFE per step)")
      ->capture_default_str();
  sub->add_option("--height", o->folder.height, "Model folders only: image height in pixels (a multiple of 16)")
      ->capture_default_str();
  sub->add_option("--width", o->folder.width, "Model folders only: image width in pixels (a multiple of 16)")
      ->capture_default_str();
  sub->add_option("--dtype", o->folder.dtype,
                  "Model folders only: compute dtype of the weights: auto (bfloat16 on CUDA, float32 on CPU), "
                  "float32, bfloat16, float16")
      ->capture_default_str();
  sub->footer("--teacher is a weights file (from `arcflow train-teacher`) or a FLUX.1 model folder in the diffusers "
              "layout (MODEL_DIR/transformer, MODEL_DIR/vae), e.g.\n  arcflow sample --teacher FLUX.1-dev "
              "--prompts prompts.safetensors --steps 28 --guidance 3.5 --shift 3.2 --height 1024 --width 1024 "
              "-o grid.png\nGlobal options -t/--threads and --device are described in `arcflow --help`.");
  return [o, sub, &g] {
    o->student.temperature = parse_temperature(o->temperature, "--temperature");
    if (is_model_folder(o->teacher)) {
      FolderSampleOptions f = o->folder;
      f.model_dir = o->teacher;
      f.output = o->output;
      f.save_tensors = o->save_tensors;
      f.n = sub->get_option("-n")->count() > 0 ? o->n : -1;
      f.seed = o->seed;
      f.sampling = o->sampling;
      f.cfg_given = sub->get_option("--cfg-scale")->count() > 0;
      f.guidance_given = sub->get_option("--guidance")->count() > 0;
      f.nrow = o->nrow;
      f.quiet = o->quiet;
      f.adapter = o->adapter;
      f.nfe = o->student.nfe;
      f.nfe_given = sub->get_option("--nfe")->count() > 0;
      f.temperature = o->student.temperature;
      f.shift_given = sub->get_option("--shift")->count() > 0;
      if (!f.adapter.empty())
        require_adapter("--adapter", f.adapter, "from `arcflow distill --teacher MODEL_DIR`, or a pnotp/ArcFlow adapter folder");
      if (!o->classes.empty()) throw std::invalid_argument("--class: a model folder is conditioned on --prompts");
      if (f.adapter.empty() && (f.nfe_given || f.temperature))
        throw std::invalid_argument("--nfe and --temperature are for students: pass --adapter (teachers use --steps)");
      return run_folder_sample(f, g);
    }
    for (const char* flag : {"--prompts", "--guidance", "--height", "--width", "--dtype"})
      if (sub->get_option(flag)->count() > 0)
        throw std::invalid_argument(std::string(flag) + " is for model folders (FLUX model folders in the diffusers "
                                    "layout); --teacher " + o->teacher + " is a weights file");
    o->shift_given = sub->get_option("--shift")->count() > 0;
    o->ratio_given = sub->get_option("--timestep-ratio")->count() > 0;
    o->nfe_given = sub->get_option("--nfe")->count() > 0;
    return run_sample(*o, g);
  };
}

}  // namespace arcflow::cli
