#include "arcflow/toy/data.h"

#include <cmath>
#include <stdexcept>

namespace arcflow {

const std::vector<std::string>& toy_dataset_names() {
  static const std::vector<std::string> names{"checkerboard", "8gaussians", "moons", "spirals"};
  return names;
}

namespace {

const auto kF32 = torch::TensorOptions().dtype(torch::kFloat32);

// A 4x4 board of unit squares on [-2, 2]^2; points fill the 8 squares whose row + column is even.
torch::Tensor checkerboard(int64_t n, at::Generator& gen) {
  torch::Tensor x = torch::rand({n}, gen, kF32) * 4 - 2;
  const torch::Tensor parity = torch::remainder(torch::floor(x), 2);           // column parity, 0 or 1
  const torch::Tensor choice = torch::randint(0, 2, {n}, gen, kF32) * 2;      // which of the column's two squares
  torch::Tensor y = torch::rand({n}, gen, kF32) + parity - 2 + choice;        // rows with (row + col) even
  return torch::stack({x, y}, 1);
}

// Eight isotropic gaussians (std 0.1) evenly spaced on the circle of radius 2.
torch::Tensor eight_gaussians(int64_t n, at::Generator& gen) {
  torch::Tensor k = torch::randint(0, 8, {n}, gen, kF32);
  torch::Tensor angle = k * (2 * M_PI / 8);
  torch::Tensor centers = torch::stack({torch::cos(angle), torch::sin(angle)}, 1) * 2.0;
  return centers + torch::randn({n, 2}, gen, kF32) * 0.1;
}

// Two interleaving half circles (radius 1), centred and scaled by 1.5, with noise std 0.05.
torch::Tensor moons(int64_t n, at::Generator& gen) {
  torch::Tensor t = torch::rand({n}, gen, kF32) * M_PI;
  torch::Tensor lower = torch::randint(0, 2, {n}, gen, kF32);
  torch::Tensor x = torch::where(lower > 0, 1 - torch::cos(t), torch::cos(t));
  torch::Tensor y = torch::where(lower > 0, 0.5 - torch::sin(t), torch::sin(t));
  torch::Tensor pts = torch::stack({x - 0.5, y - 0.25}, 1) * 1.5;
  return pts + torch::randn({n, 2}, gen, kF32) * 0.05;
}

// Two interleaved arms of an Archimedean spiral reaching radius ~2.2, noise std 0.05.
torch::Tensor spirals(int64_t n, at::Generator& gen) {
  torch::Tensor t = torch::sqrt(torch::rand({n}, gen, kF32)) * (3 * M_PI);  // denser toward the outside
  torch::Tensor arm = torch::randint(0, 2, {n}, gen, kF32) * M_PI;
  torch::Tensor r = t / (3 * M_PI) * 2.2;
  torch::Tensor pts = torch::stack({r * torch::cos(t + arm), r * torch::sin(t + arm)}, 1);
  return pts + torch::randn({n, 2}, gen, kF32) * 0.05;
}

}  // namespace

torch::Tensor sample_toy(const std::string& name, int64_t n, at::Generator& gen) {
  if (name == "checkerboard") return checkerboard(n, gen);
  if (name == "8gaussians") return eight_gaussians(n, gen);
  if (name == "moons") return moons(n, gen);
  if (name == "spirals") return spirals(n, gen);
  std::string valid;
  for (const auto& v : toy_dataset_names()) valid += (valid.empty() ? "" : ", ") + v;
  throw std::invalid_argument("unknown toy dataset '" + name + "' (valid: " + valid + ")");
}

}  // namespace arcflow
