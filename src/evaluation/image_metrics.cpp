// Classifier-based image metrics: FID on classifier features, class accuracy, per-class diversity
// (see arcflow/evaluation/image_metrics.h).
#include "arcflow/evaluation/image_metrics.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace arcflow {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void check_labels(const torch::Tensor& labels, int64_t n, int64_t num_classes, const char* who) {
  if (labels.dim() != 1 || labels.size(0) != n)
    throw std::invalid_argument(std::string(who) + ": expected (" + std::to_string(n) + ") labels, got shape " +
                                c10::str(labels.sizes()));
  if (labels.is_floating_point() || labels.is_complex() || labels.scalar_type() == torch::kBool)
    throw std::invalid_argument(std::string(who) + ": labels must be integers");
  if (n > 0) {
    const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
    if (lo < 0 || hi >= num_classes)
      throw std::invalid_argument(std::string(who) + ": labels must be in 0.." + std::to_string(num_classes - 1) +
                                  ", found " + std::to_string(lo < 0 ? lo : hi));
  }
}

}  // namespace

double class_accuracy(const torch::Tensor& logits, const torch::Tensor& labels) {
  if (logits.dim() != 2 || logits.size(0) == 0 || labels.dim() != 1 || labels.size(0) != logits.size(0))
    throw std::invalid_argument("class_accuracy: need logits (N, L) and labels (N), N > 0; got " +
                                c10::str(logits.sizes()) + " and " + c10::str(labels.sizes()));
  const int64_t correct = logits.argmax(1).eq(labels.to(logits.device(), torch::kLong)).sum().item<int64_t>();
  return static_cast<double>(correct) / static_cast<double>(logits.size(0));
}

std::vector<double> per_class_accuracy(const torch::Tensor& logits, const torch::Tensor& labels, int64_t num_classes) {
  if (logits.dim() != 2) throw std::invalid_argument("per_class_accuracy: logits must be (N, L), got " + c10::str(logits.sizes()));
  check_labels(labels, logits.size(0), num_classes, "per_class_accuracy");
  const torch::Tensor y = labels.to(torch::kCPU, torch::kLong);
  const torch::Tensor hit = logits.argmax(1).to(torch::kCPU).eq(y);
  std::vector<double> out;
  for (int64_t c = 0; c < num_classes; ++c) {
    const torch::Tensor in_class = y.eq(c);
    const int64_t n = in_class.sum().item<int64_t>();
    out.push_back(n == 0 ? kNaN
                         : static_cast<double>(hit.logical_and(in_class).sum().item<int64_t>()) / static_cast<double>(n));
  }
  return out;
}

Diversity class_diversity(const torch::Tensor& features, const torch::Tensor& labels, int64_t num_classes) {
  if (features.dim() != 2) throw std::invalid_argument("class_diversity: features must be (N, D), got " + c10::str(features.sizes()));
  check_labels(labels, features.size(0), num_classes, "class_diversity");
  const torch::Tensor f = features.detach().to(torch::kCPU, torch::kFloat64);
  const torch::Tensor y = labels.to(torch::kCPU, torch::kLong);
  Diversity d;
  double sum = 0;
  int used = 0;
  constexpr int64_t kBlock = 512;
  for (int64_t c = 0; c < num_classes; ++c) {
    const torch::Tensor fc = f.index_select(0, y.eq(c).nonzero().flatten());
    const int64_t n = fc.size(0);
    if (n < 2) {
      d.per_class.push_back(kNaN);
      continue;
    }
    // Sum over all ordered pairs (i, j) of |f_i - f_j| (the diagonal adds 0) = 2 * sum_{i<j}; the
    // direct (non-matmul) distance keeps the diagonal exactly zero.
    double total = 0;
    for (int64_t i = 0; i < n; i += kBlock) {
      const torch::Tensor rows = fc.narrow(0, i, std::min(kBlock, n - i));
      total += torch::cdist(rows, fc, 2.0, /*compute_mode=*/2).sum().item<double>();
    }
    const double mean = total / (static_cast<double>(n) * static_cast<double>(n - 1));
    d.per_class.push_back(mean);
    sum += mean;
    ++used;
  }
  d.mean = used > 0 ? sum / used : kNaN;
  return d;
}

ClassifierOutputs classify_images(Classifier& clf, const torch::Tensor& images, int64_t batch) {
  if (batch < 1) throw std::invalid_argument("classify_images: batch must be >= 1");
  const bool was_training = clf->is_training();
  clf->eval();
  torch::NoGradGuard no_grad;
  const torch::Device device = clf->fc2->weight.device();
  std::vector<torch::Tensor> feats, logits;
  const int64_t N = images.size(0);
  for (int64_t i = 0; i < N; i += batch) {
    const torch::Tensor x = images.narrow(0, i, std::min(batch, N - i)).to(device, torch::kFloat32).clamp(-1.0, 1.0);
    const torch::Tensor f = clf->features(x);
    feats.push_back(f.cpu());
    logits.push_back(clf->logits_from_features(f).cpu());
  }
  clf->train(was_training);
  ClassifierOutputs out;
  const int64_t D = clf->config.feature_dim, L = clf->config.num_classes;
  out.features = N > 0 ? torch::cat(feats) : torch::zeros({0, D});
  out.logits = N > 0 ? torch::cat(logits) : torch::zeros({0, L});
  return out;
}

ImageMetrics image_metrics(const ClassifierOutputs& out, const torch::Tensor& labels, const FeatureStats& reference) {
  const int64_t N = out.features.size(0), L = out.logits.size(1);
  if (N < 2) throw std::invalid_argument("image metrics: need at least 2 samples, got " + std::to_string(N));
  check_labels(labels, N, L, "image metrics");
  ImageMetrics m;
  m.n = N;
  m.fid = frechet_distance(feature_stats(out.features), reference);
  m.accuracy = class_accuracy(out.logits, labels);
  m.per_class_accuracy = per_class_accuracy(out.logits, labels, L);
  const Diversity d = class_diversity(out.features, labels, L);
  m.diversity = d.mean;
  m.per_class_diversity = d.per_class;
  const torch::Tensor counts = torch::bincount(labels.to(torch::kCPU, torch::kLong), {}, L);
  for (int64_t c = 0; c < L; ++c) m.per_class_count.push_back(counts[c].item<int64_t>());
  return m;
}

ImageMetrics evaluate_images(Classifier& clf, const torch::Tensor& images, const torch::Tensor& labels,
                             const FeatureStats& reference, int64_t batch) {
  const ClassifierConfig& c = clf->config;
  if (images.dim() != 4 || images.size(1) != c.in_channels || images.size(2) != c.image_size ||
      images.size(3) != c.image_size)
    throw std::invalid_argument("evaluate_images: expected images (N, " + std::to_string(c.in_channels) + ", " +
                                std::to_string(c.image_size) + ", " + std::to_string(c.image_size) + "), got " +
                                c10::str(images.sizes()));
  check_labels(labels, images.size(0), c.num_classes, "evaluate_images");
  return image_metrics(classify_images(clf, images, batch), labels, reference);
}

}  // namespace arcflow
