// IDX files (the MNIST / Fashion-MNIST format) and the Fashion-MNIST data set (ARCFLOW.md section 5).
//
// An IDX file is
//   [4 bytes]  magic: 0x00, 0x00, dtype, ndims   (only dtype 0x08 = unsigned byte is supported)
//   [4 bytes]  each of the ndims sizes, big-endian uint32
//   [rest]     the values, row-major, exactly prod(sizes) bytes
// so images are magic 0x00000803 with sizes (N, 28, 28) and labels 0x00000801 with size (N).
// Files are usually gzip-compressed; read_idx reads both (zlib's gzread passes plain files through).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace arcflow::io {

// Reads an IDX file (gzip-compressed or plain) into a uint8 tensor shaped as its header says.
// Strict: a bad magic, a dtype other than 0x08, a dimension count outside 1..4, a zero or absurd
// size, truncated data, trailing bytes, or a gzip error throws std::runtime_error whose message
// starts with `path` and says what is wrong.
torch::Tensor read_idx(const std::string& path);

// Where the Debian package dataset-fashion-mnist installs the files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

struct FashionMnist {
  torch::Tensor images;  // (N, 1, 28, 28) float32, pixel / 127.5 - 1, in [-1, 1]
  torch::Tensor labels;  // (N) int64, 0..9 (see fashion_mnist_class_names())
};

// Loads the training set (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz; 60000 images) or
// the test set (t10k-*; 10000 images) from `dir`. An uncompressed file (the same name without
// ".gz") is used when the .gz one is absent. Throws std::runtime_error naming the file when a file
// is missing (with the hint to install dataset-fashion-mnist or pass --data-dir), is malformed, has
// the wrong shape, when image and label counts differ, or when a label is outside 0..9.
FashionMnist load_fashion_mnist(const std::string& dir = kFashionMnistDir, bool train = true);

// The ten class names, indexed by label: "T-shirt/top", "Trouser", ..., "Ankle boot".
const std::vector<std::string>& fashion_mnist_class_names();

}  // namespace arcflow::io
