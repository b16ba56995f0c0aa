// The toy run's report: report.json, report.html and the PNG pictures beside them.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "arcflow/io/atomic_file.h"
#include "arcflow/io/canvas.h"
#include "arcflow/io/png.h"
#include "arcflow/io/safetensors.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/weights.h"
#include "arcflow/toy/pipeline.h"
#include "arcflow/util/text.h"

namespace arcflow {

namespace {

constexpr double kRange = 3.0;  // pictures show [-3, 3]^2
constexpr int kSize = 360;

std::vector<float> to_xy(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kCPU, torch::kFloat32).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

io::Image scatter(const torch::Tensor& samples, io::Color color) {
  io::Canvas cv(kSize, kSize, -kRange, kRange, -kRange, kRange);
  cv.axes();
  cv.points(to_xy(samples), color, 1, 0.35);
  return cv.image();
}

// The reference paths in grey and the method's closed-form paths in colour, step ends marked.
io::Image trajectories(const ToyCurve& ref, const ToyCurve& m, io::Color color) {
  io::Canvas cv(kSize, kSize, -kRange, kRange, -kRange, kRange);
  cv.axes();
  const int64_t n = std::min(ref.paths.size(0), m.paths.size(0));
  for (int64_t i = 0; i < n; ++i) cv.polyline(to_xy(ref.paths[i]), {150, 150, 150}, 0.8, 1);
  for (int64_t i = 0; i < n; ++i) {
    cv.polyline(to_xy(m.paths[i]), color, 0.9, 2);
    const auto p0 = m.paths[i][0];
    cv.marker(p0[0].item<double>(), p0[1].item<double>(), {0, 0, 0}, 2);
    for (int e : m.step_ends) {
      const auto p = m.paths[i][e];
      cv.marker(p[0].item<double>(), p[1].item<double>(), color, 3);
    }
  }
  return cv.image();
}

}  // namespace

std::string toy_samples_picture(const std::string& method) { return "samples_" + method + ".png"; }
std::string toy_paths_picture(const std::string& method) { return "paths_" + method + ".png"; }

std::string format_toy_table(const ToyResult& res) {
  std::string out;
  char line[160];
  std::snprintf(line, sizeof line, "%-20s %4s %12s %12s %10s %12s\n", "method", "nfe", "endpoint_mse", "path_mse", "swd",
                "ms/sample");
  out += line;
  for (const auto& r : res.rows) {
    std::snprintf(line, sizeof line, "%-20s %4d %12.5f %12.5f %10.4f %12.5f\n", r.method.c_str(), r.nfe,
                  r.endpoint_mse, r.path_mse, r.swd, r.ms_per_sample);
    out += line;
  }
  return out;
}

std::string write_toy_report(const ToyResult& res, const std::string& dir) {
  io::make_output_dir(dir);
  const ToyConfig& cfg = res.config;

  // Pictures: samples of every curve, trajectories of every method against the reference.
  std::vector<std::pair<std::string, std::string>> sample_pics, path_pics;  // (file, caption)
  const ToyCurve* ref = nullptr;
  for (size_t i = 0; i < res.curves.size(); ++i) {
    const ToyCurve& c = res.curves[i];
    const std::string file = toy_samples_picture(c.method);
    io::write_png(dir + "/" + file, scatter(c.samples, io::palette(static_cast<int>(i))));
    sample_pics.push_back({file, c.method});
    if (i == 1) ref = &c;
    if (i >= 2 && ref != nullptr) {
      const std::string pf = toy_paths_picture(c.method);
      io::write_png(dir + "/" + pf, trajectories(*ref, c, io::palette(static_cast<int>(i))));
      path_pics.push_back({pf, c.method + " (colour) vs " + ref->method + " (grey)"});
    }
  }

  nlohmann::json j;
  j["data"] = cfg.data;
  j["shift"] = cfg.shift;
  j["nfe"] = cfg.nfe;
  j["K"] = cfg.K;
  j["seed"] = cfg.seed;
  j["rows"] = nlohmann::json::array();
  for (const auto& r : res.rows)
    j["rows"].push_back({{"method", r.method}, {"nfe", r.nfe}, {"endpoint_mse", r.endpoint_mse},
                         {"path_mse", r.path_mse}, {"swd", r.swd}, {"ms_per_sample", r.ms_per_sample}});
  j["training"] = {{"teacher_iters", cfg.teacher_iters},     {"teacher_batch", cfg.teacher_batch},
                   {"teacher_seconds", res.teacher_seconds}, {"teacher_final_loss", res.teacher_final_loss},
                   {"distill_iters", cfg.distill_iters},     {"distill_batch", cfg.distill.batch_size},
                   {"students", nlohmann::json::object()}};
  for (const auto& st : res.students)
    j["training"]["students"][st.name] = {{"seconds", st.seconds}, {"losses", st.losses},
                                          {"policy", st.student->config.policy}, {"K", st.student->config.K}};
  j["metrics"] = {
      {"endpoint_mse", "mean over samples of the squared Euclidean distance to the reference endpoint from the same noise"},
      {"path_mse", "the same between the closed-form path and the reference path, averaged over the reference grid points (>= 64 per step)"},
      {"swd", "sliced Wasserstein-2 distance (256 directions) to fresh data samples"}};
  io::write_file_atomic(dir + "/report.json", j.dump(2) + "\n");

  // The teacher and the students as arcflow files: `arcflow sample`-style loaders read them back.
  if (ToyMLP t = res.teacher) save_network(*t, dir + "/teacher.safetensors", {{"data", cfg.data}});
  StepSchedule schedule = cfg.distill;  // the students' (the toy's nfe and shift set the distiller's)
  schedule.nfe = cfg.nfe;
  schedule.shift = cfg.shift;
  io::Metadata adapter_meta = {{"data", cfg.data}};
  write_schedule(schedule, adapter_meta);
  for (auto st : res.students) save_adapter(st.student, dir + "/" + st.name + ".safetensors", adapter_meta);

  std::ostringstream h;
  h << "<!doctype html><html><head><meta charset=\"utf-8\"><title>arcflow toy: " << cfg.data << "</title>"
    << "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
       "table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}"
       "th:first-child,td:first-child{text-align:left}figure{display:inline-block;margin:6px;text-align:center}"
       "figcaption{font-size:13px}img{border:1px solid #ccc}</style></head><body>";
  h << "<h1>arcflow toy: " << cfg.data << "</h1><p>shift " << cfg.shift << ", " << cfg.nfe << " NFE, K = " << cfg.K
    << ", seed " << cfg.seed << ". Teacher: " << cfg.teacher_iters << " flow-matching iterations ("
    << format_number(res.teacher_seconds, "%.1f") << " s). Students: " << cfg.distill_iters
    << " distillation iterations each (";
  for (size_t i = 0; i < res.students.size(); ++i)
    h << (i ? ", " : "") << res.students[i].name << " " << format_number(res.students[i].seconds, "%.1f") << " s";
  h << ").</p>";
  h << "<table><tr><th>method</th><th>NFE</th><th>endpoint MSE</th><th>path MSE</th><th>SWD</th><th>ms/sample</th></tr>";
  for (const auto& r : res.rows)
    h << "<tr><td>" << r.method << "</td><td>" << r.nfe << "</td><td>" << format_number(r.endpoint_mse, "%.4g") << "</td><td>"
      << format_number(r.path_mse, "%.4g") << "</td><td>" << format_number(r.swd, "%.4g") << "</td><td>" << format_number(r.ms_per_sample, "%.5f") << "</td></tr>";
  h << "</table><p>endpoint MSE: squared distance to the reference solution (" << res.rows.front().method
    << ") from the same noise, averaged over samples; path MSE: the same along the path, on the reference grid; "
       "SWD: sliced Wasserstein-2 to fresh data.</p>";
  h << "<h2>Samples</h2>";
  for (const auto& [f, c] : sample_pics) h << "<figure><img src=\"" << f << "\"><figcaption>" << c << "</figcaption></figure>";
  h << "<h2>Trajectories</h2><p>From the same noises (black dots); squares mark the ends of the steps.</p>";
  for (const auto& [f, c] : path_pics) h << "<figure><img src=\"" << f << "\"><figcaption>" << c << "</figcaption></figure>";
  h << "</body></html>\n";
  const std::string html = dir + "/report.html";
  io::write_file_atomic(html, h.str());
  return html;
}

}  // namespace arcflow
