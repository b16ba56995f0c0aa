// The few-step comparison table (see benchmark_table.h): builds the list of methods, generates each
// from the shared noise, and scores it against the test-set statistics and the reference teacher.
#include "arcflow/evaluation/benchmark_table.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <set>
#include <stdexcept>

#include "arcflow/evaluation/image_metrics.h"
#include "arcflow/evaluation/sample_cache.h"
#include "arcflow/io/atomic_file.h"
#include "arcflow/io/png.h"
#include "arcflow/sampling/generate.h"
#include "arcflow/util/interrupt.h"
#include "arcflow/util/text.h"

namespace arcflow {

namespace {

// One row to generate: a name, its cost, and how to turn (noise, labels) into raw outputs.
struct Method {
  std::string name, description;
  std::string cache_name;  // teacher rows: the file in the cache, named by what it holds, not by the row
                           // (the reference at shift 1 and another table's "-shift-1" row share it)
  int nfe = 0;
  int64_t total = 0;  // progress steps over the whole run
  int64_t batch = 0;  // teacher rows: images per model call (a cached row is saved after each); 0: students
  int steps = 0;      // sampler steps per batch (teacher rows)
  std::optional<double> temperature;  // student rows
  bool temperature_auto = false;
  std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const SamplerCallback&)> run;
};

Method teacher_method(const NetworkPtr& teacher, const std::string& name, const std::string& sampler_label,
                      const TeacherSampling& s, int64_t n) {
  Method m;
  m.name = name;
  m.nfe = teacher_nfe(s);
  m.description = "teacher, " + sampler_label + " " + std::to_string(s.steps) + " step" + (s.steps == 1 ? "" : "s") +
                  ", guidance " + format_number(s.cfg_scale) + ", shift " + format_number(s.shift);
  if (s.sampler == "dpmpp_2m" && s.steps <= 2)  // its first and final steps are first order
    m.description += " (first-order steps only at this count: the same images as Euler)";
  m.cache_name = "teacher-" + s.sampler + "-" + std::to_string(s.steps) + "-cfg-" + format_number(s.cfg_scale) + "-shift-" +
                 format_number(s.shift);
  m.total = ((n + s.max_batch - 1) / s.max_batch) * s.steps;
  m.batch = s.max_batch;
  m.steps = s.steps;
  m.run = [teacher, s](const torch::Tensor& noise, const torch::Tensor& labels, const SamplerCallback& cb) {
    return sample_teacher(teacher, noise, Condition::labels(labels), s, cb);
  };
  return m;
}

// "ArcFlow student (K 16)", "linear student (K 1)", "GMFlow student (K 16)".
std::string policy_label(const StudentConfig& c) {
  if (c.policy == "arcflow" && c.K == 1) return "linear student (K 1)";
  const std::string name = c.policy == "arcflow" ? "ArcFlow" : c.policy == "gmflow" ? "GMFlow" : c.policy;
  return name + " student (K " + std::to_string(c.K) + ")";
}

Method student_method(BenchmarkStudent& st, int64_t n) {
  Method m;
  m.name = st.name;
  m.nfe = st.sampling.nfe;
  m.description = policy_label(st.student->config) +
                  ", " + std::to_string(st.sampling.nfe) + " step" + (st.sampling.nfe == 1 ? "" : "s") +
                  ", shift " + format_number(st.sampling.shift);
  m.temperature = st.sampling.temperature_for(*st.student);
  m.temperature_auto = !st.sampling.temperature;
  if (*m.temperature != 1.0 || !m.temperature_auto)
    m.description += ", temperature " + format_number(*m.temperature) + (m.temperature_auto ? " (auto)" : "");
  m.total = ((n + st.sampling.max_batch - 1) / st.sampling.max_batch) * st.sampling.nfe;
  LoRAStudent student = st.student;
  const StudentSampling so = st.sampling;
  const StepObserver observe = st.observe;
  m.run = [student, so, observe](const torch::Tensor& noise, const torch::Tensor& labels,
                                 const SamplerCallback& cb) mutable {
    return sample_student(*student, noise, Condition::labels(labels), so, cb, observe);
  };
  return m;
}

std::string dims(const std::vector<int64_t>& d) {
  std::string s;
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "x" : "") + std::to_string(d[i]);
  return s;
}

void check_compatible(const NetworkPtr& teacher, std::vector<BenchmarkStudent>& students, Classifier& clf,
                      const std::vector<Method>& teacher_rows) {
  const ClassifierConfig& c = clf->config;
  const std::vector<int64_t> image{c.in_channels, c.image_size, c.image_size};
  if (teacher->sample_shape() != image)
    throw std::invalid_argument("benchmark: the classifier takes " + dims(image) + " images but the teacher makes " +
                                dims(teacher->sample_shape()));
  if (c.num_classes != teacher->num_classes())
    throw std::invalid_argument("benchmark: the classifier has " + std::to_string(c.num_classes) +
                                " classes but the teacher has " + std::to_string(teacher->num_classes()));
  std::set<std::string> names;
  for (const Method& m : teacher_rows) names.insert(m.name);
  for (BenchmarkStudent& s : students) {
    if (s.name.empty()) throw std::invalid_argument("benchmark: a student has an empty name");
    if (!names.insert(s.name).second)
      throw std::invalid_argument("benchmark: row name '" + s.name + "' is used twice");
    if (s.student.is_empty()) throw std::invalid_argument("benchmark: student '" + s.name + "' is not set");
    if (s.student->base->config_json() != teacher->config_json())
      throw std::invalid_argument("benchmark: student '" + s.name + "' was built on a teacher with config " +
                                  s.student->base->config_json().dump() + ", not " + teacher->config_json().dump());
    try {
      s.sampling.validate();
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("benchmark: student '" + s.name + "': " + e.what());
    }
  }
}

}  // namespace

void BenchmarkOptions::validate() const {
  if (n < 2) throw std::invalid_argument("benchmark: n must be >= 2 (feature covariance), got " + std::to_string(n));
  if (!std::isfinite(cfg_scale)) throw std::invalid_argument("benchmark: cfg_scale must be finite");
  if (!(teacher_shift > 0) || !std::isfinite(teacher_shift))
    throw std::invalid_argument("benchmark: teacher_shift must be > 0, got " + format_number(teacher_shift));
  if (reference_steps < 1)
    throw std::invalid_argument("benchmark: reference_steps must be >= 1, got " + std::to_string(reference_steps));
  for (int s : teacher_steps)
    if (s < 1) throw std::invalid_argument("benchmark: teacher_steps entries must be >= 1, got " + std::to_string(s));
  for (double s : reference_shifts)
    if (!(s > 0) || !std::isfinite(s))
      throw std::invalid_argument("benchmark: reference_shifts entries must be > 0, got " + format_number(s));
  if (max_batch < 1) throw std::invalid_argument("benchmark: max_batch must be >= 1");
  if (classifier_batch < 1) throw std::invalid_argument("benchmark: classifier_batch must be >= 1");
  if (preview < 0) throw std::invalid_argument("benchmark: preview must be >= 0");
  if (!(time_limit_s >= 0) || !std::isfinite(time_limit_s))
    throw std::invalid_argument("benchmark: time_limit_s must be >= 0, got " + format_number(time_limit_s));
}

BenchmarkTable run_benchmark(const NetworkPtr& teacher, std::vector<BenchmarkStudent>& students, Classifier& clf,
                             const FeatureStats& reference, const BenchmarkOptions& opt,
                             const BenchmarkProgress& progress) {
  opt.validate();

  // The methods, reference first.
  TeacherSampling ts;
  ts.cfg_scale = opt.cfg_scale;
  ts.shift = opt.teacher_shift;
  ts.max_batch = opt.max_batch;
  std::vector<Method> methods;
  ts.sampler = "euler";
  ts.steps = opt.reference_steps;
  const std::string ref_name = "teacher-euler-" + std::to_string(ts.steps) + "-cfg";
  methods.push_back(teacher_method(teacher, ref_name, "Euler", ts, opt.n));
  for (double shift : opt.reference_shifts) {  // the reference sampler at other shifts
    if (shift == opt.teacher_shift) continue;  // that is the reference row itself
    TeacherSampling other = ts;
    other.shift = shift;
    methods.push_back(teacher_method(teacher, ref_name + "-shift-" + format_number(shift), "Euler", other, opt.n));
  }
  ts.shift = opt.teacher_shift;
  for (int steps : opt.teacher_steps) {
    ts.steps = steps;
    ts.sampler = "euler";
    methods.push_back(teacher_method(teacher, "teacher-euler-" + std::to_string(steps), "Euler", ts, opt.n));
    ts.sampler = "dpmpp_2m";
    methods.push_back(
        teacher_method(teacher, "teacher-dpmpp-" + std::to_string(steps), "DPM-Solver++(2M)", ts, opt.n));
  }
  {
    std::set<std::string> seen;
    std::vector<Method> unique;  // e.g. teacher_steps {2, 2}: keep the first
    for (Method& m : methods)
      if (seen.insert(m.name).second) unique.push_back(std::move(m));
    methods = std::move(unique);
  }
  check_compatible(teacher, students, clf, methods);
  for (BenchmarkStudent& s : students) methods.push_back(student_method(s, opt.n));

  BenchmarkTable table;
  table.n = opt.n;
  table.seed = opt.seed;
  table.labels = make_label_tensor(opt.n, {}, teacher->num_classes());
  const torch::Tensor noise = make_noise(opt.n, teacher->sample_shape(), opt.seed);
  table.noise = noise;

  const auto started = std::chrono::steady_clock::now();
  const auto check_stop = [&](const std::string& row) {
    const bool late = opt.time_limit_s > 0 &&
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() > opt.time_limit_s;
    if (interrupted() || late)
      throw BenchmarkStopped(std::string("benchmark stopped (") + (late ? "time limit" : "interrupted") + ") in row " +
                             row + (opt.cache_dir.empty() ? "" : "; the teacher rows made so far are in " + opt.cache_dir));
  };
  const std::string teacher_digest = opt.cache_dir.empty() ? "" : parameter_digest(teacher->module());

  torch::Tensor ref_samples;  // the reference teacher's raw outputs, float64
  FeatureStats ref_teacher;
  for (size_t i = 0; i < methods.size(); ++i) {
    const Method& m = methods[i];
    check_stop(m.name);
    if (progress) progress(m.name, 0, m.total);
    torch::Tensor samples;
    double seconds = 0;
    if (m.batch == 0) {  // a student: one call
      const SamplerCallback cb = [&](const StepInfo& info) {
        check_stop(m.name);
        if (progress) progress(m.name, info.step + 1, m.total);
      };
      const auto t0 = std::chrono::steady_clock::now();
      samples = m.run(noise, table.labels, cb).to(torch::kCPU, torch::kFloat32);
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } else {  // a teacher row: batch by batch, each kept in the row's cache
      const nlohmann::json key = {{"row", m.cache_name}, {"description", m.description},
                                  {"n", opt.n},          {"seed", std::to_string(opt.seed)},
                                  {"shape", noise.sizes().vec()}, {"batch", m.batch},
                                  {"teacher", teacher_digest}};
      std::string note;
      RowCache cache = open_row_cache(opt.cache_dir.empty() ? "" : opt.cache_dir + "/" + m.cache_name + ".safetensors", key,
                                      noise.sizes().vec(), &note);
      if (!note.empty()) std::fprintf(stderr, "note: %s\n", note.c_str());
      if (cache.done < opt.n) cache.done -= cache.done % m.batch;  // continue at a batch boundary
      for (int64_t start = cache.done; start < opt.n; start += m.batch) {
        const int64_t len = std::min(m.batch, opt.n - start), b = start / m.batch;
        if (progress && b > 0) progress(m.name, b * m.steps, m.total);
        const SamplerCallback cb = [&](const StepInfo& info) {
          check_stop(m.name);
          if (progress && (b * m.steps + info.step + 1) < m.total) progress(m.name, b * m.steps + info.step + 1, m.total);
        };
        const auto t0 = std::chrono::steady_clock::now();
        const torch::Tensor x =
            m.run(noise.narrow(0, start, len), table.labels.narrow(0, start, len), cb).to(torch::kCPU, torch::kFloat32);
        cache.samples.narrow(0, start, len).copy_(x);
        cache.done = start + len;
        cache.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        save_row_cache(cache);
      }
      if (progress) progress(m.name, m.total, m.total);
      samples = cache.samples;
      seconds = cache.seconds;
    }

    const ClassifierOutputs out = classify_images(clf, samples, opt.classifier_batch);
    const ImageMetrics im = image_metrics(out, table.labels, reference);
    const FeatureStats stats = feature_stats(out.features);
    if (i == 0) {
      ref_samples = samples.to(torch::kFloat64);
      ref_teacher = stats;
      table.reference_samples = samples;
    }
    BenchmarkRow row;
    row.method = m.name;
    row.description = m.description;
    row.nfe = m.nfe;
    row.temperature = m.temperature;
    row.temperature_auto = m.temperature_auto;
    row.fid = im.fid;
    row.fid_vs_teacher = frechet_distance(stats, ref_teacher);
    row.accuracy = im.accuracy;
    row.diversity = im.diversity;
    row.endpoint_mse = (samples.to(torch::kFloat64) - ref_samples).pow(2).mean().item<double>();
    row.ms_per_image = 1000.0 * seconds / static_cast<double>(opt.n);
    row.preview = samples.narrow(0, 0, std::min(opt.preview, opt.n)).clone();
    table.rows.push_back(std::move(row));
  }
  return table;
}

std::string format_benchmark_table(const BenchmarkTable& t) {
  size_t w = 6;
  for (const BenchmarkRow& r : t.rows) w = std::max(w, r.method.size());
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-*s %4s %9s %14s %8s %9s %12s %12s\n", static_cast<int>(w), "method", "nfe", "fid",
                "fid_vs_teacher", "accuracy", "diversity", "endpoint_mse", "ms_per_image");
  std::string s = buf;
  for (const BenchmarkRow& r : t.rows) {
    std::snprintf(buf, sizeof buf, "%-*s %4d %9.3f %14.3f %8.4f %9.3f %12.5f %12.2f\n", static_cast<int>(w),
                  r.method.c_str(), r.nfe, r.fid, r.fid_vs_teacher, r.accuracy, r.diversity, r.endpoint_mse,
                  r.ms_per_image);
    s += buf;
  }
  return s;
}

nlohmann::json benchmark_json(const BenchmarkTable& t, const nlohmann::json& info) {
  const auto number = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  nlohmann::json rows = nlohmann::json::array();
  for (const BenchmarkRow& r : t.rows) {
    rows.push_back({{"method", r.method},
                    {"description", r.description},
                    {"nfe", r.nfe},
                    {"fid", number(r.fid)},
                    {"fid_vs_teacher", number(r.fid_vs_teacher)},
                    {"accuracy", number(r.accuracy)},
                    {"diversity", number(r.diversity)},
                    {"endpoint_mse", number(r.endpoint_mse)},
                    {"ms_per_image", number(r.ms_per_image)}});
    if (r.temperature) {
      rows.back()["temperature"] = *r.temperature;
      rows.back()["temperature_rule"] = temperature_rule(r.temperature_auto);
    }
  }
  nlohmann::json j = {{"rows", rows}, {"n", t.n}, {"seed", t.seed}};
  if (info.is_object())
    for (const auto& [k, v] : info.items()) j[k] = v;
  return j;
}

std::vector<BenchmarkRow> benchmark_rows_from_json(const nlohmann::json& report, const std::string& source) {
  if (!report.is_object() || !report.contains("rows") || !report["rows"].is_array())
    throw std::runtime_error(source + ": no \"rows\" array (not an `arcflow eval --teacher` report)");
  std::vector<BenchmarkRow> rows;
  for (size_t i = 0; i < report["rows"].size(); ++i) {
    const nlohmann::json& j = report["rows"][i];
    const std::string where = source + ": row " + std::to_string(i);
    if (!j.is_object() || !j.contains("method") || !j["method"].is_string())
      throw std::runtime_error(where + ": no \"method\" string");
    BenchmarkRow r;
    r.method = j["method"].get<std::string>();
    if (j.contains("description") && j["description"].is_string()) r.description = j["description"].get<std::string>();
    if (j.contains("nfe") && j["nfe"].is_number()) r.nfe = j["nfe"].get<int>();
    if (j.contains("temperature") && j["temperature"].is_number()) {
      r.temperature = j["temperature"].get<double>();
      r.temperature_auto = j.contains("temperature_rule") && j["temperature_rule"].is_string() &&
                          temperature_rule_is_auto(j["temperature_rule"].get<std::string>());
    }
    const auto metric = [&](const char* key, const char* alias) {
      const char* k = j.contains(key) ? key : alias && j.contains(alias) ? alias : nullptr;
      if (!k) return std::nan("");
      const nlohmann::json& v = j[k];
      if (v.is_null()) return std::nan("");
      if (!v.is_number()) throw std::runtime_error(where + " (" + r.method + "): \"" + k + "\" is not a number");
      return v.get<double>();
    };
    r.fid = metric("fid", nullptr);
    r.fid_vs_teacher = metric("fid_vs_teacher", nullptr);
    r.accuracy = metric("accuracy", nullptr);
    r.diversity = metric("diversity", nullptr);
    r.endpoint_mse = metric("endpoint_mse", "traj_mse");  // the name before issue 14
    r.ms_per_image = metric("ms_per_image", nullptr);
    rows.push_back(std::move(r));
  }
  return rows;
}

std::string benchmark_grid_file(const std::string& method) {
  std::string f = method;
  for (char& c : f)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  return f + ".png";
}

namespace {

std::string cell(double v, const char* f) {
  if (!std::isfinite(v)) return "<td>&ndash;</td>";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return std::string("<td>") + buf + "</td>";
}

}  // namespace

void write_benchmark_report(const BenchmarkTable& t, const std::string& dir, const nlohmann::json& info, int nrow,
                            const nlohmann::json& extra_json, const std::string& extra_html) {
  nlohmann::json report = benchmark_json(t, info);
  if (extra_json.is_object())
    for (const auto& [k, v] : extra_json.items()) report[k] = v;
  io::write_file_atomic(dir + "/eval.json", report.dump(2) + "\n");

  std::string h =
      "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>arcflow eval: few-step comparison</title>\n"
      "<style>body{font-family:sans-serif;margin:2em;max-width:80em} table{border-collapse:collapse;margin:1em 0}"
      " td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right;vertical-align:middle}"
      " .l{text-align:left} img{image-rendering:pixelated;display:block} small{color:#666}</style>\n"
      "</head><body>\n<h1>Few-step comparison</h1>\n";
  h += "<p>" + std::to_string(t.n) + " samples per method, seed " + std::to_string(t.seed) +
       ". Every method starts from the same noise with the same labels (classes cycling). "
       "The first row is the reference (" + (t.rows.empty() ? std::string("none") : xml_escape(t.rows[0].description)) +
       ", " + (t.rows.empty() ? std::string("0") : std::to_string(t.rows[0].nfe)) +
       " NFE): fid_vs_teacher compares each method's features with it, and endpoint_mse is the end point's "
       "per-pixel MSE to the reference result from the same noise (raw outputs, image by image).</p>\n";
  if (info.contains("feature_network") && info["feature_network"].is_string())
    h += "<p>Feature network: " + xml_escape(info["feature_network"].get<std::string>()) +
         ". FID and diversity compare methods with each other, not with published Inception FIDs.</p>\n";
  h += "<table>\n<tr><th class=\"l\">method</th><th>nfe</th><th>fid</th><th>fid_vs_teacher</th><th>accuracy</th>"
       "<th>diversity</th><th>endpoint_mse</th><th>ms_per_image</th><th class=\"l\">description</th></tr>\n";
  for (const BenchmarkRow& r : t.rows)
    h += "<tr><td class=\"l\"><b>" + xml_escape(r.method) + "</b></td><td>" + std::to_string(r.nfe) + "</td>" +
         cell(r.fid, "%.3f") + cell(r.fid_vs_teacher, "%.3f") + cell(r.accuracy, "%.4f") +
         cell(r.diversity, "%.3f") + cell(r.endpoint_mse, "%.5f") + cell(r.ms_per_image, "%.2f") + "<td class=\"l\">" +
         xml_escape(r.description) + "</td></tr>\n";
  h += "</table>\n";

  bool header = false;
  for (const BenchmarkRow& r : t.rows) {
    if (!r.preview.defined() || r.preview.size(0) == 0) continue;
    const std::string file = benchmark_grid_file(r.method);
    const io::Image grid = images_to_grid(r.preview, nrow, 2);
    io::write_png(dir + "/" + file, grid, {{"method", r.method}, {"Software", "arcflow 0.1.0"}});
    if (!header) {
      h += "<h2>Samples from the same noise</h2>\n<p>The first " + std::to_string(r.preview.size(0)) +
           " samples of each method, " + std::to_string(nrow) +
           " per row; with the cycling labels, image k has class k modulo the number of classes.</p>\n<table>\n";
      header = true;
    }
    h += "<tr><th class=\"l\">" + xml_escape(r.method) + "<br><small>" + std::to_string(r.nfe) +
         " NFE</small></th><td><img src=\"" + xml_escape(file) + "\" width=\"" + std::to_string(3 * grid.width) +
         "\" height=\"" + std::to_string(3 * grid.height) + "\" alt=\"" + xml_escape(r.method) + "\"></td></tr>\n";
  }
  if (header) h += "</table>\n";
  h += extra_html;
  if (info.is_object() && !info.empty()) h += "<h2>Run</h2>\n<pre>" + xml_escape(info.dump(2)) + "</pre>\n";
  h += "</body></html>\n";
  io::write_file_atomic(dir + "/index.html", h);
}

}  // namespace arcflow
