// Image-quality metrics for generated Fashion-MNIST samples, all read off the evaluation
// classifier (arcflow/models/classifier/classifier.h), which stands in for Inception:
//   - FID: Frechet distance (arcflow/evaluation/fid.h) between Gaussians fitted to the classifier's
//     penultimate features of the samples and of reference images (the real test set). The numbers
//     are NOT comparable to Inception-FID values from papers, only with each other.
//   - accuracy: fraction of samples the classifier assigns to the class they were generated for.
//   - diversity: per class, the mean pairwise Euclidean distance between the features of the
//     samples of that class; reported per class and as the mean over classes. Mode collapse
//     lowers it; compare with the same number on real images.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "arcflow/evaluation/fid.h"
#include "arcflow/models/classifier/classifier.h"

namespace arcflow {

// Fraction of rows of `logits` (N, L) whose argmax equals `labels` (N). Throws
// std::invalid_argument on mismatched shapes or N == 0.
double class_accuracy(const torch::Tensor& logits, const torch::Tensor& labels);

// Accuracy per class 0..num_classes-1 over the samples labelled with that class (NaN for a class
// without samples).
std::vector<double> per_class_accuracy(const torch::Tensor& logits, const torch::Tensor& labels, int64_t num_classes);

struct Diversity {
  std::vector<double> per_class;  // mean pairwise distance per class; NaN for classes with < 2 samples
  double mean = 0;                // mean over the classes with >= 2 samples (NaN if none)
};

// For each class c with samples f_1..f_n (rows of `features` (N, D) labelled c):
//   diversity_c = 2 / (n (n - 1)) * sum_{i < j} |f_i - f_j|,
// computed in float64 in row blocks (memory O(block * n)).
Diversity class_diversity(const torch::Tensor& features, const torch::Tensor& labels, int64_t num_classes);

// The classifier's outputs for a set of images.
struct ClassifierOutputs {
  torch::Tensor features;  // (N, feature_dim) float32, CPU
  torch::Tensor logits;    // (N, num_classes) float32, CPU
};

// Runs `clf` in eval mode under NoGradGuard over `images` (N, C, H, W), `batch` at a time, on the
// classifier's device. Images are clamped to [-1, 1] first. Restores the training flag.
ClassifierOutputs classify_images(Classifier& clf, const torch::Tensor& images, int64_t batch = 500);

struct ImageMetrics {
  double fid = 0, accuracy = 0, diversity = 0;
  std::vector<double> per_class_accuracy, per_class_diversity;
  std::vector<int64_t> per_class_count;
  int64_t n = 0;
};

// Metrics from classifier outputs already computed (labels (N) int64 in 0..num_classes-1).
ImageMetrics image_metrics(const ClassifierOutputs& out, const torch::Tensor& labels, const FeatureStats& reference);

// classify_images + image_metrics. images: (N, C, H, W) (clamped to [-1, 1]); labels: (N) int64 in
// 0..num_classes-1; N >= 2. Throws std::invalid_argument on mismatched shapes or bad labels.
ImageMetrics evaluate_images(Classifier& clf, const torch::Tensor& images, const torch::Tensor& labels,
                             const FeatureStats& reference, int64_t batch = 500);

}  // namespace arcflow
