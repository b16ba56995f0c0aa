// Implementation of arcflow/io/safetensors_dir.h. POSIX file access (stat, open, pread): the
// LibTorch of PyTorch wheels clashes with std::filesystem (see tests/temp_dir.h).
#include "arcflow/io/safetensors_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <set>
#include <stdexcept>

#include "arcflow/io/atomic_file.h"
#include "arcflow/util/text.h"

namespace arcflow::io {
namespace {

// Adds the tensors of one file's header to `out` (all of them, or those in `only` when given).
void add_file(const std::string& path, std::map<std::string, StoredTensor>& out, std::map<std::string, Metadata>& meta) {
  const SafetensorsHeader h = read_safetensors_header(path);
  for (const auto& [name, e] : h.tensors)
    out[name] = StoredTensor{path, e.dtype, e.shape, h.data_offset + e.begin, e.end - e.begin};
  meta[path] = h.metadata;
}

// A file descriptor closed on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void pread_all(const std::string& path, const std::string& name, void* dst, uint64_t nbytes, uint64_t offset) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  auto* p = static_cast<char*>(dst);
  uint64_t done = 0;
  while (done < nbytes) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(nbytes - done, 1ull << 30));
    const ssize_t n = ::pread(f.fd, p + done, chunk, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw std::runtime_error(path + ": tensor '" + name + "': read failed" +
                               (n < 0 ? std::string(": ") + std::strerror(errno) : std::string(" (file truncated?)")));
    done += static_cast<uint64_t>(n);
  }
}

}  // namespace

std::string safetensors_dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat64: return "F64";
    case torch::kFloat32: return "F32";
    case torch::kFloat16: return "F16";
    case torch::kBFloat16: return "BF16";
    case torch::kInt64: return "I64";
    case torch::kInt32: return "I32";
    case torch::kUInt8: return "U8";
    default: return c10::toString(t);
  }
}

SafetensorsDir SafetensorsDir::open_file(const std::string& path) {
  SafetensorsDir d;
  d.source_ = path;
  add_file(path, d.tensors_, d.metadata_);
  return d;
}

SafetensorsDir SafetensorsDir::open(const std::string& folder, const std::string& stem) {
  const std::string single = join_path(folder, stem + ".safetensors");
  const std::string index = join_path(folder, stem + ".safetensors.index.json");
  if (!is_regular_file(index)) {
    if (!is_regular_file(single))
      throw std::runtime_error(folder + ": neither " + stem + ".safetensors nor " + stem +
                               ".safetensors.index.json is there");
    return open_file(single);
  }

  SafetensorsDir d;
  d.source_ = index;
  d.sharded_ = true;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(index));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(index + ": invalid JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw std::runtime_error(index + ": no \"weight_map\" object (expected {\"weight_map\": {tensor: shard file}})");
  // tensor -> shard, and the shards in order of first appearance.
  std::map<std::string, std::string> shard_of;
  std::set<std::string> shards;
  for (const auto& item : j["weight_map"].items()) {
    if (!item.value().is_string())
      throw std::runtime_error(index + ": weight_map['" + item.key() + "'] is not a file name (got " +
                               item.value().dump() + ")");
    const std::string shard = item.value().get<std::string>();
    if (shard.empty() || shard.front() == '/' || shard.find("..") != std::string::npos)
      throw std::runtime_error(index + ": weight_map['" + item.key() + "'] = '" + shard +
                               "' is not a file name inside the folder");
    const std::string path = join_path(folder, shard);
    if (shards.insert(path).second && !is_regular_file(path))
      throw std::runtime_error(index + ": weight_map['" + item.key() + "'] names shard '" + shard +
                               "', which does not exist (" + path + ")");
    shard_of[item.key()] = path;
  }
  std::map<std::string, StoredTensor> all;
  for (const std::string& path : shards) {
    std::map<std::string, StoredTensor> in_file;
    add_file(path, in_file, d.metadata_);
    for (auto& [name, t] : in_file) {
      const auto it = shard_of.find(name);
      if (it == shard_of.end())
        throw std::runtime_error(path + ": tensor '" + name + "' is not listed in " + index);
      if (it->second != path)
        throw std::runtime_error(path + ": tensor '" + name + "' is listed in " + index + " under " + it->second);
      all[name] = std::move(t);
    }
  }
  for (const auto& [name, path] : shard_of)
    if (all.count(name) == 0)
      throw std::runtime_error(path + ": missing tensor '" + name + "' (listed for this shard in " + index + ")");
  d.tensors_ = std::move(all);
  return d;
}

const StoredTensor& SafetensorsDir::at(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) throw std::runtime_error(source_ + ": no tensor '" + name + "'");
  return it->second;
}

uint64_t SafetensorsDir::total_bytes() const {
  uint64_t n = 0;
  for (const auto& [name, t] : tensors_) n += t.nbytes;
  return n;
}

torch::Tensor SafetensorsDir::read(const std::string& name) const {
  const StoredTensor& s = at(name);
  torch::Tensor t = torch::empty(s.shape, torch::TensorOptions().dtype(s.dtype).device(torch::kCPU));
  if (s.nbytes != t.nbytes()) throw std::runtime_error(s.file + ": tensor '" + name + "': size mismatch");
  if (s.nbytes > 0) pread_all(s.file, name, t.data_ptr(), s.nbytes, s.offset);
  return t;
}

void SafetensorsDir::read_into(const std::string& name, torch::Tensor& dst) const {
  const StoredTensor& s = at(name);
  if (dst.sizes().vec() != s.shape)
    throw std::runtime_error(s.file + ": tensor '" + name + "' has shape " + c10::str(c10::IntArrayRef(s.shape)) +
                             ", the destination " + c10::str(dst.sizes()));
  torch::NoGradGuard no_grad;
  if (dst.device().is_cpu() && dst.scalar_type() == s.dtype && dst.is_contiguous() &&
      static_cast<uint64_t>(dst.nbytes()) == s.nbytes) {
    if (s.nbytes > 0) pread_all(s.file, name, dst.data_ptr(), s.nbytes, s.offset);
    return;
  }
  dst.copy_(read(name));
}

}  // namespace arcflow::io
