// Tests for arcflow/evaluation/sample_cache.h and the table's use of it (BenchmarkOptions::cache_dir,
// time_limit_s): an evaluation stopped part-way (Ctrl-C) continues from the cache and gives exactly
// the table of an uninterrupted run without a cache; a fully cached run does not sample the teacher
// again; a row of one table is reused by another table that has it under another name; a cache made
// with another seed or another teacher, or a damaged file, is made again; the weights digest follows
// the weights.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "arcflow/evaluation/benchmark_table.h"
#include "arcflow/evaluation/image_metrics.h"
#include "arcflow/evaluation/sample_cache.h"
#include "arcflow/io/atomic_file.h"
#include "arcflow/io/safetensors.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/util/interrupt.h"
#include "eval_test_util.h"
#include "temp_dir.h"

using namespace arcflow;

namespace {

BenchmarkOptions small_options(const std::string& cache_dir) {
  BenchmarkOptions o;
  o.n = 12;
  o.seed = 4;
  o.max_batch = 4;  // three batches per teacher row
  o.reference_steps = 3;
  o.teacher_steps = {1};
  o.preview = 12;
  o.cache_dir = cache_dir;
  return o;
}

void expect_same_table(const BenchmarkTable& a, const BenchmarkTable& b) {
  ASSERT_EQ(a.rows.size(), b.rows.size());
  EXPECT_TRUE(torch::equal(a.reference_samples, b.reference_samples));
  for (size_t i = 0; i < a.rows.size(); ++i) {
    SCOPED_TRACE(a.rows[i].method);
    EXPECT_EQ(a.rows[i].method, b.rows[i].method);
    EXPECT_TRUE(torch::equal(a.rows[i].preview, b.rows[i].preview));
    EXPECT_EQ(a.rows[i].endpoint_mse, b.rows[i].endpoint_mse);
    EXPECT_EQ(a.rows[i].fid, b.rows[i].fid);
    EXPECT_EQ(a.rows[i].accuracy, b.rows[i].accuracy);
  }
}

std::map<std::string, std::string> cache_meta(const std::string& path) {
  return io::load_safetensors(path).metadata;
}

}  // namespace

TEST(SampleCache, StoppedRunContinuesAndEqualsAnUncachedRun) {
  DiT teacher = test::random_eval_teacher(0);
  Classifier clf = test::tiny_classifier();
  const FeatureStats reference = test::random_reference_stats(clf);
  std::vector<BenchmarkStudent> none;
  const BenchmarkTable plain = run_benchmark(teacher.ptr(), none, clf, reference, small_options(""));

  test::TempDir dir;
  const BenchmarkOptions opt = small_options(dir.path());
  const std::string ref_file = dir.file("teacher-euler-3-cfg-4-shift-1.safetensors");
  // Ctrl-C during the reference row's second batch (its step 5 of 9).
  set_interrupted(false);
  try {
    run_benchmark(teacher.ptr(), none, clf, reference, opt, [&](const std::string& m, int64_t done, int64_t) {
      if (m == "teacher-euler-3-cfg" && done == 5) set_interrupted(true);
    });
    ADD_FAILURE() << "no BenchmarkStopped";
  } catch (const BenchmarkStopped& e) {
    EXPECT_NE(std::string(e.what()).find("interrupted"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("teacher-euler-3-cfg"), std::string::npos) << e.what();
  }
  set_interrupted(false);
  EXPECT_EQ(cache_meta(ref_file).at("done"), "4");  // the first batch only

  // Again: the reference continues at batch 2 (its progress never passes through steps 1-3).
  std::vector<int64_t> ref_progress;
  const BenchmarkTable resumed =
      run_benchmark(teacher.ptr(), none, clf, reference, opt, [&](const std::string& m, int64_t done, int64_t) {
        if (m == "teacher-euler-3-cfg") ref_progress.push_back(done);
      });
  ASSERT_GE(ref_progress.size(), 2u);
  EXPECT_EQ(ref_progress[0], 0);
  EXPECT_EQ(ref_progress[1], 3);  // batch 1 taken from the cache
  EXPECT_EQ(ref_progress.back(), 9);
  expect_same_table(resumed, plain);
  EXPECT_EQ(cache_meta(ref_file).at("done"), "12");

  // Fully cached: the teacher rows are read, not sampled (progress jumps from 0 to the end).
  std::vector<int64_t> steps;
  const BenchmarkTable cached =
      run_benchmark(teacher.ptr(), none, clf, reference, opt, [&](const std::string& m, int64_t done, int64_t) {
        if (m == "teacher-euler-3-cfg") steps.push_back(done);
      });
  EXPECT_EQ(steps, (std::vector<int64_t>{0, 9}));
  expect_same_table(cached, plain);
  EXPECT_GT(cached.rows[0].ms_per_image, 0.0);  // the time it took when it was made
}

TEST(SampleCache, TablesInOneFolderShareEqualRows) {
  DiT teacher = test::random_eval_teacher(0);
  Classifier clf = test::tiny_classifier();
  const FeatureStats reference = test::random_reference_stats(clf);
  std::vector<BenchmarkStudent> none;
  test::TempDir dir;
  run_benchmark(teacher.ptr(), none, clf, reference, small_options(dir.path()));  // reference at shift 1

  // A table whose reference is at shift 2.5 and which adds the reference sampler at shift 1: that row
  // is the first table's reference, read from its file, not sampled.
  BenchmarkOptions opt = small_options(dir.path());
  opt.teacher_shift = 2.5;
  opt.reference_shifts = {1.0};
  BenchmarkOptions plain = opt;
  plain.cache_dir = "";
  std::map<std::string, std::vector<int64_t>> steps;
  const BenchmarkTable shared =
      run_benchmark(teacher.ptr(), none, clf, reference, opt,
                    [&](const std::string& m, int64_t done, int64_t) { steps[m].push_back(done); });
  EXPECT_EQ(steps.at("teacher-euler-3-cfg-shift-1"), (std::vector<int64_t>{0, 9}));
  EXPECT_GT(steps.at("teacher-euler-3-cfg").size(), 2u);  // shift 2.5: sampled
  expect_same_table(shared, run_benchmark(teacher.ptr(), none, clf, reference, plain));
  EXPECT_EQ(cache_meta(dir.file("teacher-euler-3-cfg-4-shift-2.5.safetensors")).at("done"), "12");
}

TEST(SampleCache, OtherSettingsOrTeacherOrDamageMakeTheRowAgain) {
  DiT teacher = test::random_eval_teacher(0), other = test::random_eval_teacher(9);
  Classifier clf = test::tiny_classifier();
  const FeatureStats reference = test::random_reference_stats(clf);
  std::vector<BenchmarkStudent> none;
  test::TempDir dir;
  BenchmarkOptions opt = small_options(dir.path());
  run_benchmark(teacher.ptr(), none, clf, reference, opt);

  opt.seed = 5;  // other noise
  BenchmarkOptions plain = opt;
  plain.cache_dir = "";
  expect_same_table(run_benchmark(teacher.ptr(), none, clf, reference, opt),
                    run_benchmark(teacher.ptr(), none, clf, reference, plain));
  // Another teacher with the same config.
  expect_same_table(run_benchmark(other.ptr(), none, clf, reference, opt),
                    run_benchmark(other.ptr(), none, clf, reference, plain));
  // A damaged file.
  io::write_file_atomic(dir.file("teacher-euler-3-cfg-4-shift-1.safetensors"), "not a safetensors file");
  expect_same_table(run_benchmark(other.ptr(), none, clf, reference, opt),
                    run_benchmark(other.ptr(), none, clf, reference, plain));
  EXPECT_EQ(cache_meta(dir.file("teacher-euler-3-cfg-4-shift-1.safetensors")).at("done"), "12");

  // open_row_cache says why it does not use a file.
  const nlohmann::json key = {{"row", "r"}, {"seed", "1"}};
  RowCache c = open_row_cache(dir.file("r.safetensors"), key, {3, 2});
  c.samples.fill_(1.5);
  c.done = 3;
  save_row_cache(c);
  std::string note;
  EXPECT_EQ(open_row_cache(dir.file("r.safetensors"), key, {3, 2}, &note).done, 3);
  EXPECT_EQ(note, "");
  EXPECT_EQ(open_row_cache(dir.file("r.safetensors"), {{"row", "r"}, {"seed", "2"}}, {3, 2}, &note).done, 0);
  EXPECT_NE(note.find("seed differ"), std::string::npos) << note;
  EXPECT_NE(note.find(dir.file("r.safetensors")), std::string::npos) << note;
  EXPECT_EQ(open_row_cache(dir.file("r.safetensors"), key, {4, 2}, &note).done, 0);
  EXPECT_NE(note.find("shape"), std::string::npos) << note;
  const RowCache fresh = open_row_cache(dir.file("r.safetensors"), key, {4, 2}, &note);
  EXPECT_EQ(fresh.samples.abs().sum().item<double>(), 0.0);
}

TEST(SampleCache, TimeLimitStopsTheTable) {
  DiT teacher = test::random_eval_teacher(0);
  Classifier clf = test::tiny_classifier();
  const FeatureStats reference = test::random_reference_stats(clf);
  std::vector<BenchmarkStudent> none;
  BenchmarkOptions opt = small_options("");
  opt.time_limit_s = 1e-9;
  try {
    run_benchmark(teacher.ptr(), none, clf, reference, opt);
    ADD_FAILURE() << "no BenchmarkStopped";
  } catch (const BenchmarkStopped& e) {
    EXPECT_NE(std::string(e.what()).find("time limit"), std::string::npos) << e.what();
  }
  opt.time_limit_s = -1;
  EXPECT_THROW(run_benchmark(teacher.ptr(), none, clf, reference, opt), std::invalid_argument);
}

TEST(SampleCache, DigestFollowsTheWeights) {
  DiT a = test::random_eval_teacher(0), b = test::random_eval_teacher(0), c = test::random_eval_teacher(1);
  EXPECT_EQ(parameter_digest(*a), parameter_digest(*b));
  EXPECT_NE(parameter_digest(*a), parameter_digest(*c));
  EXPECT_EQ(parameter_digest(*a).size(), 16u);
  {
    torch::NoGradGuard g;
    auto p = b->parameters().back();
    p.view(-1)[0] += 1e-3;  // one number changed
  }
  EXPECT_NE(parameter_digest(*a), parameter_digest(*b));
}
