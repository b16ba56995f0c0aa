// Image generation with a trained model: reproducible starting noise, class labels, the guided
// teacher sampling loop (batched so that any number of images fits in memory), tensor -> PNG grid
// conversion, and the sample-tensor file that `arcflow eval --samples FILE` reads.
//
// Reproducibility. make_noise() draws on the CPU from its own generator, independent of torch's
// global RNG, of the device and of the LibTorch version: a std::mt19937_64 seeded with `seed`
// (whose output the C++ standard fixes exactly) feeds a hand-written Box-Muller transform, and
// sample i takes values [i * numel(shape), (i + 1) * numel(shape)) of that single stream. So sample
// i's noise depends only on (seed, shape, i): `-n 4` gives the first 4 images of `-n 16`.
//
// Sample-tensor file (safetensors):
//   "noise"   (N, C, H, W) float32   the starting noise x(sigma = 1)
//   "labels"  (N) int64              class of each sample
//   "samples" (N, C, H, W) float32   raw model outputs x(sigma = 0), unclamped, pixel scale [-1, 1]
//   __metadata__: generation parameters as strings (sampler, steps, cfg_scale, shift, seed, model
//   file, nfe, ...), whatever the caller passes.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "arcflow/io/png.h"
#include "arcflow/io/safetensors.h"
#include "arcflow/models/network.h"
#include "arcflow/sampling/samplers.h"

namespace arcflow {

// (n, shape...) float32 standard normal noise on `device` (see the header comment). Throws
// std::invalid_argument for n < 0 or a non-positive dimension in `shape`.
torch::Tensor make_noise(int64_t n, const std::vector<int64_t>& shape, uint64_t seed,
                         torch::Device device = torch::kCPU);

// Labels of n samples: sample i gets classes[i % classes.size()], or i % num_classes when `classes`
// is empty (all classes cycling, so n = 2 * num_classes gives two of each). Throws
// std::invalid_argument naming the value for n < 0, num_classes < 1 or a class outside
// [0, num_classes - 1].
std::vector<int64_t> make_labels(int64_t n, const std::vector<int64_t>& classes, int64_t num_classes);
// The same as a (n) int64 CPU tensor.
torch::Tensor make_label_tensor(int64_t n, const std::vector<int64_t>& classes, int64_t num_classes);

// How the many-step teacher samples.
struct TeacherSampling {
  std::string sampler = "euler";  // a name from samplers()
  int steps = 50;
  double shift = 1.0;             // schedule shift (ARCFLOW.md section 1)
  double cfg_scale = 4.0;         // classifier-free guidance scale; 1 = plain conditional model
  double timestep_ratio = 1.0;    // length of the last step relative to the others
  int64_t max_batch = 256;        // samples per model call (x2 inside guidance)

  // Throws std::invalid_argument naming the field and value: unknown sampler (listing the valid
  // names), steps < 1, shift <= 0, timestep_ratio <= 0, non-finite cfg_scale, max_batch < 1.
  void validate() const;
};

// Model evaluations per image: the sampler's calls, doubled when guidance needs the null class
// too (cfg_scale other than 0 and 1; ARCFLOW.md counts one guided step as 2 NFE).
int teacher_nfe(const TeacherSampling& s);

// Samples the teacher from `noise` (N, ...sample_shape) (any device; moved to the model's device and
// dtype) with condition `cond` (N samples, or empty), guidance u = u(x, null) + g (u(x, c) - u(x, null))
// (GuidedTeacher, models/network.h), in chunks of at most max_batch samples, without gradients and in
// eval mode (the model's training flag is restored afterwards, also on errors). Returns the raw
// outputs as float32 on the CPU, unclamped. `cb`, if set, is called after every step of every chunk
// with step/total counted over the whole run (total = steps * chunks) and x the current chunk's state.
// Throws std::invalid_argument for a mismatched noise shape or an invalid condition.
torch::Tensor sample_teacher(const NetworkPtr& model, const torch::Tensor& noise, const Condition& cond,
                             const TeacherSampling& s, const SamplerCallback& cb = nullptr);

// Images (N, C, H, W) in [-1, 1], C = 1 (gray) or 3 (RGB), any device/dtype -> one 8-bit image per
// sample: clamp to [-1, 1], value round((x + 1) * 127.5). Throws std::invalid_argument for another
// shape or channel count.
std::vector<io::Image> tensor_to_images(const torch::Tensor& images);

// tensor_to_images() tiled with io::tile(): `nrow` images per row (as torchvision's make_grid),
// `pad` pixels of `background` between neighbours (none around the outside); image k sits at
// x = (k % nrow) * (W + pad), y = (k / nrow) * (H + pad). Throws std::invalid_argument for N = 0,
// nrow < 1, pad < 0 or a bad shape.
io::Image images_to_grid(const torch::Tensor& images, int nrow, int pad = 2, uint8_t background = 255);

// The contents of a sample-tensor file (see the header comment).
struct SampleTensors {
  torch::Tensor noise, labels, samples;  // CPU; noise/samples float32, labels int64
  io::Metadata metadata;
};

// Writes the sample-tensor file atomically. Tensors may live on any device; noise and samples are
// stored as float32, labels as int64. Throws std::invalid_argument if the three disagree in
// sample count, labels are not 1-D or noise and samples differ in shape; std::runtime_error naming
// `path` on I/O errors.
void save_sample_tensors(const std::string& path, const torch::Tensor& noise, const torch::Tensor& labels,
                         const torch::Tensor& samples, const io::Metadata& metadata = {});

// Reads a sample-tensor file; throws std::runtime_error naming `path` when a tensor is missing, has
// the wrong dtype or the shapes disagree ("noise" is optional for readers: it may be undefined).
SampleTensors load_sample_tensors(const std::string& path);

}  // namespace arcflow
