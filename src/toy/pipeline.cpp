#include "arcflow/toy/pipeline.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "arcflow/evaluation/metrics.h"
#include "arcflow/toy/data.h"
#include "arcflow/util/progress.h"
#include "arcflow/util/text.h"

namespace arcflow {

DistillConfig ToyConfig::default_distill() {
  DistillConfig d;  // section 4 defaults, with the toy's batch, learning rate and decay
  d.batch_size = 512;
  d.lr = 1e-3;
  d.num_decay_iters = 130;
  return d;
}

void ToyConfig::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  if (std::find(toy_dataset_names().begin(), toy_dataset_names().end(), data) == toy_dataset_names().end()) {
    at::Generator g = at::detail::createCPUGenerator(0);
    sample_toy(data, 1, g);  // throws, listing the valid names
  }
  if (!(shift >= 1.0)) bad("--shift must be >= 1, got " + std::to_string(shift));
  if (nfe < 1) bad("--nfe must be >= 1, got " + std::to_string(nfe));
  if (K < 1) bad("-K must be >= 1, got " + std::to_string(K));
  if (teacher_iters < 1) bad("--teacher-iters must be >= 1, got " + std::to_string(teacher_iters));
  if (distill_iters < 1) bad("--distill-iters must be >= 1, got " + std::to_string(distill_iters));
  if (distill.batch_size < 1) bad("--batch must be >= 1, got " + std::to_string(distill.batch_size));
  if (teacher_batch < 1) bad("--teacher-batch must be >= 1, got " + std::to_string(teacher_batch));
  if (eval_samples < 2) bad("--eval-samples must be >= 2, got " + std::to_string(eval_samples));
  if (lora_rank < 1) bad("--lora-rank must be >= 1, got " + std::to_string(lora_rank));
  if (path_points < 1) bad("path points must be >= 1");
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

ToyMLP train_teacher(const ToyConfig& cfg, at::Generator& gen, ToyResult& res) {
  torch::manual_seed(cfg.seed);
  ToyMLP teacher(cfg.teacher_model);
  teacher->to(cfg.device);
  torch::optim::Adam opt(teacher->parameters(), torch::optim::AdamOptions(cfg.teacher_lr));
  ProgressBar bar("teacher", cfg.teacher_iters, cfg.progress);
  const auto t0 = Clock::now();
  double avg = 0;
  for (int it = 1; it <= cfg.teacher_iters; ++it) {
    // Cosine decay to 10% of the learning rate over the run.
    const double lr = cfg.teacher_lr * (0.55 + 0.45 * std::cos(M_PI * (it - 1) / cfg.teacher_iters));
    static_cast<torch::optim::AdamOptions&>(opt.param_groups()[0].options()).lr(lr);
    const int64_t B = cfg.teacher_batch;
    // Flow matching: x_sigma = (1 - sigma) x0 + sigma eps, target u = eps - x0, sigma uniform.
    const torch::Tensor x0 = sample_toy(cfg.data, B, gen).to(cfg.device);
    const torch::Tensor eps = torch::randn({B, 2}, gen).to(cfg.device);
    const torch::Tensor sigma = torch::rand({B}, gen).to(cfg.device);
    const torch::Tensor s = sigma.reshape({B, 1});
    const torch::Tensor loss = torch::mse_loss(teacher->forward((1 - s) * x0 + s * eps, sigma), eps - x0);
    opt.zero_grad();
    loss.backward();
    opt.step();
    const double l = loss.item<double>();
    avg = it == 1 ? l : 0.98 * avg + 0.02 * l;
    bar.update(it, "loss " + format_number(avg, "%.4f"));
  }
  bar.finish("loss " + format_number(avg, "%.4f"));
  res.teacher_seconds = seconds_since(t0);
  res.teacher_final_loss = avg;
  teacher->eval();
  freeze(*teacher);
  return teacher;
}

ToyStudentRun distill_student(const ToyConfig& cfg, const ToyMLP& teacher, const std::string& name,
                              const std::string& policy, int64_t K) {
  torch::manual_seed(cfg.seed + 1);  // the same head noise and LoRA init for every student
  StudentConfig scfg;
  scfg.policy = policy;
  scfg.K = K;
  scfg.lora.rank = cfg.lora_rank;
  scfg.lora.alpha = cfg.lora_rank;
  ToyStudentRun run{name, LoRAStudent(teacher.ptr(), scfg), 0.0, {}};
  LoRAStudent student = run.student;
  student->to(cfg.device);
  DistillConfig d = cfg.distill;
  d.nfe = cfg.nfe;
  d.shift = cfg.shift;
  d.seed = cfg.seed + 2;  // the same noise and walk points for every student
  Distiller distiller(make_distill_problem(student, teacher.ptr(), 1.0, d, cfg.device), d);

  const std::string label = name + "-" + std::to_string(cfg.nfe);
  ProgressBar bar(label, cfg.distill_iters, cfg.progress);
  const auto t0 = Clock::now();
  for (int it = 1; it <= cfg.distill_iters; ++it) {
    const DistillStats st = distiller.step();
    run.losses.push_back(st.loss);
    std::string extra;
    for (size_t i = 0; i < st.step_losses.size(); ++i) extra += "L" + std::to_string(i + 1) + " " + format_number(st.step_losses[i], "%.4f ");
    bar.update(it, extra + "tr " + format_number(st.teacher_ratio, "%.2f"));
  }
  bar.finish();
  run.seconds = seconds_since(t0);
  distiller.load_ema_into_params();
  student->eval();
  return run;
}

// Squared Euclidean distance per sample, averaged over samples.
double mean_sq_dist(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).pow(2).sum(-1).mean().item<double>();
}

}  // namespace

ToyResult run_toy(const ToyConfig& cfg) {
  cfg.validate();
  ToyResult res;
  res.config = cfg;
  at::Generator gen = at::detail::createCPUGenerator(cfg.seed);
  ToyMLP teacher = train_teacher(cfg, gen, res);
  res.teacher = teacher;
  res.students.push_back(distill_student(cfg, teacher, "linear", "arcflow", 1));
  res.students.push_back(distill_student(cfg, teacher, "gmflow", "gmflow", cfg.K));
  res.students.push_back(distill_student(cfg, teacher, "arcflow", "arcflow", cfg.K));

  // Evaluation from one set of noises.
  at::Generator eval_gen = at::detail::createCPUGenerator(cfg.seed + 1000);
  const int64_t n = cfg.eval_samples;
  const torch::Tensor noise = torch::randn({n, 2}, eval_gen).to(cfg.device);
  const torch::Tensor fresh = sample_toy(cfg.data, n, eval_gen);
  const auto segs = segments(cfg.nfe, cfg.shift, cfg.distill.timestep_ratio);
  // The reference: Euler on a fine grid aligned with the students' steps (>= 128 steps in all).
  const int per = std::max(cfg.path_points, (128 + cfg.nfe - 1) / cfg.nfe);
  const auto grid = subdivide(segs, per, cfg.shift);

  const PolicyFn teacher_euler = euler_policy([teacher](const torch::Tensor& x, const torch::Tensor& s) mutable {
    return teacher->forward(x, s);
  });
  auto timed_rollout = [&](const PolicyFn& m, const std::vector<Segment>& sg, double& ms) {
    const auto t0 = Clock::now();
    Rollout r = rollout(m, noise, sg);
    ms = 1000.0 * seconds_since(t0) / n;
    return r;
  };
  ToyRow ref_row{"teacher-euler-" + std::to_string(grid.size()), static_cast<int>(grid.size())};
  const Rollout ref = timed_rollout(teacher_euler, grid, ref_row.ms_per_sample);
  // Reference states at every grid point after the start.
  std::vector<torch::Tensor> ref_states(ref.sources.begin() + 1, ref.sources.end());
  ref_states.push_back(ref.final);

  at::Generator swd_gen = at::detail::createCPUGenerator(cfg.seed + 2000);
  constexpr int kProjections = 256;
  ref_row.swd = sliced_wasserstein(ref.final, fresh, kProjections, swd_gen);
  res.curves.push_back({"data", fresh, {}, {}});
  {
    ToyCurve c{ref_row.method, ref.final.cpu(), {}, {}};
    std::vector<torch::Tensor> pts{noise.narrow(0, 0, cfg.plot_paths)};
    for (const auto& s : ref_states) pts.push_back(s.narrow(0, 0, cfg.plot_paths));
    c.paths = torch::stack(pts, 1).cpu();
    for (int i = 1; i <= cfg.nfe; ++i) c.step_ends.push_back(i * per);
    res.curves.push_back(c);
  }
  res.rows.push_back(ref_row);

  auto evaluate = [&](const std::string& method, const PolicyFn& m) {
    ToyRow row{method + "-" + std::to_string(cfg.nfe), cfg.nfe};
    const Rollout r = timed_rollout(m, segs, row.ms_per_sample);
    row.endpoint_mse = mean_sq_dist(r.final, ref.final);
    row.swd = sliced_wasserstein(r.final, fresh, kProjections, swd_gen);
    // The closed-form path inside each step, at the reference grid's points.
    std::vector<torch::Tensor> pts{noise.narrow(0, 0, cfg.plot_paths)};
    double sum = 0;
    for (int i = 0; i < cfg.nfe; ++i) {
      for (int j = 0; j < per; ++j) {
        const size_t g = static_cast<size_t>(i * per + j);
        const torch::Tensor x = state_at(r, i, grid[g].sigma_dst);
        sum += mean_sq_dist(x, ref_states[g]);
        pts.push_back(x.narrow(0, 0, cfg.plot_paths));
      }
    }
    row.path_mse = sum / (cfg.nfe * per);
    ToyCurve c{row.method, r.final.cpu(), torch::stack(pts, 1).cpu(), {}};
    for (int i = 1; i <= cfg.nfe; ++i) c.step_ends.push_back(i * per);
    res.curves.push_back(c);
    res.rows.push_back(row);
  };
  evaluate("teacher-euler", teacher_euler);
  for (const ToyStudentRun& run : res.students) {
    LoRAStudent st = run.student;
    st->integration = IntegrationOptions{cfg.shift, cfg.distill.total_substeps};
    evaluate(run.name, [st](const torch::Tensor& x, const torch::Tensor& s) mutable {
      return st->policy(x, s, Condition());
    });
  }
  return res;
}

const ToyStudentRun& ToyResult::student(const std::string& name) const {
  for (const auto& s : students)
    if (s.name == name) return s;
  throw std::out_of_range("toy result has no student '" + name + "'");
}

}  // namespace arcflow
