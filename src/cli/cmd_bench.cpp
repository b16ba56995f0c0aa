// `arcflow bench`: the speed figures of the image pipeline, measured in one run on one machine
// (warm-up, then median, min and max of repeats): ms per image of teacher-100 (Euler 50 steps with
// guidance), teacher-2 and the fused 2-step student at two batch sizes and the student's speed-up;
// the closed-form integration's share of a student step; the DiT forward's GFLOP/s against the
// machine's GEMM rate measured in the same run; distillation and teacher-training throughput; peak
// resident memory of sampling and of distillation. JSON to -o, a table on stdout.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <vector>

#include "arcflow/core/policy.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/models/registry.h"
#include "arcflow/io/atomic_file.h"
#include "arcflow/models/student.h"
#include "arcflow/sampling/generate.h"
#include "arcflow/sampling/student_sampling.h"
#include "arcflow/training/distill.h"
#include "arcflow/training/teacher.h"
#include "arcflow/util/resources.h"
#include "commands.h"
#include "flux_bench.h"

namespace arcflow::cli {

namespace {

struct BenchOptions {
  std::string teacher = "models/teacher.safetensors";
  std::string adapter;  // empty: a fresh student (same cost as a trained one)
  std::string temperature = "auto";  // student-2's sampling temperature
  std::vector<int64_t> batches{1, 64};
  int repeats = 3;
  int gemm_size = 2048;
  bool skip_training = false;
  std::string output = "bench.json";
  FluxBenchOptions flux;  // FLUX shapes: --random-weights, --config, --resolutions, ...
};

struct Timing {
  double median = 0, min = 0, max = 0;  // seconds
  nlohmann::json json(double per = 1.0) const {
    return {{"median_ms", 1e3 * median / per}, {"min_ms", 1e3 * min / per}, {"max_ms", 1e3 * max / per}};
  }
};

// One warm-up call, then `repeats` timed calls.
Timing time_it(const std::function<void()>& f, int repeats) {
  f();
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front(), t.back()};
}

void sync(torch::Device d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}

int run(const BenchOptions& o, const GlobalOptions& g) {
  require_input_file("--teacher", o.teacher, "the shipped one is models/teacher.safetensors");
  if (!o.adapter.empty()) require_adapter("--adapter", o.adapter, "from `arcflow distill`");
  const std::optional<double> temperature = parse_temperature(o.temperature, "--temperature");
  const torch::Device dev = start_up(g);
  if (o.repeats < 1) throw std::invalid_argument("--repeats must be >= 1");
  for (int64_t b : o.batches)
    if (b < 1) throw std::invalid_argument("--batch-sizes must be >= 1, got " + std::to_string(b));
  nlohmann::json out;
  out["device"] = dev.str();
  out["threads"] = torch::get_num_threads();

  // GEMM rate: the best of the repeats of an n x n float32 product.
  {
    torch::NoGradGuard ng;
    const int64_t n = o.gemm_size;
    const torch::Tensor a = torch::randn({n, n}, torch::TensorOptions().device(dev));
    const torch::Tensor b = torch::randn({n, n}, torch::TensorOptions().device(dev));
    const Timing t = time_it([&] { torch::Tensor c = torch::mm(a, b); sync(dev); }, std::max(3, o.repeats));
    out["gemm_gflops"] = 2.0 * n * n * n / t.min / 1e9;
    out["gemm_size"] = n;
  }

  NetworkPtr teacher = load_network(o.teacher, dev);
  teacher->module().eval();
  const int64_t most = *std::max_element(o.batches.begin(), o.batches.end());
  check_memory("--batch-sizes", teacher->forward_memory_bytes(2 * most), dev,
               "a guided call on 2 x " + std::to_string(most) + " samples");
  torch::manual_seed(0);
  // The student-2 rows: two steps of the adapter's schedule (or a fresh ArcFlow head's, without --adapter).
  StudentSampling s2;
  s2.nfe = 2;
  s2.temperature = temperature;
  LoRAStudent student{nullptr};
  if (o.adapter.empty()) {
    student = LoRAStudent(teacher, StudentConfig{});
    student->to(dev);
    student->eval();
    student->fuse_lora();
  } else {
    SamplingOverrides given;
    given.nfe = s2.nfe;
    given.temperature = temperature;
    const SamplingStudent loaded = load_sampling_student(teacher, o.adapter, given);
    student = loaded.student;
    s2 = loaded.sampling;
  }
  const std::vector<int64_t> shape = teacher->sample_shape();
  const int64_t classes = std::max<int64_t>(1, teacher->num_classes());

  // DiT forward rate at the largest batch.
  const int64_t big = *std::max_element(o.batches.begin(), o.batches.end());
  {
    torch::NoGradGuard ng;
    const torch::Tensor x = make_noise(big, shape, 1, dev);
    const torch::Tensor s = torch::full({big}, 0.5, x.options());
    const Condition y = Condition::labels(torch::zeros({big}, torch::TensorOptions().dtype(torch::kLong).device(dev)));
    const Timing t = time_it([&] { teacher->velocity(x, s, y); sync(dev); }, o.repeats);
    out["forward_batch"] = big;
    out["forward_ms"] = 1e3 * t.median;
    out["forward_gflops"] = teacher->forward_flops(big) / t.median / 1e9;
    out["gemm_fraction"] = out["forward_gflops"].get<double>() / out["gemm_gflops"].get<double>();
    // Integration share of a student step: the network call vs the closed-form integration.
    PolicyPtr p;
    const Timing tf = time_it([&] { p = student->policy(x, s, y); sync(dev); }, o.repeats);
    const torch::Tensor s0 = torch::zeros({big}, x.options());
    const Timing ti = time_it([&] { p->integrate(x, s, s0); sync(dev); }, o.repeats);
    out["student_forward_ms"] = 1e3 * tf.median;
    out["integration_ms"] = 1e3 * ti.median;
    out["integration_share"] = ti.median / (ti.median + tf.median);
  }

  // Sampling: ms per image.
  reset_peak_rss();
  nlohmann::json rows = nlohmann::json::array();
  std::map<int64_t, std::map<std::string, double>> ms;
  for (int64_t b : o.batches) {
    const torch::Tensor noise = make_noise(b, shape, 0, torch::kCPU);
    const Condition labels = Condition::labels(make_label_tensor(b, {}, classes));
    TeacherSampling t100;
    t100.steps = 50;
    t100.cfg_scale = 4.0;
    TeacherSampling t2 = t100;
    t2.steps = 1;  // one guided Euler step: 2 NFE
    const std::vector<std::tuple<std::string, int, std::function<void()>>> methods = {
        {"teacher-euler-50-cfg", 100, [&] { sample_teacher(teacher, noise, labels, t100); }},
        {"teacher-euler-1-cfg", 2, [&] { sample_teacher(teacher, noise, labels, t2); }},
        {"student-2", 2, [&] { sample_student(*student, noise, labels, s2); }}};
    for (const auto& m : methods) {
      // (no structured bindings: C++17 does not let a lambda capture them; clang refuses)
      const std::string& name = std::get<0>(m);
      const int nfe = std::get<1>(m);
      const std::function<void()>& f = std::get<2>(m);
      const Timing t = time_it([&] { f(); sync(dev); }, name == "teacher-euler-50-cfg" ? std::min(o.repeats, 2) : o.repeats);
      nlohmann::json r = t.json(static_cast<double>(b));
      r["method"] = name;
      r["nfe"] = nfe;
      r["batch"] = b;
      rows.push_back(r);
      ms[b][name] = 1e3 * t.median / static_cast<double>(b);
      std::printf("%-22s batch %3lld  %4d NFE  %10.2f ms/image (min %.2f, max %.2f)\n", name.c_str(),
                  static_cast<long long>(b), nfe, ms[b][name], 1e3 * t.min / b, 1e3 * t.max / b);
    }
    out["speedup_b" + std::to_string(b)] = ms[b]["teacher-euler-50-cfg"] / ms[b]["student-2"];
  }
  out["rows"] = rows;
  out["student_temperature"] = s2.temperature_for(*student);
  out["student_temperature_rule"] = temperature_rule(!temperature);
  out["sampling_peak_rss_mb"] = static_cast<double>(peak_rss_bytes()) / (1 << 20);

  if (!o.skip_training) {
    // Distillation iterations per second (the default recipe's batch 16) and teacher training rate.
    reset_peak_rss();
    torch::manual_seed(0);
    LoRAStudent train_student(teacher, StudentConfig{});
    DistillConfig dc;
    dc.batch_size = 16;
    Distiller dist(make_distill_problem(train_student, teacher, 4.0, dc, dev), dc);
    const Timing td = time_it([&] { dist.step(); sync(dev); }, o.repeats);
    out["distill_it_per_s"] = 1.0 / td.median;
    out["distill_batch"] = dc.batch_size;
    out["distill_peak_rss_mb"] = static_cast<double>(peak_rss_bytes()) / (1 << 20);
  }
  if (auto dit = std::dynamic_pointer_cast<DiTImpl>(teacher); dit && !o.skip_training) {
    const DiTConfig& cfg = dit->config;
    TeacherTrainConfig tc;
    tc.model = cfg;
    tc.batch_size = 64;
    const torch::Tensor images = torch::rand({256, cfg.in_channels, cfg.image_size, cfg.image_size}) * 2 - 1;
    const torch::Tensor labels = torch::arange(256, torch::kLong) % cfg.num_classes;
    TeacherTrainer tt(tc, images, labels, dev);
    const Timing tr = time_it([&] { tt.step(); sync(dev); }, o.repeats);
    out["teacher_train_images_per_s"] = static_cast<double>(tc.batch_size) / tr.median;
  }

  std::printf("GEMM %.1f GFLOP/s; DiT forward (batch %lld) %.1f GFLOP/s = %.0f%% of it\n",
              out["gemm_gflops"].get<double>(), static_cast<long long>(big), out["forward_gflops"].get<double>(),
              100 * out["gemm_fraction"].get<double>());
  std::printf("closed-form integration: %.3f ms of a %.2f ms student step (%.2f%%)\n",
              out["integration_ms"].get<double>(), out["student_forward_ms"].get<double>() + out["integration_ms"].get<double>(),
              100 * out["integration_share"].get<double>());
  for (int64_t b : o.batches)
    std::printf("speed-up of student-2 over teacher-100 at batch %lld: %.1fx\n", static_cast<long long>(b),
                out["speedup_b" + std::to_string(b)].get<double>());
  if (out.contains("distill_it_per_s"))
    std::printf("distillation %.3f it/s (batch 16); teacher training %.1f images/s; peak RSS sampling %.0f MB, "
                "distillation %.0f MB\n",
                out["distill_it_per_s"].get<double>(), out["teacher_train_images_per_s"].get<double>(),
                out["sampling_peak_rss_mb"].get<double>(), out["distill_peak_rss_mb"].get<double>());
  io::write_file_atomic(o.output, out.dump(2) + "\n");
  std::printf("wrote %s\n", o.output.c_str());
  return 0;
}

}  // namespace

Runner add_bench_command(CLI::App& app, GlobalOptions& g) {
  auto* sub = app.add_subcommand("bench", "Measure sampling speed (teacher-100 vs student-2), the integration's share, "
                                          "GEMM efficiency, training throughput and peak memory");
  auto o = std::make_shared<BenchOptions>();
  sub->add_option("--teacher", o->teacher, "Teacher DiT weights")->capture_default_str();
  sub->add_option("--adapter", o->adapter, "Student adapter (default: a fresh K=16 student, same cost)");
  sub->add_option("--temperature", o->temperature,
                  "student-2's temperature on its first step: a number > 0, or auto (the policy's published "
                  "protocol: GMFlow 0.1 at 2 steps, ArcFlow 1); it changes the images, not the cost")
      ->capture_default_str();
  sub->add_option("--batch-sizes", o->batches, "Batch sizes of the sampling rows")->delimiter(',')->capture_default_str();
  sub->add_option("--repeats", o->repeats, "Timed repeats after one warm-up (teacher-100: at most 2)")
      ->capture_default_str();
  sub->add_option("--gemm-size", o->gemm_size, "Matrix size of the GEMM-rate measurement")->capture_default_str();
  sub->add_flag("--skip-training", o->skip_training, "Skip the distillation and teacher-training rows");
  sub->add_option("-o,--output", o->output, "JSON report")->capture_default_str();
  sub->add_flag("--random-weights", o->flux.random_weights,
                "FLUX shapes without weights: a transformer of --config with random weights, built on the device");
  sub->add_option("--config", o->flux.config,
                  "With --random-weights: flux-dev (12B), flux-schnell, tiny, or a transformer config.json")
      ->capture_default_str();
  sub->add_option("--resolutions", o->flux.resolutions, "FLUX: image sizes (square, pixels; latent = size / 8)")
      ->delimiter(',')
      ->capture_default_str();
  sub->add_option("--teacher-steps", o->flux.teacher_steps, "FLUX: teacher step counts timed per image (besides 2)")
      ->delimiter(',')
      ->capture_default_str();
  sub->add_option("--text-tokens", o->flux.text_tokens, "FLUX: text tokens per prompt (512 for FLUX.1-dev)")
      ->capture_default_str();
  sub->add_option("--distill-iters", o->flux.distill_iters,
                  "FLUX: time this many ArcFlow distillation iterations (batch 1, after one warm-up) per resolution, "
                  "with and without per-block activation checkpointing (0: skip)")
      ->capture_default_str();
  sub->add_option("--lora-rank", o->flux.lora_rank, "FLUX: LoRA rank of the distillation rows' student")
      ->capture_default_str();
  sub->add_option("--dtype", o->flux.dtype, "FLUX: compute dtype: auto (bfloat16 on CUDA, else float32), float32, "
                                            "bfloat16, float16")
      ->capture_default_str();
  sub->footer("--teacher may also be a FLUX.1 model folder (diffusers layout); that, or --random-weights, benches the "
              "FLUX shapes instead (-o default bench-flux.json). E.g. on a GPU:\n  arcflow --device cuda bench "
              "--random-weights --config flux-dev --resolutions 512,1024\n"
              "Global options -t/--threads and --device are described in `arcflow --help`.");
  return [o, sub, &g] {
    if (o->flux.random_weights || is_model_folder(o->teacher)) {
      FluxBenchOptions f = o->flux;
      if (!o->flux.random_weights) f.model_dir = o->teacher;
      f.repeats = o->repeats;
      if (sub->get_option("-o")->count() > 0) f.output = o->output;
      return run_flux_bench(f, g);
    }
    return run(*o, g);
  };
}

}  // namespace arcflow::cli
