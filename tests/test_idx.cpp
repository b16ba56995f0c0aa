// Tests for arcflow/io/idx.h: hand-built IDX files (gzipped with zlib or plain), every malformed
// case, and the real Fashion-MNIST test set when the Debian package is installed.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "arcflow/io/idx.h"
#include "temp_dir.h"

using namespace arcflow::io;
using arcflow::test::TempDir;

namespace {

// IDX bytes: magic (0, 0, dtype, ndims), big-endian sizes, then `data`.
std::string idx_bytes(const std::vector<uint32_t>& sizes, const std::string& data, int dtype = 0x08,
                      int ndims = -1) {
  std::string s;
  s.push_back(0);
  s.push_back(0);
  s.push_back(static_cast<char>(dtype));
  s.push_back(static_cast<char>(ndims < 0 ? static_cast<int>(sizes.size()) : ndims));
  for (uint32_t v : sizes)
    for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((v >> shift) & 0xff));
  return s + data;
}

// `n` bytes counting 0, 1, 2, ... (mod 256).
std::string counting(size_t n, int start = 0) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((start + i) & 0xff);
  return s;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  }
  ASSERT_EQ(gzclose(f), Z_OK);
}

void write_plain(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_plain(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Expects read_idx(path) to throw a message naming the file and containing `what`.
void expect_idx_error(const std::string& path, const std::string& what) {
  try {
    read_idx(path);
    ADD_FAILURE() << "no error for " << path << " (expected '" << what << "')";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
}

// A tiny Fashion-MNIST-like folder: `n` images of 28x28 and `labels`.
void write_dataset(const TempDir& dir, const std::string& prefix, uint32_t n_images, const std::string& labels) {
  write_gz(dir.file(prefix + "-images-idx3-ubyte.gz"), idx_bytes({n_images, 28, 28}, counting(n_images * 784)));
  write_gz(dir.file(prefix + "-labels-idx1-ubyte.gz"),
           idx_bytes({static_cast<uint32_t>(labels.size())}, labels));
}

}  // namespace

TEST(Idx, ReadsGzippedAndPlainFiles) {
  TempDir dir;
  // 3-D "images" (2, 3, 4): value at (i, j, k) is 12 i + 4 j + k.
  write_gz(dir.file("a.gz"), idx_bytes({2, 3, 4}, counting(24)));
  const torch::Tensor a = read_idx(dir.file("a.gz"));
  EXPECT_EQ(a.scalar_type(), torch::kUInt8);
  ASSERT_EQ(a.sizes(), torch::IntArrayRef({2, 3, 4}));
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) EXPECT_EQ(a[i][j][k].item<int>(), 12 * i + 4 * j + k);
  // 1-D labels, uncompressed.
  write_plain(dir.file("b"), idx_bytes({5}, std::string("\x09\x00\x03\x07\x01", 5)));
  const torch::Tensor b = read_idx(dir.file("b"));
  ASSERT_EQ(b.sizes(), torch::IntArrayRef({5}));
  EXPECT_TRUE(torch::equal(b, torch::tensor({9, 0, 3, 7, 1}, torch::kUInt8)));
  // 4-D, and values up to 255.
  write_gz(dir.file("c.gz"), idx_bytes({1, 2, 2, 2}, std::string("\xff\x80\x00\x01\x02\x03\x04\xfe", 8)));
  const torch::Tensor c = read_idx(dir.file("c.gz"));
  ASSERT_EQ(c.sizes(), torch::IntArrayRef({1, 2, 2, 2}));
  EXPECT_EQ(c[0][0][0][0].item<int>(), 255);
  EXPECT_EQ(c[0][1][1][1].item<int>(), 254);
}

TEST(Idx, MalformedFilesThrowNamingTheFile) {
  TempDir dir;
  auto gz = [&](const std::string& name, const std::string& bytes) {
    write_gz(dir.file(name), bytes);
    return dir.file(name);
  };
  expect_idx_error(dir.file("missing.gz"), "cannot open");
  expect_idx_error(dir.path(), "not a regular file");
  expect_idx_error(gz("empty.gz", ""), "too short");
  expect_idx_error(gz("short.gz", std::string("\x00\x00\x08", 3)), "too short");
  expect_idx_error(gz("magic.gz", "\x01\x02\x08\x01" + std::string(8, '\0')), "bad magic");
  expect_idx_error(gz("float.gz", idx_bytes({2}, std::string(8, '\0'), 0x0D)), "element type 0x0d");
  expect_idx_error(gz("int.gz", idx_bytes({2}, std::string(8, '\0'), 0x0C)), "element type 0x0c");
  expect_idx_error(gz("zero_dims.gz", idx_bytes({}, "", 0x08, 0)), "dimension count 0");
  expect_idx_error(gz("five_dims.gz", idx_bytes({1, 1, 1, 1, 1}, "x")), "dimension count 5");
  expect_idx_error(gz("header.gz", idx_bytes({3, 28}, "").substr(0, 9)), "truncated IDX header");
  expect_idx_error(gz("zero_size.gz", idx_bytes({0, 28}, "")), "size 0 in dimension 0");
  expect_idx_error(gz("huge.gz", idx_bytes({0xffffffffu, 0xffffffffu}, "")), "bytes of data");
  expect_idx_error(gz("truncated.gz", idx_bytes({2, 3}, counting(5))), "truncated data");
  expect_idx_error(gz("lying.gz", idx_bytes({60000, 28, 28}, counting(100))), "truncated data");
  expect_idx_error(gz("trailing.gz", idx_bytes({2, 3}, counting(7))), "trailing bytes");
  write_plain(dir.file("trailing_plain"), idx_bytes({4}, counting(5)));
  expect_idx_error(dir.file("trailing_plain"), "trailing bytes");
  // A gzip file cut in half: zlib reports the stream ended early.
  const std::string whole = read_plain(gz("whole.gz", idx_bytes({64, 64}, counting(4096))));
  write_plain(dir.file("cut.gz"), whole.substr(0, whole.size() / 2));
  expect_idx_error(dir.file("cut.gz"), "truncated");
  // Corrupt compressed data (gzip header kept, deflate data overwritten).
  std::string corrupt = whole;
  for (size_t i = 10; i < corrupt.size() - 8; ++i) corrupt[i] = static_cast<char>(0xff);
  write_plain(dir.file("corrupt.gz"), corrupt);
  expect_idx_error(dir.file("corrupt.gz"), dir.file("corrupt.gz"));
}

TEST(FashionMnist, LoadsHandBuiltFolder) {
  TempDir dir;
  write_dataset(dir, "t10k", 3, std::string("\x02\x00\x09", 3));
  const FashionMnist d = load_fashion_mnist(dir.path(), /*train=*/false);
  ASSERT_EQ(d.images.sizes(), torch::IntArrayRef({3, 1, 28, 28}));
  EXPECT_EQ(d.images.scalar_type(), torch::kFloat32);
  EXPECT_EQ(d.labels.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(d.labels, torch::tensor({2, 0, 9}, torch::kInt64)));
  // Byte value v -> v / 127.5 - 1: image 0 pixel (0, 0) is 0 -> -1, pixel (9, 3) is byte 255 -> 1.
  EXPECT_FLOAT_EQ(d.images[0][0][0][0].item<float>(), -1.0f);
  EXPECT_FLOAT_EQ(d.images[0][0][9][3].item<float>(), 1.0f);  // index 255
  // Image 1 starts at byte 784 = 3 * 256 + 16 -> value 16.
  EXPECT_FLOAT_EQ(d.images[1][0][0][0].item<float>(), static_cast<float>(16 / 127.5 - 1.0));
  EXPECT_GE(d.images.min().item<float>(), -1.0f);
  EXPECT_LE(d.images.max().item<float>(), 1.0f);
  // The training files are separate, and absent here.
  try {
    load_fashion_mnist(dir.path(), /*train=*/true);
    FAIL();
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(dir.file("train-images-idx3-ubyte.gz")), std::string::npos) << msg;
    EXPECT_NE(msg.find("apt-get install dataset-fashion-mnist"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--data-dir"), std::string::npos) << msg;
  }
  // Uncompressed files are used when the .gz ones are absent.
  TempDir plain;
  write_plain(plain.file("train-images-idx3-ubyte"), idx_bytes({1, 28, 28}, counting(784)));
  write_plain(plain.file("train-labels-idx1-ubyte"), idx_bytes({1}, "\x05"));
  EXPECT_EQ(load_fashion_mnist(plain.path(), true).labels.item<int64_t>(), 5);
}

TEST(FashionMnist, RejectsInconsistentFolders) {
  auto expect_error = [](const std::string& dir, const std::string& file, const std::string& what) {
    try {
      load_fashion_mnist(dir, false);
      ADD_FAILURE() << "no error (expected '" << what << "')";
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(file), std::string::npos) << msg;
      EXPECT_NE(msg.find(what), std::string::npos) << msg;
    }
  };
  {  // Missing labels.
    TempDir dir;
    write_gz(dir.file("t10k-images-idx3-ubyte.gz"), idx_bytes({1, 28, 28}, counting(784)));
    expect_error(dir.path(), dir.file("t10k-labels-idx1-ubyte.gz"), "dataset-fashion-mnist");
  }
  {  // Count mismatch.
    TempDir dir;
    write_dataset(dir, "t10k", 2, std::string("\x01\x02\x03", 3));
    expect_error(dir.path(), dir.file("t10k-labels-idx1-ubyte.gz"), "3 labels for 2 images");
  }
  {  // Label out of range.
    TempDir dir;
    write_dataset(dir, "t10k", 2, std::string("\x01\x0a", 2));
    expect_error(dir.path(), dir.file("t10k-labels-idx1-ubyte.gz"), "label 10 outside 0..9");
  }
  {  // Wrong image shape.
    TempDir dir;
    write_gz(dir.file("t10k-images-idx3-ubyte.gz"), idx_bytes({1, 32, 32}, counting(1024)));
    write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), idx_bytes({1}, "\x01"));
    expect_error(dir.path(), dir.file("t10k-images-idx3-ubyte.gz"), "(N, 28, 28)");
  }
  {  // Labels with two dimensions.
    TempDir dir;
    write_gz(dir.file("t10k-images-idx3-ubyte.gz"), idx_bytes({1, 28, 28}, counting(784)));
    write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), idx_bytes({1, 1}, "\x01"));
    expect_error(dir.path(), dir.file("t10k-labels-idx1-ubyte.gz"), "shape (N)");
  }
  {  // A malformed file inside the folder.
    TempDir dir;
    write_gz(dir.file("t10k-images-idx3-ubyte.gz"), idx_bytes({2, 28, 28}, counting(784)));
    write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), idx_bytes({2}, "\x01\x02"));
    expect_error(dir.path(), dir.file("t10k-images-idx3-ubyte.gz"), "truncated data");
  }
}

TEST(FashionMnist, ClassNames) {
  const auto& names = fashion_mnist_class_names();
  ASSERT_EQ(names.size(), 10u);
  EXPECT_EQ(names[0], "T-shirt/top");
  EXPECT_EQ(names[7], "Sneaker");
  EXPECT_EQ(names[9], "Ankle boot");
}

TEST(FashionMnist, RealTestSet) {
  if (!arcflow::test::path_exists(std::string(kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz"))
    GTEST_SKIP() << kFashionMnistDir << " not installed (apt-get install dataset-fashion-mnist)";
  const FashionMnist d = load_fashion_mnist(kFashionMnistDir, /*train=*/false);
  ASSERT_EQ(d.images.sizes(), torch::IntArrayRef({10000, 1, 28, 28}));
  ASSERT_EQ(d.labels.sizes(), torch::IntArrayRef({10000}));
  EXPECT_GE(d.images.min().item<float>(), -1.0f);
  EXPECT_LE(d.images.max().item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(d.images.min().item<float>(), -1.0f);  // background pixels are 0
  EXPECT_FLOAT_EQ(d.images.max().item<float>(), 1.0f);   // and some pixels saturate at 255
  const torch::Tensor counts = torch::bincount(d.labels, {}, 10);
  EXPECT_TRUE(torch::equal(counts, torch::full({10}, 1000, torch::kInt64))) << counts;
}
