#include "arcflow/server/image_generator.h"

#include <torch/torch.h>

#include <chrono>
#include <set>
#include <stdexcept>

#include "arcflow/io/idx.h"
#include "arcflow/io/png.h"
#include "arcflow/models/lora.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/student.h"
#include "arcflow/sampling/generate.h"
#include "arcflow/sampling/student_sampling.h"

namespace arcflow::server {

struct ImageGenerator::Impl {
  torch::Device device{torch::kCPU};
  int threads = 1;
  NetworkPtr teacher;
  std::vector<LoRAStudent> students;  // parallel to catalog.adapters
  ModelCatalog catalog;
};

namespace {

std::vector<std::string> encode_all(const torch::Tensor& samples, const std::string& method) {
  std::vector<std::string> out;
  for (const io::Image& img : tensor_to_images(samples))
    out.push_back(io::encode_png(img, {{"Software", "arcflow serve"}, {"method", method}}));
  return out;
}

}  // namespace

ImageGenerator::ImageGenerator(const std::string& teacher_path, const std::vector<AdapterFile>& adapters,
                               const std::string& device)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.device = torch::Device(device);
  m.threads = torch::get_num_threads();
  m.teacher = load_network(teacher_path, m.device);
  const std::vector<int64_t> shape = m.teacher->sample_shape();
  if (shape.size() != 3 || (shape[0] != 1 && shape[0] != 3) || shape[1] != shape[2] || m.teacher->num_classes() < 1)
    throw std::runtime_error(teacher_path + ": arcflow serve needs a class-conditional model of square images with " +
                             "1 (gray) or 3 (RGB) channels; this '" + m.teacher->kind() + "' model is not one");
  ModelCatalog& c = m.catalog;
  c.teacher_path = teacher_path;
  c.channels = shape[0];
  c.image_size = shape[1];
  c.num_classes = m.teacher->num_classes();
  const auto& fashion = io::fashion_mnist_class_names();
  for (int64_t k = 0; k < c.num_classes; ++k)
    c.class_names.push_back(c.num_classes == static_cast<int64_t>(fashion.size()) ? fashion[k]
                                                                                   : "class " + std::to_string(k));
  std::set<std::string> names;
  for (const AdapterFile& a : adapters) {
    if (a.name == kTeacherMethod || !names.insert(a.name).second)
      throw std::invalid_argument("--adapter: the name '" + a.name + "' is " +
                                  (a.name == kTeacherMethod ? "reserved for the teacher" : "given twice"));
    SamplingOverrides given;
    given.temperature = a.temperature;
    const SamplingStudent loaded = load_sampling_student(m.teacher, a.path, given);
    const LoRAStudent st = loaded.student;
    const StudentSampling& distilled = loaded.sampling;
    AdapterInfo info;
    info.name = a.name;
    info.path = a.path;
    info.K = st->config.K;
    info.nfe = distilled.nfe;
    info.policy = st->config.policy == "arcflow" && info.K == 1 ? "linear" : st->config.policy;
    info.shift = distilled.shift;
    info.timestep_ratio = distilled.timestep_ratio;
    info.total_substeps = distilled.total_substeps;
    info.temperature = a.temperature;
    info.distilled_temperature = distilled.temperature_for(*st);
    c.adapters.push_back(info);
    m.students.push_back(st);
  }
  m.teacher->module().eval();
}

ImageGenerator::~ImageGenerator() = default;

const ModelCatalog& ImageGenerator::catalog() const { return impl_->catalog; }

GenerateResult ImageGenerator::run(const GenerateRequest& r, const ProgressCallback& on_step) {
  Impl& m = *impl_;
  if (torch::get_num_threads() != m.threads) torch::set_num_threads(m.threads);
  const ModelCatalog& c = m.catalog;
  std::vector<int64_t> classes;
  if (r.cls) classes.push_back(*r.cls);
  GenerateResult out;
  out.labels = make_labels(r.n, classes, c.num_classes);
  const torch::Tensor labels = make_label_tensor(r.n, classes, c.num_classes);
  const torch::Tensor noise = make_noise(r.n, {c.channels, c.image_size, c.image_size}, r.seed, torch::kCPU);

  for (const std::string& method : r.methods) {
    MethodResult res;
    res.method = method;
    torch::Tensor samples;
    const auto t0 = std::chrono::steady_clock::now();
    SamplerCallback step_cb;
    if (on_step)
      step_cb = [&](const StepInfo& info) {
        on_step({method, info.step + 1, info.total,
                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()});
      };
    if (method == kTeacherMethod) {
      TeacherSampling s;
      s.sampler = c.teacher_sampler;
      s.cfg_scale = c.cfg_scale;
      s.steps = r.teacher_steps;
      s.max_batch = 64;
      samples = sample_teacher(m.teacher, noise, Condition::labels(labels), s, step_cb);
      res.steps = s.steps;
      res.nfe = teacher_nfe(s);
    } else {
      size_t i = 0;
      while (i < c.adapters.size() && c.adapters[i].name != method) ++i;
      if (i == c.adapters.size()) throw std::invalid_argument("method '" + method + "' is not loaded");
      const AdapterInfo& a = c.adapters[i];
      StudentSampling s;
      s.nfe = r.student_steps.value_or(a.nfe);
      s.shift = a.shift;
      s.timestep_ratio = a.timestep_ratio;
      s.total_substeps = a.total_substeps;
      s.temperature = a.temperature;
      s.max_batch = 64;
      samples = sample_student(*m.students[i], noise, Condition::labels(labels), s, step_cb);
      res.steps = s.nfe;
      res.nfe = s.nfe;
    }
    res.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    res.png = encode_all(samples, method);
    out.results.push_back(std::move(res));
  }
  return out;
}

}  // namespace arcflow::server
