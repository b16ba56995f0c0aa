#include "eval_table.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <set>
#include <stdexcept>

#include "arcflow/io/atomic_file.h"
#include "arcflow/io/idx.h"
#include "arcflow/models/classifier/classifier.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/student.h"
#include "arcflow/models/lora.h"
#include "arcflow/sampling/student_sampling.h"
#include "arcflow/util/interrupt.h"
#include "arcflow/util/progress.h"
#include "common.h"
#include "eval_report.h"

namespace arcflow::cli {

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }


AdapterSpec parse_named(const std::string& spec, const std::string& flag, const std::string& example) {
  const size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
    throw std::invalid_argument(flag + " '" + spec + "': expected " + example);
  AdapterSpec a{spec.substr(0, eq), spec.substr(eq + 1)};
  for (char c : a.name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'))
      throw std::invalid_argument(flag + " '" + spec + "': the name '" + a.name +
                                  "' may only use letters, digits, '.', '_' and '-'");
  return a;
}

AdapterSpec parse_adapter(const std::string& spec) {
  return parse_named(spec, "--adapter", "NAME=PATH, e.g. arcflow-2=runs/arcflow-2/adapter.safetensors");
}

namespace {

// Row name of an adapter sampled with `nfe` steps: NAME itself at the nfe it was distilled for, else
// NAME with a trailing "-<digits>" replaced by "-<nfe>" (arcflow-2 at 4 steps: arcflow-4), or with
// "-<nfe>" appended.
std::string row_name(const std::string& name, int nfe, int distilled) {
  if (nfe == distilled) return name;
  std::string stem = name;
  const size_t dash = name.find_last_of('-');
  if (dash != std::string::npos && dash + 1 < name.size() &&
      name.find_first_not_of("0123456789", dash + 1) == std::string::npos)
    stem = name.substr(0, dash);
  return stem + "-" + std::to_string(nfe);
}

}  // namespace

void validate(const TableRequest& o) {
  require_input_file("--teacher", o.teacher);
  require_input_file("--classifier", o.classifier);
  std::set<std::string> seen;
  for (const AdapterSpec& a : o.adapters) {
    require_adapter("--adapter " + a.name, a.path);
    if (!seen.insert(a.name).second) throw std::invalid_argument("--adapter: the name '" + a.name + "' is given twice");
  }
  std::set<std::string> curve_names;
  for (const AdapterSpec& c : o.curves) {
    if (!curve_names.insert(c.name).second)
      throw std::invalid_argument("--curve: the name '" + c.name + "' is given twice");
    try {
      find_snapshots(c.path);  // fail now, not after the table
    } catch (const std::runtime_error& e) {
      throw std::invalid_argument("--curve " + c.name + ": " + e.what());
    }
  }
  for (double s : o.bench.reference_shifts)
    if (!(s > 0) || !std::isfinite(s))
      throw std::invalid_argument("--reference-shifts entries must be > 0, got " + std::to_string(s));
  if (o.bench.n < 2)
    throw std::invalid_argument("-n must be >= 2 (FID needs a feature covariance), got " + std::to_string(o.bench.n));
  for (int k : o.student_nfe)
    if (k < 1) throw std::invalid_argument("--student-nfe entries must be >= 1, got " + std::to_string(k));
  for (int k : o.bench.teacher_steps)
    if (k < 1) throw std::invalid_argument("--teacher-steps entries must be >= 1, got " + std::to_string(k));
  if (o.bench.reference_steps < 1)
    throw std::invalid_argument("--reference-steps must be >= 1, got " + std::to_string(o.bench.reference_steps));
  if (!(o.bench.teacher_shift > 0) || !std::isfinite(o.bench.teacher_shift))
    throw std::invalid_argument("--shift must be > 0, got " + std::to_string(o.bench.teacher_shift));
  if (!std::isfinite(o.bench.cfg_scale)) throw std::invalid_argument("--cfg-scale must be finite");
  if (o.curve_samples < 0 || o.curve_samples == 1 || o.curve_samples > o.bench.n)
    throw std::invalid_argument("--curve-samples must be 0 (all) or between 2 and -n (" + std::to_string(o.bench.n) +
                                "), got " + std::to_string(o.curve_samples));
  if (!(o.bench.time_limit_s >= 0) || !std::isfinite(o.bench.time_limit_s))
    throw std::invalid_argument("--time-limit must be >= 0 minutes");
  if (o.profile_samples < 0 || o.profile_samples > o.bench.n)
    throw std::invalid_argument("--velocity-profile must be between 0 (none) and -n (" + std::to_string(o.bench.n) +
                                "), got " + std::to_string(o.profile_samples));
  if (o.profile_points < 1) throw std::invalid_argument("--profile-points must be >= 1");
}

TableRun run_table(const TableRequest& o, torch::Device device) {
  validate(o);
  const std::string& dir = o.output_dir;
  io::make_output_dir(dir);
  if (!o.bench.cache_dir.empty()) io::make_output_dir(o.bench.cache_dir);
  install_interrupt_handler();  // Ctrl-C: stop at the next sampler step (cached rows kept)
  const auto t0 = std::chrono::steady_clock::now();

  NetworkPtr teacher = load_network(o.teacher, device);
  {
    double numel = 1;
    for (int64_t d : teacher->sample_shape()) numel *= static_cast<double>(d);
    check_memory("-n", 4.0 * static_cast<double>(o.bench.n) * numel * 4, torch::kCPU,
                 "the shared noise, the reference's samples and a row's, as float32, and their features");
  }
  check_memory("--gen-batch", teacher->forward_memory_bytes(2 * std::min(o.bench.max_batch, o.bench.n)), device,
               "a guided call on 2 x " + std::to_string(std::min(o.bench.max_batch, o.bench.n)) + " samples");
  if (o.bench.n < 2 * teacher->num_classes())
    std::fprintf(stderr, "note: -n %lld gives some class fewer than 2 samples: its diversity is undefined (nan)\n",
                 static_cast<long long>(o.bench.n));
  io::Metadata clf_meta;
  Classifier clf = load_classifier(o.classifier, device, &clf_meta);
  nlohmann::json adapters = nlohmann::json::object();
  std::vector<BenchmarkStudent> students;
  struct Profiled {
    std::string name;
    LoRAStudent student;
    StudentSampling sampling;
    double guidance;
  };
  std::vector<Profiled> profiled;  // each adapter at its distilled sampling, for --velocity-profile
  std::vector<LearntReport> learnt;  // one per adapter, watching the row at its distilled nfe
  learnt.reserve(o.adapters.size());  // the observers point into it
  for (const AdapterSpec& a : o.adapters) {
    SamplingOverrides given;
    given.max_batch = o.bench.max_batch;
    SamplingStudent loaded = load_sampling_student(teacher, a.path, given);
    LoRAStudent st = loaded.student;
    const io::Metadata& meta = loaded.metadata;
    StudentSampling so = loaded.sampling;  // varied over nfe and temperature below
    const int distilled = so.nfe;
    const std::vector<int> nfes = o.student_nfe.empty() ? std::vector<int>{distilled} : o.student_nfe;
    nlohmann::json rows = nlohmann::json::array(), temperatures = nlohmann::json::object();
    learnt.push_back({a.name, "", st->config.policy, st->config.K, 0, MixtureStatsCollector{}});
    const bool has_distilled = std::find(nfes.begin(), nfes.end(), distilled) != nfes.end();
    for (int k : nfes) {
      so.nfe = k;
      std::vector<double> made;  // this nfe's temperatures so far
      for (size_t ti = 0; ti < o.temperatures.size(); ++ti) {
        so.temperature = o.temperatures[ti];
        const double t = so.temperature_for(*st);
        if (std::find(made.begin(), made.end(), t) != made.end()) continue;
        made.push_back(t);
        const std::string name = row_name(a.name, k, distilled) + (ti == 0 ? "" : "-T" + format_number(t));
        students.push_back({name, st, so, nullptr});
        rows.push_back(name);
        temperatures[name] = t;
        if (ti == 0 && learnt.back().row.empty() && (k == distilled || !has_distilled)) {
          learnt.back().row = name;
          learnt.back().nfe = k;
          students.back().observe = learnt.back().stats.observer();
        }
      }
    }
    so.temperature = o.temperatures.front();
    nlohmann::json info = {{"path", a.path}, {"K", st->config.K}, {"policy_head", st->config.policy},
                           {"distilled_nfe", distilled},
                           {"shift", so.shift}, {"timestep_ratio", so.timestep_ratio}, {"rows", rows},
                           {"temperatures", temperatures}};
    for (const char* key : {"iteration", "policy", "guidance"})
      if (meta.count(key)) info[key] = meta.at(key);
    so.nfe = distilled;
    const auto g = meta.find("guidance");
    profiled.push_back({a.name, st, so, g != meta.end() ? std::stod(g->second) : o.bench.cfg_scale});
    adapters[a.name] = info;
  }

  // Reference statistics: the classifier's features of the real test images.
  const io::FashionMnist test = io::load_fashion_mnist(o.data_dir, false);
  const ClassifierOutputs ref_out = classify_images(clf, test.images, o.bench.classifier_batch);
  const FeatureStats ref_stats = feature_stats(ref_out.features);
  const ImageMetrics ref = image_metrics(ref_out, test.labels, ref_stats);

  const BenchmarkOptions& bo = o.bench;
  std::unique_ptr<ProgressBar> bar;
  const BenchmarkProgress progress = [&](const std::string& method, int64_t done, int64_t total) {
    if (o.quiet) return;
    if (done == 0) {
      bar = std::make_unique<ProgressBar>(method, total);
      return;
    }
    bar->update(done);
    if (done == total) bar->finish();
  };
  const BenchmarkTable table = run_benchmark(teacher, students, clf, ref_stats, bo, progress);
  bar.reset();

  // Training curves on the table's noise.
  std::vector<TrainingCurve> curves;
  for (const AdapterSpec& c : o.curves) {
    std::unique_ptr<ProgressBar> cbar;
    if (!o.quiet)
      cbar = std::make_unique<ProgressBar>("curve " + c.name, static_cast<int64_t>(find_snapshots(c.path).size()));
    curves.push_back(run_training_curve(teacher, c.name, c.path, clf, ref_stats, table, bo.max_batch,
                                        bo.classifier_batch, [&](const std::string&, size_t i, size_t) {
                                          if (cbar) cbar->update(static_cast<int64_t>(i));
                                        },
                                        o.curve_samples, o.temperatures.front()));
    if (cbar) cbar->finish();
  }
  // Velocity profiles on the table's first noises.
  std::vector<VelocityProfile> profiles;
  if (o.profile_samples > 0)
    for (Profiled& p : profiled) {
      if (!o.quiet) std::fprintf(stderr, "velocity profile %s (%lld samples)\n", p.name.c_str(),
                                 static_cast<long long>(o.profile_samples));
      GuidedTeacher guided(teacher, p.guidance);
      profiles.push_back(velocity_profile(*p.student, guided, table.noise.narrow(0, 0, o.profile_samples),
                                          Condition::labels(table.labels.narrow(0, 0, o.profile_samples)),
                                          p.sampling, o.profile_points));
      profiles.back().name = p.name;
      profiles.back().guidance = p.guidance;
    }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::printf("%s", format_benchmark_table(table).c_str());
  for (const VelocityProfile& p : profiles) {
    std::printf("velocity profile %s (MSE to the teacher, guidance %g):", p.name.c_str(), p.guidance);
    for (const VelocityProfilePoint& q : p.points) std::printf("  %.3f: %.4f", q.sigma, q.mse);
    std::printf("\n");
  }
  for (const TrainingCurve& c : curves) {
    std::printf("curve %s (%s, %d NFE, %lld images):", c.name.c_str(), c.run_dir.c_str(), c.nfe,
                static_cast<long long>(c.n));
    for (const CurvePoint& p : c.points)
      std::printf("  %lld: fid %.3f endpoint_mse %.5f", static_cast<long long>(p.iteration), p.fid, p.endpoint_mse);
    std::printf("\n");
  }
  std::printf("real test set: accuracy %.4f, diversity %.3f (%lld images)\n", ref.accuracy, ref.diversity,
              static_cast<long long>(ref.n));
  std::printf("n %lld, seed %llu; feature network: %s\n", static_cast<long long>(table.n),
              static_cast<unsigned long long>(table.seed), kFeatureNetwork);

  nlohmann::json info = {
      {"feature_network", kFeatureNetwork},
      {"teacher", o.teacher},
      {"classifier", o.classifier},
      {"adapters", adapters},
      {"cfg_scale", bo.cfg_scale},
      {"teacher_shift", bo.teacher_shift},
      {"reference_shifts", bo.reference_shifts},
      {"reference", {{"data", "Fashion-MNIST test set"},
                     {"n", ref.n},
                     {"accuracy", number_or_null(ref.accuracy)},
                     {"diversity", number_or_null(ref.diversity)}}},
      {"device", device.str()},
      {"threads", torch::get_num_threads()},
      {"seconds", seconds},
      {"command", command_line()}};
  if (const auto it = clf_meta.find("test_accuracy"); it != clf_meta.end())
    info["classifier_test_accuracy"] = it->second;
  nlohmann::json extra = {{"learnt", learnt_json(learnt)}};
  if (!curves.empty()) extra["curves"] = curves_json(curves);
  if (!profiles.empty()) extra["velocity_profiles"] = velocity_profiles_json(profiles);
  write_benchmark_report(table, dir, info, 10, extra,
                         curves_html(curves, table) + velocity_profiles_html(profiles) + learnt_html(learnt));
  std::printf("wrote %s/eval.json, %s/index.html and %zu image grids (%s)\n", dir.c_str(), dir.c_str(),
              table.rows.size(), format_duration(seconds).c_str());
  return {table, ref, info, extra.value("curves", nlohmann::json::object()), extra["learnt"],
          extra.value("velocity_profiles", nlohmann::json::object()), seconds};
}
}  // namespace arcflow::cli
