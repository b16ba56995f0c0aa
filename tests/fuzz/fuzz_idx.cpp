// libFuzzer harness: read_idx (Fashion-MNIST's format, plain or gzip) on arbitrary file contents.
// Malformed input must throw std::runtime_error naming the file; accepted input must be a uint8
// tensor of 1-4 dimensions holding exactly the bytes after the header.
#include <c10/util/Exception.h>

#include "arcflow/io/idx.h"
#include "fuzz_util.h"

using arcflow::fuzz::violation;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = arcflow::fuzz::write_input(data, size, ".idx");
  torch::Tensor t;
  try {
    t = arcflow::io::read_idx(path);
  } catch (const c10::Error& e) {
    violation(std::string("torch error escaped: ") + e.what_without_backtrace());
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()).rfind(path + ": ", 0) != 0) violation(std::string("error without the path: ") + e.what());
    return 0;
  } catch (const std::exception& e) {
    violation(std::string("not a runtime_error: ") + e.what());
  }
  if (t.scalar_type() != torch::kUInt8 || t.dim() < 1 || t.dim() > 4) violation("accepted a tensor of the wrong kind");
  // A plain (not gzip) input: the values must be the bytes after the 4 + 4 * ndims header.
  if (size >= 2 && !(data[0] == 0x1f && data[1] == 0x8b)) {
    const size_t header = 4 + 4 * static_cast<size_t>(t.dim());
    if (size != header + static_cast<size_t>(t.numel())) violation("accepted a plain file whose size does not match");
    if (t.numel() > 0 && std::memcmp(t.contiguous().data_ptr(), data + header, t.numel()) != 0)
      violation("values differ from the file's bytes");
  }
  return 0;
}

#include <zlib.h>

namespace {
std::string idx_bytes(const std::vector<uint32_t>& sizes, uint8_t fill_from) {
  std::string b{'\0', '\0', '\x08', static_cast<char>(sizes.size())};
  size_t n = 1;
  for (uint32_t s : sizes) {
    n *= s;
    for (int k = 3; k >= 0; --k) b.push_back(static_cast<char>((s >> (8 * k)) & 0xff));
  }
  for (size_t i = 0; i < n; ++i) b.push_back(static_cast<char>(fill_from + i));
  return b;
}
}  // namespace

void arcflow::fuzz::write_seeds(const std::string& dir) {
  write_seed(dir, "images.idx", idx_bytes({2, 3, 3}, 7));
  write_seed(dir, "labels.idx", idx_bytes({5}, 0));
  const std::string gz_path = dir + "/images.idx.gz";
  gzFile gz = gzopen(gz_path.c_str(), "wb");
  const std::string plain = idx_bytes({2, 4, 4}, 1);
  if (gz == nullptr || gzwrite(gz, plain.data(), static_cast<unsigned>(plain.size())) != static_cast<int>(plain.size()))
    violation("cannot write " + gz_path);
  gzclose(gz);
}
