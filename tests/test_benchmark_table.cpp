// Tests for arcflow/evaluation/benchmark_table.h on a tiny random 28x28 DiT and a fresh classifier:
// the rows and their order, the reference row's zero distances, the shared noise (a K = 1 student
// with zero LoRA and no head noise reproduces a hand-written 2-step conditional Euler of the
// teacher), endpoint_mse against an independent computation, progress calls, and input validation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "arcflow/evaluation/benchmark_table.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/evaluation/image_metrics.h"
#include "arcflow/io/atomic_file.h"
#include "arcflow/io/png.h"
#include "arcflow/sampling/generate.h"
#include "eval_test_util.h"
#include "temp_dir.h"

using namespace arcflow;

namespace {

struct Fixture {
  DiT teacher = test::random_eval_teacher();
  Classifier clf = test::tiny_classifier();
  FeatureStats reference = test::random_reference_stats(clf);
};

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

}  // namespace

TEST(BenchmarkTable, RowsReferenceSharedNoiseAndMetrics) {
  Fixture fx;
  StudentSampling two;
  two.nfe = 2;
  std::vector<BenchmarkStudent> students = {{"arcflow-2", test::zero_lora_student(fx.teacher, 2), two, {}},
                                            {"linear-2", test::zero_lora_student(fx.teacher, 1), two, {}}};
  BenchmarkOptions opt;
  opt.n = 20;  // two samples of each of the 10 classes: diversity is defined
  opt.seed = 7;
  opt.preview = 20;
  std::vector<std::pair<std::string, int64_t>> calls;
  const BenchmarkTable t = run_benchmark(fx.teacher.ptr(), students, fx.clf, fx.reference, opt,
                                         [&](const std::string& m, int64_t done, int64_t total) {
                                           if (done == 0 || done == total) calls.emplace_back(m, done);
                                         });

  const std::vector<std::string> want = {"teacher-euler-50-cfg", "teacher-euler-2", "teacher-dpmpp-2", "arcflow-2",
                                         "linear-2"};
  const std::vector<int> want_nfe = {100, 4, 4, 2, 2};
  ASSERT_EQ(t.rows.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const BenchmarkRow& r = t.rows[i];
    EXPECT_EQ(r.method, want[i]);
    EXPECT_EQ(r.nfe, want_nfe[i]) << r.method;
    for (double v : {r.fid, r.fid_vs_teacher, r.accuracy, r.diversity, r.endpoint_mse, r.ms_per_image})
      EXPECT_TRUE(std::isfinite(v)) << r.method;
    EXPECT_GE(r.accuracy, 0.0);
    EXPECT_LE(r.accuracy, 1.0);
    ASSERT_EQ(r.preview.sizes(), torch::IntArrayRef({20, 1, 28, 28})) << r.method;
    // Progress: a start call and a final call per method, in table order.
    ASSERT_GE(calls.size(), 2 * i + 2);
    EXPECT_EQ(calls[2 * i], std::make_pair(want[i], int64_t{0}));
    EXPECT_EQ(calls[2 * i + 1].first, want[i]);
  }
  EXPECT_EQ(calls.size(), 2 * want.size());
  EXPECT_EQ(t.n, 20);
  EXPECT_TRUE(torch::equal(t.labels, torch::arange(20, torch::kLong) % 10));

  // The reference against itself.
  const BenchmarkRow& ref = t.rows[0];
  EXPECT_EQ(ref.endpoint_mse, 0.0);
  EXPECT_NEAR(ref.fid_vs_teacher, 0.0, 1e-6 * (1.0 + fx.reference.cov.trace().item<double>()));

  // endpoint_mse, recomputed from the raw outputs (preview = all samples here).
  const torch::Tensor x_ref = ref.preview.to(torch::kFloat64);
  for (const BenchmarkRow& r : t.rows)
    EXPECT_NEAR(r.endpoint_mse, (r.preview.to(torch::kFloat64) - x_ref).pow(2).mean().item<double>(), 1e-12) << r.method;
  EXPECT_GT(t.rows[1].endpoint_mse, 0.0);

  // fid and fid_vs_teacher of one row, recomputed.
  const ClassifierOutputs out = classify_images(fx.clf, t.rows[1].preview);
  const ClassifierOutputs out_ref = classify_images(fx.clf, ref.preview);
  EXPECT_NEAR(t.rows[1].fid, frechet_distance(feature_stats(out.features), fx.reference), 1e-6);
  EXPECT_NEAR(t.rows[1].fid_vs_teacher,
              frechet_distance(feature_stats(out.features), feature_stats(out_ref.features)), 1e-6);
  EXPECT_NEAR(t.rows[1].accuracy, class_accuracy(out.logits, t.labels), 1e-12);

  // The K = 1 student (LoRA B = 0, no head noise) is the conditional teacher with 2 Euler steps
  // (sigmas 1, 0.5, 0) from the same noise, written out by hand: bit-identical (same ops on the CPU).
  torch::Tensor x = make_noise(20, {1, 28, 28}, 7);
  const torch::Tensor y = torch::arange(20, torch::kLong) % 10;
  {
    torch::NoGradGuard g;
    for (double s : {1.0, 0.5}) x = x - 0.5 * fx.teacher->forward(x, torch::full({20}, s), y);
  }
  EXPECT_TRUE(torch::equal(t.rows[4].preview, x))
      << "max diff " << (t.rows[4].preview - x).abs().max().item<double>();
  // DPM-Solver++(2M) at 2 steps takes first-order steps only: Euler's images.
  EXPECT_TRUE(torch::allclose(t.rows[2].preview, t.rows[1].preview, 1e-5, 1e-6));
  EXPECT_NE(t.rows[2].description.find("same images as Euler"), std::string::npos);
  // The guided 2-step Euler row differs from it (guidance 4 is on).
  EXPECT_FALSE(torch::allclose(t.rows[1].preview, x, 1e-3, 1e-3));
}

TEST(BenchmarkTable, TableTextAndStudentAtAnotherNfe) {
  Fixture fx;
  LoRAStudent s = test::zero_lora_student(fx.teacher, 2);
  StudentSampling two, four;
  four.nfe = 4;
  std::vector<BenchmarkStudent> students = {{"arcflow-2", s, two, {}}, {"arcflow-4", s, four, {}}};
  BenchmarkOptions opt;
  opt.n = 4;
  opt.reference_steps = 4;
  opt.teacher_steps = {1, 2};
  opt.preview = 2;
  const BenchmarkTable t = run_benchmark(fx.teacher.ptr(), students, fx.clf, fx.reference, opt);
  std::vector<std::string> names;
  for (const auto& r : t.rows) names.push_back(r.method);
  EXPECT_EQ(names, (std::vector<std::string>{"teacher-euler-4-cfg", "teacher-euler-1", "teacher-dpmpp-1",
                                             "teacher-euler-2", "teacher-dpmpp-2", "arcflow-2", "arcflow-4"}));
  EXPECT_EQ(t.rows.back().nfe, 4);
  EXPECT_EQ(t.rows.back().preview.size(0), 2);
  const std::string text = format_benchmark_table(t);
  EXPECT_NE(text.find("fid_vs_teacher"), std::string::npos);
  EXPECT_NE(text.find("arcflow-4"), std::string::npos);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 8);

  // The report files.
  arcflow::test::TempDir dir;
  write_benchmark_report(t, dir.path(), {{"teacher", "t.safetensors"}, {"feature_network", "tiny <net>"}}, 2);
  const nlohmann::json j = nlohmann::json::parse(io::read_file(dir.file("eval.json")));
  ASSERT_EQ(j.at("rows").size(), 7u);
  EXPECT_EQ(j["rows"][6]["method"], "arcflow-4");
  EXPECT_EQ(j["rows"][6]["nfe"], 4);
  for (const char* k : {"fid", "fid_vs_teacher", "accuracy", "diversity", "endpoint_mse", "ms_per_image"})
    EXPECT_TRUE(j["rows"][0].contains(k)) << k;
  EXPECT_EQ(j["n"], 4);
  EXPECT_EQ(j["teacher"], "t.safetensors");
  const io::DecodedPng png = io::read_png(dir.file("arcflow-4.png"));
  EXPECT_EQ(png.image.width, 2 * 28 + 2);
  EXPECT_EQ(png.image.height, 28);
  const std::string html = io::read_file(dir.file("index.html"));
  EXPECT_NE(html.find("src=\"teacher-dpmpp-2.png\""), std::string::npos);
  EXPECT_NE(html.find("tiny &lt;net&gt;"), std::string::npos);
  EXPECT_EQ(benchmark_grid_file("a b/c"), "a_b_c.png");
}

TEST(BenchmarkTable, ValidatesInputsNamingTheProblem) {
  Fixture fx;
  StudentSampling two;
  BenchmarkOptions opt;
  opt.n = 4;
  opt.reference_steps = 2;
  std::vector<BenchmarkStudent> none;

  BenchmarkOptions bad = opt;
  bad.n = 1;
  EXPECT_NE(error_of([&] { run_benchmark(fx.teacher.ptr(), none, fx.clf, fx.reference, bad); }).find("n must be >= 2"),
            std::string::npos);
  bad = opt;
  bad.teacher_steps = {0};
  EXPECT_NE(error_of([&] { run_benchmark(fx.teacher.ptr(), none, fx.clf, fx.reference, bad); }).find("teacher_steps"),
            std::string::npos);

  std::vector<BenchmarkStudent> dup = {{"a", test::zero_lora_student(fx.teacher, 1), two, {}},
                                       {"a", test::zero_lora_student(fx.teacher, 1), two, {}}};
  EXPECT_NE(error_of([&] { run_benchmark(fx.teacher.ptr(), dup, fx.clf, fx.reference, opt); }).find("'a' is used twice"),
            std::string::npos);
  std::vector<BenchmarkStudent> clash = {{"teacher-euler-2", test::zero_lora_student(fx.teacher, 1), two, {}}};
  EXPECT_NE(error_of([&] { run_benchmark(fx.teacher.ptr(), clash, fx.clf, fx.reference, opt); }).find("used twice"),
            std::string::npos);
  StudentSampling zero;
  zero.nfe = 0;
  std::vector<BenchmarkStudent> badnfe = {{"s", test::zero_lora_student(fx.teacher, 1), zero, {}}};
  EXPECT_NE(error_of([&] { run_benchmark(fx.teacher.ptr(), badnfe, fx.clf, fx.reference, opt); }).find("student 's'"),
            std::string::npos);

  ClassifierConfig c3;
  c3.channels = {4};
  c3.feature_dim = 8;
  c3.num_classes = 3;
  Classifier three(c3);
  EXPECT_NE(error_of([&] { run_benchmark(fx.teacher.ptr(), none, three, fx.reference, opt); }).find("3 classes"),
            std::string::npos);
}

TEST(BenchmarkTable, ReferenceSamplerAtOtherShifts) {
  Fixture fx;
  std::vector<BenchmarkStudent> none;
  BenchmarkOptions opt;
  opt.n = 10;
  opt.seed = 3;
  opt.reference_steps = 2;
  opt.teacher_steps = {1};
  opt.cfg_scale = 1.0;  // the plain conditional teacher, written out below
  opt.teacher_shift = 1.0;
  opt.reference_shifts = {3.2, 1.0};  // 1.0 is the reference itself: no extra row
  opt.preview = 10;
  const BenchmarkTable t = run_benchmark(fx.teacher.ptr(), none, fx.clf, fx.reference, opt);
  std::vector<std::string> names;
  for (const auto& r : t.rows) names.push_back(r.method);
  EXPECT_EQ(names, (std::vector<std::string>{"teacher-euler-2-cfg", "teacher-euler-2-cfg-shift-3.2", "teacher-euler-1",
                                             "teacher-dpmpp-1"}));
  EXPECT_NE(t.rows[1].description.find("shift 3.2"), std::string::npos) << t.rows[1].description;
  EXPECT_EQ(t.rows[1].nfe, 2);  // guidance 1: one call per step

  // Euler over sigma = s tau / (1 + (s - 1) tau) at tau 1, 1/2, 0, by hand.
  const auto euler = [&](double s) {
    torch::Tensor x = make_noise(10, {1, 28, 28}, 3);
    const torch::Tensor y = torch::arange(10, torch::kLong) % 10;
    const double mid = s * 0.5 / (1 + (s - 1) * 0.5);
    torch::NoGradGuard g;
    x = x - (1.0 - mid) * fx.teacher->forward(x, torch::full({10}, 1.0), y);
    return x - mid * fx.teacher->forward(x, torch::full({10}, mid), y);
  };
  const torch::Tensor x1 = euler(1.0), x32 = euler(3.2);
  EXPECT_TRUE(torch::allclose(t.rows[0].preview, x1, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(t.rows[1].preview, x32, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(t.reference_samples, x1, 1e-5, 1e-6));
  EXPECT_TRUE(torch::equal(t.noise, make_noise(10, {1, 28, 28}, 3)));
  // Its endpoint MSE is measured against the reference at --shift (1 here).
  const double mse = (x32.to(torch::kFloat64) - x1.to(torch::kFloat64)).pow(2).mean().item<double>();
  EXPECT_NEAR(t.rows[1].endpoint_mse, mse, 1e-5 * mse);
  EXPECT_GT(mse, 0.0);

  opt.reference_shifts = {0.0};
  EXPECT_NE(error_of([&] { run_benchmark(fx.teacher.ptr(), none, fx.clf, fx.reference, opt); }).find("reference_shifts"),
            std::string::npos);
}

TEST(BenchmarkTable, ReadsOldReportsTrajMseAsEndpointMse) {
  // A report as `arcflow eval` wrote it before the rename (trimmed), and one after.
  const nlohmann::json old_report = nlohmann::json::parse(R"({"n": 5000, "seed": 0, "rows": [
    {"method": "teacher-euler-50-cfg", "nfe": 100, "fid": 2.5, "fid_vs_teacher": 0.0, "accuracy": 0.9,
     "diversity": 6.1, "traj_mse": 0.0, "ms_per_image": 12.0, "description": "teacher"},
    {"method": "arcflow-2", "nfe": 2, "fid": 29.6, "fid_vs_teacher": 30.1, "accuracy": 0.8,
     "diversity": null, "traj_mse": 0.0414, "ms_per_image": 0.5}]})");
  const std::vector<BenchmarkRow> rows = benchmark_rows_from_json(old_report, "old/eval.json");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].method, "arcflow-2");
  EXPECT_EQ(rows[1].nfe, 2);
  EXPECT_DOUBLE_EQ(rows[1].endpoint_mse, 0.0414);
  EXPECT_DOUBLE_EQ(rows[1].fid, 29.6);
  EXPECT_TRUE(std::isnan(rows[1].diversity));
  EXPECT_EQ(rows[0].endpoint_mse, 0.0);
  EXPECT_EQ(rows[0].description, "teacher");

  nlohmann::json new_report = old_report;
  for (auto& r : new_report["rows"]) r["endpoint_mse"] = r["traj_mse"].get<double>() * 2;
  EXPECT_DOUBLE_EQ(benchmark_rows_from_json(new_report, "both/eval.json")[1].endpoint_mse, 0.0828);  // new name wins
  for (auto& r : new_report["rows"]) r.erase("traj_mse");
  EXPECT_DOUBLE_EQ(benchmark_rows_from_json(new_report, "new/eval.json")[1].endpoint_mse, 0.0828);

  EXPECT_NE(error_of([] { benchmark_rows_from_json(nlohmann::json::object(), "x/eval.json"); }).find("x/eval.json"),
            std::string::npos);
  nlohmann::json bad = old_report;
  bad["rows"][1]["traj_mse"] = "high";
  const std::string e = error_of([&] { benchmark_rows_from_json(bad, "y/eval.json"); });
  EXPECT_NE(e.find("y/eval.json: row 1 (arcflow-2)"), std::string::npos) << e;
  EXPECT_NE(e.find("traj_mse"), std::string::npos) << e;
}
