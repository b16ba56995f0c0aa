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
#include "arcflow/models/classifier.h"
#include "arcflow/models/dit.h"
#include "arcflow/models/dit_student.h"
#include "arcflow/models/lora.h"
#include "arcflow/training/classifier_train.h"
#include "arcflow/util/progress.h"
#include "commands.h"

namespace arcflow::cli {

namespace {

constexpr const char* kFooter = "Global options -t/--threads and --device are described in `arcflow --help`.";
constexpr const char* kFeatureNetwork = "arcflow Fashion-MNIST classifier (penultimate features); not Inception";

// The command line as a shell would re-run it: arguments quoted where needed.
std::string command_line(const std::vector<std::string>& args) {
  std::string cmd = "arcflow";
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    bool plain = !a.empty();
    for (char ch : a)
      if (!(std::isalnum(static_cast<unsigned char>(ch)) || std::string("_-./=:,+@%").find(ch) != std::string::npos))
        plain = false;
    if (plain) {
      cmd += " " + a;
    } else {
      std::string q = "'";
      for (char ch : a) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
      cmd += " " + q + "'";
    }
  }
  return cmd;
}

std::string command_line(int argc, char** argv) { return command_line(std::vector<std::string>(argv, argv + argc)); }

// This process's command line, from /proc/self/cmdline ("arcflow eval" where that is unreadable).
std::string own_command_line() {
  std::string raw;
  try {
    raw = io::read_file("/proc/self/cmdline");
  } catch (const std::exception&) {
    return "arcflow eval";
  }
  std::vector<std::string> args;
  for (size_t start = 0; start < raw.size();) {
    size_t end = raw.find('\0', start);
    if (end == std::string::npos) end = raw.size();
    args.push_back(raw.substr(start, end - start));
    start = end + 1;
  }
  return command_line(args);
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
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
                  {{"test_accuracy", fmt("%.4f", r.test_accuracy)},
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

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

int run_eval(const EvalOptions& o, const GlobalOptions& g) {
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


// ----------------------------------------------------------------------------- eval: the table

struct AdapterSpec {
  std::string name, path;
};

// "NAME=PATH"; the name becomes a row name and a file name, so it is kept to [A-Za-z0-9._-].
AdapterSpec parse_adapter(const std::string& spec) {
  const size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
    throw std::invalid_argument("--adapter '" + spec +
                                "': expected NAME=PATH, e.g. arcflow-2=runs/arcflow-2/adapter.safetensors");
  AdapterSpec a{spec.substr(0, eq), spec.substr(eq + 1)};
  for (char c : a.name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'))
      throw std::invalid_argument("--adapter '" + spec + "': the name '" + a.name +
                                  "' may only use letters, digits, '.', '_' and '-'");
  return a;
}

void require_file(const std::string& flag, const std::string& path) {
  struct stat st {};
  if (path.empty()) throw std::invalid_argument(flag + ": empty file name");
  if (::stat(path.c_str(), &st) != 0) throw std::invalid_argument(flag + ": no such file '" + path + "'");
  if (S_ISDIR(st.st_mode)) throw std::invalid_argument(flag + ": '" + path + "' is a folder, expected a file");
}

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

// Everything that can be checked before loading a model; returns the parsed adapters.
std::vector<AdapterSpec> validate_table(const EvalOptions& o) {
  require_file("--teacher", o.teacher);
  require_file("--classifier", o.classifier);
  std::vector<AdapterSpec> specs;
  std::map<std::string, std::string> seen;
  for (const std::string& a : o.adapters) {
    specs.push_back(parse_adapter(a));
    require_file("--adapter " + specs.back().name, specs.back().path);
    if (!seen.emplace(specs.back().name, a).second)
      throw std::invalid_argument("--adapter: the name '" + specs.back().name + "' is given twice");
  }
  if (o.bench.n < 2)
    throw std::invalid_argument("-n must be >= 2 (FID needs a feature covariance), got " + std::to_string(o.bench.n));
  for (int k : o.student_nfe)
    if (k < 1) throw std::invalid_argument("--student-nfe entries must be >= 1, got " + std::to_string(k));
  for (int k : o.bench.teacher_steps)
    if (k < 1) throw std::invalid_argument("--teacher-steps entries must be >= 1, got " + std::to_string(k));
  if (o.bench.reference_steps < 1)
    throw std::invalid_argument("--reference-steps must be >= 1, got " + std::to_string(o.bench.reference_steps));
  if (!(o.bench.teacher_shift > 0) || !std::isfinite(o.bench.teacher_shift))
    throw std::invalid_argument("--shift must be > 0, got " + fmt("%g", o.bench.teacher_shift));
  if (!std::isfinite(o.bench.cfg_scale)) throw std::invalid_argument("--cfg-scale must be finite");
  return specs;
}

int run_eval_table(const EvalOptions& o, const GlobalOptions& g) {
  const std::vector<AdapterSpec> specs = validate_table(o);
  const std::string dir = o.output.empty() ? "runs/eval" : o.output;
  io::make_output_dir(dir);
  const torch::Device device = start_up(g);
  const auto t0 = std::chrono::steady_clock::now();

  DiT teacher = load_dit(o.teacher, device);
  if (o.bench.n < 2 * teacher->config.num_classes)
    std::fprintf(stderr, "note: -n %lld gives some class fewer than 2 samples: its diversity is undefined (nan)\n",
                 static_cast<long long>(o.bench.n));
  io::Metadata clf_meta;
  Classifier clf = load_classifier(o.classifier, device, &clf_meta);
  nlohmann::json adapters = nlohmann::json::object();
  std::vector<BenchmarkStudent> students;
  for (const AdapterSpec& a : specs) {
    io::Metadata meta;
    DiTStudent st = load_adapter(teacher, a.path, &meta);
    st->to(device);
    fuse_lora(*st->base);
    StudentSampling so;
    so.max_batch = o.bench.max_batch;
    try {
      if (meta.count("shift")) so.shift = std::stod(meta.at("shift"));
      if (meta.count("timestep_ratio")) so.timestep_ratio = std::stod(meta.at("timestep_ratio"));
    } catch (const std::exception&) {
      throw std::runtime_error(a.path + ": unreadable shift or timestep_ratio in the adapter metadata");
    }
    const int distilled = meta.count("nfe") ? std::atoi(meta.at("nfe").c_str()) : 2;
    const std::vector<int> nfes = o.student_nfe.empty() ? std::vector<int>{distilled} : o.student_nfe;
    nlohmann::json rows = nlohmann::json::array();
    for (int k : nfes) {
      so.nfe = k;
      students.push_back({row_name(a.name, k, distilled), st, so});
      rows.push_back(students.back().name);
    }
    nlohmann::json info = {{"path", a.path}, {"K", st->config.K}, {"distilled_nfe", distilled},
                           {"shift", so.shift}, {"timestep_ratio", so.timestep_ratio}, {"rows", rows}};
    for (const char* key : {"iteration", "policy", "guidance"})
      if (meta.count(key)) info[key] = meta.at(key);
    adapters[a.name] = info;
  }

  // Reference statistics: the classifier's features of the real test images.
  const io::FashionMnist test = io::load_fashion_mnist(o.data_dir, false);
  const ClassifierOutputs ref_out = classify_images(clf, test.images, o.batch);
  const FeatureStats ref_stats = feature_stats(ref_out.features);
  const ImageMetrics ref = image_metrics(ref_out, test.labels, ref_stats);

  BenchmarkOptions bo = o.bench;
  bo.classifier_batch = o.batch;
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
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::printf("%s", format_benchmark_table(table).c_str());
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
      {"reference", {{"data", "Fashion-MNIST test set"},
                     {"n", ref.n},
                     {"accuracy", number_or_null(ref.accuracy)},
                     {"diversity", number_or_null(ref.diversity)}}},
      {"device", device.str()},
      {"threads", torch::get_num_threads()},
      {"seconds", seconds},
      {"command", own_command_line()}};
  if (const auto it = clf_meta.find("test_accuracy"); it != clf_meta.end())
    info["classifier_test_accuracy"] = it->second;
  write_benchmark_report(table, dir, info);
  std::printf("wrote %s/eval.json, %s/index.html and %zu image grids (%s)\n", dir.c_str(), dir.c_str(),
              table.rows.size(), format_duration(seconds).c_str());
  return 0;
}

}  // namespace

Runner add_train_classifier_command(CLI::App& app, GlobalOptions& g, int argc, char** argv) {
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
  const std::string command = command_line(argc, argv);
  return [o, &g, command] { return run_train_classifier(*o, g, command); };
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
                  "Teacher DiT weights: build the comparison table (guided Euler reference, few-step teacher "
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
  auto* gbatch = sub->add_option("--gen-batch", b.max_batch, "Images per model call while generating")
                     ->check(CLI::PositiveNumber)
                     ->capture_default_str();
  auto* grid = sub->add_option("--grid-images", b.preview, "Images per method in the HTML grids")
                   ->check(CLI::NonNegativeNumber)
                   ->capture_default_str();
  auto* quiet = sub->add_flag("-q,--quiet", o->quiet, "No progress bars");
  sub->footer(kFooter);
  const std::vector<CLI::Option*> table_only = {adapter, snfe, n, seed, tsteps, rsteps, cfg, shift, gbatch, grid, quiet};
  return [o, &g, table_only] {
    if (!o->samples.empty() && !o->teacher.empty())
      throw std::invalid_argument("eval: give --samples FILE (score a sample file) or --teacher FILE (the comparison "
                                  "table), not both");
    if (o->samples.empty() && o->teacher.empty())
      throw std::invalid_argument("eval: give --samples FILE (score a sample file) or --teacher FILE (the comparison "
                                  "table)");
    if (!o->teacher.empty()) return run_eval_table(*o, g);
    for (const CLI::Option* opt : table_only)
      if (opt->count() > 0)
        throw std::invalid_argument("eval: " + opt->get_name() + " belongs to the comparison table (with --teacher), "
                                    "not to --samples");
    return run_eval(*o, g);
  };
}

}  // namespace arcflow::cli
