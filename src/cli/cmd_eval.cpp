// `arcflow train-classifier` (the Fashion-MNIST evaluation network) and `arcflow eval`, which has two
// modes:
//   --samples FILE   FID on the classifier's features, class accuracy and per-class diversity of a
//                    sample-tensor file from `arcflow sample --save-tensors`;
//   --teacher FILE   the headline few-step table (evaluation/benchmark_table.h): guided teacher
//                    baselines and the students given with --adapter NAME=PATH, all from the same
//                    noise, written to -o DIR as eval.json, index.html and one PNG grid per method.
#include <sys/stat.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "arcflow/evaluation/benchmark_table.h"
#include "arcflow/evaluation/image_metrics.h"
#include "arcflow/io/atomic_file.h"
#include "arcflow/io/idx.h"
#include "arcflow/io/safetensors.h"
#include "arcflow/models/classifier/classifier.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/student.h"
#include "arcflow/models/lora.h"
#include "arcflow/training/classifier_train.h"
#include "arcflow/util/progress.h"
#include "arcflow/util/text.h"
#include "commands.h"
#include "eval_table.h"

namespace arcflow::cli {

namespace {

constexpr const char* kFooter = "Global options -t/--threads and --device are described in `arcflow --help`.";
constexpr int kExitStopped = 75;  // EX_TEMPFAIL: stopped early (Ctrl-C or --time-limit); run again to continue

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// ----------------------------------------------------------------------------- train-classifier

struct TrainClassifierOptions {
  std::string output = "models/classifier.safetensors";
  std::string data_dir = io::kFashionMnistDir;
  ClassifierTrainConfig cfg;
  bool quiet = false;
};

int run_train_classifier(TrainClassifierOptions& o, const GlobalOptions& g, const std::string& command) {
  o.cfg.device = start_up(g);
  o.cfg.progress = !o.quiet;
  o.cfg.validate();
  io::make_output_dir(parent_dir(o.output));  // fail now, not after the training
  const io::FashionMnist train = io::load_fashion_mnist(o.data_dir, true);
  const io::FashionMnist test = io::load_fashion_mnist(o.data_dir, false);

  torch::manual_seed(o.cfg.seed);  // initial weights and dropout
  Classifier model{ClassifierConfig{}};
  if (!o.quiet)
    std::fprintf(stderr, "classifier: %lld parameters, %lld training images, %d epochs\n",
                 static_cast<long long>(count_parameters(*model)), static_cast<long long>(train.images.size(0)),
                 o.cfg.epochs);
  const ClassifierTrainResult r = train_classifier(model, train, test, o.cfg);

  save_classifier(model, o.output,
                  {{"test_accuracy", format_number(r.test_accuracy, "%.4f")},
                   {"epochs", std::to_string(o.cfg.epochs)},
                   {"seed", std::to_string(o.cfg.seed)},
                   {"command", command}});
  const nlohmann::json summary = {{"test_accuracy", r.test_accuracy},
                                  {"epochs", o.cfg.epochs},
                                  {"batch", o.cfg.batch_size},
                                  {"lr", o.cfg.lr},
                                  {"seed", o.cfg.seed},
                                  {"seconds", r.seconds},
                                  {"train_loss", r.train_loss},
                                  {"command", command}};
  io::write_file_atomic(o.output + ".json", summary.dump(2) + "\n");
  std::printf("test accuracy %.4f (%d epochs, %s)\nwrote %s and %s.json\n", r.test_accuracy, o.cfg.epochs,
              format_duration(r.seconds).c_str(), o.output.c_str(), o.output.c_str());
  return 0;
}

// ----------------------------------------------------------------------------- eval

struct EvalOptions {
  std::string samples, classifier = "models/classifier.safetensors", output;
  std::string data_dir = io::kFashionMnistDir;
  int64_t batch = 500;
  // Table mode (--teacher).
  std::string teacher;
  std::vector<std::string> adapters;  // NAME=PATH
  std::vector<int> student_nfe;       // empty: each adapter's distilled nfe
  std::vector<std::string> temperatures = {"auto"};  // --temperature
  std::vector<std::string> curves;    // NAME=RUN_DIR
  int64_t curve_samples = 0;          // 0: all of the table's
  int64_t profile_samples = 0;        // 0: no velocity profile
  int profile_points = 8;
  double time_limit_min = 0;          // 0: none
  BenchmarkOptions bench;
  bool quiet = false;
};

// Reads "samples" (N, C, H, W) float and "labels" (N) integer from a sample-tensor file, checking
// them against the classifier; errors name the file and the tensor.
void read_samples(const std::string& path, const ClassifierConfig& c, torch::Tensor& images, torch::Tensor& labels) {
  const io::SafetensorsFile f = io::load_safetensors(path);
  auto get = [&](const char* name) {
    const auto it = f.tensors.find(name);
    if (it == f.tensors.end())
      throw std::runtime_error(path + ": no tensor \"" + name +
                               "\" (expected a file from `arcflow sample --save-tensors` with \"samples\" "
                               "(N, 1, 28, 28) and \"labels\" (N))");
    return it->second;
  };
  images = get("samples");
  labels = get("labels");
  if (images.dim() != 4 || images.size(1) != c.in_channels || images.size(2) != c.image_size ||
      images.size(3) != c.image_size)
    throw std::runtime_error(path + ": tensor \"samples\" has shape " + c10::str(images.sizes()) + ", expected (N, " +
                             std::to_string(c.in_channels) + ", " + std::to_string(c.image_size) + ", " +
                             std::to_string(c.image_size) + ")");
  if (!images.is_floating_point())
    throw std::runtime_error(path + ": tensor \"samples\" must be floating point, got " +
                             std::string(c10::toString(images.scalar_type())));
  if (labels.dim() != 1 || labels.size(0) != images.size(0))
    throw std::runtime_error(path + ": tensor \"labels\" has shape " + c10::str(labels.sizes()) + ", expected (" +
                             std::to_string(images.size(0)) + ") to match \"samples\"");
  if (labels.is_floating_point() || labels.scalar_type() == torch::kBool)
    throw std::runtime_error(path + ": tensor \"labels\" must be integer (int64), got " +
                             std::string(c10::toString(labels.scalar_type())));
  if (images.size(0) < 2) throw std::runtime_error(path + ": need at least 2 samples for the feature covariance");
  labels = labels.to(torch::kLong);
  const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
  if (lo < 0 || hi >= c.num_classes)
    throw std::runtime_error(path + ": tensor \"labels\" holds " + std::to_string(lo < 0 ? lo : hi) +
                             ", outside the classifier's classes 0.." + std::to_string(c.num_classes - 1));
  const int64_t bad = images.isfinite().logical_not().sum().item<int64_t>();
  if (bad > 0)
    throw std::runtime_error(path + ": tensor \"samples\" holds " + std::to_string(bad) + " non-finite values");
  images = images.to(torch::kFloat32);
}

int run_eval(const EvalOptions& o, const GlobalOptions& g) {
  require_input_file("--samples", o.samples, "from `arcflow sample --save-tensors`");
  require_input_file("--classifier", o.classifier, "the shipped one is models/classifier.safetensors");
  const torch::Device device = start_up(g);
  const auto t0 = std::chrono::steady_clock::now();
  if (!o.output.empty()) io::make_output_dir(parent_dir(o.output));
  io::Metadata clf_meta;
  Classifier clf = load_classifier(o.classifier, device, &clf_meta);
  torch::Tensor images, labels;
  read_samples(o.samples, clf->config, images, labels);

  // Reference: the classifier's features of the real test images.
  const io::FashionMnist test = io::load_fashion_mnist(o.data_dir, false);
  const ClassifierOutputs ref_out = classify_images(clf, test.images, o.batch);
  const FeatureStats ref_stats = feature_stats(ref_out.features);
  const ImageMetrics ref = image_metrics(ref_out, test.labels, ref_stats);

  const ImageMetrics m = evaluate_images(clf, images, labels, ref_stats, o.batch);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const auto& names = io::fashion_mnist_class_names();
  auto name_of = [&](size_t c) { return c < names.size() ? names[c] : std::to_string(c); };
  std::printf("%-12s %6s %9s %10s %14s\n", "class", "n", "accuracy", "diversity", "real diversity");
  nlohmann::json per_class = nlohmann::json::array();
  for (size_t c = 0; c < m.per_class_count.size(); ++c) {
    std::printf("%-12s %6lld %9.4f %10.4f %14.4f\n", name_of(c).c_str(), static_cast<long long>(m.per_class_count[c]),
                m.per_class_accuracy[c], m.per_class_diversity[c], ref.per_class_diversity[c]);
    per_class.push_back({{"class", c},
                         {"name", name_of(c)},
                         {"n", m.per_class_count[c]},
                         {"accuracy", number_or_null(m.per_class_accuracy[c])},
                         {"diversity", number_or_null(m.per_class_diversity[c])},
                         {"real_diversity", number_or_null(ref.per_class_diversity[c])}});
  }
  std::printf("n %lld  fid %.4f  accuracy %.4f  diversity %.4f  (real test set: accuracy %.4f, diversity %.4f)\n",
              static_cast<long long>(m.n), m.fid, m.accuracy, m.diversity, ref.accuracy, ref.diversity);
  std::printf("feature network: %s\n", kFeatureNetwork);

  if (!o.output.empty()) {
    nlohmann::json report = {
        {"fid", number_or_null(m.fid)},
        {"accuracy", number_or_null(m.accuracy)},
        {"diversity", number_or_null(m.diversity)},
        {"n", m.n},
        {"per_class", per_class},
        {"feature_network", kFeatureNetwork},
        {"samples", o.samples},
        {"classifier", o.classifier},
        {"reference", {{"data", "Fashion-MNIST test set"},
                       {"n", ref.n},
                       {"accuracy", number_or_null(ref.accuracy)},
                       {"diversity", number_or_null(ref.diversity)}}},
        {"seconds", seconds}};
    if (const auto it = clf_meta.find("test_accuracy"); it != clf_meta.end())
      report["classifier_test_accuracy"] = it->second;
    io::write_file_atomic(o.output, report.dump(2) + "\n");
    std::printf("wrote %s\n", o.output.c_str());
  }
  return 0;
}

}  // namespace

Runner add_train_classifier_command(CLI::App& app, GlobalOptions& g) {
  auto* sub = app.add_subcommand("train-classifier",
                                 "Train the Fashion-MNIST classifier whose features and logits `arcflow eval` uses "
                                 "(FID stand-in, class accuracy, diversity)");
  auto o = std::make_shared<TrainClassifierOptions>();
  ClassifierTrainConfig& c = o->cfg;
  sub->add_option("-o,--output", o->output, "Weights file to write (safetensors); a summary goes to <output>.json")
      ->capture_default_str();
  sub->add_option("--epochs", c.epochs, "Passes over the 60000 training images")->capture_default_str();
  sub->add_option("--batch", c.batch_size, "Batch size")->capture_default_str();
  sub->add_option("--lr", c.lr, "Peak AdamW learning rate (short warm-up, then cosine decay)")->capture_default_str();
  sub->add_option("-s,--seed", c.seed, "Random seed; the same seed reproduces the run")->capture_default_str();
  sub->add_option("--data-dir", o->data_dir, "Folder with the Fashion-MNIST IDX files")->capture_default_str();
  sub->add_flag("-q,--quiet", o->quiet, "No progress bar");
  sub->footer(kFooter);
  return [o, &g] { return run_train_classifier(*o, g, command_line()); };
}

Runner add_eval_command(CLI::App& app, GlobalOptions& g) {
  auto* sub = app.add_subcommand(
      "eval",
      "Score generated Fashion-MNIST samples (--samples FILE: FID on the evaluation classifier's features against "
      "the test set, class accuracy, per-class diversity), or build the few-step comparison table (--teacher FILE "
      "[--adapter NAME=PATH ...]: teacher baselines and students from the same noise)");
  auto o = std::make_shared<EvalOptions>();
  BenchmarkOptions& b = o->bench;
  sub->add_option("--samples", o->samples,
                  "Sample-tensor file (from `arcflow sample --save-tensors`): \"samples\" (N, 1, 28, 28) float, "
                  "\"labels\" (N) int64");
  sub->add_option("--teacher", o->teacher,
                  "Teacher weights: build the comparison table (guided Euler reference, few-step teacher "
                  "baselines, the --adapter students) instead of scoring --samples");
  sub->add_option("--classifier", o->classifier, "Classifier weights from `arcflow train-classifier`")
      ->capture_default_str();
  sub->add_option("--data-dir", o->data_dir, "Folder with the Fashion-MNIST IDX files (test set = reference)")
      ->capture_default_str();
  sub->add_option("-o,--output", o->output,
                  "With --samples: write the report as JSON to this file. With --teacher: output folder for "
                  "eval.json, index.html and the image grids (default runs/eval)");
  sub->add_option("--batch", o->batch, "Classifier batch size")->check(CLI::PositiveNumber)->capture_default_str();
  // Table mode.
  auto* adapter = sub->add_option("--adapter", o->adapters,
                                  "Student to add to the table as NAME=PATH (an adapter from `arcflow distill`); "
                                  "repeat for several");
  auto* snfe = sub->add_option("--student-nfe", o->student_nfe,
                               "Student steps, e.g. 2,4: one row per adapter and value (NAME-<nfe> for values other "
                               "than the distilled one). Default: each adapter's distilled nfe")
                   ->delimiter(',');
  auto* temp = sub->add_option("--temperature", o->temperatures,
                               "Student sampling temperatures of all but the last step, e.g. auto,1: one row per "
                               "adapter, nfe and value (the first keeps the adapter's name, others get -T<value>, "
                               "gmflow-2-T1; a value equal to an earlier one for that adapter makes no row). auto: "
                               "the policy's published protocol (GMFlow: pi-Flow's min(max(0.1 (nfe - 1), 0), 1); "
                               "ArcFlow: 1). Training curves use the first")
                  ->delimiter(',')
                  ->capture_default_str();
  auto* n = sub->add_option("-n", b.n, "Samples per method (FID needs thousands; >= 2)")->capture_default_str();
  auto* seed = sub->add_option("-s,--seed", b.seed, "Noise seed shared by every method")->capture_default_str();
  auto* tsteps = sub->add_option("--teacher-steps", b.teacher_steps,
                                 "Few-step teacher baselines: guided Euler and DPM-Solver++(2M) rows with these "
                                 "step counts (2 NFE per step)")
                     ->delimiter(',')
                     ->capture_default_str();
  auto* rsteps = sub->add_option("--reference-steps", b.reference_steps, "Guided Euler steps of the reference")
                     ->capture_default_str();
  auto* cfg = sub->add_option("--cfg-scale", b.cfg_scale, "Teacher guidance scale (every teacher row)")
                  ->capture_default_str();
  auto* shift = sub->add_option("--shift", b.teacher_shift,
                                "Teacher schedule shift (students use the one their adapter was distilled for)")
                    ->capture_default_str();
  auto* rshifts = sub->add_option("--reference-shifts", b.reference_shifts,
                                  "Extra teacher rows: the reference sampler (guided Euler, --reference-steps steps) "
                                  "at each of these schedule shifts, e.g. 3.2,1, named teacher-euler-<R>-cfg-shift-<S>; "
                                  "endpoint_mse and fid_vs_teacher still compare with the reference at --shift")
                      ->delimiter(',');
  auto* curve = sub->add_option("--curve", o->curves,
                                "Training curve as NAME=RUN_DIR: every RUN_DIR/snapshots/adapter-*.safetensors (from "
                                "`arcflow distill --snapshot-every N`) scored on the table's noise (FID, endpoint_mse "
                                "against the iteration; eval.json \"curves\" and a plot in index.html); repeat for "
                                "several");
  auto* csamples = sub->add_option("--curve-samples", o->curve_samples,
                                   "Images per --curve point: the table's first N (e.g. 1000 of -n 5000); 0: all")
                       ->capture_default_str();
  auto* vprofile = sub->add_option("--velocity-profile", o->profile_samples,
                                   "Per adapter: where in sigma its velocity departs from the guided teacher's, along "
                                   "its own rollouts from the table's first N noises (--profile-points levels per "
                                   "step; eval.json \"velocity_profiles\" and a plot in index.html); 0: none")
                       ->capture_default_str();
  auto* ppoints = sub->add_option("--profile-points", o->profile_points, "Noise levels per student step in the profile")
                      ->capture_default_str();
  auto* cache = sub->add_option("--cache", b.cache_dir,
                                "Keep each teacher row's samples in this folder (DIR/ROW.safetensors, written after "
                                "every batch) and reuse them: an eval stopped by Ctrl-C or --time-limit continues "
                                "where it stopped when run again, and a repeated eval skips the teacher rows it has. "
                                "A file made with other settings or another teacher is made again (a note says so)");
  auto* tlimit = sub->add_option("--time-limit", o->time_limit_min,
                                 "Stop after this many minutes (0: none), like Ctrl-C: exit status 75, and with "
                                 "--cache the teacher rows made so far are kept for the next run")
                     ->check(CLI::NonNegativeNumber)
                     ->capture_default_str();
  auto* gbatch = sub->add_option("--gen-batch", b.max_batch, "Images per model call while generating")
                     ->check(CLI::PositiveNumber)
                     ->capture_default_str();
  auto* grid = sub->add_option("--grid-images", b.preview, "Images per method in the HTML grids")
                   ->check(CLI::NonNegativeNumber)
                   ->capture_default_str();
  auto* quiet = sub->add_flag("-q,--quiet", o->quiet, "No progress bars");
  sub->footer(kFooter);
  const std::vector<CLI::Option*> table_only = {adapter, snfe,  n,     seed,     tsteps, rsteps, cfg,    shift,
                                                rshifts, curve, csamples, cache, tlimit, gbatch, grid, quiet,
                                                vprofile, ppoints, temp};
  return [o, &g, table_only] {
    if (!o->samples.empty() && !o->teacher.empty())
      throw std::invalid_argument("eval: give --samples FILE (score a sample file) or --teacher FILE (the comparison "
                                  "table), not both");
    if (o->samples.empty() && o->teacher.empty())
      throw std::invalid_argument("eval: give --samples FILE (score a sample file) or --teacher FILE (the comparison "
                                  "table)");
    if (!o->teacher.empty()) {
      TableRequest r;
      r.teacher = o->teacher;
      r.classifier = o->classifier;
      r.data_dir = o->data_dir;
      r.output_dir = o->output.empty() ? "runs/eval" : o->output;
      for (const std::string& a : o->adapters) r.adapters.push_back(parse_adapter(a));
      for (const std::string& c : o->curves)
        r.curves.push_back(parse_named(c, "--curve", "NAME=RUN_DIR, e.g. arcflow-2=runs/arcflow-2"));
      r.student_nfe = o->student_nfe;
      r.temperatures.clear();
      for (const std::string& t : o->temperatures) r.temperatures.push_back(parse_temperature(t, "--temperature"));
      if (r.temperatures.empty()) r.temperatures.push_back(std::nullopt);
      r.curve_samples = o->curve_samples;
      r.profile_samples = o->profile_samples;
      r.profile_points = o->profile_points;
      r.bench = o->bench;
      r.bench.time_limit_s = o->time_limit_min * 60.0;
      r.bench.classifier_batch = o->batch;
      r.quiet = o->quiet;
      validate(r);  // before start-up, so a bad flag fails at once
      try {
        run_table(r, start_up(g));
      } catch (const BenchmarkStopped& e) {
        std::fprintf(stderr, "arcflow: %s%s\n", e.what(),
                     r.bench.cache_dir.empty() ? "" : "; run the same command again to continue");
        return kExitStopped;
      }
      return 0;
    }
    for (const CLI::Option* opt : table_only)
      if (opt->count() > 0)
        throw std::invalid_argument("eval: " + opt->get_name() + " belongs to the comparison table (with --teacher), "
                                    "not to --samples");
    return run_eval(*o, g);
  };
}

}  // namespace arcflow::cli
