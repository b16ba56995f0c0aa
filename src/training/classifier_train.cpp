// Training loop of the Fashion-MNIST evaluation classifier (see arcflow/training/classifier_train.h).
#include "arcflow/training/classifier_train.h"

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "arcflow/util/progress.h"
#include "arcflow/util/text.h"

namespace arcflow {

void ClassifierTrainConfig::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  if (epochs < 1) bad("--epochs must be >= 1, got " + std::to_string(epochs));
  if (batch_size < 2) bad("--batch must be >= 2 (batch norm needs more than one sample), got " + std::to_string(batch_size));
  if (!(lr > 0) || !std::isfinite(lr)) bad("--lr must be > 0, got " + std::to_string(lr));
  if (!(weight_decay >= 0)) bad("weight decay must be >= 0, got " + std::to_string(weight_decay));
  if (!(min_lr_ratio >= 0 && min_lr_ratio <= 1)) bad("min_lr_ratio must be in [0, 1]");
  if (warmup_steps < 0) bad("warm-up steps must be >= 0");
  if (max_shift < 0) bad("max shift must be >= 0, got " + std::to_string(max_shift));
  if (eval_batch < 1) bad("evaluation batch must be >= 1");
}

torch::Tensor augment_batch(const torch::Tensor& x, int64_t max_shift, bool flip, at::Generator& gen) {
  TORCH_CHECK(x.dim() == 4, "augment_batch: expected (B, C, H, W), got ", x.sizes());
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
  torch::Tensor out = x;
  if (flip) {
    // Always draw, so the random stream does not depend on the data.
    const torch::Tensor mask = (torch::rand({B}, gen) < 0.5).to(x.device()).view({B, 1, 1, 1});
    out = torch::where(mask, out.flip({3}), out);
  }
  if (max_shift > 0) {
    const int64_t m = max_shift;
    // Pad with the background value, then crop an H x W window whose corner is (m + dy, m + dx) in
    // the padded image: pixel (i, j) of the result is the input's pixel (i + dy, j + dx), or -1.
    const torch::Tensor padded = torch::constant_pad_nd(out, {m, m, m, m}, -1.0);
    const torch::Tensor shifts = torch::randint(-m, m + 1, {B, 2}, gen, torch::kLong);
    const auto s = shifts.accessor<int64_t, 2>();
    std::vector<torch::Tensor> crops;
    crops.reserve(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b)
      crops.push_back(padded[b].narrow(1, m + s[b][0], H).narrow(2, m + s[b][1], W));
    out = torch::stack(crops);
  }
  return out.contiguous();
}

double classifier_accuracy(Classifier& model, const torch::Tensor& images, const torch::Tensor& labels, int64_t batch) {
  TORCH_CHECK(images.size(0) == labels.size(0) && images.size(0) > 0, "classifier_accuracy: ", images.size(0),
              " images but ", labels.size(0), " labels");
  const bool was_training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Device device = model->fc2->weight.device();
  int64_t correct = 0;
  const int64_t N = images.size(0);
  for (int64_t i = 0; i < N; i += batch) {
    const int64_t n = std::min(batch, N - i);
    const torch::Tensor logits = model->forward(images.narrow(0, i, n).to(device));
    correct += logits.argmax(1).eq(labels.narrow(0, i, n).to(device)).sum().item<int64_t>();
  }
  model->train(was_training);
  return static_cast<double>(correct) / static_cast<double>(N);
}

namespace {

// Linear warm-up over `warmup` steps, then cosine decay from lr to lr * min_ratio at the last step:
//   lr(s) = lr * (r + (1 - r) * (1 + cos(pi * p)) / 2),  p = (s - warmup) / (total - warmup - 1).
double lr_at(const ClassifierTrainConfig& c, int64_t step, int64_t total) {
  const int64_t warmup = std::min(c.warmup_steps, total / 10);
  if (step < warmup) return c.lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double p = total - warmup > 1 ? static_cast<double>(step - warmup) / static_cast<double>(total - warmup - 1) : 1.0;
  return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * p)));
}

}  // namespace

ClassifierTrainResult train_classifier(Classifier& model, const io::FashionMnist& train, const io::FashionMnist& test,
                                       const ClassifierTrainConfig& cfg) {
  cfg.validate();
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t N = train.images.size(0);
  TORCH_CHECK(N >= 2 && train.labels.size(0) == N, "train_classifier: need >= 2 training images with labels, got ",
              N, " images and ", train.labels.size(0), " labels");
  model->to(cfg.device);
  model->train();
  const torch::Tensor images = train.images.to(cfg.device, torch::kFloat32);
  const torch::Tensor labels = train.labels.to(cfg.device, torch::kLong);

  at::Generator gen = at::detail::createCPUGenerator(cfg.seed);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(cfg.lr).weight_decay(cfg.weight_decay));
  const int64_t B = std::min(cfg.batch_size, N);
  const int64_t steps_per_epoch = N / B;  // the incomplete last batch of each epoch is dropped
  const int64_t total = steps_per_epoch * cfg.epochs;

  ClassifierTrainResult res;
  ProgressBar bar("classifier", total, cfg.progress);
  std::string extra;
  int64_t step = 0;
  for (int epoch = 1; epoch <= cfg.epochs; ++epoch) {
    const torch::Tensor perm = torch::randperm(N, gen, torch::kLong).to(cfg.device);
    // Sums kept on the device and read now and then, so a GPU run does not sync every step.
    torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(cfg.device));
    torch::Tensor correct = torch::zeros({}, torch::TensorOptions().dtype(torch::kLong).device(cfg.device));
    int64_t seen = 0;
    for (int64_t i = 0; i < steps_per_epoch; ++i, ++step) {
      static_cast<torch::optim::AdamWOptions&>(opt.param_groups()[0].options()).lr(lr_at(cfg, step, total));
      const torch::Tensor idx = perm.narrow(0, i * B, B);
      const torch::Tensor x = augment_batch(images.index_select(0, idx), cfg.max_shift, cfg.flip, gen);
      const torch::Tensor y = labels.index_select(0, idx);
      const torch::Tensor logits = model->forward(x);
      const torch::Tensor loss = torch::cross_entropy_loss(logits, y);
      opt.zero_grad();
      loss.backward();
      opt.step();
      {
        torch::NoGradGuard no_grad;
        loss_sum += loss.detach().to(torch::kFloat64) * B;
        correct += logits.argmax(1).eq(y).sum();
      }
      seen += B;
      if (i % 20 == 0 || i + 1 == steps_per_epoch) {
        res.train_loss = loss_sum.item<double>() / static_cast<double>(seen);
        res.train_accuracy = static_cast<double>(correct.item<int64_t>()) / static_cast<double>(seen);
        extra = "ep " + std::to_string(epoch) + "/" + std::to_string(cfg.epochs) + " loss " +
                format_number(res.train_loss, "%.4f") + " acc " + format_number(res.train_accuracy, "%.4f");
      }
      bar.update(step + 1, extra);
    }
  }
  bar.finish(extra);
  res.steps = total;
  res.test_accuracy = classifier_accuracy(model, test.images, test.labels, cfg.eval_batch);
  model->eval();
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace arcflow
