// A table row's samples on disk, batch by batch (see sample_cache.h).
#include "arcflow/evaluation/sample_cache.h"

#include <sys/stat.h>

#include <cstdio>
#include <stdexcept>

#include "arcflow/io/safetensors.h"

namespace arcflow {

namespace {

constexpr const char* kKeyName = "arcflow_row_cache";

struct Fnv64 {
  uint64_t h = 1469598103934665603ULL;
  void add(const void* data, size_t len) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < len; ++i) h = (h ^ p[i]) * 1099511628211ULL;
  }
  void add(const std::string& s) { add(s.data(), s.size() + 1); }  // with the terminator: "ab","c" != "a","bc"
};

void add_tensor(Fnv64& f, const std::string& name, const torch::Tensor& t) {
  f.add(name);
  f.add(std::string(c10::toString(t.scalar_type())));
  for (int64_t d : t.sizes()) f.add(&d, sizeof d);
  const torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
  f.add(c.data_ptr(), static_cast<size_t>(c.numel()) * c.element_size());
}

}  // namespace

std::string parameter_digest(torch::nn::Module& module) {
  Fnv64 f;
  for (const auto& p : module.named_parameters(true)) add_tensor(f, "p:" + p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) add_tensor(f, "b:" + b.key(), b.value());
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(f.h));
  return hex;
}

RowCache open_row_cache(const std::string& path, const nlohmann::json& key, const std::vector<int64_t>& shape,
                        std::string* note) {
  if (note) note->clear();
  RowCache c;
  c.path = path;
  c.key = key;
  c.samples = torch::zeros(shape, torch::TensorOptions().dtype(torch::kFloat32));
  struct stat st;
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return c;
  const auto reject = [&](const std::string& why) {
    if (note) *note = path + ": not used (" + why + "); the row is made again and the file replaced";
    return c;
  };
  io::SafetensorsFile f;
  try {
    f = io::load_safetensors(path);
  } catch (const std::exception& e) {
    return reject(std::string("cannot read it: ") + e.what());
  }
  const auto k = f.metadata.find(kKeyName);
  const auto d = f.metadata.find("done");
  const auto s = f.metadata.find("seconds");
  const auto t = f.tensors.find("samples");
  if (k == f.metadata.end() || d == f.metadata.end() || s == f.metadata.end() || t == f.tensors.end())
    return reject("not a row cache: no \"samples\" tensor or no arcflow_row_cache/done/seconds metadata");
  nlohmann::json file_key;
  int64_t done = 0;
  double seconds = 0;
  try {
    file_key = nlohmann::json::parse(k->second);
    done = std::stoll(d->second);
    seconds = std::stod(s->second);
  } catch (const std::exception& e) {
    return reject(std::string("damaged metadata: ") + e.what());
  }
  if (file_key != key) {
    std::string diff;
    for (const auto& [name, value] : key.items())
      if (!file_key.contains(name) || file_key[name] != value) diff += (diff.empty() ? "" : ", ") + name;
    return reject("made with other settings: " + (diff.empty() ? std::string("key") : diff) + " differ");
  }
  if (t->second.scalar_type() != torch::kFloat32 || t->second.sizes().vec() != shape)
    return reject("its samples have another shape or dtype");
  if (done < 0 || done > shape.at(0) || !(seconds >= 0)) return reject("damaged metadata: done or seconds out of range");
  c.samples = t->second;
  c.done = done;
  c.seconds = seconds;
  return c;
}

void save_row_cache(const RowCache& c) {
  if (c.path.empty()) return;
  io::save_safetensors(c.path, {{"samples", c.samples}},
                       {{kKeyName, c.key.dump()}, {"done", std::to_string(c.done)}, {"seconds", std::to_string(c.seconds)}});
}

}  // namespace arcflow
