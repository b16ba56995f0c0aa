// The shipped students in models/ reproduce the samples they gave before the model/policy
// interfaces existed: tests/data/shipped/*.safetensors were written by `arcflow sample
// --save-tensors` at commit a271fce (before the change), see tests/data/shipped/README.md; gmflow-2's
// (shipped later) at commit 2cccb16, when it was shipped.
#include <gtest/gtest.h>

#include <string>

#include "arcflow/models/registry.h"
#include "arcflow/models/student.h"
#include "arcflow/sampling/generate.h"
#include "arcflow/sampling/student_sampling.h"

using namespace arcflow;

namespace {

const std::string kData = ARCFLOW_TEST_DATA_DIR;
const std::string kModels = kData + "/../../models/";

// The fixtures were written with one thread (`-t 1`): the same reduction order here, as far as torch's
// setting goes. OpenBLAS keeps its own pool (one thread per core), which this does not reach; the
// CLI's -t has set it too since 692e297 (after a271fce), so gmflow-2's fixture was made with one
// BLAS thread, the others with two, and products summed in another order move GMFlow's samples by 5e-6 (its posterior
// over 16 components amplifies rounding; measured: `arcflow -t 1` vs `-t 2 sample`). Hence 1e-5 for
// the students. On an AMD EPYC (AVX-512 kernels), gmflow-2's samples are 1.12e-5 from its fixture
// with one thread and 1.26e-5 with two, and the binary of the commit before this tolerance gives
// samples bit-equal to this one's there (measured with the README's command): another CPU's
// rounding, not a change, so gmflow-2 gets 2.5e-5 (a change of the model moves them by > 1e-3).
struct OneThread {
  int before = torch::get_num_threads();
  OneThread() { torch::set_num_threads(1); }
  ~OneThread() { torch::set_num_threads(before); }
};

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace

TEST(ShippedModels, StudentsReproduceTheirSamplesFromBeforeTheInterfaces) {
  torch::NoGradGuard g;
  OneThread one;
  const NetworkPtr teacher = load_network(kModels + "teacher.safetensors");
  for (const std::string name : {"arcflow-2", "linear-2", "gmflow-2"}) {
    const SampleTensors want = load_sample_tensors(kData + "/shipped/" + name + ".safetensors");
    io::Metadata meta;
    LoRAStudent s = load_adapter(teacher, kModels + name + ".safetensors", &meta);
    s->fuse_lora();  // as `arcflow sample` does
    StudentSampling so = distilled_sampling(meta, name);
    so.temperature = 1.0;  // the fixtures' (gmflow-2's "auto" would be 0.1 since issue 25)
    const torch::Tensor got = sample_student(*s, want.noise, Condition::labels(want.labels), so);
    EXPECT_LE(max_abs(got, want.samples), name == "gmflow-2" ? 2.5e-5 : 1e-5) << name;
    EXPECT_GT(max_abs(got, want.noise), 0.1) << name;  // the fixture is not the noise itself
  }
}

TEST(ShippedModels, TeacherReproducesItsGuidedEulerSamples) {
  OneThread one;
  const NetworkPtr teacher = load_network(kModels + "teacher.safetensors");
  const SampleTensors want = load_sample_tensors(kData + "/shipped/teacher-euler-4.safetensors");
  TeacherSampling s;
  s.steps = 4;
  s.cfg_scale = 4.0;
  const torch::Tensor got = sample_teacher(teacher, want.noise, Condition::labels(want.labels), s);
  // 1e-5 as for the students: the fixture's floats come from another machine's kernels (6.4e-6 apart
  // on an AMD EPYC with AVX-512, measured); a changed teacher or sampler moves them by far more.
  EXPECT_LE(max_abs(got, want.samples), 1e-5);
}
