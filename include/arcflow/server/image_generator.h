// The models behind `arcflow serve`: the teacher DiT and the distilled students (LoRA fused), loaded
// once, and one request's images from them. Every method of a request starts from the same noise,
// make_noise(n, shape, seed), and the same labels; the teacher samples with guided Euler
// (sample_teacher), the students with sample_student; images leave as PNG files (tensor_to_images,
// io::encode_png). Not thread-safe: the server calls run() from its one worker thread.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "arcflow/server/api.h"

namespace arcflow::server {

struct AdapterFile {
  std::string name, path;
  std::optional<double> temperature{};  // sampling temperature of all but the last step; unset: "auto"
};

// Called after every sampler step (StepProgress, api.h). It may throw to stop the request there (the
// server cancels jobs that way); the exception leaves run() unchanged.
using ProgressCallback = std::function<void(const StepProgress&)>;

class ImageGenerator {
 public:
  // Loads the teacher and every adapter on `device` ("cpu" or "cuda"). Throws std::runtime_error
  // (or std::invalid_argument) naming the file when one is missing, unreadable or not the right
  // kind of model, or when two adapters share a name.
  ImageGenerator(const std::string& teacher_path, const std::vector<AdapterFile>& adapters,
                 const std::string& device = "cpu");
  ~ImageGenerator();
  ImageGenerator(const ImageGenerator&) = delete;
  ImageGenerator& operator=(const ImageGenerator&) = delete;

  const ModelCatalog& catalog() const;

  // The request's images, in the order of request.methods. Sets torch's thread count on the calling
  // thread to the one in force when the generator was built (torch keeps it per thread).
  // `on_step` (may be empty) is called after every sampler step.
  GenerateResult run(const GenerateRequest& request, const ProgressCallback& on_step = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace arcflow::server
