// Training curves from distillation snapshots (see training_curve.h).
#include "arcflow/evaluation/training_curve.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "arcflow/evaluation/image_metrics.h"
#include "arcflow/models/condition.h"
#include "arcflow/models/student.h"
#include "arcflow/sampling/student_sampling.h"

namespace arcflow {

std::vector<Snapshot> find_snapshots(const std::string& run_dir) {
  const std::string dir = run_dir + "/snapshots";
  const std::string hint = " (made by `arcflow distill --snapshot-every N -o " + run_dir + "`)";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr)
    throw std::runtime_error(dir + ": cannot open the snapshots folder: " + std::strerror(errno) + hint);
  std::vector<Snapshot> out;
  const std::string prefix = "adapter-", suffix = ".safetensors";
  while (const dirent* e = ::readdir(d)) {
    const std::string f = e->d_name;
    if (f.size() <= prefix.size() + suffix.size() || f.compare(0, prefix.size(), prefix) != 0 ||
        f.compare(f.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string digits = f.substr(prefix.size(), f.size() - prefix.size() - suffix.size());
    if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); }))
      continue;
    out.push_back({std::stoll(digits), dir + "/" + f});
  }
  ::closedir(d);
  if (out.empty()) throw std::runtime_error(dir + ": no adapter-<iteration>.safetensors snapshots" + hint);
  std::sort(out.begin(), out.end(), [](const Snapshot& a, const Snapshot& b) {
    return a.iteration != b.iteration ? a.iteration < b.iteration : a.path < b.path;
  });
  for (size_t i = 1; i < out.size(); ++i)
    if (out[i].iteration == out[i - 1].iteration)
      throw std::runtime_error(dir + ": two snapshots of iteration " + std::to_string(out[i].iteration) + ": " +
                               out[i - 1].path + " and " + out[i].path);
  return out;
}

TrainingCurve run_training_curve(const NetworkPtr& teacher, const std::string& name, const std::string& run_dir,
                                 Classifier& clf, const FeatureStats& reference, const BenchmarkTable& table,
                                 int64_t max_batch, int64_t classifier_batch, const CurveProgress& progress,
                                 int64_t samples, std::optional<double> temperature) {
  if (!table.noise.defined() || !table.labels.defined() || !table.reference_samples.defined())
    throw std::invalid_argument("training curve: the table has no noise, labels or reference samples");
  const int64_t total = table.noise.size(0);
  if (samples < 0 || samples == 1 || samples > total)
    throw std::invalid_argument("training curve: samples must be 0 (all) or 2.." + std::to_string(total) +
                                " (the table's), got " + std::to_string(samples));
  const int64_t n = samples == 0 ? total : samples;  // the table's first n images
  const torch::Tensor noise = table.noise.narrow(0, 0, n), labels = table.labels.narrow(0, 0, n);
  const std::vector<Snapshot> snaps = find_snapshots(run_dir);
  TrainingCurve curve;
  curve.name = name;
  curve.run_dir = run_dir;
  curve.n = n;
  const torch::Tensor ref = table.reference_samples.narrow(0, 0, n).to(torch::kFloat64);
  for (size_t i = 0; i < snaps.size(); ++i) {
    if (progress) progress(name, i, snaps.size());
    SamplingOverrides given;
    given.max_batch = max_batch;
    given.temperature = temperature;
    SamplingStudent loaded = load_sampling_student(teacher, snaps[i].path, given);
    LoRAStudent st = loaded.student;
    const StudentSampling& so = loaded.sampling;
    curve.nfe = so.nfe;
    curve.temperature = so.temperature_for(*st);
    curve.temperature_auto = !temperature;
    const torch::Tensor x =
        sample_student(*st, noise, Condition::labels(labels), so).to(torch::kCPU, torch::kFloat32);
    const ClassifierOutputs out = classify_images(clf, x, classifier_batch);
    const ImageMetrics im = image_metrics(out, labels, reference);
    curve.points.push_back({snaps[i].iteration, im.fid, (x.to(torch::kFloat64) - ref).pow(2).mean().item<double>()});
  }
  return curve;
}

nlohmann::json curves_json(const std::vector<TrainingCurve>& curves) {
  const auto number = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  nlohmann::json j = nlohmann::json::object();
  for (const TrainingCurve& c : curves) {
    nlohmann::json pts = nlohmann::json::array();
    for (const CurvePoint& p : c.points)
      pts.push_back({{"iteration", p.iteration}, {"fid", number(p.fid)}, {"endpoint_mse", number(p.endpoint_mse)}});
    j[c.name] = {{"run_dir", c.run_dir}, {"nfe", c.nfe}, {"n", c.n}, {"temperature", c.temperature},
                 {"temperature_rule", temperature_rule(c.temperature_auto)}, {"points", pts}};
  }
  return j;
}

}  // namespace arcflow
