// Image generation helpers: seeded noise, labels, the batched guided teacher loop, tensor -> PNG
// grid, and the sample-tensor file (see generate.h).
#include "arcflow/sampling/generate.h"

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>

#include "arcflow/core/schedule.h"
#include "arcflow/io/canvas.h"

namespace arcflow {

namespace {

// ", 1, 28, 28" for {1, 28, 28}.
std::string dims_str(const std::vector<int64_t>& dims) {
  std::string out;
  for (int64_t d : dims) out += ", " + std::to_string(d);
  return out;
}

std::string shape_str(const torch::Tensor& t) {
  std::string s = "(";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + ")";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Noise: mt19937_64 -> uniforms with 53 random bits -> Box-Muller pairs, one stream for all samples.
torch::Tensor make_noise(int64_t n, const std::vector<int64_t>& shape, uint64_t seed, torch::Device device) {
  if (n < 0) throw std::invalid_argument("make_noise: number of samples must be >= 0, got " + std::to_string(n));
  int64_t per_sample = 1;
  std::vector<int64_t> sizes{n};
  for (int64_t d : shape) {
    if (d < 1) throw std::invalid_argument("make_noise: every dimension must be >= 1, got " + std::to_string(d));
    per_sample *= d;
    sizes.push_back(d);
  }
  torch::Tensor out = torch::empty(sizes, torch::TensorOptions().dtype(torch::kFloat32));
  float* p = out.data_ptr<float>();
  const int64_t total = n * per_sample;
  std::mt19937_64 gen(seed);
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  auto uniform = [&gen] { return static_cast<double>(gen() >> 11) * 0x1.0p-53; };  // [0, 1)
  for (int64_t i = 0; i < total; i += 2) {
    const double u1 = 1.0 - uniform();  // (0, 1]: log is finite
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    p[i] = static_cast<float>(r * std::cos(kTwoPi * u2));
    if (i + 1 < total) p[i + 1] = static_cast<float>(r * std::sin(kTwoPi * u2));
  }
  return out.to(device);
}

// ---------------------------------------------------------------------------------------------
std::vector<int64_t> make_labels(int64_t n, const std::vector<int64_t>& classes, int64_t num_classes) {
  if (n < 0) throw std::invalid_argument("make_labels: number of samples must be >= 0, got " + std::to_string(n));
  if (num_classes < 1)
    throw std::invalid_argument("make_labels: the model has " + std::to_string(num_classes) + " classes");
  for (int64_t c : classes)
    if (c < 0 || c >= num_classes)
      throw std::invalid_argument("class " + std::to_string(c) + " is outside 0.." + std::to_string(num_classes - 1));
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    out[static_cast<size_t>(i)] =
        classes.empty() ? i % num_classes : classes[static_cast<size_t>(i) % classes.size()];
  return out;
}

torch::Tensor make_label_tensor(int64_t n, const std::vector<int64_t>& classes, int64_t num_classes) {
  const std::vector<int64_t> v = make_labels(n, classes, num_classes);
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kInt64)).reshape({n});
}

// ---------------------------------------------------------------------------------------------
void TeacherSampling::validate() const {
  find_sampler(sampler);  // throws listing the valid names
  if (steps < 1) throw std::invalid_argument("steps must be >= 1, got " + std::to_string(steps));
  if (!(shift > 0.0) || !std::isfinite(shift))
    throw std::invalid_argument("shift must be > 0, got " + std::to_string(shift));
  if (!(timestep_ratio > 0.0) || !std::isfinite(timestep_ratio))
    throw std::invalid_argument("timestep_ratio must be > 0, got " + std::to_string(timestep_ratio));
  if (!std::isfinite(cfg_scale)) throw std::invalid_argument("cfg_scale must be finite, got " + std::to_string(cfg_scale));
  if (max_batch < 1) throw std::invalid_argument("batch size must be >= 1, got " + std::to_string(max_batch));
}

int teacher_nfe(const TeacherSampling& s) {
  const int calls = sampler_nfe(s.sampler, s.steps);
  return (s.cfg_scale == 0.0 || s.cfg_scale == 1.0) ? calls : 2 * calls;
}

torch::Tensor sample_teacher(const NetworkPtr& model, const torch::Tensor& noise, const Condition& cond,
                             const TeacherSampling& s, const SamplerCallback& cb) {
  s.validate();
  const std::vector<int64_t> want = model->sample_shape();
  if (!noise.defined() || noise.dim() != static_cast<int64_t>(want.size()) + 1 || noise.sizes().slice(1).vec() != want)
    throw std::invalid_argument("sample_teacher: noise must be (N" + dims_str(want) + ") for this model, got " + (noise.defined() ? shape_str(noise) : "undefined"));
  const int64_t n = noise.size(0);
  try {
    model->check_condition(cond, n);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("sample_teacher: ") + e.what());
  }
  if (n == 0) return torch::empty(noise.sizes(), torch::TensorOptions().dtype(torch::kFloat32));

  const torch::Tensor first_param = model->module().parameters().front();
  const torch::Device device = first_param.device();
  // The sampler's state stays in float32 when the network runs in half precision (it casts its
  // inputs itself and returns x's dtype).
  const auto param_dtype = first_param.scalar_type();
  const auto dtype = param_dtype == torch::kBFloat16 || param_dtype == torch::kHalf ? torch::kFloat32 : param_dtype;
  const Sampler sampler = find_sampler(s.sampler);
  const std::vector<double> sig = sigmas(s.steps, s.shift, s.timestep_ratio);

  torch::NoGradGuard no_grad;
  EvalModeGuard eval_mode(model->module());
  GuidedTeacher teacher(model, s.cfg_scale);

  const int64_t chunks = (n + s.max_batch - 1) / s.max_batch;
  std::vector<torch::Tensor> outputs;
  outputs.reserve(static_cast<size_t>(chunks));
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t start = c * s.max_batch, len = std::min(s.max_batch, n - start);
    const torch::Tensor x = noise.narrow(0, start, len).to(device, dtype);
    const Condition chunk = cond.empty() ? cond : cond.narrow(start, len).to(device);
    const VelocityFn v = [&teacher, &chunk](const torch::Tensor& xx, const torch::Tensor& sigma) {
      return teacher.velocity(xx, sigma, chunk);
    };
    SamplerCallback chunk_cb;
    if (cb)
      chunk_cb = [&cb, c, chunks, &s](const StepInfo& info) {
        StepInfo whole = info;
        whole.step = static_cast<int>(c * s.steps + info.step);
        whole.total = static_cast<int>(chunks * s.steps);
        cb(whole);
      };
    outputs.push_back(sampler(v, x, sig, SamplerOptions{}, chunk_cb).to(torch::kCPU, torch::kFloat32));
  }
  return outputs.size() == 1 ? outputs.front() : torch::cat(outputs, 0);
}

// ---------------------------------------------------------------------------------------------
std::vector<io::Image> tensor_to_images(const torch::Tensor& images) {
  if (!images.defined() || images.dim() != 4 || (images.size(1) != 1 && images.size(1) != 3))
    throw std::invalid_argument("tensor_to_images: expected (N, C, H, W) with C = 1 or 3, got " +
                                (images.defined() ? shape_str(images) : "undefined"));
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  if (h < 1 || w < 1) throw std::invalid_argument("tensor_to_images: empty images " + shape_str(images));
  // round((x + 1) * 127.5), halves rounded up; NaN maps to 0.
  torch::Tensor q = images.detach().to(torch::kCPU, torch::kFloat32).clamp(-1.0, 1.0);
  q = torch::nan_to_num(q, -1.0);
  q = torch::floor((q + 1.0) * 127.5 + 0.5).clamp(0.0, 255.0).to(torch::kUInt8);
  q = q.permute({0, 2, 3, 1}).contiguous();  // (N, H, W, C): interleaved channels, top row first
  const size_t bytes = static_cast<size_t>(h * w * c);
  std::vector<io::Image> out(static_cast<size_t>(n));
  const uint8_t* src = q.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    io::Image& im = out[static_cast<size_t>(i)];
    im.width = static_cast<int>(w);
    im.height = static_cast<int>(h);
    im.channels = static_cast<int>(c);
    im.pixels.assign(src + static_cast<size_t>(i) * bytes, src + static_cast<size_t>(i + 1) * bytes);
  }
  return out;
}

io::Image images_to_grid(const torch::Tensor& images, int nrow, int pad, uint8_t background) {
  if (nrow < 1) throw std::invalid_argument("images_to_grid: nrow must be >= 1, got " + std::to_string(nrow));
  if (pad < 0) throw std::invalid_argument("images_to_grid: pad must be >= 0, got " + std::to_string(pad));
  if (images.defined() && images.dim() >= 1 && images.size(0) == 0)
    throw std::invalid_argument("images_to_grid: no images");
  return io::tile(tensor_to_images(images), nrow, pad, background);
}

// ---------------------------------------------------------------------------------------------
void save_sample_tensors(const std::string& path, const torch::Tensor& noise, const torch::Tensor& labels,
                         const torch::Tensor& samples, const io::Metadata& metadata) {
  if (!noise.defined() || !labels.defined() || !samples.defined())
    throw std::invalid_argument(path + ": noise, labels and samples must all be defined");
  if (labels.dim() != 1) throw std::invalid_argument(path + ": labels must be 1-D, got " + shape_str(labels));
  if (noise.sizes() != samples.sizes())
    throw std::invalid_argument(path + ": noise " + shape_str(noise) + " and samples " + shape_str(samples) +
                                " differ in shape");
  if (samples.dim() < 1 || samples.size(0) != labels.size(0))
    throw std::invalid_argument(path + ": " + std::to_string(labels.size(0)) + " labels for samples " +
                                shape_str(samples));
  io::save_safetensors(path,
                       {{"noise", noise.detach().to(torch::kCPU, torch::kFloat32)},
                        {"labels", labels.detach().to(torch::kCPU, torch::kInt64)},
                        {"samples", samples.detach().to(torch::kCPU, torch::kFloat32)}},
                       metadata);
}

SampleTensors load_sample_tensors(const std::string& path) {
  io::SafetensorsFile f = io::load_safetensors(path);
  auto get = [&](const char* name, torch::ScalarType dtype, bool required) -> torch::Tensor {
    auto it = f.tensors.find(name);
    if (it == f.tensors.end()) {
      if (required) throw std::runtime_error(path + ": no tensor \"" + name + "\" (not a sample-tensor file?)");
      return {};
    }
    if (it->second.scalar_type() != dtype)
      throw std::runtime_error(path + ": tensor \"" + name + "\" has dtype " +
                               std::string(c10::toString(it->second.scalar_type())) + ", expected " +
                               c10::toString(dtype));
    return it->second;
  };
  SampleTensors out;
  out.samples = get("samples", torch::kFloat32, true);
  out.labels = get("labels", torch::kInt64, true);
  out.noise = get("noise", torch::kFloat32, false);
  if (out.labels.dim() != 1 || out.samples.dim() < 1 || out.samples.size(0) != out.labels.size(0))
    throw std::runtime_error(path + ": labels " + shape_str(out.labels) + " do not match samples " +
                             shape_str(out.samples));
  if (out.noise.defined() && out.noise.sizes() != out.samples.sizes())
    throw std::runtime_error(path + ": noise " + shape_str(out.noise) + " and samples " + shape_str(out.samples) +
                             " differ in shape");
  out.metadata = std::move(f.metadata);
  return out;
}

}  // namespace arcflow
