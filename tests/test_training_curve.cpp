// Tests for arcflow/evaluation/training_curve.h and svg_plot.h: finding the snapshots of a run
// (sorted by the iteration in the file name, other files ignored, clear errors naming the folder),
// scoring them on the table's noise (a K = 1 student with zero LoRA is the conditional teacher's
// 2-step Euler, written out here, so its FID and endpoint MSE are recomputed independently), and
// the SVG line plot.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "arcflow/evaluation/benchmark_table.h"
#include "arcflow/evaluation/image_metrics.h"
#include "arcflow/evaluation/svg_plot.h"
#include "arcflow/evaluation/training_curve.h"
#include "arcflow/io/atomic_file.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/sampling/generate.h"
#include "eval_test_util.h"
#include "temp_dir.h"

using namespace arcflow;

namespace {

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

void touch(const std::string& path) { io::write_file_atomic(path, "x"); }

}  // namespace

TEST(TrainingCurve, FindsSnapshotsSortedByIteration) {
  arcflow::test::TempDir run;
  const std::string dir = run.file("snapshots");
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  for (const char* f : {"adapter-000010.safetensors", "adapter-000002.safetensors", "adapter-000400.safetensors",
                        "adapter-7.safetensors", "adapter-000004.safetensors.tmp.12.0", "notes.txt",
                        "adapter-abc.safetensors", "adapter-.safetensors", "checkpoint.safetensors"})
    touch(dir + "/" + f);
  const std::vector<Snapshot> s = find_snapshots(run.path());
  ASSERT_EQ(s.size(), 4u);
  const std::vector<int64_t> want = {2, 7, 10, 400};
  for (size_t i = 0; i < s.size(); ++i) EXPECT_EQ(s[i].iteration, want[i]);
  EXPECT_EQ(s[0].path, dir + "/adapter-000002.safetensors");
  EXPECT_EQ(s[3].path, dir + "/adapter-000400.safetensors");
}

TEST(TrainingCurve, ErrorsNameTheFolder) {
  arcflow::test::TempDir run;
  std::string e = error_of([&] { find_snapshots(run.path()); });  // no snapshots folder
  EXPECT_NE(e.find(run.file("snapshots")), std::string::npos) << e;
  EXPECT_NE(e.find("--snapshot-every"), std::string::npos) << e;
  ASSERT_EQ(::mkdir(run.file("snapshots").c_str(), 0755), 0);
  touch(run.file("snapshots/readme.txt"));
  e = error_of([&] { find_snapshots(run.path()); });  // a folder without snapshots
  EXPECT_NE(e.find(run.file("snapshots")), std::string::npos) << e;
  EXPECT_NE(e.find("no adapter-"), std::string::npos) << e;
  touch(run.file("snapshots/adapter-5.safetensors"));
  touch(run.file("snapshots/adapter-005.safetensors"));
  e = error_of([&] { find_snapshots(run.path()); });  // the same iteration twice
  EXPECT_NE(e.find("iteration 5"), std::string::npos) << e;
}

TEST(TrainingCurve, ScoresEachSnapshotOnTheTableNoise) {
  DiT teacher = test::random_eval_teacher();
  Classifier clf = test::tiny_classifier();
  const FeatureStats reference = test::random_reference_stats(clf);
  BenchmarkOptions opt;
  opt.n = 20;
  opt.seed = 5;
  opt.reference_steps = 3;
  opt.teacher_steps = {};
  std::vector<BenchmarkStudent> none;
  const BenchmarkTable table = run_benchmark(teacher.ptr(), none, clf, reference, opt);
  ASSERT_TRUE(table.reference_samples.defined());

  // Two snapshots of a K = 1 student: iteration 30 untouched (zero LoRA B, no head noise), iteration
  // 4 with every LoRA B perturbed.
  LoRAStudent st = test::zero_lora_student(teacher, 1);
  arcflow::test::TempDir run;
  ASSERT_EQ(::mkdir(run.file("snapshots").c_str(), 0755), 0);
  const io::Metadata meta = {{"nfe", "2"}, {"shift", "1"}};
  save_adapter(st, run.file("snapshots/adapter-000030.safetensors"), meta);
  {
    torch::NoGradGuard g;
    for (auto& item : st->named_parameters())
      if (item.key().find("lora_B") != std::string::npos) item.value().normal_(0.0, 0.5);
  }
  save_adapter(st, run.file("snapshots/adapter-000004.safetensors"), meta);

  std::vector<size_t> seen;
  const TrainingCurve c = run_training_curve(teacher.ptr(), "lin", run.path(), clf, reference, table, 7, 500,
                                             [&](const std::string& name, size_t i, size_t n) {
                                               EXPECT_EQ(name, "lin");
                                               EXPECT_EQ(n, 2u);
                                               seen.push_back(i);
                                             });
  EXPECT_EQ(seen, (std::vector<size_t>{0, 1}));
  ASSERT_EQ(c.points.size(), 2u);
  EXPECT_EQ(c.points[0].iteration, 4);
  EXPECT_EQ(c.points[1].iteration, 30);
  EXPECT_EQ(c.nfe, 2);

  // Iteration 30 = the conditional teacher's Euler with sigmas 1, 0.5, 0 from the table's noise.
  torch::Tensor x = make_noise(20, {1, 28, 28}, 5);
  const torch::Tensor y = torch::arange(20, torch::kLong) % 10;
  {
    torch::NoGradGuard g;
    for (double s : {1.0, 0.5}) x = x - 0.5 * teacher->forward(x, torch::full({20}, s), y);
  }
  const double mse = (x.to(torch::kFloat64) - table.reference_samples.to(torch::kFloat64)).pow(2).mean().item<double>();
  EXPECT_NEAR(c.points[1].endpoint_mse, mse, 1e-6 * mse);
  const double fid = frechet_distance(feature_stats(classify_images(clf, x).features), reference);
  EXPECT_NEAR(c.points[1].fid, fid, 1e-4 * (1 + fid));
  EXPECT_TRUE(std::isfinite(c.points[0].fid));
  EXPECT_NE(c.points[0].endpoint_mse, c.points[1].endpoint_mse);

  const nlohmann::json j = curves_json({c});
  ASSERT_EQ(j["lin"]["points"].size(), 2u);
  EXPECT_EQ(j["lin"]["points"][1]["iteration"], 30);
  EXPECT_EQ(j["lin"]["run_dir"], run.path());
  EXPECT_EQ(j["lin"]["n"], 20);

  // samples = 8: the table's first 8 images only, as a table cut to them by hand gives.
  BenchmarkTable cut = table;
  cut.noise = table.noise.narrow(0, 0, 8);
  cut.labels = table.labels.narrow(0, 0, 8);
  cut.reference_samples = table.reference_samples.narrow(0, 0, 8);
  const TrainingCurve part = run_training_curve(teacher.ptr(), "lin", run.path(), clf, reference, table, 7, 500,
                                                nullptr, 8);
  const TrainingCurve by_hand = run_training_curve(teacher.ptr(), "lin", run.path(), clf, reference, cut, 7, 500);
  EXPECT_EQ(part.n, 8);
  ASSERT_EQ(part.points.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_DOUBLE_EQ(part.points[i].endpoint_mse, by_hand.points[i].endpoint_mse);
    EXPECT_DOUBLE_EQ(part.points[i].fid, by_hand.points[i].fid);
  }
  const double mse8 = (x.narrow(0, 0, 8).to(torch::kFloat64) - table.reference_samples.narrow(0, 0, 8).to(torch::kFloat64))
                          .pow(2).mean().item<double>();
  EXPECT_NEAR(part.points[1].endpoint_mse, mse8, 1e-6 * mse8);
  for (int64_t bad : {int64_t{-1}, int64_t{1}, int64_t{21}})
    EXPECT_THROW(run_training_curve(teacher.ptr(), "lin", run.path(), clf, reference, table, 7, 500, nullptr, bad),
                 std::invalid_argument);
}

TEST(SvgPlot, LinesLegendAndEscaping) {
  const std::string s = svg_line_plot("FID <vs> iteration", "iteration", "FID",
                                      {{"a&b", {0, 100, 200}, {3.0, 2.0, NAN}}, {"c", {0, 200}, {1.0, 1.5}}});
  EXPECT_EQ(s.rfind("<svg", 0), 0u);
  EXPECT_NE(s.find("FID &lt;vs&gt; iteration"), std::string::npos);
  EXPECT_NE(s.find(">a&amp;b</text>"), std::string::npos);
  EXPECT_NE(s.find(">c</text>"), std::string::npos);
  size_t paths = 0;
  for (size_t p = s.find("<path"); p != std::string::npos; p = s.find("<path", p + 1)) ++paths;
  EXPECT_EQ(paths, 2u);
  size_t dots = 0;
  for (size_t p = s.find("<circle"); p != std::string::npos; p = s.find("<circle", p + 1)) ++dots;
  EXPECT_EQ(dots, 4u);  // the NaN point is left out
  EXPECT_NE(svg_line_plot("t", "x", "y", {}).find("no data"), std::string::npos);
  const std::string h = svg_histogram("w", "w", 0, 1, {1, 3});
  size_t bars = 0;
  for (size_t p = h.find("<rect x="); p != std::string::npos; p = h.find("<rect x=", p + 1)) ++bars;
  EXPECT_EQ(bars, 3u);  // the frame and two bars
  EXPECT_NE(h.find("): 0.75</title>"), std::string::npos);
}
