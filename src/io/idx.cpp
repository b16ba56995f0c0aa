// Implementation of arcflow/io/idx.h.
//
// The file goes through zlib's gz* interface, which inflates gzip data and passes any other file
// through unchanged, so the same code reads .gz and plain IDX files. Data is read in chunks into a
// growing buffer, so a header that claims more data than the file holds fails with "truncated"
// instead of allocating what the header claims.
#include "arcflow/io/idx.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "arcflow/io/atomic_file.h"

namespace arcflow::io {

namespace {

// Largest data section accepted (Fashion-MNIST's training images are 47 MB).
constexpr uint64_t kMaxIdxBytes = uint64_t{1} << 32;

std::runtime_error idx_error(const std::string& path, const std::string& problem) {
  return std::runtime_error(path + ": " + problem);
}

std::string hex(uint32_t v, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%0*x", digits, v);
  return buf;
}

// Closes the gzFile on scope exit.
struct GzCloser {
  gzFile f;
  ~GzCloser() {
    if (f != nullptr) gzclose(f);
  }
};

// Reads up to n bytes (fewer only at the end of the input); throws on a read or inflate error.
size_t gz_read_up_to(gzFile f, char* out, size_t n, const std::string& path) {
  size_t done = 0;
  while (done < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - done, size_t{1} << 20));
    const int got = gzread(f, out + done, chunk);
    if (got < 0) {
      int err = 0;
      const char* msg = gzerror(f, &err);
      if (err == Z_BUF_ERROR) throw idx_error(path, "truncated gzip stream (the compressed file ends early)");
      throw idx_error(path, std::string("read error: ") +
                                (err == Z_ERRNO ? std::strerror(errno) : (msg ? msg : "unknown zlib error")));
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return done;
}

// Throws when the gzip stream ended in the middle (zlib reports Z_BUF_ERROR after a short read).
void check_gzip_complete(gzFile f, const std::string& path) {
  int err = Z_OK;
  gzerror(f, &err);
  if (err == Z_BUF_ERROR) throw idx_error(path, "truncated gzip stream (the compressed file ends early)");
}

uint32_t big_endian_u32(const unsigned char* b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

}  // namespace

torch::Tensor read_idx(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw idx_error(path, std::string("cannot open: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw idx_error(path, "not a regular file");
  GzCloser gz{gzopen(path.c_str(), "rb")};
  if (gz.f == nullptr) throw idx_error(path, std::string("cannot open: ") + std::strerror(errno));

  // Magic: two zero bytes, the element type, the dimension count.
  unsigned char magic[4];
  const size_t got_magic = gz_read_up_to(gz.f, reinterpret_cast<char*>(magic), 4, path);
  check_gzip_complete(gz.f, path);
  if (got_magic < 4)
    throw idx_error(path, "file too short for an IDX header (" + std::to_string(got_magic) + " bytes)");
  const uint32_t magic_value = big_endian_u32(magic);
  if (magic[0] != 0 || magic[1] != 0)
    throw idx_error(path, "bad magic number " + hex(magic_value, 8) + " (not an IDX file)");
  if (magic[2] != 0x08)
    throw idx_error(path, "unsupported IDX element type " + hex(magic[2], 2) + " in magic " + hex(magic_value, 8) +
                              " (only 0x08, unsigned byte, is supported)");
  const int ndims = magic[3];
  if (ndims < 1 || ndims > 4)
    throw idx_error(path, "unsupported IDX dimension count " + std::to_string(ndims) + " (expected 1 to 4)");

  // Sizes, big-endian uint32 each.
  unsigned char size_bytes[16];
  const size_t size_len = static_cast<size_t>(4 * ndims);
  if (gz_read_up_to(gz.f, reinterpret_cast<char*>(size_bytes), size_len, path) < size_len) {
    check_gzip_complete(gz.f, path);
    throw idx_error(path, "truncated IDX header (" + std::to_string(ndims) + " sizes expected)");
  }
  std::vector<int64_t> sizes;
  uint64_t total = 1;
  for (int i = 0; i < ndims; ++i) {
    const uint32_t s = big_endian_u32(size_bytes + 4 * i);
    if (s == 0) throw idx_error(path, "size 0 in dimension " + std::to_string(i));
    total *= s;  // cannot overflow: total <= 2^32 before, s < 2^32
    if (total > kMaxIdxBytes)
      throw idx_error(path, "sizes claim more than " + std::to_string(kMaxIdxBytes) + " bytes of data");
    sizes.push_back(static_cast<int64_t>(s));
  }

  // The data: grow the buffer as bytes arrive, so a lying header cannot force a huge allocation.
  std::string data;
  size_t have = 0;
  while (have < total) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(total - have, uint64_t{16} << 20));
    data.resize(have + want);
    const size_t got = gz_read_up_to(gz.f, data.data() + have, want, path);
    have += got;
    if (got < want) break;
  }
  check_gzip_complete(gz.f, path);
  if (have < total)
    throw idx_error(path, "truncated data: the header sizes " + c10::str(c10::IntArrayRef(sizes)) + " need " +
                              std::to_string(total) + " bytes, the file has " + std::to_string(have));
  char extra;
  if (gz_read_up_to(gz.f, &extra, 1, path) != 0)
    throw idx_error(path, "trailing bytes after the " + std::to_string(total) + " data bytes the header " +
                              c10::str(c10::IntArrayRef(sizes)) + " describes");

  torch::Tensor out = torch::empty(sizes, torch::kUInt8);
  std::memcpy(out.data_ptr<uint8_t>(), data.data(), total);
  return out;
}

namespace {

// `dir/name.gz`, or `dir/name` when only the uncompressed file exists; a missing file throws with
// the installation hint.
std::string find_data_file(const std::string& dir, const std::string& name) {
  const std::string base = (dir.empty() || dir.back() == '/') ? dir + name : dir + "/" + name;
  if (is_regular_file(base + ".gz")) return base + ".gz";
  if (is_regular_file(base)) return base;
  throw std::runtime_error(base + ".gz: file not found; install the Debian package dataset-fashion-mnist "
                                  "(apt-get install dataset-fashion-mnist) or pass --data-dir");
}

}  // namespace

FashionMnist load_fashion_mnist(const std::string& dir, bool train) {
  const std::string prefix = train ? "train" : "t10k";
  const std::string image_path = find_data_file(dir, prefix + "-images-idx3-ubyte");
  const std::string label_path = find_data_file(dir, prefix + "-labels-idx1-ubyte");

  const torch::Tensor images = read_idx(image_path);
  if (images.dim() != 3 || images.size(1) != 28 || images.size(2) != 28)
    throw std::runtime_error(image_path + ": expected images of shape (N, 28, 28), got " + c10::str(images.sizes()));
  const torch::Tensor labels = read_idx(label_path);
  if (labels.dim() != 1)
    throw std::runtime_error(label_path + ": expected labels of shape (N), got " + c10::str(labels.sizes()));
  if (labels.size(0) != images.size(0))
    throw std::runtime_error(label_path + ": " + std::to_string(labels.size(0)) + " labels for " +
                             std::to_string(images.size(0)) + " images in " + image_path);
  const int64_t max_label = labels.max().item<int64_t>();
  if (max_label > 9)
    throw std::runtime_error(label_path + ": label " + std::to_string(max_label) + " outside 0..9");

  FashionMnist out;
  out.images = images.to(torch::kFloat32).div_(127.5).sub_(1.0).unsqueeze(1).contiguous();
  out.labels = labels.to(torch::kInt64);
  return out;
}

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

}  // namespace arcflow::io
