// `arcflow demo`: the README's first command. Shows the method on this machine in a few minutes:
//   1. the 2-D toy run (teacher, linear, GMFlow and ArcFlow students trained here, trajectory pictures);
//   2. the shipped Fashion-MNIST weights: the teacher's 50 guided steps (100 NFE) and the 2-step
//      students from the same noise, side by side, the measured speed-up, and a short evaluation
//      (fewer samples than `arcflow eval`'s default, and said so on the page).
// Writes DIR/index.html (linking DIR/toy/ and DIR/fashion/) and prints where it is.
#include <chrono>
#include <cstdio>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

#include "arcflow/io/atomic_file.h"
#include "arcflow/io/idx.h"
#include "arcflow/toy/pipeline.h"
#include "arcflow/util/progress.h"
#include "arcflow/util/text.h"
#include "commands.h"
#include "eval_table.h"

namespace arcflow::cli {

namespace {

struct DemoOptions {
  std::string output = "demo";
  std::string teacher = "models/teacher.safetensors";
  std::string student = "models/arcflow-2.safetensors";
  std::string baseline = "models/linear-2.safetensors";
  std::string gmflow = "models/gmflow-2.safetensors";
  std::string classifier = "models/classifier.safetensors";
  std::string data_dir = io::kFashionMnistDir;
  int64_t n = 200;
  std::string temperature = "auto";  // the students'
  bool quick = false, quiet = false;
};

const BenchmarkRow* find_row(const BenchmarkTable& t, const std::string& method) {
  for (const auto& r : t.rows)
    if (r.method == method) return &r;
  return nullptr;
}

std::string page(const DemoOptions& o, const ToyResult& toy, const TableRun& fm, double seconds) {
  const BenchmarkTable& t = fm.table;
  const BenchmarkRow* ref = &t.rows.front();
  const BenchmarkRow* st = find_row(t, "arcflow-2");
  std::ostringstream h;
  h << "<!doctype html><html><head><meta charset=\"utf-8\"><title>arcflow demo</title><style>"
       "body{font-family:sans-serif;max-width:1250px;margin:2em auto;color:#222}"
       "table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}"
       "th:first-child,td:first-child{text-align:left}figure{display:inline-block;margin:6px;text-align:center;"
       "vertical-align:top}figcaption{font-size:13px}img{border:1px solid #ccc;image-rendering:pixelated}"
       ".big{font-size:20px}</style></head><body>\n";
  h << "<h1>arcflow demo</h1>\n<p>ArcFlow distils a many-step flow-matching generator into a 2-step one: each "
       "student step follows a per-pixel mixture of momentum processes, integrated in closed form. Made by <code>"
    << command_line() << "</code> in " << format_duration(seconds) << " (" << torch::get_num_threads()
    << " threads" << (o.quick ? ", --quick: tiny budgets, numbers not meaningful" : "") << ").</p>\n";

  // Fashion-MNIST.
  h << "<h2>Fashion-MNIST: 100 network evaluations vs 2</h2>\n<p>Same noise and labels for every method "
       "(column k shows class k).</p>\n";
  for (const auto& r : t.rows) {
    if (r.method.rfind("teacher-dpmpp", 0) == 0) continue;  // identical to the Euler row at these steps
    h << "<figure><img src=\"fashion/" << benchmark_grid_file(r.method) << "\" width=\"420\"><figcaption><b>"
      << r.method << "</b>, " << r.nfe << " NFE<br>" << r.description << "</figcaption></figure>\n";
  }
  if (st != nullptr && st->ms_per_image > 0)
    h << "<p class=\"big\">Speed-up: <b>" << format_number(ref->ms_per_image / st->ms_per_image, "%.1f") << "x</b> per image ("
      << ref->method << " " << format_number(ref->ms_per_image, "%.1f") << " ms, arcflow-2 "
      << format_number(st->ms_per_image, "%.2f") << " ms; measured here while generating " << t.n
      << " images in batches of up to " << o.n << "; <code>arcflow bench</code> measures it carefully).</p>\n";
  h << "<p>Short evaluation: <b>" << t.n << " samples per method</b> (the full table uses 5,000: "
       "<code>arcflow eval</code>, see the README). FID at this size is biased upward and only comparable within "
       "the table. Features: " << kFeatureNetwork << ".</p>\n<table><tr><th>method</th><th>NFE</th><th>FID</th>"
       "<th>FID vs teacher</th><th>accuracy</th><th>diversity</th><th>endpoint MSE</th><th>ms/image</th></tr>\n";
  for (const auto& r : t.rows)
    h << "<tr><td>" << r.method << "</td><td>" << r.nfe << "</td><td>" << format_number(r.fid, "%.1f") << "</td><td>"
      << format_number(r.fid_vs_teacher, "%.1f") << "</td><td>" << format_number(100 * r.accuracy, "%.1f%%") << "</td><td>"
      << format_number(r.diversity, "%.2f") << "</td><td>" << format_number(r.endpoint_mse, "%.4f") << "</td><td>"
      << format_number(r.ms_per_image, "%.2f") << "</td></tr>\n";
  h << "</table>\n<p>Real test images: accuracy " << format_number(100 * fm.reference.accuracy, "%.1f%%") << ", diversity "
    << format_number(fm.reference.diversity, "%.2f") << ". endpoint MSE: the end point's per-pixel MSE to " << ref->method
    << " from the same noise. Full page: <a href=\"fashion/index.html\">fashion/index.html</a>.</p>\n";

  // Toy.
  const ToyConfig& c = toy.config;
  h << "<h2>2-D toy: " << c.data << ", trained here</h2>\n<p>Teacher " << c.teacher_iters
    << " flow-matching iterations; students " << c.distill_iters << " distillation iterations each, " << c.nfe
    << " NFE, shift " << c.shift << ". Endpoint MSE to the fine Euler reference from the same noise:</p>\n<table>"
       "<tr><th>method</th><th>NFE</th><th>endpoint MSE</th><th>path MSE</th></tr>\n";
  for (const auto& r : toy.rows)
    h << "<tr><td>" << r.method << "</td><td>" << r.nfe << "</td><td>" << format_number(r.endpoint_mse, "%.5f") << "</td><td>"
      << format_number(r.path_mse, "%.5f") << "</td></tr>\n";
  h << "</table>\n<p>Trajectories from the same noises (grey: the reference; squares end the steps): the linear "
       "student moves in straight segments, ArcFlow's steps bend with the teacher.</p>\n";
  for (size_t i = 2; i < toy.curves.size(); ++i)
    h << "<figure><img src=\"toy/" << toy_paths_picture(toy.curves[i].method) << "\" width=\"320\"><figcaption>"
      << toy.curves[i].method << "</figcaption></figure>\n";
  h << "<p>More: <a href=\"toy/report.html\">toy/report.html</a>.</p>\n</body></html>\n";
  return h.str();
}

int run_demo(const DemoOptions& o, const GlobalOptions& g) {
  const std::string where = "; run the demo from the repository root, or give the path";
  const std::optional<double> temperature = parse_temperature(o.temperature, "--temperature");
  require_input_file("--teacher", o.teacher,
                     "the shipped teacher; `arcflow train-teacher --config configs/teacher.toml` remakes it" + where);
  require_input_file("--student", o.student,
                     "the shipped student; `arcflow distill --config configs/arcflow-2.toml` remakes it" + where);
  require_input_file("--classifier", o.classifier, "`arcflow train-classifier` remakes it" + where);
  if (o.n < 2) throw std::invalid_argument("-n must be >= 2 (FID needs a feature covariance), got " + std::to_string(o.n));
  io::make_output_dir(o.output);
  const torch::Device device = start_up(g);
  const auto t0 = std::chrono::steady_clock::now();

  // 1. The toy.
  std::printf("[1/2] 2-D toy: training a teacher and three students (linear, GMFlow, ArcFlow) here%s\n", o.quick ? " (--quick)" : "");
  ToyConfig tc;
  tc.device = device;
  tc.progress = !o.quiet;
  if (o.quick) {
    tc.teacher_iters = 150;
    tc.teacher_batch = 256;
    tc.distill_iters = 20;
    tc.eval_samples = 256;
  }
  tc.validate();
  const ToyResult toy = run_toy(tc);
  std::printf("%s", format_toy_table(toy).c_str());
  write_toy_report(toy, o.output + "/toy");

  // 2. Fashion-MNIST with the shipped weights.
  std::printf("[2/2] Fashion-MNIST: teacher 100 NFE vs students 2 NFE from the same noise, %lld samples each\n",
              static_cast<long long>(o.n));
  TableRequest r;
  r.teacher = o.teacher;
  r.classifier = o.classifier;
  r.data_dir = o.data_dir;
  r.output_dir = o.output + "/fashion";
  r.adapters.push_back({"arcflow-2", o.student});
  if (!o.baseline.empty() && file_exists(o.baseline)) r.adapters.push_back({"linear-2", o.baseline});
  if (!o.gmflow.empty() && file_exists(o.gmflow)) r.adapters.push_back({"gmflow-2", o.gmflow});
  r.temperatures = {temperature};
  r.bench.n = o.n;
  r.bench.teacher_steps = {1};  // the teacher at 2 NFE: one guided step
  r.bench.preview = 10;
  r.bench.max_batch = o.n < 256 ? o.n : 256;
  r.quiet = o.quiet;
  const TableRun fm = run_table(r, device);

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string html = o.output + "/index.html";
  io::write_file_atomic(html, page(o, toy, fm, seconds));
  const BenchmarkRow* st = find_row(fm.table, "arcflow-2");
  if (st != nullptr && st->ms_per_image > 0)
    std::printf("speed-up of arcflow-2 over %s: %.1fx per image (%.1f ms vs %.2f ms)\n",
                fm.table.rows.front().method.c_str(), fm.table.rows.front().ms_per_image / st->ms_per_image,
                fm.table.rows.front().ms_per_image, st->ms_per_image);
  std::printf("demo done in %s: open %s\n", format_duration(seconds).c_str(), html.c_str());
  std::printf("to generate on demand in a browser: arcflow serve --toy-dir %s/toy (then http://127.0.0.1:8080/)\n",
              o.output.c_str());
  return 0;
}

}  // namespace

Runner add_demo_command(CLI::App& app, GlobalOptions& g) {
  auto* sub = app.add_subcommand(
      "demo",
      "Show the method on this machine in a few minutes: the 2-D toy trained here, then the shipped Fashion-MNIST "
      "teacher (100 NFE) against the 2-step students from the same noise, the speed-up and a short evaluation; "
      "writes DIR/index.html");
  auto o = std::make_shared<DemoOptions>();
  sub->add_option("-o,--output", o->output, "Output folder (index.html, toy/, fashion/)")->capture_default_str();
  sub->add_option("--teacher", o->teacher, "Teacher weights (.safetensors; its \"model\" metadata picks the architecture)")->capture_default_str();
  sub->add_option("--student", o->student, "ArcFlow student adapter (row arcflow-2)")->capture_default_str();
  sub->add_option("--baseline", o->baseline, "Linear-shortcut student adapter (row linear-2; skipped if absent)")
      ->capture_default_str();
  sub->add_option("--gmflow", o->gmflow, "pi-Flow GMFlow student adapter (row gmflow-2; skipped if absent)")
      ->capture_default_str();
  sub->add_option("--temperature", o->temperature,
                  "Students' sampling temperature on their first step: a number > 0, or auto (each policy's "
                  "published protocol: GMFlow 0.1 at 2 steps, ArcFlow 1)")
      ->capture_default_str();
  sub->add_option("--classifier", o->classifier, "Evaluation classifier weights")->capture_default_str();
  sub->add_option("--data-dir", o->data_dir, "Folder with the Fashion-MNIST IDX files (test set = reference)")
      ->capture_default_str();
  auto* n = sub->add_option("-n", o->n, "Samples per method in the short evaluation (arcflow eval uses 5000)")
      ->capture_default_str();
  sub->add_flag("--quick", o->quick, "Tiny toy budgets and 20 samples: checks that every piece runs (for tests)");
  sub->add_flag("-q,--quiet", o->quiet, "No progress bars");
  sub->footer("Global options -t/--threads and --device are described in `arcflow --help`.");
  return [o, n, &g] {
    if (o->quick && n->count() == 0) o->n = 20;
    return run_demo(*o, g);
  };
}

}  // namespace arcflow::cli
